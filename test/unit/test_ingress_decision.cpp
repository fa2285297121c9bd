// Uplink decisions: where ARP, NDP, IP and malformed frames go, and who receives a TCP/UDP packet.
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

UplinkStep step_of(const Bytes& frame, const SharedAddresses& shared = shared_addresses()) {
    return plan_uplink_frame(parse(frame), shared).step;
}

const V4 kOtherIp = {192, 0, 2, 1};
const V6 kOtherIp6 = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01};

// Owners: 1 the host, 2 an enabled VM, 3 a disabled VM.
struct Tables {
    std::unique_ptr<PortOwnerTable> table = std::make_unique<PortOwnerTable>();
    std::vector<OwnerTarget> owners = std::vector<OwnerTarget>(4);

    Tables() {
        *table = PortOwnerTable{};
        owners[kHostOwner].kind = OwnerKind::kHost;
        owners[2].kind = OwnerKind::kVm;
        owners[3].kind = OwnerKind::kVm;
        owners[3].enabled = false;
        table->owner[0][22] = kHostOwner;   // tcp:22 host
        table->owner[1][53] = kHostOwner;   // udp:53 host
        table->owner[0][80] = 2;            // tcp:80 VM
        table->owner[1][5353] = 2;          // udp:5353 VM
        table->owner[0][9000] = 3;          // tcp:9000 disabled VM
    }
    DeliveryDecision decide(const Bytes& frame, UnmatchedPolicy unmatched = UnmatchedPolicy::kHost) const {
        return decide_delivery(parse(frame), *table, owners.data(), unmatched);
    }
};

}  // namespace

TEST_CASE("uplink plan: an ARP request for the shared IP goes to the host only", "[ingress]") {
    CHECK(step_of(ethernet(0x0806, arp(1, kPeerIp, kSharedIp), kBroadcastMac)) == UplinkStep::kToHost);
}

TEST_CASE("uplink plan: an ARP probe (sender 0.0.0.0) for the shared IP goes to the host only", "[ingress]") {
    CHECK(step_of(ethernet(0x0806, arp(1, V4{}, kSharedIp), kBroadcastMac)) == UplinkStep::kToHost);
}

TEST_CASE("uplink plan: an ARP request for another address goes to the host", "[ingress]") {
    CHECK(step_of(ethernet(0x0806, arp(1, kPeerIp, kOtherIp), kBroadcastMac)) == UplinkStep::kToHost);
}

TEST_CASE("uplink plan: an ARP reply is flooded to the host and every VM", "[ingress]") {
    CHECK(step_of(ethernet(0x0806, arp(2, kOtherIp, kSharedIp))) == UplinkStep::kFlood);
}

TEST_CASE("uplink plan: gratuitous ARP, request or reply, is flooded", "[ingress]") {
    CHECK(step_of(ethernet(0x0806, arp(1, kOtherIp, kOtherIp), kBroadcastMac)) == UplinkStep::kFlood);
    CHECK(step_of(ethernet(0x0806, arp(2, kOtherIp, kOtherIp), kBroadcastMac)) == UplinkStep::kFlood);
}

TEST_CASE("uplink plan: ARP with another operation goes to the host", "[ingress]") {
    CHECK(step_of(ethernet(0x0806, arp(3, kPeerIp, kSharedIp))) == UplinkStep::kToHost);
}

TEST_CASE("uplink plan: non-IP, non-ARP and VLAN-tagged frames go to the host", "[ingress]") {
    CHECK(step_of(ethernet(0x88cc, Bytes(46, 0))) == UplinkStep::kToHost);
    Bytes tagged = {0x00, 0x64, 0x08, 0x00};
    put(tagged, ipv4(Ip4{}, tcp(1, 80)));
    CHECK(step_of(ethernet(0x8100, tagged)) == UplinkStep::kToHost);
    // Short ARP is the host's business too.
    Bytes short_arp = ethernet(0x0806, arp(2, kPeerIp, kSharedIp));
    short_arp.resize(30);
    CHECK(step_of(short_arp) == UplinkStep::kToHost);
}

TEST_CASE("uplink plan: a malformed frame is dropped as drop_malformed", "[ingress]") {
    Ip4 ip;
    ip.ihl = 4;
    const UplinkPlan p = plan_uplink_frame(parse(eth_ipv4(ip, tcp(1, 80))), shared_addresses());
    CHECK(p.step == UplinkStep::kDrop);
    CHECK(p.drop_reason == SwitchCounter::drop_malformed);
}

TEST_CASE("uplink plan: IPv4 not for the shared address goes to the host", "[ingress]") {
    Ip4 ip;
    ip.dst = {255, 255, 255, 255};
    CHECK(step_of(eth_ipv4(ip, tcp(1, 80))) == UplinkStep::kToHost);
    ip.dst = {224, 0, 0, 251};
    ip.proto = 17;
    CHECK(step_of(eth_ipv4(ip, udp(5353, 5353))) == UplinkStep::kToHost);
    ip.dst = kOtherIp;
    ip.frag = 0x2000;  // even a fragment
    CHECK(step_of(eth_ipv4(ip, udp(1, 80))) == UplinkStep::kToHost);
}

TEST_CASE("uplink plan: IPv6 not for shared_ip6 goes to the host", "[ingress]") {
    Ip6 ip;
    ip.dst = kOtherIp6;
    CHECK(step_of(eth_ipv6(ip, tcp(1, 80))) == UplinkStep::kToHost);
}

TEST_CASE("uplink plan: IPv6 goes to the host when no shared_ip6 is configured", "[ingress]") {
    CHECK(step_of(eth_ipv6(Ip6{}, tcp(1, 80)), shared_addresses(false)) == UplinkStep::kToHost);
}

TEST_CASE("uplink plan: IP for the shared address goes to the firewall", "[ingress]") {
    CHECK(step_of(eth_ipv4(Ip4{}, tcp(1, 80))) == UplinkStep::kFirewall);
    CHECK(step_of(eth_ipv4(ip4_proto(1), Bytes{8, 0, 0, 0, 0, 0, 0, 0})) == UplinkStep::kFirewall);
    CHECK(step_of(eth_ipv6(ip6_proto(17), udp(1, 53))) == UplinkStep::kFirewall);
    // ICMPv6 echo for the shared address is ordinary IP.
    CHECK(step_of(eth_ipv6(ip6_proto(58), icmpv6(128, 0, Bytes(4, 0)))) == UplinkStep::kFirewall);
}

TEST_CASE("uplink plan: a fragment for the shared address is reassembled", "[ingress]") {
    Ip4 ip;
    ip.frag = 0x2000;
    CHECK(step_of(eth_ipv4(ip, tcp(1, 80))) == UplinkStep::kReassemble);
    ip.frag = 10;
    CHECK(step_of(eth_ipv4(ip, Bytes(8, 0))) == UplinkStep::kReassemble);
    Ip6 ip6 = ip6_proto(17);
    ip6.ext = {ext_fragment(0, true)};
    CHECK(step_of(eth_ipv6(ip6, udp(1, 53, 8, 1000))) == UplinkStep::kReassemble);
    ip6.ext = {ext_fragment(20, false)};
    CHECK(step_of(eth_ipv6(ip6, Bytes(8, 0))) == UplinkStep::kReassemble);
}

TEST_CASE("uplink plan: a neighbour solicitation goes to the host only", "[ingress]") {
    Ip6 ip = ip6_proto(58);
    ip.dst = {0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0xff, 0, 0, 0x10};  // solicited-node multicast
    CHECK(step_of(eth_ipv6(ip, ndp(135, kSharedIp6))) == UplinkStep::kToHost);
    ip.dst = kSharedIp6;  // unicast reachability probe
    CHECK(step_of(eth_ipv6(ip, ndp(135, kSharedIp6))) == UplinkStep::kToHost);
}

TEST_CASE("uplink plan: a neighbour advertisement is flooded whatever its destination", "[ingress]") {
    Ip6 ip = ip6_proto(58);
    CHECK(step_of(eth_ipv6(ip, ndp(136, kPeerIp6))) == UplinkStep::kFlood);
    ip.dst = kAllNodes;
    CHECK(step_of(eth_ipv6(ip, ndp(136, kPeerIp6))) == UplinkStep::kFlood);
}

TEST_CASE("uplink plan: other ICMPv6 not for the shared address goes to the host", "[ingress]") {
    Ip6 ip = ip6_proto(58);
    ip.dst = kAllNodes;
    CHECK(step_of(eth_ipv6(ip, icmpv6(134, 0, Bytes(12, 0)))) == UplinkStep::kToHost);  // router advertisement
}

TEST_CASE("delivery: a VM's TCP or UDP port goes to that VM", "[ingress]") {
    const Tables t;
    DeliveryDecision d = t.decide(eth_ipv4(Ip4{}, tcp(40000, 80)));
    CHECK(d.delivery == Delivery::kVm);
    CHECK(d.owner == 2);
    d = t.decide(eth_ipv6(ip6_proto(17), udp(1, 5353)));
    CHECK(d.delivery == Delivery::kVm);
    CHECK(d.owner == 2);
}

TEST_CASE("delivery: the port is looked up for its own protocol", "[ingress]") {
    const Tables t;
    // udp:80 has no owner even though tcp:80 is the VM's.
    CHECK(t.decide(eth_ipv4(ip4_proto(17), udp(1, 80)), UnmatchedPolicy::kDrop).delivery == Delivery::kDrop);
}

TEST_CASE("delivery: a disabled VM's port is dropped as drop_vm_disabled, never sent to the host", "[ingress]") {
    const Tables t;
    const DeliveryDecision d = t.decide(eth_ipv4(Ip4{}, tcp(1, 9000)), UnmatchedPolicy::kHost);
    CHECK(d.delivery == Delivery::kDrop);
    CHECK(d.drop_reason == SwitchCounter::drop_vm_disabled);
}

TEST_CASE("delivery: the host's own ports reach the host whatever `unmatched` says", "[ingress]") {
    const Tables t;
    for (UnmatchedPolicy u : {UnmatchedPolicy::kHost, UnmatchedPolicy::kDrop, UnmatchedPolicy::kReject}) {
        CHECK(t.decide(eth_ipv4(Ip4{}, tcp(1, 22)), u).delivery == Delivery::kHost);
        CHECK(t.decide(eth_ipv4(ip4_proto(17), udp(1, 53)), u).delivery == Delivery::kHost);
    }
}

TEST_CASE("delivery: a port nobody owns follows the unmatched policy", "[ingress]") {
    const Tables t;
    const Bytes frame = eth_ipv4(Ip4{}, tcp(1, 8080));
    CHECK(t.decide(frame, UnmatchedPolicy::kHost).delivery == Delivery::kHost);
    const DeliveryDecision dropped = t.decide(frame, UnmatchedPolicy::kDrop);
    CHECK(dropped.delivery == Delivery::kDrop);
    CHECK(dropped.drop_reason == SwitchCounter::drop_unmatched);
    CHECK(t.decide(frame, UnmatchedPolicy::kReject).delivery == Delivery::kReject);
}

TEST_CASE("delivery: packets that are not TCP/UDP go to the host whatever `unmatched` says", "[ingress]") {
    const Tables t;
    CHECK(t.decide(eth_ipv4(ip4_proto(1), Bytes{8, 0, 0, 0, 0, 0, 0, 0}), UnmatchedPolicy::kDrop).delivery ==
          Delivery::kHost);
    CHECK(t.decide(eth_ipv4(ip4_proto(47), Bytes(8, 0)), UnmatchedPolicy::kReject).delivery == Delivery::kHost);
    CHECK(t.decide(eth_ipv6(ip6_proto(58), icmpv6(128, 0, Bytes(4, 0))), UnmatchedPolicy::kDrop).delivery ==
          Delivery::kHost);
}

TEST_CASE("uplink plan: the shortcut for straight-path frames gives the full plan", "[ingress][fast]") {
    SharedAddresses two = shared_addresses();
    two.extra_ip4_count = 1;
    two.extra_ip4[0] = be32_of(kOtherIp);
    Ip4 to_other;
    to_other.dst = kOtherIp;
    Ip4 udp_to_other = to_other;
    udp_to_other.proto = 17;
    Ip6 to_other6 = ip6_proto(17);
    to_other6.dst = kOtherIp6;
    const Bytes frames[] = {eth_ipv4(Ip4{}, tcp(40000, 80)),          eth_ipv4(ip4_proto(17), udp(1, 53)),
                            eth_ipv4(to_other, tcp(40000, 80)),       eth_ipv4(udp_to_other, udp(1, 53)),
                            eth_ipv6(Ip6{}, tcp(40000, 80)),          eth_ipv6(to_other6, udp(1, 53))};
    unsigned to_firewall = 0;
    for (const Bytes& frame : frames) {
        ParsedFrame f;
        REQUIRE(parse_frame_into(frame.data(), static_cast<uint32_t>(frame.size()), static_cast<uint32_t>(frame.size()),
                                 Ipv4ChecksumState::kUnchecked, &f));
        for (const SharedAddresses& addresses : {two, shared_addresses(false)}) {
            const UplinkPlan full = plan_uplink_frame(f, addresses);
            const UplinkPlan quick = plan_common_frame(f, addresses);
            CHECK(quick.step == full.step);
            CHECK(quick.drop_reason == full.drop_reason);
            if (full.step == UplinkStep::kFirewall) ++to_firewall;
        }
    }
    // Both outcomes occur: with two IPv4 addresses and an IPv6 one, all but the frame to another IPv6 address
    // (5); with one IPv4 address and none for IPv6, only the two to it (2).
    CHECK(to_firewall == 7);
}
