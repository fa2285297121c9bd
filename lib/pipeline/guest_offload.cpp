// Finishing guests' offloaded frames in software: checksums, and TSO through rte_gso.
#include "pipeline/guest_offload.hpp"

#include <algorithm>
#include <cstddef>
#include <cstring>

#include <rte_ethdev.h>
#include <rte_ether.h>
#include <rte_gso.h>
#include <rte_ip.h>
#include <rte_net.h>
#include <rte_tcp.h>
#include <rte_udp.h>

namespace portmux {
namespace {

struct Headers {
    uint16_t l2 = 0, l3 = 0, l4 = 0;
    bool ipv4 = false;
    bool tcp = false;
};

// The frame's headers, which must all be in its first segment (the vhost library fills a whole mbuf
// before chaining, so they are). IPv6 with extension headers is refused: DPDK's checksum helpers take the
// L4 length from the fixed header's payload length.
bool find_headers(const rte_mbuf* m, Headers& h) {
    rte_net_hdr_lens lens{};
    const uint32_t ptype = rte_net_get_ptype(m, &lens, RTE_PTYPE_L2_MASK | RTE_PTYPE_L3_MASK | RTE_PTYPE_L4_MASK);
    const uint32_t l3 = ptype & RTE_PTYPE_L3_MASK;
    const uint32_t l4 = ptype & RTE_PTYPE_L4_MASK;
    if (l4 != RTE_PTYPE_L4_TCP && l4 != RTE_PTYPE_L4_UDP) return false;  // fragments included
    if (RTE_ETH_IS_IPV4_HDR(l3)) {
        h.ipv4 = true;
    } else if (RTE_ETH_IS_IPV6_HDR(l3)) {
        if (lens.l3_len != sizeof(rte_ipv6_hdr)) return false;
    } else {
        return false;
    }
    h.l2 = lens.l2_len;
    h.l3 = lens.l3_len;
    h.l4 = lens.l4_len;
    h.tcp = l4 == RTE_PTYPE_L4_TCP;
    return rte_pktmbuf_data_len(m) >= static_cast<uint32_t>(h.l2 + h.l3 + h.l4);
}

bool complete_checksums(rte_mbuf* m, const Headers& h) {
    auto* l3 = rte_pktmbuf_mtod_offset(m, uint8_t*, h.l2);
    const uint16_t l4_offset = static_cast<uint16_t>(h.l2 + h.l3);
    // The checksum field, written through bytes: the headers are packed structures.
    const uint16_t field_offset = static_cast<uint16_t>(
        l4_offset + (h.tcp ? offsetof(rte_tcp_hdr, cksum) : offsetof(rte_udp_hdr, dgram_cksum)));
    uint8_t* field = rte_pktmbuf_mtod_offset(m, uint8_t*, field_offset);
    uint16_t sum = 0;
    std::memcpy(field, &sum, sizeof(sum));
    if (h.ipv4) {
        auto* ip = reinterpret_cast<rte_ipv4_hdr*>(l3);
        ip->hdr_checksum = 0;
        ip->hdr_checksum = rte_ipv4_cksum(ip);
        sum = rte_ipv4_udptcp_cksum_mbuf(m, ip, l4_offset);
    } else {
        sum = rte_ipv6_udptcp_cksum_mbuf(m, reinterpret_cast<rte_ipv6_hdr*>(l3), l4_offset);
    }
    std::memcpy(field, &sum, sizeof(sum));
    return true;
}

}  // namespace

bool complete_checksums(rte_mbuf* m) {
    Headers h;
    return find_headers(m, h) && complete_checksums(m, h);
}

GuestOffloadOutcome finish_guest_frame(const GuestOffloadContext& ctx, rte_mbuf* m, rte_mbuf** out) {
    GuestOffloadOutcome outcome;
    Headers h;
    const uint64_t flags = m->ol_flags;
    const uint32_t max_frame = RTE_ETHER_HDR_LEN + ctx.mtu;
    const bool tso = (flags & RTE_MBUF_F_RX_LRO) != 0;
    const bool partial = (flags & RTE_MBUF_F_RX_L4_CKSUM_MASK) == RTE_MBUF_F_RX_L4_CKSUM_NONE;

    if (tso && rte_pktmbuf_pkt_len(m) > max_frame) {
        // rte_gso segments TCP over IPv4 only, which is why HOST_TSO6 is not offered.
        if (!find_headers(m, h) || !h.ipv4 || !h.tcp || m->tso_segsz == 0) {
            outcome.result = GuestOffloadResult::kUnsupported;
            return outcome;
        }
        rte_gso_ctx gso{};
        gso.direct_pool = ctx.direct_pool;
        gso.indirect_pool = ctx.indirect_pool;
        gso.gso_types = RTE_ETH_TX_OFFLOAD_TCP_TSO;
        gso.flag = 0;  // each segment gets the next IPv4 identification, as the guest's own stack would
        // The guest's MSS may be below what the MTU allows (the peer asked for less): never exceed it.
        const uint32_t headers = static_cast<uint32_t>(h.l2 + h.l3 + h.l4);
        gso.gso_size = static_cast<uint16_t>(std::min<uint32_t>(max_frame, headers + m->tso_segsz));
        m->l2_len = h.l2;
        m->l3_len = h.l3;
        m->l4_len = h.l4;
        m->ol_flags = RTE_MBUF_F_TX_TCP_SEG | RTE_MBUF_F_TX_IPV4;
        const int n = rte_gso_segment(m, &gso, out, kMaxGuestSegments);
        if (n <= 0) {
            m->ol_flags = flags;
            outcome.result = n == -ENOMEM ? GuestOffloadResult::kNoMbuf : GuestOffloadResult::kUnsupported;
            return outcome;
        }
        // The segments hold references to the guest's frame; this drops the caller's.
        rte_pktmbuf_free(m);
        uint16_t kept = 0;
        for (int i = 0; i < n; ++i) {
            rte_mbuf* seg = out[i];
            // rte_gso leaves checksums to the caller, and each segment as a header mbuf plus an indirect one
            // into the guest's data: made contiguous, so neither the pipeline nor the uplink needs chains.
            seg->ol_flags = 0;
            if (rte_pktmbuf_linearize(seg) != 0 || !complete_checksums(seg, h)) {
                rte_pktmbuf_free(seg);
                continue;
            }
            out[kept++] = seg;
        }
        outcome.result = GuestOffloadResult::kSegmented;
        outcome.count = kept;
        outcome.dropped = static_cast<uint16_t>(n - kept);
        return outcome;
    }
    if (rte_pktmbuf_pkt_len(m) > max_frame) {
        outcome.result = GuestOffloadResult::kUnsupported;
        return outcome;
    }
    if (partial || tso) {
        if (!find_headers(m, h)) {
            outcome.result = GuestOffloadResult::kUnsupported;
            return outcome;
        }
        complete_checksums(m, h);
    }
    m->ol_flags = 0;
    out[0] = m;
    outcome.count = 1;
    return outcome;
}

}  // namespace portmux
