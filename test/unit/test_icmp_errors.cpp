// ICMP/ICMPv6 errors steered by the quoted header: path-MTU discovery and traceroute work inside VMs.
#include <catch2/catch.hpp>

#include <memory>
#include <vector>

#include "frame_builder.hpp"
#include "pipeline/ingress_decision.hpp"
#include "pipeline/parse.hpp"

using namespace portmux;
using namespace portmux::test;

namespace {

ParsedFrame parse(const Bytes& frame) {
    return parse_frame(frame.data(), static_cast<uint32_t>(frame.size()), static_cast<uint32_t>(frame.size()));
}

// The packet a VM sent: from the shared address and its own port 8080, to a peer.
Bytes quoted_v4(uint8_t proto = 6, uint16_t sport = 8080) {
    Ip4 ip;
    ip.src = kSharedIp;
    ip.dst = kPeerIp;
    ip.proto = proto;
    return ipv4(ip, proto == 6 ? tcp(sport, 443) : udp(sport, 53, 4));
}

Bytes quoted_v6(uint8_t proto = 6, uint16_t sport = 8080) {
    Ip6 ip;
    ip.src = kSharedIp6;
    ip.dst = kPeerIp6;
    ip.proto = proto;
    return ipv6(ip, proto == 6 ? tcp(sport, 443) : udp(sport, 53, 4));
}

// An ICMP error from a router back to the shared address, quoting `quote` (cut to `quote_len` bytes).
Bytes icmp4_error(uint8_t type, uint8_t code, const Bytes& quote, size_t quote_len = 28) {
    Bytes icmp = {type, code, 0, 0, 0, 0, 0x05, 0xdc};  // "next-hop MTU 1500" for fragmentation needed
    icmp.insert(icmp.end(), quote.begin(), quote.begin() + std::min(quote_len, quote.size()));
    set16(icmp, 2, static_cast<uint16_t>(~fold(ones_sum(icmp.data(), icmp.size()))));
    return ethernet(0x0800, ipv4(ip4_proto(1), icmp));
}

Bytes icmp6_error(uint8_t type, uint8_t code, const Bytes& quote, size_t quote_len = 48) {
    Bytes body = {0, 0, 0x05, 0x00};  // MTU 1280 for packet too big
    body.insert(body.end(), quote.begin(), quote.begin() + std::min(quote_len, quote.size()));
    return ethernet(0x86dd, ipv6(ip6_proto(58), icmpv6(type, code, body)));
}

// Owners: tcp:8080 and udp:8080 an enabled VM (2), tcp:9090 a disabled VM (3), tcp:22 the host.
struct Tables {
    std::unique_ptr<PortOwnerTable> table = std::make_unique<PortOwnerTable>();
    std::vector<OwnerTarget> owners = std::vector<OwnerTarget>(4);
    Tables() {
        *table = PortOwnerTable{};
        owners[kHostOwner].kind = OwnerKind::kHost;
        owners[2].kind = OwnerKind::kVm;
        owners[3].kind = OwnerKind::kVm;
        owners[3].enabled = false;
        table->owner[0][8080] = 2;
        table->owner[1][8080] = 2;
        table->owner[0][9090] = 3;
        table->owner[0][22] = kHostOwner;
    }
    DeliveryDecision decide(const Bytes& frame) const {
        return decide_delivery(parse(frame), *table, owners.data(), UnmatchedPolicy::kDrop);
    }
};

}  // namespace

TEST_CASE("icmp errors: the quoted source port of an IPv4 error names the VM that sent the packet", "[icmp]") {
    Tables t;
    for (uint8_t type : {3, 11, 12}) {
        ParsedFrame f = parse(icmp4_error(type, type == 3 ? 4 : 0, quoted_v4()));
        REQUIRE(f.kind == FrameKind::kIpv4);
        CHECK(f.has_quoted_ports);
        CHECK(f.quoted_proto == 6);
        CHECK(f.quoted_src_port == 8080);
        DeliveryDecision d = t.decide(icmp4_error(type, 0, quoted_v4()));
        CHECK(d.delivery == Delivery::kVm);
        CHECK(d.owner == 2);
    }
    CHECK(t.decide(icmp4_error(3, 3, quoted_v4(17))).delivery == Delivery::kVm);
}

TEST_CASE("icmp errors: IPv6 packet too big, unreachable, time exceeded reach the VM by quoted port", "[icmp]") {
    Tables t;
    for (uint8_t type : {1, 2, 3, 4}) {
        DeliveryDecision d = t.decide(icmp6_error(type, 0, quoted_v6()));
        CHECK(d.delivery == Delivery::kVm);
        CHECK(d.owner == 2);
    }
    CHECK(t.decide(icmp6_error(2, 0, quoted_v6(17))).delivery == Delivery::kVm);
}

TEST_CASE("icmp errors: echo and other informational ICMP stay with the host", "[icmp]") {
    Tables t;
    Bytes echo = {8, 0, 0, 0, 0, 1, 0, 1};
    CHECK(t.decide(ethernet(0x0800, ipv4(ip4_proto(1), echo))).delivery == Delivery::kHost);
    CHECK(t.decide(icmp6_error(128, 0, quoted_v6())).delivery == Delivery::kHost);  // echo request type
    CHECK_FALSE(parse(icmp6_error(128, 0, quoted_v6())).has_quoted_ports);
}

TEST_CASE("icmp errors: a quoted port of the host, of nobody, or of a packet not from the shared address goes to "
          "the host", "[icmp]") {
    Tables t;
    CHECK(t.decide(icmp4_error(3, 4, quoted_v4(6, 22))).delivery == Delivery::kHost);
    CHECK(t.decide(icmp4_error(3, 4, quoted_v4(6, 1234))).delivery == Delivery::kHost);
    Ip4 foreign;
    foreign.src = kPeerIp;  // a quote of a packet someone else sent
    foreign.dst = kSharedIp;
    CHECK(t.decide(icmp4_error(3, 4, ipv4(foreign, tcp(8080, 443)))).delivery == Delivery::kHost);
}

TEST_CASE("icmp errors: an error about a disabled VM's packet is dropped, not leaked to the host", "[icmp]") {
    Tables t;
    DeliveryDecision d = t.decide(icmp4_error(3, 4, quoted_v4(6, 9090)));
    CHECK(d.delivery == Delivery::kDrop);
    CHECK(d.drop_reason == SwitchCounter::drop_vm_disabled);
}

TEST_CASE("icmp errors: quotes cut short, lying or of non-TCP/UDP packets are not steered", "[icmp]") {
    Tables t;
    // Every length of quote shorter than IP header + 4 bytes of ports: no quoted ports, and no over-read.
    for (size_t len = 0; len < 24; ++len) {
        Bytes frame = icmp4_error(3, 4, quoted_v4(), len);
        Bytes exact(frame.begin(), frame.end());
        ParsedFrame f = parse_frame(exact.data(), static_cast<uint32_t>(exact.size()), static_cast<uint32_t>(exact.size()));
        CHECK_FALSE(f.has_quoted_ports);
        CHECK(t.decide(frame).delivery == Delivery::kHost);
    }
    for (size_t len = 0; len < 44; ++len) CHECK_FALSE(parse(icmp6_error(2, 0, quoted_v6(), len)).has_quoted_ports);
    CHECK(parse(icmp4_error(3, 4, quoted_v4(), 24)).has_quoted_ports);  // header + the two ports are enough

    Bytes bad_version = quoted_v4();
    bad_version[0] = 0x65;
    CHECK_FALSE(parse(icmp4_error(3, 4, bad_version)).has_quoted_ports);
    Bytes bad_ihl = quoted_v4();
    bad_ihl[0] = 0x44;
    CHECK_FALSE(parse(icmp4_error(3, 4, bad_ihl)).has_quoted_ports);
    Bytes long_ihl = quoted_v4();
    long_ihl[0] = 0x4f;  // 60-byte header: the ports are beyond the quote
    CHECK_FALSE(parse(icmp4_error(3, 4, long_ihl)).has_quoted_ports);
    Ip4 gre;
    gre.src = kSharedIp;
    gre.proto = 47;
    CHECK_FALSE(parse(icmp4_error(3, 4, ipv4(gre, Bytes(8, 0)))).has_quoted_ports);
    Bytes later_fragment = quoted_v4();
    later_fragment[6] = 0x00;
    later_fragment[7] = 0x10;  // offset 16: no transport header in the quote
    CHECK_FALSE(parse(icmp4_error(3, 4, later_fragment)).has_quoted_ports);
}
