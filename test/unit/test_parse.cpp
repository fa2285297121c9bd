// Parse stage: header walking, length checks and truncation at every byte.
#include <catch2/catch.hpp>

#include <arpa/inet.h>

#include <cstring>
#include <memory>

#include "frame_builder.hpp"
#include "pipeline/parse.hpp"

using namespace portmux;
using namespace portmux::test;

namespace {

// Parses a private copy of exactly `len` bytes, so a read past the end is caught by the sanitizers.
ParsedFrame parse_exact(const Bytes& frame, size_t len) {
    std::unique_ptr<uint8_t[]> copy(new uint8_t[len == 0 ? 1 : len]);
    if (len != 0) std::memcpy(copy.get(), frame.data(), len);
    return parse_frame(copy.get(), static_cast<uint32_t>(len), static_cast<uint32_t>(len));
}
ParsedFrame parse(const Bytes& frame) { return parse_exact(frame, frame.size()); }

// Every proper prefix of an IP frame is malformed and never yields ports.
void check_every_truncation(const Bytes& frame) {
    for (size_t len = 0; len < frame.size(); ++len) {
        INFO("length " << len << " of " << frame.size());
        const ParsedFrame f = parse_exact(frame, len);
        CHECK(f.kind == FrameKind::kMalformed);
        CHECK_FALSE(f.has_ports);
    }
}

}  // namespace

TEST_CASE("parse: IPv4 TCP gives addresses, ports and the flow key in network byte order", "[parse]") {
    const Bytes frame = eth_ipv4(Ip4{}, tcp(40000, 80));
    const ParsedFrame f = parse(frame);
    REQUIRE(f.kind == FrameKind::kIpv4);
    CHECK(f.ip_proto == 6);
    CHECK(f.has_ports);
    CHECK_FALSE(f.is_fragment);
    CHECK(f.l3_offset == 14);
    CHECK(f.l4_offset == 34);
    CHECK(f.l3_length == 40);
    CHECK(f.src_port == 40000);
    CHECK(f.dst_port == 80);
    CHECK(f.key.v4.proto == 6);
    CHECK(f.key.v4.src == be32_of(kPeerIp));
    CHECK(f.key.v4.dst == be32_of(kSharedIp));
    CHECK(f.key.v4.src_port == htons(40000));
    CHECK(f.key.v4.dst_port == htons(80));
}

TEST_CASE("parse: IPv4 UDP gives ports", "[parse]") {
    const ParsedFrame f = parse(eth_ipv4(ip4_proto(17), udp(5353, 53, 12)));
    REQUIRE(f.kind == FrameKind::kIpv4);
    CHECK(f.ip_proto == 17);
    CHECK(f.has_ports);
    CHECK(f.src_port == 5353);
    CHECK(f.dst_port == 53);
    CHECK(f.key.v4.dst_port == htons(53));
}

TEST_CASE("parse: IPv4 options are skipped through IHL to reach the transport header", "[parse]") {
    Ip4 ip;
    ip.options = {0x94, 0x04, 0, 0, 0x01, 0x01, 0x01, 0x00};  // router alert, NOPs, end of list
    const Bytes frame = eth_ipv4(ip, tcp(1234, 8080));
    const ParsedFrame f = parse(frame);
    REQUIRE(f.kind == FrameKind::kIpv4);
    CHECK(f.l4_offset == 14 + 28);
    CHECK(f.has_ports);
    CHECK(f.dst_port == 8080);
    check_every_truncation(frame);
}

TEST_CASE("parse: ICMP over IPv4 has no ports and zero key ports", "[parse]") {
    const ParsedFrame f = parse(eth_ipv4(ip4_proto(1), Bytes{8, 0, 0, 0, 0, 1, 0, 1}));
    REQUIRE(f.kind == FrameKind::kIpv4);
    CHECK(f.ip_proto == 1);
    CHECK_FALSE(f.has_ports);
    CHECK(f.key.v4.src_port == 0);
    CHECK(f.key.v4.dst_port == 0);
}

TEST_CASE("parse: Ethernet padding after the IPv4 total length is accepted", "[parse]") {
    Bytes frame = eth_ipv4(ip4_proto(17), udp(1, 2));
    frame.resize(60, 0);
    const ParsedFrame f = parse(frame);
    REQUIRE(f.kind == FrameKind::kIpv4);
    CHECK(f.has_ports);
    CHECK(f.l3_length == 28);
}

TEST_CASE("parse: every truncation of Ethernet, IPv4 and TCP/UDP is malformed", "[parse]") {
    check_every_truncation(eth_ipv4(Ip4{}, tcp(1, 2, 0x18, 1, 2, 10)));
    check_every_truncation(eth_ipv4(ip4_proto(17), udp(1, 2, 10)));
}

TEST_CASE("parse: headers cut by `available` are malformed even when the frame is long enough", "[parse]") {
    const Bytes frame = eth_ipv4(Ip4{}, tcp(1, 2));
    for (uint32_t avail = 14; avail < 54; ++avail) {
        std::unique_ptr<uint8_t[]> copy(new uint8_t[avail]);
        std::memcpy(copy.get(), frame.data(), avail);
        const ParsedFrame f = parse_frame(copy.get(), avail, static_cast<uint32_t>(frame.size()));
        INFO("available " << avail);
        CHECK(f.kind == FrameKind::kMalformed);
    }
    // The transport payload beyond `available` is not needed.
    const Bytes big = eth_ipv4(Ip4{}, tcp(1, 2, 0x18, 1, 2, 1000));
    const ParsedFrame f = parse_frame(big.data(), 54, static_cast<uint32_t>(big.size()));
    CHECK(f.kind == FrameKind::kIpv4);
    CHECK(f.has_ports);
}

TEST_CASE("parse: a runt frame shorter than an Ethernet header is malformed", "[parse]") {
    for (size_t len = 0; len < 14; ++len) CHECK(parse_exact(eth_ipv4(Ip4{}, tcp(1, 2)), len).kind == FrameKind::kMalformed);
}

TEST_CASE("parse: IPv4 IHL below 5 is malformed", "[parse]") {
    for (int ihl = 0; ihl < 5; ++ihl) {
        Ip4 ip;
        ip.ihl = ihl;
        CHECK(parse(eth_ipv4(ip, tcp(1, 2))).kind == FrameKind::kMalformed);
    }
}

TEST_CASE("parse: IPv4 IHL beyond the frame is malformed", "[parse]") {
    Ip4 ip;
    ip.ihl = 15;  // 60 bytes of header, frame has 20 + 8
    ip.total_len = 28;
    CHECK(parse(eth_ipv4(ip, udp(1, 2))).kind == FrameKind::kMalformed);
}

TEST_CASE("parse: IPv4 version other than 4 is malformed", "[parse]") {
    Ip4 ip;
    ip.version = 6;
    CHECK(parse(eth_ipv4(ip, tcp(1, 2))).kind == FrameKind::kMalformed);
}

TEST_CASE("parse: IPv4 total length beyond the frame or below IHL is malformed", "[parse]") {
    Ip4 ip;
    ip.total_len = 41;  // one byte more than the frame carries
    CHECK(parse(eth_ipv4(ip, tcp(1, 2))).kind == FrameKind::kMalformed);
    ip.total_len = 19;
    CHECK(parse(eth_ipv4(ip, tcp(1, 2))).kind == FrameKind::kMalformed);
}

TEST_CASE("parse: an IPv4 total length that cuts the TCP header is malformed", "[parse]") {
    Ip4 ip;
    ip.total_len = 39;  // 19 bytes of TCP, padding after
    CHECK(parse(eth_ipv4(ip, tcp(1, 2))).kind == FrameKind::kMalformed);
}

TEST_CASE("parse: TCP data offset below 5 or beyond the IP payload is malformed", "[parse]") {
    for (uint8_t off = 0; off < 5; ++off) {
        Bytes seg = tcp(1, 2);
        seg[12] = static_cast<uint8_t>(off << 4);
        CHECK(parse(eth_ipv4(Ip4{}, seg)).kind == FrameKind::kMalformed);
    }
    Bytes seg = tcp(1, 2);
    seg[12] = 6 << 4;  // claims 24 bytes, 20 present
    CHECK(parse(eth_ipv4(Ip4{}, seg)).kind == FrameKind::kMalformed);
    const ParsedFrame f = parse(eth_ipv4(Ip4{}, tcp(1, 2, 0x02, 0, 0, 0, 15)));
    CHECK(f.kind == FrameKind::kIpv4);
    CHECK(f.has_ports);
}

TEST_CASE("parse: UDP length below 8 or beyond the IP payload is malformed", "[parse]") {
    const Ip4 ip = ip4_proto(17);
    CHECK(parse(eth_ipv4(ip, udp(1, 2, 4, 7))).kind == FrameKind::kMalformed);
    CHECK(parse(eth_ipv4(ip, udp(1, 2, 4, 13))).kind == FrameKind::kMalformed);
    CHECK(parse(eth_ipv4(ip, udp(1, 2, 4, 12))).kind == FrameKind::kIpv4);
    // A shorter UDP length than the IP payload leaves trailing bytes, which is allowed.
    CHECK(parse(eth_ipv4(ip, udp(1, 2, 4, 8))).kind == FrameKind::kIpv4);
}

TEST_CASE("parse: IPv4 first fragment keeps its ports, later fragments have none", "[parse]") {
    Ip4 ip = ip4_proto(17);
    ip.frag = 0x2000;  // MF, offset 0
    // The UDP length covers the whole datagram, more than this fragment carries.
    const ParsedFrame first = parse(eth_ipv4(ip, udp(1000, 53, 16, 3000)));
    REQUIRE(first.kind == FrameKind::kIpv4);
    CHECK(first.is_fragment);
    CHECK(first.first_fragment);
    CHECK(first.has_ports);
    CHECK(first.dst_port == 53);

    ip.frag = 0x2000 | 3;  // MF, offset 24 bytes: the payload is not a UDP header
    const ParsedFrame middle = parse(eth_ipv4(ip, Bytes(24, 0xee)));
    REQUIRE(middle.kind == FrameKind::kIpv4);
    CHECK(middle.is_fragment);
    CHECK_FALSE(middle.first_fragment);
    CHECK_FALSE(middle.has_ports);
    CHECK(middle.key.v4.dst_port == 0);

    ip.frag = 6;  // last fragment: no MF, offset 48; only 3 payload bytes is fine
    const ParsedFrame last = parse(eth_ipv4(ip, Bytes(3, 0xee)));
    CHECK(last.kind == FrameKind::kIpv4);
    CHECK(last.is_fragment);
    CHECK_FALSE(last.first_fragment);
    CHECK_FALSE(last.has_ports);
}

TEST_CASE("parse: a first IPv4 fragment with a truncated TCP header is malformed", "[parse]") {
    Ip4 ip;
    ip.frag = 0x2000;
    CHECK(parse(eth_ipv4(ip, Bytes(8, 0))).kind == FrameKind::kMalformed);
}

TEST_CASE("parse: IPv6 TCP gives addresses and ports", "[parse]") {
    const Bytes frame = eth_ipv6(Ip6{}, tcp(40000, 443));
    const ParsedFrame f = parse(frame);
    REQUIRE(f.kind == FrameKind::kIpv6);
    CHECK(f.ip_proto == 6);
    CHECK(f.l4_offset == 54);
    CHECK(f.l3_length == 60);
    CHECK(f.has_ports);
    CHECK(f.dst_port == 443);
    CHECK(f.key.v6.proto == 6);
    CHECK(std::memcmp(f.key.v6.src, kPeerIp6.data(), 16) == 0);
    CHECK(std::memcmp(f.key.v6.dst, kSharedIp6.data(), 16) == 0);
    CHECK(f.key.v6.dst_port == htons(443));
    check_every_truncation(frame);
    check_every_truncation(eth_ipv6(ip6_proto(17), udp(1, 2, 5)));
}

TEST_CASE("parse: each IPv6 extension header is walked to the transport header", "[parse]") {
    const Ext headers[] = {ext_options(0, 0), ext_options(0, 2), ext_options(43, 1), ext_options(60, 0),
                           ext_auth(4), ext_auth(1), ext_fragment(0, true)};
    for (const Ext& e : headers) {
        Ip6 ip = ip6_proto(17);
        ip.ext = {e};
        const Bytes frame = eth_ipv6(ip, udp(1, 4789, 8));
        const ParsedFrame f = parse(frame);
        INFO("extension header " << int(e.type) << " of " << e.bytes.size() << " bytes");
        REQUIRE(f.kind == FrameKind::kIpv6);
        CHECK(f.ip_proto == 17);
        CHECK(f.l4_offset == 54 + e.bytes.size());
        CHECK(f.has_ports);
        CHECK(f.dst_port == 4789);
        CHECK(f.is_fragment == (e.type == 44));
        check_every_truncation(frame);
    }
}

TEST_CASE("parse: a chain of IPv6 extension headers is walked", "[parse]") {
    Ip6 ip;
    ip.ext = {ext_options(0), ext_options(60, 1), ext_options(43), ext_auth(), ext_options(60)};
    const Bytes frame = eth_ipv6(ip, tcp(1, 22));
    const ParsedFrame f = parse(frame);
    REQUIRE(f.kind == FrameKind::kIpv6);
    CHECK(f.ip_proto == 6);
    CHECK(f.l4_offset == 54 + 8 + 16 + 8 + 24 + 8);
    CHECK(f.dst_port == 22);
    check_every_truncation(frame);
}

TEST_CASE("parse: up to 8 IPv6 extension headers are walked, a ninth is malformed", "[parse]") {
    Ip6 ip;
    ip.ext.assign(8, ext_options(60));
    CHECK(parse(eth_ipv6(ip, tcp(1, 2))).kind == FrameKind::kIpv6);
    ip.ext.assign(9, ext_options(60));
    CHECK(parse(eth_ipv6(ip, tcp(1, 2))).kind == FrameKind::kMalformed);
}

TEST_CASE("parse: an IPv6 extension header longer than the payload is malformed", "[parse]") {
    Ip6 ip = ip6_proto(59);  // no next header
    ip.ext = {ext_options(60, 3)};
    Bytes frame = eth_ipv6(ip, {});
    frame[14 + 40 + 1] = 4;  // claims 40 bytes, 32 present
    CHECK(parse(frame).kind == FrameKind::kMalformed);
}

TEST_CASE("parse: IPv6 payload length beyond the frame is malformed, padding after it is fine", "[parse]") {
    Ip6 ip;
    ip.payload_len = 21;
    CHECK(parse(eth_ipv6(ip, tcp(1, 2))).kind == FrameKind::kMalformed);
    ip.payload_len = 19;  // cuts the TCP header
    CHECK(parse(eth_ipv6(ip, tcp(1, 2))).kind == FrameKind::kMalformed);
    Bytes padded = eth_ipv6(Ip6{}, tcp(1, 2));
    padded.resize(padded.size() + 6, 0);
    CHECK(parse(padded).kind == FrameKind::kIpv6);
}

TEST_CASE("parse: IPv6 version other than 6 is malformed", "[parse]") {
    Bytes frame = eth_ipv6(Ip6{}, tcp(1, 2));
    frame[14] = 0x40;
    CHECK(parse(frame).kind == FrameKind::kMalformed);
}

TEST_CASE("parse: IPv6 fragments: the first has ports, a later one stops the walk", "[parse]") {
    Ip6 ip = ip6_proto(17);
    ip.ext = {ext_options(0), ext_fragment(0, true)};
    const ParsedFrame first = parse(eth_ipv6(ip, udp(7, 53, 16, 4000)));
    REQUIRE(first.kind == FrameKind::kIpv6);
    CHECK(first.is_fragment);
    CHECK(first.first_fragment);
    CHECK(first.has_ports);
    CHECK(first.dst_port == 53);

    ip.ext = {ext_options(0), ext_fragment(100, false)};
    const Bytes frame = eth_ipv6(ip, Bytes(5, 0xee));
    const ParsedFrame later = parse(frame);
    REQUIRE(later.kind == FrameKind::kIpv6);
    CHECK(later.is_fragment);
    CHECK_FALSE(later.first_fragment);
    CHECK_FALSE(later.has_ports);
    CHECK(later.ip_proto == 17);
    CHECK(later.l4_offset == 54 + 16);
    CHECK(later.key.v6.dst_port == 0);
    check_every_truncation(frame);
}

TEST_CASE("parse: neighbour solicitation and advertisement give type and target", "[parse]") {
    Ip6 ip = ip6_proto(58);
    const Bytes ns = eth_ipv6(ip, ndp(135, kSharedIp6, lladdr_option(1, kPeerMac)));
    const ParsedFrame f = parse(ns);
    REQUIRE(f.kind == FrameKind::kIpv6);
    CHECK(f.ip_proto == 58);
    CHECK(f.icmp6_type == 135);
    CHECK_FALSE(f.has_ports);
    REQUIRE(f.has_ndp_target);
    CHECK(std::memcmp(f.ndp_target, kSharedIp6.data(), 16) == 0);

    ip.dst = kAllNodes;
    const ParsedFrame na = parse(eth_ipv6(ip, ndp(136, kPeerIp6)));
    CHECK(na.icmp6_type == 136);
    CHECK(na.has_ndp_target);
    CHECK(std::memcmp(na.ndp_target, kPeerIp6.data(), 16) == 0);
}

TEST_CASE("parse: a neighbour solicitation shorter than 24 bytes has no target", "[parse]") {
    const ParsedFrame f = parse(eth_ipv6(ip6_proto(58), icmpv6(135, 0, Bytes(10, 0))));
    REQUIRE(f.kind == FrameKind::kIpv6);
    CHECK(f.icmp6_type == 135);
    CHECK_FALSE(f.has_ndp_target);
}

TEST_CASE("parse: Ethernet/IPv4 ARP gives op and addresses", "[parse]") {
    const ParsedFrame f = parse(ethernet(0x0806, arp(1, kPeerIp, kSharedIp), kBroadcastMac));
    REQUIRE(f.kind == FrameKind::kArp);
    CHECK(f.arp_op == 1);
    CHECK(f.arp_sender_ip == be32_of(kPeerIp));
    CHECK(f.arp_target_ip == be32_of(kSharedIp));
    CHECK(f.l3_offset == 14);
}

TEST_CASE("parse: short or non-Ethernet/IPv4 ARP is kOther", "[parse]") {
    const Bytes frame = ethernet(0x0806, arp(2, kPeerIp, kSharedIp));
    for (size_t len = 14; len < frame.size(); ++len) CHECK(parse_exact(frame, len).kind == FrameKind::kOther);
    for (size_t field : {0u, 2u, 4u, 5u}) {
        Bytes bad = frame;
        bad[14 + field + (field < 4 ? 1 : 0)] ^= 0x01;
        INFO("field at " << field);
        CHECK(parse(bad).kind == FrameKind::kOther);
    }
}

TEST_CASE("parse: 802.1Q and 802.1ad tagged frames are kOther, for the host", "[parse]") {
    for (uint16_t tpid : {uint16_t{0x8100}, uint16_t{0x88a8}}) {
        Bytes inner = {0x00, 0x64, 0x08, 0x00};  // VLAN 100, then IPv4
        put(inner, ipv4(Ip4{}, tcp(1, 80)));
        const ParsedFrame f = parse(ethernet(tpid, inner));
        CHECK(f.kind == FrameKind::kOther);
        CHECK_FALSE(f.has_ports);
    }
}

TEST_CASE("parse: other EtherTypes are kOther", "[parse]") {
    CHECK(parse(ethernet(0x88cc, Bytes(46, 0))).kind == FrameKind::kOther);
}

// ---- the straight-line path for the common case ----------------------------------------------------------

namespace {

// parse_frame_fast on a private copy of `len` readable bytes of a frame of `frame_len`; `taken` says whether
// it applied. When it did, its result must be the full parser's.
ParsedFrame parse_fast_exact(const Bytes& frame, size_t len, size_t frame_len, bool& taken) {
    std::unique_ptr<uint8_t[]> copy(new uint8_t[len == 0 ? 1 : len]);
    if (len != 0) std::memcpy(copy.get(), frame.data(), len);
    ParsedFrame f;
    taken = parse_frame_fast(copy.get(), static_cast<uint32_t>(len), static_cast<uint32_t>(frame_len), f);
    return f;
}

ParsedFrame parse_full_exact(const Bytes& frame, size_t len, size_t frame_len) {
    std::unique_ptr<uint8_t[]> copy(new uint8_t[len == 0 ? 1 : len]);
    if (len != 0) std::memcpy(copy.get(), frame.data(), len);
    return parse_frame_full(copy.get(), static_cast<uint32_t>(len), static_cast<uint32_t>(frame_len));
}

// For every readable length of the frame, and for the frame cut at every length: parse_frame (fast path or
// not) gives exactly what the full parser gives, and the fast path applies to the whole frame iff `common`.
void check_fast_matches_full(const Bytes& frame, bool common, int line) {
    INFO("frame built on line " << line);
    bool taken = false;
    const ParsedFrame fast = parse_fast_exact(frame, frame.size(), frame.size(), taken);
    CHECK(taken == common);
    if (taken) CHECK(same_parse(fast, parse_full_exact(frame, frame.size(), frame.size())));
    for (size_t len = 0; len <= frame.size(); ++len) {
        INFO("readable " << len << " of " << frame.size());
        CHECK(same_parse(parse_exact(frame, len), parse_full_exact(frame, len, len)));
        const ParsedFrame chained = parse_fast_exact(frame, len, frame.size(), taken);
        if (taken) CHECK(same_parse(chained, parse_full_exact(frame, len, frame.size())));
    }
}

}  // namespace

TEST_CASE("parse: the fast path takes untagged IPv4 TCP/UDP without options and gives the full parser's result",
          "[parse][fast]") {
    check_fast_matches_full(eth_ipv4(Ip4{}, tcp(40000, 80)), true, __LINE__);
    check_fast_matches_full(eth_ipv4(Ip4{}, tcp(40000, 80, 0x10, 1, 2, 600, 8)), true, __LINE__);  // TCP options, payload
    check_fast_matches_full(eth_ipv4(Ip4{}, tcp(40000, 80, 0x10, 1, 2, 0, 15)), true, __LINE__);   // 60-byte TCP header
    check_fast_matches_full(eth_ipv4(ip4_proto(17), udp(5353, 53, 12)), true, __LINE__);
    check_fast_matches_full(eth_ipv4(ip4_proto(17), udp(1, 65535)), true, __LINE__);  // the smallest frame it takes
    Ip4 df;
    df.frag = 0x4000;  // don't fragment: not a fragment
    check_fast_matches_full(eth_ipv4(df, tcp(1, 2)), true, __LINE__);
    Bytes padded = eth_ipv4(ip4_proto(17), udp(7, 9));
    padded.resize(60, 0);  // Ethernet padding after the IP total length
    check_fast_matches_full(padded, true, __LINE__);
}

TEST_CASE("parse: the fast path takes IPv6 TCP/UDP without extension headers and gives the full parser's result",
          "[parse][fast]") {
    check_fast_matches_full(eth_ipv6(Ip6{}, tcp(40000, 443, 0x10, 1, 1, 100)), true, __LINE__);
    check_fast_matches_full(eth_ipv6(ip6_proto(17), udp(5353, 53, 3)), true, __LINE__);
    check_fast_matches_full(eth_ipv6(ip6_proto(17), udp(5353, 53)), true, __LINE__);
}

TEST_CASE("parse: everything else leaves the fast path and parses as before", "[parse][fast]") {
    Ip4 options;
    options.options = {1, 1, 1, 0};
    check_fast_matches_full(eth_ipv4(options, tcp(40000, 80)), false, __LINE__);
    Ip4 first;
    first.frag = 0x2000;
    check_fast_matches_full(eth_ipv4(first, tcp(40000, 80, 0x10, 1, 1, 40)), false, __LINE__);
    Ip4 later;
    later.frag = 0x0005;
    check_fast_matches_full(eth_ipv4(later, Bytes(40, 7)), false, __LINE__);
    check_fast_matches_full(eth_ipv4(ip4_proto(1), Bytes(40, 0)), false, __LINE__);  // ICMP
    Ip4 version;
    version.version = 6;
    check_fast_matches_full(eth_ipv4(version, tcp(1, 2)), false, __LINE__);
    Ip4 long_total;
    long_total.total_len = 200;
    check_fast_matches_full(eth_ipv4(long_total, tcp(1, 2)), false, __LINE__);
    Ip4 short_total;
    short_total.total_len = 30;  // cuts the TCP header
    check_fast_matches_full(eth_ipv4(short_total, tcp(1, 2)), false, __LINE__);
    Ip4 tiny_total;
    tiny_total.total_len = 12;  // below the header itself
    check_fast_matches_full(eth_ipv4(tiny_total, tcp(1, 2)), false, __LINE__);
    check_fast_matches_full(eth_ipv4(Ip4{}, tcp(1, 2, 0x10, 1, 1, 0, 4)), false, __LINE__);   // data offset < 5
    check_fast_matches_full(eth_ipv4(ip4_proto(17), udp(1, 2, 4, 7)), false, __LINE__);       // UDP length < 8
    check_fast_matches_full(eth_ipv4(ip4_proto(17), udp(1, 2, 4, 40)), false, __LINE__);      // beyond the payload
    Ip6 hop;
    hop.ext = {ext_options(0)};
    check_fast_matches_full(eth_ipv6(hop, tcp(1, 2)), false, __LINE__);
    Ip6 frag6;
    frag6.ext = {ext_fragment(0, true)};
    check_fast_matches_full(eth_ipv6(frag6, udp(1, 2, 16)), false, __LINE__);
    Ip6 long6;
    long6.payload_len = 400;
    check_fast_matches_full(eth_ipv6(long6, tcp(1, 2)), false, __LINE__);
    check_fast_matches_full(eth_ipv6(ip6_proto(58), ndp(135, kSharedIp6)), false, __LINE__);
    Bytes vlan = eth_ipv4(Ip4{}, tcp(1, 2));
    vlan.insert(vlan.begin() + 12, {0x81, 0x00, 0x00, 0x05});
    check_fast_matches_full(vlan, false, __LINE__);
    check_fast_matches_full(ethernet(0x0806, arp(1, kPeerIp, kSharedIp)), false, __LINE__);
}

namespace {

// The frame parsed by parse_frame and by the full parser alone, on exact copies: both must agree.
ParsedFrame parse_both(const Bytes& frame, Ipv4ChecksumState state) {
    std::unique_ptr<uint8_t[]> copy(new uint8_t[frame.size()]);
    std::memcpy(copy.get(), frame.data(), frame.size());
    const uint32_t len = static_cast<uint32_t>(frame.size());
    const ParsedFrame f = parse_frame(copy.get(), len, len, state);
    CHECK(same_parse(f, parse_frame_full(copy.get(), len, len, state)));
    return f;
}

}  // namespace

TEST_CASE("parse: an IPv4 header with a wrong checksum is malformed, with or without options", "[parse][checksum]") {
    Ip4 options;
    options.options = {0x94, 0x04, 0, 0, 0x01, 0x01, 0x01, 0x00};
    const Bytes frames[] = {eth_ipv4(Ip4{}, tcp(40000, 80)), eth_ipv4(ip4_proto(17), udp(5353, 53, 12)),
                            eth_ipv4(options, tcp(1234, 8080)), eth_ipv4(ip4_proto(1), Bytes{8, 0, 0, 0, 0, 1, 0, 1})};
    for (const Bytes& good : frames) {
        const size_t header_len = static_cast<size_t>(good[14] & 0x0f) * 4;
        INFO("header of " << header_len << " bytes");
        REQUIRE(parse_both(good, Ipv4ChecksumState::kUnchecked).kind == FrameKind::kIpv4);
        // One's-complement sums catch every single-bit error: each flipped bit of the header, checksum
        // field and options included, makes the frame malformed (or, for the version/IHL bits, malformed
        // for that reason already), never a frame with ports.
        for (size_t byte = 14; byte < 14 + header_len; ++byte) {
            for (int bit = 0; bit < 8; ++bit) {
                Bytes bad = good;
                bad[byte] = static_cast<uint8_t>(bad[byte] ^ (1u << bit));
                INFO("byte " << byte << " bit " << bit);
                const ParsedFrame f = parse_both(bad, Ipv4ChecksumState::kUnchecked);
                CHECK(f.kind == FrameKind::kMalformed);
                CHECK_FALSE(f.has_ports);
            }
        }
    }
}

TEST_CASE("parse: a checksum of 0 or 0xffff is no exemption for IPv4 headers", "[parse][checksum]") {
    for (uint16_t value : {uint16_t{0}, uint16_t{0xffff}}) {
        Bytes frame = eth_ipv4(Ip4{}, tcp(40000, 80));
        if (get16(frame.data() + 24) == value) continue;  // already right with that value: nothing to test
        set16(frame, 24, value);
        CHECK(parse_both(frame, Ipv4ChecksumState::kUnchecked).kind == FrameKind::kMalformed);
    }
}

TEST_CASE("parse: the NIC's checksum verdict is taken instead of the software check", "[parse][checksum]") {
    const Bytes good = eth_ipv4(Ip4{}, tcp(40000, 80));
    Bytes wrong = good;
    set16(wrong, 24, static_cast<uint16_t>(get16(wrong.data() + 24) ^ 0x0101));
    // Trusted: the header is not read for its checksum, so the frame parses as a right one does.
    const ParsedFrame trusted = parse_both(wrong, Ipv4ChecksumState::kGood);
    CHECK(trusted.kind == FrameKind::kIpv4);
    CHECK(same_parse(trusted, parse_both(good, Ipv4ChecksumState::kUnchecked)));
    // Found bad by the NIC: malformed even when the bytes say otherwise.
    CHECK(parse_both(good, Ipv4ChecksumState::kBad).kind == FrameKind::kMalformed);
    Ip4 options;
    options.options = {1, 1, 1, 0};
    CHECK(parse_both(eth_ipv4(options, tcp(1, 2)), Ipv4ChecksumState::kBad).kind == FrameKind::kMalformed);
    // The verdict is about IPv4 headers only: IPv6, ARP and other frames are untouched by it.
    CHECK(parse_both(eth_ipv6(Ip6{}, tcp(40000, 443)), Ipv4ChecksumState::kBad).kind == FrameKind::kIpv6);
    CHECK(parse_both(ethernet(0x0806, arp(1, kPeerIp, kSharedIp)), Ipv4ChecksumState::kBad).kind == FrameKind::kArp);
}

TEST_CASE("parse: the fast path leaves a wrong IPv4 checksum to the full parser", "[parse][fast][checksum]") {
    Bytes wrong = eth_ipv4(Ip4{}, tcp(40000, 80));
    set16(wrong, 24, static_cast<uint16_t>(get16(wrong.data() + 24) + 1));
    ParsedFrame f;
    CHECK_FALSE(parse_frame_fast(wrong.data(), static_cast<uint32_t>(wrong.size()), static_cast<uint32_t>(wrong.size()), f,
                                 Ipv4ChecksumState::kUnchecked));
    CHECK_FALSE(parse_frame_fast(wrong.data(), static_cast<uint32_t>(wrong.size()), static_cast<uint32_t>(wrong.size()), f,
                                 Ipv4ChecksumState::kBad));
    CHECK(parse_frame_fast(wrong.data(), static_cast<uint32_t>(wrong.size()), static_cast<uint32_t>(wrong.size()), f,
                           Ipv4ChecksumState::kGood));
    CHECK(f.kind == FrameKind::kIpv4);
}

TEST_CASE("parse: same_parse tells apart results that differ in one field", "[parse][fast]") {
    const ParsedFrame a = parse(eth_ipv4(Ip4{}, tcp(40000, 80)));
    ParsedFrame b = a;
    CHECK(same_parse(a, b));
    b.dst_port = 81;
    CHECK_FALSE(same_parse(a, b));
    b = a;
    b.key.v4.dst_port = htons(81);
    CHECK_FALSE(same_parse(a, b));
    b = a;
    b.l3_length = 41;
    CHECK_FALSE(same_parse(a, b));
}
