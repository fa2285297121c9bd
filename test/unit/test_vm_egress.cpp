// VM egress: anti-spoofing checks and the rewrite to the uplink's MAC.
#include <catch2/catch.hpp>

#include <cstring>
#include <memory>

#include "frame_builder.hpp"
#include "pipeline/parse.hpp"
#include "pipeline/vm_egress.hpp"

using namespace portmux;
using namespace portmux::test;

namespace {

constexpr OwnerId kSelf = 2;
constexpr OwnerId kOtherVm = 3;
const V4 kGatewayIp = {192, 0, 2, 1};

ParsedFrame parse(const Bytes& frame) {
    return parse_frame(frame.data(), static_cast<uint32_t>(frame.size()), static_cast<uint32_t>(frame.size()));
}

// tcp:1000-1999 and udp:5000 are ours, tcp:2000 another VM's, tcp:22 the host's.
struct Egress {
    std::unique_ptr<PortOwnerTable> table = std::make_unique<PortOwnerTable>();
    SharedAddresses shared = shared_addresses();

    Egress() {
        *table = PortOwnerTable{};
        for (unsigned p = 1000; p < 2000; ++p) table->owner[0][p] = kSelf;
        table->owner[1][5000] = kSelf;
        table->owner[0][2000] = kOtherVm;
        table->owner[0][22] = kHostOwner;
    }
    EgressDecision check(const Bytes& frame) const { return check_vm_egress(parse(frame), shared, *table, kSelf); }
};

Bytes from_vm(Bytes frame) {
    std::memcpy(frame.data() + 6, kVmMac.data(), 6);
    return frame;
}

Ip4 from_shared4(uint8_t proto = 6) {
    Ip4 ip = ip4_proto(proto);
    ip.src = kSharedIp;
    ip.dst = kPeerIp;
    return ip;
}

Ip6 from_shared6(uint8_t proto = 6) {
    Ip6 ip = ip6_proto(proto);
    ip.src = kSharedIp6;
    ip.dst = kPeerIp6;
    return ip;
}

MacAddr uplink_mac() {
    MacAddr m;
    std::memcpy(m.bytes.data(), kUplinkMac.data(), 6);
    return m;
}

bool icmp6_checksum_ok(const Bytes& frame, const ParsedFrame& f) {
    return l4_checksum_ok(frame.data() + 14 + 8, frame.data() + 14 + 24, 16, 58, frame.data() + f.l4_offset,
                          f.l3_offset + f.l3_length - f.l4_offset);
}

}  // namespace

TEST_CASE("vm egress: TCP/UDP from the shared address and an owned source port is forwarded", "[egress]") {
    const Egress e;
    CHECK(e.check(eth_ipv4(from_shared4(), tcp(1000, 443))).forward);
    CHECK(e.check(eth_ipv4(from_shared4(), tcp(1999, 443))).forward);
    CHECK(e.check(eth_ipv4(from_shared4(17), udp(5000, 53))).forward);
    CHECK(e.check(eth_ipv6(from_shared6(), tcp(1500, 443))).forward);
}

TEST_CASE("vm egress: a source port outside the VM's ranges is drop_spoof_port", "[egress]") {
    const Egress e;
    for (uint16_t port : {uint16_t{999}, uint16_t{2000}, uint16_t{22}, uint16_t{40000}}) {
        const EgressDecision d = e.check(eth_ipv4(from_shared4(), tcp(port, 443)));
        INFO("source port " << port);
        CHECK_FALSE(d.forward);
        CHECK(d.drop_reason == SwitchCounter::drop_spoof_port);
    }
    // udp:1000 is not ours: the VM owns tcp:1000 only.
    const EgressDecision d = e.check(eth_ipv6(from_shared6(17), udp(1000, 53)));
    CHECK_FALSE(d.forward);
    CHECK(d.drop_reason == SwitchCounter::drop_spoof_port);
}

TEST_CASE("vm egress: an IPv4 source other than the shared address is drop_spoof_address", "[egress]") {
    const Egress e;
    Ip4 ip = from_shared4();
    ip.src = kGatewayIp;
    const EgressDecision d = e.check(eth_ipv4(ip, tcp(1000, 443)));
    CHECK_FALSE(d.forward);
    CHECK(d.drop_reason == SwitchCounter::drop_spoof_address);
}

TEST_CASE("vm egress: an IPv6 source other than shared_ip6 is drop_spoof_address", "[egress]") {
    const Egress e;
    Ip6 ip = from_shared6();
    ip.src = kPeerIp6;
    const EgressDecision d = e.check(eth_ipv6(ip, tcp(1000, 443)));
    CHECK_FALSE(d.forward);
    CHECK(d.drop_reason == SwitchCounter::drop_spoof_address);
}

TEST_CASE("vm egress: IPv6 without a configured shared_ip6 is drop_spoof_address", "[egress]") {
    Egress e;
    e.shared = shared_addresses(false);
    const EgressDecision d = e.check(eth_ipv6(from_shared6(), tcp(1000, 443)));
    CHECK_FALSE(d.forward);
    CHECK(d.drop_reason == SwitchCounter::drop_spoof_address);
}

TEST_CASE("vm egress: ICMP from the shared address is forwarded", "[egress]") {
    const Egress e;
    CHECK(e.check(eth_ipv4(from_shared4(1), Bytes{8, 0, 0, 0, 0, 1, 0, 1})).forward);
    CHECK(e.check(eth_ipv6(from_shared6(58), icmpv6(128, 0, Bytes(4, 0)))).forward);
}

TEST_CASE("vm egress: a non-first fragment from the shared address passes on its address alone", "[egress]") {
    const Egress e;
    Ip4 ip = from_shared4();
    ip.frag = 100;
    CHECK(e.check(eth_ipv4(ip, Bytes(16, 0))).forward);
    ip.src = kGatewayIp;
    CHECK_FALSE(e.check(eth_ipv4(ip, Bytes(16, 0))).forward);
    // The first fragment's port is checked.
    ip = from_shared4();
    ip.frag = 0x2000;
    CHECK(e.check(eth_ipv4(ip, tcp(1000, 443, 0x18, 1, 1, 8))).forward);
    CHECK(e.check(eth_ipv4(ip, tcp(2000, 443, 0x18, 1, 1, 8))).drop_reason == SwitchCounter::drop_spoof_port);
}

TEST_CASE("vm egress: NDP must come from shared_ip6, else drop_spoof_address", "[egress]") {
    const Egress e;
    Ip6 ip = from_shared6(58);
    ip.dst = kAllNodes;
    CHECK(e.check(eth_ipv6(ip, ndp(136, kSharedIp6, lladdr_option(2, kVmMac)))).forward);
    CHECK(e.check(eth_ipv6(ip, ndp(135, kPeerIp6, lladdr_option(1, kVmMac)))).forward);
    ip.src = V6{};  // duplicate address detection from "::"
    EgressDecision d = e.check(eth_ipv6(ip, ndp(135, kSharedIp6)));
    CHECK_FALSE(d.forward);
    CHECK(d.drop_reason == SwitchCounter::drop_spoof_address);
    ip.src = kPeerIp6;
    d = e.check(eth_ipv6(ip, ndp(136, kPeerIp6)));
    CHECK_FALSE(d.forward);
    CHECK(d.drop_reason == SwitchCounter::drop_spoof_address);
}

TEST_CASE("vm egress: ARP with the shared IP or 0.0.0.0 as sender is forwarded", "[egress]") {
    const Egress e;
    CHECK(e.check(from_vm(ethernet(0x0806, arp(1, kSharedIp, kGatewayIp, kVmMac), kBroadcastMac))).forward);
    CHECK(e.check(from_vm(ethernet(0x0806, arp(1, V4{}, kSharedIp, kVmMac), kBroadcastMac))).forward);
}

TEST_CASE("vm egress: ARP with another sender IP is drop_spoof_arp", "[egress]") {
    const Egress e;
    const EgressDecision d = e.check(from_vm(ethernet(0x0806, arp(2, kGatewayIp, kPeerIp, kVmMac))));
    CHECK_FALSE(d.forward);
    CHECK(d.drop_reason == SwitchCounter::drop_spoof_arp);
}

TEST_CASE("vm egress: a malformed frame is drop_malformed", "[egress]") {
    const Egress e;
    Ip4 ip = from_shared4();
    ip.total_len = 100;
    const EgressDecision d = e.check(eth_ipv4(ip, tcp(1000, 443)));
    CHECK_FALSE(d.forward);
    CHECK(d.drop_reason == SwitchCounter::drop_malformed);
}

TEST_CASE("vm egress: other non-IP frames (and VLAN-tagged ones) are drop_spoof_address", "[egress]") {
    const Egress e;
    EgressDecision d = e.check(ethernet(0x88cc, Bytes(46, 0)));
    CHECK_FALSE(d.forward);
    CHECK(d.drop_reason == SwitchCounter::drop_spoof_address);
    Bytes tagged = {0x00, 0x64, 0x08, 0x00};
    put(tagged, ipv4(from_shared4(), tcp(1000, 443)));
    d = e.check(ethernet(0x8100, tagged));
    CHECK_FALSE(d.forward);
    CHECK(d.drop_reason == SwitchCounter::drop_spoof_address);
}

TEST_CASE("vm egress rewrite: the Ethernet source becomes the uplink MAC, nothing else changes", "[egress]") {
    const Bytes original = from_vm(eth_ipv4(from_shared4(), tcp(1000, 443)));
    Bytes frame = original;
    rewrite_vm_egress(frame.data(), static_cast<uint32_t>(frame.size()), parse(frame), uplink_mac());
    CHECK(std::memcmp(frame.data() + 6, kUplinkMac.data(), 6) == 0);
    CHECK(std::memcmp(frame.data(), original.data(), 6) == 0);
    CHECK(std::memcmp(frame.data() + 12, original.data() + 12, original.size() - 12) == 0);
}

TEST_CASE("vm egress rewrite: the ARP sender hardware address becomes the uplink MAC", "[egress]") {
    Bytes frame = from_vm(ethernet(0x0806, arp(1, kSharedIp, kGatewayIp, kVmMac), kBroadcastMac));
    const Bytes original = frame;
    rewrite_vm_egress(frame.data(), static_cast<uint32_t>(frame.size()), parse(frame), uplink_mac());
    CHECK(std::memcmp(frame.data() + 6, kUplinkMac.data(), 6) == 0);
    CHECK(std::memcmp(frame.data() + 14 + 8, kUplinkMac.data(), 6) == 0);
    CHECK(std::memcmp(frame.data() + 14 + 14, original.data() + 14 + 14, 14) == 0);  // addresses untouched
}

TEST_CASE("vm egress rewrite: NDP link-layer address options become the uplink MAC, checksum still valid",
          "[egress]") {
    struct Case {
        uint8_t type;
        Bytes icmp;
        size_t option_at;  // from the start of the ICMPv6 header
    };
    Bytes rs_body(4, 0);
    put(rs_body, lladdr_option(1, kVmMac));
    const Case cases[] = {
        {135, ndp(135, kPeerIp6, lladdr_option(1, kVmMac)), 24},
        {136, ndp(136, kSharedIp6, lladdr_option(2, kVmMac)), 24},
        {133, icmpv6(133, 0, rs_body), 8},
    };
    for (const Case& c : cases) {
        INFO("ICMPv6 type " << int(c.type));
        Ip6 ip = from_shared6(58);
        Bytes frame = from_vm(eth_ipv6(ip, c.icmp));
        const ParsedFrame f = parse(frame);
        REQUIRE(icmp6_checksum_ok(frame, f));
        const Bytes original = frame;
        rewrite_vm_egress(frame.data(), static_cast<uint32_t>(frame.size()), f, uplink_mac());
        const size_t opt = f.l4_offset + c.option_at;
        CHECK(std::memcmp(frame.data() + opt + 2, kUplinkMac.data(), 6) == 0);
        CHECK(frame[f.l4_offset + 2] != original[f.l4_offset + 2]);  // the checksum changed ...
        CHECK(icmp6_checksum_ok(frame, f));                          // ... and verifies
    }
}

TEST_CASE("vm egress rewrite: NDP options of other types or lengths are left alone", "[egress]") {
    Bytes options = {14, 1, 1, 2, 3, 4, 5, 6};  // nonce option
    Bytes two_units = {1, 2, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14};
    put(options, two_units);
    Bytes frame = from_vm(eth_ipv6(from_shared6(58), ndp(135, kPeerIp6, options)));
    const ParsedFrame f = parse(frame);
    const Bytes original = frame;
    rewrite_vm_egress(frame.data(), static_cast<uint32_t>(frame.size()), f, uplink_mac());
    CHECK(std::memcmp(frame.data() + 12, original.data() + 12, frame.size() - 12) == 0);
    CHECK(icmp6_checksum_ok(frame, f));
}

TEST_CASE("vm egress rewrite: stays inside `length` for every truncation, with a zero-length option", "[egress]") {
    Bytes options = lladdr_option(1, kVmMac);
    put(options, Bytes{2, 0, 0, 0, 0, 0, 0, 0});  // zero length: invalid, ends the walk
    const Bytes full = from_vm(eth_ipv6(from_shared6(58), ndp(135, kPeerIp6, options)));
    const ParsedFrame f = parse(full);
    const Bytes arp_full = from_vm(ethernet(0x0806, arp(1, kSharedIp, kGatewayIp, kVmMac)));
    const ParsedFrame arp_f = parse(arp_full);
    for (size_t len = 0; len <= full.size(); ++len) {
        std::unique_ptr<uint8_t[]> copy(new uint8_t[len == 0 ? 1 : len]);
        std::memcpy(copy.get(), full.data(), len);
        rewrite_vm_egress(copy.get(), static_cast<uint32_t>(len), f, uplink_mac());
        if (len <= arp_full.size()) {
            std::memcpy(copy.get(), arp_full.data(), len);
            rewrite_vm_egress(copy.get(), static_cast<uint32_t>(len), arp_f, uplink_mac());
        }
    }
    Bytes frame = full;
    rewrite_vm_egress(frame.data(), static_cast<uint32_t>(frame.size()), f, uplink_mac());
    CHECK(icmp6_checksum_ok(frame, f));
    SUCCEED("no access outside the buffer (checked by the sanitizers)");
}

TEST_CASE("vm egress: with several shared addresses the source port is checked in its address's table",
          "[egress]") {
    const V4 second = {192, 0, 2, 20};
    Egress e;
    e.shared.extra_ip4[0] = be32_of(second);
    e.shared.extra_ip4_count = 1;
    // On the second address only tcp:3000 is ours; tcp:1000 belongs to another VM there.
    auto table2 = std::make_unique<PortOwnerTable>();
    *table2 = PortOwnerTable{};
    table2->owner[0][3000] = kSelf;
    table2->owner[0][1000] = kOtherVm;
    const PortOwnerTable* tables[] = {e.table.get(), table2.get()};
    auto check = [&](const Bytes& frame) { return check_vm_egress(parse(frame), e.shared, tables, kSelf, nullptr); };
    Ip4 from_second = from_shared4();
    from_second.src = second;

    CHECK(check(eth_ipv4(from_second, tcp(3000, 443))).forward);
    CHECK(check(eth_ipv4(from_shared4(), tcp(1000, 443))).forward);
    const EgressDecision theirs = check(eth_ipv4(from_second, tcp(1000, 443)));
    CHECK_FALSE(theirs.forward);
    CHECK(theirs.drop_reason == SwitchCounter::drop_spoof_port);
    CHECK_FALSE(check(eth_ipv4(from_shared4(), tcp(3000, 443))).forward);  // ours on the second address only
    // ARP may claim any shared address.
    CHECK(check(from_vm(ethernet(0x0806, arp(1, second, kGatewayIp, kVmMac), kBroadcastMac))).forward);
    Ip4 from_elsewhere = from_shared4();
    from_elsewhere.src = {192, 0, 2, 99};
    CHECK(check(eth_ipv4(from_elsewhere, tcp(3000, 443))).drop_reason == SwitchCounter::drop_spoof_address);
}
