// Port translation (extension): "tcp:8080-8089->80-89" syntax, the tables, and the in-place port rewrite.
#include <catch2/catch.hpp>

#include "frame_builder.hpp"
#include "pipeline/parse.hpp"
#include "pipeline/port_rewrite.hpp"
#include "tables/port_translation.hpp"

using namespace portmux;
using namespace portmux::test;

namespace {

PortRange range(const char* text) {
    auto r = PortRange::parse(text);
    INFO(text << ": " << r.error());
    REQUIRE(r);
    return *r;
}

ParsedFrame parse(const Bytes& frame) {
    return parse_frame(frame.data(), static_cast<uint32_t>(frame.size()), static_cast<uint32_t>(frame.size()));
}

// Whether the TCP/UDP checksum of an IPv4 or IPv6 frame verifies.
bool checksum_ok(const Bytes& frame) {
    ParsedFrame f = parse(frame);
    const uint8_t* l4 = frame.data() + f.l4_offset;
    const size_t l4_len = f.l3_offset + f.l3_length - f.l4_offset;
    if (f.kind == FrameKind::kIpv4)
        return l4_checksum_ok(frame.data() + 26, frame.data() + 30, 4, f.ip_proto, l4, l4_len);
    return l4_checksum_ok(frame.data() + 22, frame.data() + 38, 16, f.ip_proto, l4, l4_len);
}

}  // namespace

TEST_CASE("port translation: the range syntax takes an inner range of the same size after ->") {
    PortRange r = range("tcp:8080-8089->80-89");
    CHECK(r.translated);
    CHECK(r.ports.first == 8080);
    CHECK(r.inner().first == 80);
    CHECK(r.inner().last == 89);
    CHECK(r.to_string() == "tcp:8080-8089->80-89");
    CHECK(range("udp:5353 -> 53").to_string() == "udp:5353->53");
    CHECK(range("8443->443").tcp);
    CHECK(range("8443->443") != range("8443"));
    CHECK(PortRange::parse("tcp:8080-8089->80").error() ==
          "\"tcp:8080-8089->80\": the inner range has 1 port, the outer 10");
    CHECK(PortRange::parse("tcp:8080->").error() ==
          "\"tcp:8080->\": empty (expected FROM or FROM-TO, e.g. 80 or 6000-6099)");
    CHECK(PortRange::parse("tcp:8080->70000").error() == "\"tcp:8080->70000\": port above 65535");
    CHECK(PortRange::parse("sctp:1->2").error() == "\"sctp:1->2\": unknown protocol \"sctp\" (expected tcp: or udp:)");
}

TEST_CASE("port translation: one VM's answer ports may not overlap for a protocol") {
    std::vector<PortRange> own = {range("tcp:80"), range("udp:9000->53")};
    CHECK(answer_port_overlap(own, range("tcp:8080->80")) == &own[0]);
    CHECK(answer_port_overlap(own, range("udp:5353->53")) == &own[1]);
    CHECK(answer_port_overlap(own, range("udp:8080->80")) == nullptr);  // tcp:80 does not answer UDP
    CHECK(answer_port_overlap(own, range("tcp:8443->443")) == nullptr);
}

TEST_CASE("port translation: inbound maps outer to inner ports, outbound maps a VM's answers back") {
    RangeRegistry registry;
    REQUIRE_FALSE(build_port_translation(registry, 8));  // nothing translates: no table at all
    registry.add(range("tcp:8080-8089->80-89"), 2);
    registry.add(range("udp:5353->53"), 3);
    registry.add(range("tcp:22"), kHostOwner);
    auto t = build_port_translation(registry, 8);
    REQUIRE(t);
    CHECK(t->inbound(L4Proto::kTcp, 8080) == 80);
    CHECK(t->inbound(L4Proto::kTcp, 8089) == 89);
    CHECK(t->inbound(L4Proto::kTcp, 8090) == 8090);
    CHECK(t->inbound(L4Proto::kUdp, 8080) == 8080);  // the range is TCP only
    CHECK(t->inbound(L4Proto::kUdp, 5353) == 53);
    CHECK(t->inbound(L4Proto::kTcp, 22) == 22);
    CHECK(t->outbound(2, L4Proto::kTcp, 85) == 8085);
    CHECK(t->outbound(2, L4Proto::kTcp, 90) == 90);
    CHECK(t->outbound(2, L4Proto::kUdp, 85) == 85);
    CHECK(t->outbound(3, L4Proto::kTcp, 85) == 85);  // another VM's answers are not translated
    CHECK(t->outbound(3, L4Proto::kUdp, 53) == 5353);
    CHECK(t->outbound(7, L4Proto::kTcp, 85) == 85);
}

TEST_CASE("port translation: rewriting a port keeps TCP and UDP checksums valid, over IPv4 and IPv6") {
    for (uint8_t proto : {uint8_t{6}, uint8_t{17}}) {
        Bytes l4 = proto == 6 ? tcp(40000, 8080, 0x18, 12345, 678) : udp(40000, 8080, 37);
        for (bool v6 : {false, true}) {
            Bytes frame = v6 ? ethernet(0x86dd, ipv6(ip6_proto(proto), l4)) : ethernet(0x0800, ipv4(ip4_proto(proto), l4));
            REQUIRE(checksum_ok(frame));
            ParsedFrame f = parse(frame);
            rewrite_l4_port(frame.data(), static_cast<uint32_t>(frame.size()), f, false, 80);
            CHECK(parse(frame).dst_port == 80);
            CHECK(checksum_ok(frame));
            rewrite_l4_port(frame.data(), static_cast<uint32_t>(frame.size()), f, true, 65535);
            CHECK(parse(frame).src_port == 65535);
            CHECK(checksum_ok(frame));
        }
    }
}

TEST_CASE("port translation: a UDP/IPv4 datagram without a checksum keeps none; short frames are left alone") {
    Bytes frame = ethernet(0x0800, ipv4(ip4_proto(17), udp(40000, 8080, 4)));
    frame[14 + 20 + 6] = 0;
    frame[14 + 20 + 7] = 0;
    ParsedFrame f = parse(frame);
    rewrite_l4_port(frame.data(), static_cast<uint32_t>(frame.size()), f, false, 80);
    CHECK(parse(frame).dst_port == 80);
    CHECK(frame[14 + 20 + 6] == 0);
    CHECK(frame[14 + 20 + 7] == 0);
    Bytes copy = frame;
    rewrite_l4_port(copy.data(), 14 + 20 + 7, f, false, 81);  // the checksum field is not all there
    CHECK(copy == frame);
}
