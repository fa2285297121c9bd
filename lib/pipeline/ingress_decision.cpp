// Decisions for frames received on the uplink: which path a parsed frame takes, and who gets a packet.
#include "pipeline/ingress_decision.hpp"

#include <cstring>

#include "core/port_range.hpp"

namespace portmux {
namespace {

constexpr uint16_t kArpReply = 2;
constexpr uint8_t kIcmp6NeighborSolicit = 135;
constexpr uint8_t kIcmp6NeighborAdvert = 136;

UplinkPlan plan(UplinkStep step) { return UplinkPlan{step, SwitchCounter::drop_malformed}; }

UplinkPlan plan_arp(const ParsedFrame& frame) {
    // Gratuitous ARP (either op) and replies update every neighbour cache inside, so each VM learns its
    // gateway; requests are answered by the host alone so the wire sees one MAC for the shared address.
    if (frame.arp_sender_ip == frame.arp_target_ip) return plan(UplinkStep::kFlood);
    if (frame.arp_op == kArpReply) return plan(UplinkStep::kFlood);
    // Requests (for the shared IP or any other) and unknown operations are the host's.
    return plan(UplinkStep::kToHost);
}

UplinkPlan plan_ip(const ParsedFrame& frame, bool for_shared) {
    if (!for_shared) return plan(UplinkStep::kToHost);
    if (frame.is_fragment) return plan(UplinkStep::kReassemble);
    return plan(UplinkStep::kFirewall);
}

}  // namespace

UplinkPlan plan_uplink_frame(const ParsedFrame& frame, const SharedAddresses& shared) {
    switch (frame.kind) {
        case FrameKind::kArp:
            return plan_arp(frame);
        case FrameKind::kMalformed:
            return UplinkPlan{UplinkStep::kDrop, SwitchCounter::drop_malformed};
        case FrameKind::kIpv4:
            return plan_ip(frame, shared.is_ip4(frame.key.v4.dst));
        case FrameKind::kIpv6:
            // Neighbour discovery is the IPv6 form of ARP: advertisements (solicited for the shared address
            // or unsolicited to all-nodes) reach everyone, solicitations only the host. A fragmented ICMPv6
            // message is not NDP (RFC 6980), so it takes the ordinary IP path.
            if (frame.ip_proto == kIpProtoIcmpv6 && !frame.is_fragment) {
                if (frame.icmp6_type == kIcmp6NeighborAdvert) return plan(UplinkStep::kFlood);
                if (frame.icmp6_type == kIcmp6NeighborSolicit) return plan(UplinkStep::kToHost);
            }
            return plan_ip(frame, shared.is_ip6(frame.key.v6.dst));
        case FrameKind::kOther:
        default:
            return plan(UplinkStep::kToHost);
    }
}

// An ICMP error about a packet sent from the shared address goes to the owner of the port that sent it,
// so path-MTU discovery and traceroute work inside VMs. Anything else ICMP stays with the host.
DeliveryDecision decide_icmp_error(const ParsedFrame& frame, const PortOwnerTable& table, const OwnerTarget* owners) {
    DeliveryDecision d;
    d.delivery = Delivery::kHost;
    const bool v6 = frame.kind == FrameKind::kIpv6;
    const void* destination = v6 ? static_cast<const void*>(frame.key.v6.dst) : &frame.key.v4.dst;
    if (!frame.has_quoted_ports || std::memcmp(frame.quoted_src, destination, v6 ? 16 : 4) != 0) return d;
    const L4Proto proto = frame.quoted_proto == kIpProtoTcp ? L4Proto::kTcp : L4Proto::kUdp;
    const OwnerId id = table.lookup(proto, frame.quoted_src_port);
    if (id == kNoOwner || owners[id].kind != OwnerKind::kVm) return d;
    return deliver_to_vm(id, owners);
}

}  // namespace portmux
