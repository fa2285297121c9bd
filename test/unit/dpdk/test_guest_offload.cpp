// Finishing guests' offloads: TSO frames cut to the MTU with correct checksums, partial checksums
// completed, and what cannot be finished refused.
#include <catch2/catch.hpp>

#include <cstring>
#include <vector>

#include <rte_ether.h>
#include <rte_ip.h>
#include <rte_mbuf.h>
#include <rte_tcp.h>

#include "pipeline/guest_offload.hpp"

using namespace portmux;

namespace {

struct Pools {
    rte_mempool* direct = rte_pktmbuf_pool_create("offload_direct", 1024, 0, 0, 16384, 0);
    rte_mempool* indirect = rte_pktmbuf_pool_create("offload_indirect", 1024, 0, 0, 0, 0);
    ~Pools() {
        rte_mempool_free(direct);
        rte_mempool_free(indirect);
    }
};

constexpr uint32_t kSeq = 1000000;

// An Ethernet/IPv4/TCP frame as a guest hands it over with offloads: the TCP checksum only partial
// (here: left zero, as nothing may rely on its content) and the IPv4 header checksum not filled in.
rte_mbuf* tcp_frame(rte_mempool* pool, size_t payload, uint64_t flags, uint16_t mss) {
    rte_mbuf* m = rte_pktmbuf_alloc(pool);
    REQUIRE(m != nullptr);
    const size_t size = sizeof(rte_ether_hdr) + sizeof(rte_ipv4_hdr) + sizeof(rte_tcp_hdr) + payload;
    auto* data = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(m, static_cast<uint16_t>(size)));
    REQUIRE(data != nullptr);
    std::memset(data, 0, size);
    auto* eth = reinterpret_cast<rte_ether_hdr*>(data);
    eth->ether_type = rte_cpu_to_be_16(RTE_ETHER_TYPE_IPV4);
    auto* ip = reinterpret_cast<rte_ipv4_hdr*>(eth + 1);
    ip->version_ihl = 0x45;
    ip->total_length = rte_cpu_to_be_16(static_cast<uint16_t>(size - sizeof(rte_ether_hdr)));
    ip->packet_id = rte_cpu_to_be_16(7);
    ip->time_to_live = 64;
    ip->next_proto_id = IPPROTO_TCP;
    ip->src_addr = rte_cpu_to_be_32(0xc000020a);  // 192.0.2.10
    ip->dst_addr = rte_cpu_to_be_32(0xc6336407);  // 198.51.100.7
    auto* tcp = reinterpret_cast<rte_tcp_hdr*>(ip + 1);
    tcp->src_port = rte_cpu_to_be_16(8080);
    tcp->dst_port = rte_cpu_to_be_16(40000);
    tcp->sent_seq = rte_cpu_to_be_32(kSeq);
    tcp->data_off = 5 << 4;
    tcp->tcp_flags = RTE_TCP_ACK_FLAG | RTE_TCP_PSH_FLAG;
    tcp->rx_win = rte_cpu_to_be_16(65535);
    uint8_t* body = reinterpret_cast<uint8_t*>(tcp + 1);
    for (size_t i = 0; i < payload; ++i) body[i] = static_cast<uint8_t>(i * 7 + 3);
    m->ol_flags = flags;
    m->tso_segsz = mss;
    return m;
}

struct Checked {
    bool ip_ok = false, tcp_ok = false;
    uint32_t seq = 0;
    std::vector<uint8_t> payload;
};

Checked check_segment(rte_mbuf* m) {
    Checked c;
    REQUIRE(rte_pktmbuf_is_contiguous(m));
    auto* ip = rte_pktmbuf_mtod_offset(m, rte_ipv4_hdr*, sizeof(rte_ether_hdr));
    auto* tcp = reinterpret_cast<rte_tcp_hdr*>(ip + 1);
    c.ip_ok = rte_ipv4_cksum(ip) == 0 || rte_ipv4_cksum(ip) == 0xffff;
    c.tcp_ok = rte_ipv4_udptcp_cksum_verify(ip, tcp) == 0;
    c.seq = rte_be_to_cpu_32(tcp->sent_seq);
    CHECK(rte_be_to_cpu_16(ip->total_length) == rte_pktmbuf_pkt_len(m) - sizeof(rte_ether_hdr));
    auto* body = reinterpret_cast<uint8_t*>(tcp + 1);
    c.payload.assign(body, rte_pktmbuf_mtod(m, uint8_t*) + rte_pktmbuf_pkt_len(m));
    return c;
}

}  // namespace

TEST_CASE("guest offload: a 9,000-byte TSO frame leaves as MTU-sized segments, checksums right, bytes in order",
          "[offload]") {
    Pools pools;
    REQUIRE(pools.direct != nullptr);
    REQUIRE(pools.indirect != nullptr);
    GuestOffloadContext ctx{pools.direct, pools.indirect, 1500};
    const size_t payload = 9000;
    rte_mbuf* m = tcp_frame(pools.direct, payload, RTE_MBUF_F_RX_LRO | RTE_MBUF_F_RX_L4_CKSUM_NONE, 1448);
    std::vector<uint8_t> expected(payload);
    for (size_t i = 0; i < payload; ++i) expected[i] = static_cast<uint8_t>(i * 7 + 3);
    REQUIRE(guest_frame_needs_work(m, 1514));
    rte_mbuf* out[kMaxGuestSegments];
    GuestOffloadOutcome done = finish_guest_frame(ctx, m, out);
    REQUIRE(done.result == GuestOffloadResult::kSegmented);
    CHECK(done.dropped == 0);
    CHECK(done.count == (payload + 1447) / 1448);
    std::vector<uint8_t> joined;
    uint32_t next_seq = kSeq;
    for (uint16_t i = 0; i < done.count; ++i) {
        INFO("segment " << i);
        CHECK(rte_pktmbuf_pkt_len(out[i]) <= 1514);
        CHECK(out[i]->ol_flags == 0);
        Checked c = check_segment(out[i]);
        CHECK(c.ip_ok);
        CHECK(c.tcp_ok);
        CHECK(c.seq == next_seq);
        next_seq += static_cast<uint32_t>(c.payload.size());
        CHECK(c.payload.size() <= 1448);
        joined.insert(joined.end(), c.payload.begin(), c.payload.end());
        rte_pktmbuf_free(out[i]);
    }
    CHECK(joined == expected);
}

TEST_CASE("guest offload: a partial checksum is completed in place", "[offload]") {
    Pools pools;
    GuestOffloadContext ctx{pools.direct, pools.indirect, 1500};
    rte_mbuf* m = tcp_frame(pools.direct, 700, RTE_MBUF_F_RX_L4_CKSUM_NONE, 0);
    rte_mbuf* out[kMaxGuestSegments];
    GuestOffloadOutcome done = finish_guest_frame(ctx, m, out);
    REQUIRE(done.result == GuestOffloadResult::kDone);
    REQUIRE(out[0] == m);
    Checked c = check_segment(m);
    CHECK(c.ip_ok);
    CHECK(c.tcp_ok);
    CHECK(c.payload.size() == 700);
    CHECK(m->ol_flags == 0);
    rte_pktmbuf_free(m);
}

TEST_CASE("guest offload: above the MTU without TSO, or TSO of something not TCP, is refused untouched",
          "[offload]") {
    Pools pools;
    GuestOffloadContext ctx{pools.direct, pools.indirect, 1500};
    rte_mbuf* out[kMaxGuestSegments];
    rte_mbuf* big = tcp_frame(pools.direct, 3000, 0, 0);
    CHECK(finish_guest_frame(ctx, big, out).result == GuestOffloadResult::kUnsupported);
    CHECK(rte_pktmbuf_pkt_len(big) == 3054);
    rte_pktmbuf_free(big);
    rte_mbuf* udp = tcp_frame(pools.direct, 3000, RTE_MBUF_F_RX_LRO, 1448);
    rte_pktmbuf_mtod_offset(udp, rte_ipv4_hdr*, sizeof(rte_ether_hdr))->next_proto_id = IPPROTO_UDP;
    CHECK(finish_guest_frame(ctx, udp, out).result == GuestOffloadResult::kUnsupported);
    rte_pktmbuf_free(udp);
}
