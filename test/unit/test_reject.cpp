// Reject answers: TCP RST (RFC 9293) and ICMP/ICMPv6 port unreachable, with valid checksums.
#include <catch2/catch.hpp>

#include <cstring>
#include <memory>

#include "frame_builder.hpp"
#include "pipeline/parse.hpp"
#include "pipeline/reject.hpp"
#include "pipeline/vm_egress.hpp"

using namespace portmux;
using namespace portmux::test;

namespace {

constexpr uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kPsh = 0x08, kAck = 0x10;

MacAddr uplink_mac() {
    MacAddr m;
    std::memcpy(m.bytes.data(), kUplinkMac.data(), 6);
    return m;
}

// Builds the answer to `frame`; empty when none is due.
Bytes reject(const Bytes& frame, uint32_t capacity = 2048) {
    const ParsedFrame f =
        parse_frame(frame.data(), static_cast<uint32_t>(frame.size()), static_cast<uint32_t>(frame.size()));
    Bytes out(capacity);
    const uint32_t n = build_reject(frame.data(), static_cast<uint32_t>(frame.size()), f, uplink_mac(), out.data(),
                                    capacity);
    out.resize(n);
    return out;
}

void check_ethernet(const Bytes& out, uint16_t type) {
    REQUIRE(out.size() >= 14);
    CHECK(std::memcmp(out.data(), kPeerMac.data(), 6) == 0);
    CHECK(std::memcmp(out.data() + 6, kUplinkMac.data(), 6) == 0);
    CHECK(get16(out.data() + 12) == type);
}

// Checks the IPv4 header (addresses swapped, TTL 64, checksum) and returns the payload.
const uint8_t* check_ipv4(const Bytes& out, uint8_t proto) {
    const uint8_t* ip = out.data() + 14;
    CHECK(ip[0] == 0x45);
    CHECK(get16(ip + 2) == out.size() - 14);
    CHECK(ip[8] == 64);
    CHECK(ip[9] == proto);
    CHECK(std::memcmp(ip + 12, kSharedIp.data(), 4) == 0);
    CHECK(std::memcmp(ip + 16, kPeerIp.data(), 4) == 0);
    CHECK(fold(ones_sum(ip, 20)) == 0xffff);
    return ip + 20;
}

const uint8_t* check_ipv6(const Bytes& out, uint8_t proto) {
    const uint8_t* ip = out.data() + 14;
    CHECK((ip[0] >> 4) == 6);
    CHECK(get16(ip + 4) == out.size() - 54);
    CHECK(ip[6] == proto);
    CHECK(ip[7] == 64);
    CHECK(std::memcmp(ip + 8, kSharedIp6.data(), 16) == 0);
    CHECK(std::memcmp(ip + 24, kPeerIp6.data(), 16) == 0);
    return ip + 40;
}

}  // namespace

TEST_CASE("reject: a SYN is answered by RST|ACK with seq 0 and ack = its seq + 1", "[reject]") {
    const Bytes out = reject(eth_ipv4(Ip4{}, tcp(40000, 8080, kSyn, 1000)));
    REQUIRE(out.size() == 14 + 20 + 20);
    check_ethernet(out, 0x0800);
    const uint8_t* t = check_ipv4(out, 6);
    CHECK(get16(t) == 8080);
    CHECK(get16(t + 2) == 40000);
    CHECK(get32(t + 4) == 0);
    CHECK(get32(t + 8) == 1001);
    CHECK((t[12] >> 4) == 5);
    CHECK(t[13] == (kRst | kAck));
    CHECK(l4_checksum_ok(out.data() + 26, out.data() + 30, 4, 6, t, 20));
}

TEST_CASE("reject: a segment without ACK is answered with ack = seq + payload (+1 SYN, +1 FIN)", "[reject]") {
    const Bytes out = reject(eth_ipv4(Ip4{}, tcp(1, 8080, kSyn | kFin, 0xfffffff0, 0, 100, 7)));
    REQUIRE(out.size() == 54);
    const uint8_t* t = out.data() + 34;
    CHECK(get32(t + 8) == static_cast<uint32_t>(0xfffffff0u + 100 + 2));  // wraps around
    CHECK(t[13] == (kRst | kAck));
}

TEST_CASE("reject: a segment with ACK is answered by RST with seq = its ack", "[reject]") {
    const Bytes out = reject(eth_ipv4(Ip4{}, tcp(40000, 8080, kAck | kPsh, 5000, 0xabcdef01, 30)));
    REQUIRE(out.size() == 54);
    const uint8_t* t = check_ipv4(out, 6);
    CHECK(get32(t + 4) == 0xabcdef01);
    CHECK(get32(t + 8) == 0);
    CHECK(t[13] == kRst);
    CHECK(l4_checksum_ok(out.data() + 26, out.data() + 30, 4, 6, t, 20));
}

TEST_CASE("reject: TCP over IPv6 is answered by a RST with a valid checksum", "[reject]") {
    Ip6 ip;
    ip.ext = {ext_options(60)};
    const Bytes out = reject(eth_ipv6(ip, tcp(40000, 8080, kSyn, 7, 0, 0)));
    REQUIRE(out.size() == 14 + 40 + 20);
    check_ethernet(out, 0x86dd);
    const uint8_t* t = check_ipv6(out, 6);
    CHECK(get16(t) == 8080);
    CHECK(get32(t + 8) == 8);
    CHECK(t[13] == (kRst | kAck));
    CHECK(l4_checksum_ok(out.data() + 22, out.data() + 38, 16, 6, t, 20));
}

TEST_CASE("reject: a RST is never answered", "[reject]") {
    CHECK(reject(eth_ipv4(Ip4{}, tcp(1, 8080, kRst))).empty());
    CHECK(reject(eth_ipv4(Ip4{}, tcp(1, 8080, kRst | kAck, 1, 1))).empty());
    CHECK(reject(eth_ipv6(Ip6{}, tcp(1, 8080, kRst))).empty());
}

TEST_CASE("reject: UDP over IPv4 is answered by ICMP port unreachable quoting the header and 8 bytes", "[reject]") {
    Ip4 ip = ip4_proto(17);
    ip.options = {1, 1, 1, 0};
    const Bytes frame = eth_ipv4(ip, udp(5000, 6000, 100));
    const Bytes out = reject(frame);
    const size_t quote = 24 + 8;
    REQUIRE(out.size() == 14 + 20 + 8 + quote);
    check_ethernet(out, 0x0800);
    const uint8_t* icmp = check_ipv4(out, 1);
    CHECK(icmp[0] == 3);
    CHECK(icmp[1] == 3);
    CHECK(get32(icmp + 4) == 0);
    CHECK(std::memcmp(icmp + 8, frame.data() + 14, quote) == 0);
    CHECK(l4_checksum_ok(nullptr, nullptr, 0, 1, icmp, 8 + quote, false));
}

TEST_CASE("reject: UDP over IPv6 is answered by ICMPv6 port unreachable quoting the packet", "[reject]") {
    const Bytes frame = eth_ipv6(ip6_proto(17), udp(5000, 6000, 50));
    const Bytes out = reject(frame);
    const size_t quote = 40 + 8 + 50;
    REQUIRE(out.size() == 14 + 40 + 8 + quote);
    check_ethernet(out, 0x86dd);
    const uint8_t* icmp = check_ipv6(out, 58);
    CHECK(icmp[0] == 1);
    CHECK(icmp[1] == 4);
    CHECK(std::memcmp(icmp + 8, frame.data() + 14, quote) == 0);
    CHECK(l4_checksum_ok(out.data() + 22, out.data() + 38, 16, 58, icmp, 8 + quote));
}

TEST_CASE("reject: the ICMPv6 answer never exceeds 1280 bytes of IPv6", "[reject]") {
    const Bytes frame = eth_ipv6(ip6_proto(17), udp(5000, 6000, 1400));
    const Bytes out = reject(frame);
    REQUIRE(out.size() == 14 + 1280);
    const uint8_t* icmp = check_ipv6(out, 58);
    CHECK(std::memcmp(icmp + 8, frame.data() + 14, 1280 - 48) == 0);
    CHECK(l4_checksum_ok(out.data() + 22, out.data() + 38, 16, 58, icmp, 1280 - 40));
}

TEST_CASE("reject: Ethernet padding is not quoted", "[reject]") {
    Bytes frame = eth_ipv6(ip6_proto(17), udp(5000, 6000, 0));
    frame.resize(frame.size() + 10, 0xaa);
    CHECK(reject(frame).size() == 14 + 40 + 8 + 48);
}

TEST_CASE("reject: no answer to a fragment, a broadcast/multicast source or destination, or non-TCP/UDP",
          "[reject]") {
    Ip4 ip = ip4_proto(17);
    ip.frag = 0x2000;
    CHECK(reject(eth_ipv4(ip, udp(1, 6000, 8, 100))).empty());
    ip = ip4_proto(17);
    ip.src = {224, 0, 0, 1};
    CHECK(reject(eth_ipv4(ip, udp(1, 6000))).empty());
    ip.src = {255, 255, 255, 255};
    CHECK(reject(eth_ipv4(ip, udp(1, 6000))).empty());
    ip.src = {0, 0, 0, 0};
    CHECK(reject(eth_ipv4(ip, udp(1, 6000))).empty());
    Ip6 ip6 = ip6_proto(17);
    ip6.src = kAllNodes;
    CHECK(reject(eth_ipv6(ip6, udp(1, 6000))).empty());
    CHECK(reject(ethernet(0x0800, ipv4(ip4_proto(17), udp(1, 6000)), kBroadcastMac)).empty());
    Mac multicast_src = kPeerMac;
    multicast_src[0] |= 0x01;
    CHECK(reject(ethernet(0x0800, ipv4(ip4_proto(17), udp(1, 6000)), kUplinkMac, multicast_src)).empty());
    CHECK(reject(eth_ipv4(ip4_proto(1), Bytes{8, 0, 0, 0, 0, 0, 0, 0})).empty());
}

TEST_CASE("reject: no answer when the output buffer is too small", "[reject]") {
    CHECK(reject(eth_ipv4(Ip4{}, tcp(1, 8080)), 53).empty());
    CHECK(reject(eth_ipv4(Ip4{}, tcp(1, 8080)), 54).size() == 54);
    CHECK(reject(eth_ipv4(ip4_proto(17), udp(1, 6000)), 69).empty());
    CHECK(reject(eth_ipv4(ip4_proto(17), udp(1, 6000)), 70).size() == 70);
}

TEST_CASE("reject and rewrite: mutated frames never lead to reads or writes outside the buffer", "[reject]") {
    // Valid frames with random bytes flipped and random lengths; the sanitizers catch any stray access.
    Ip6 ip6 = ip6_proto(17);
    ip6.ext = {ext_options(0), ext_fragment(0, false)};
    const Bytes seeds[] = {
        eth_ipv4(Ip4{}, tcp(1, 2, kSyn, 1, 0, 12)),
        eth_ipv4(ip4_proto(17), udp(1, 2, 20)),
        eth_ipv6(Ip6{}, tcp(1, 2, kAck, 1, 1, 3)),
        eth_ipv6(ip6, udp(1, 2, 9)),
        eth_ipv6(ip6_proto(58), ndp(135, kPeerIp6, lladdr_option(1, kVmMac))),
        ethernet(0x0806, arp(2, kPeerIp, kSharedIp)),
    };
    uint32_t rng = 12345;
    auto next = [&rng] { return rng = rng * 1103515245u + 12345u, rng >> 8; };
    Bytes out(2048);
    unsigned parsed_with_ports = 0;
    for (const Bytes& seed : seeds) {
        for (int round = 0; round < 3000; ++round) {
            Bytes frame = seed;
            for (int flips = next() % 4; flips >= 0; --flips) frame[next() % frame.size()] = static_cast<uint8_t>(next());
            const uint32_t len = 12 + next() % static_cast<uint32_t>(frame.size() - 11);
            std::unique_ptr<uint8_t[]> copy(new uint8_t[len]);
            std::memcpy(copy.get(), frame.data(), len);
            const ParsedFrame f = parse_frame(copy.get(), len, len);
            if (f.has_ports) {
                ++parsed_with_ports;
                REQUIRE(f.l4_offset + 8u <= len);
                REQUIRE(f.l3_offset + f.l3_length <= len);
            }
            build_reject(copy.get(), len, f, uplink_mac(), out.data(), static_cast<uint32_t>(out.size()));
            rewrite_vm_egress(copy.get(), len, f, uplink_mac());
        }
    }
    CHECK(parsed_with_ports > 0);
}
