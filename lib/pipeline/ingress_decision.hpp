// Decisions for frames received on the uplink ("From the uplink" in docs/forwarding.md).
#pragma once

#include <cstdint>

#include "config/config.hpp"
#include "core/counters.hpp"
#include "core/port_owners.hpp"
#include "packet/parsed_frame.hpp"
#include "packet/shared_addresses.hpp"
#include "tables/owner_target.hpp"

namespace portmux {

struct LbGroup;
class ConnectionTable;

// What to do with a parsed uplink frame before the firewall.
enum class UplinkStep : uint8_t {
    kToHost,      // ARP request for the shared IP, other ARP, non-IP, IP not for a shared address,
                  // NDP other than advertisements
    kFlood,       // ARP reply / gratuitous ARP, neighbour advertisement: host and every VM
    kDrop,        // malformed: `drop_reason` says why
    kReassemble,  // a fragment for a shared address: reassemble, then parse and plan again
    kFirewall,    // an IP packet for a shared address: run the firewall, then decide_delivery()
};

struct UplinkPlan {
    UplinkStep step = UplinkStep::kToHost;
    SwitchCounter drop_reason = SwitchCounter::drop_malformed;  // meaningful for kDrop
};

// Steps 1, 2 and the fragment and malformation parts of 4 and 6. Pure function.
UplinkPlan plan_uplink_frame(const ParsedFrame& frame, const SharedAddresses& shared);

// plan_uplink_frame() for a frame parse_frame_fast() took (untagged IPv4/IPv6 TCP/UDP, not a fragment):
// only the destination address matters then, so the switch over every kind is skipped. Gives exactly
// plan_uplink_frame()'s plan for such a frame (the fuzz target checks it). Pure function.
inline UplinkPlan plan_common_frame(const ParsedFrame& frame, const SharedAddresses& shared) {
    const bool for_shared =
        frame.kind == FrameKind::kIpv4 ? shared.is_ip4(frame.key.v4.dst) : shared.is_ip6(frame.key.v6.dst);
    return UplinkPlan{for_shared ? UplinkStep::kFirewall : UplinkStep::kToHost, SwitchCounter::drop_malformed};
}

enum class Delivery : uint8_t {
    kVm,      // to owner `owner` (an enabled VM)
    kHost,    // to the host port
    kDrop,    // `drop_reason` says why
    kReject,  // answer with a TCP RST / ICMP port unreachable (unmatched = reject)
    kRemote,  // to owner `owner`, a remote VM: encapsulated in VXLAN out of the uplink
};

// What a packet to a load-balanced group did to the connection table (see docs/load-balancing.md).
enum class LbEvent : uint8_t { kNone, kHit, kNewFlow, kNewFlowEvicted };

struct DeliveryDecision {
    Delivery delivery = Delivery::kHost;
    OwnerId owner = kNoOwner;
    SwitchCounter drop_reason = SwitchCounter::drop_unmatched;  // meaningful for kDrop
    LbEvent lb_event = LbEvent::kNone;
};

// What a decision for a group needs beyond the snapshot's owners: the groups (indexed by
// OwnerTarget::group), the worker's connection table (may be null: Maglev alone) and the time (TSC).
struct LbContext {
    const LbGroup* groups = nullptr;
    ConnectionTable* connections = nullptr;
    uint64_t now = 0;
};

// A packet to group `group`: the member its flow already uses while that member is active or draining,
// otherwise a new pick from the Maglev table of active members, remembered in the connection table.
// No usable member: dropped, counted drop_group_empty. Pure apart from the connection table passed in.
DeliveryDecision decide_group(const ParsedFrame& frame, OwnerId group, const OwnerTarget* owners, const LbContext& lb);

// A VM owner's packet: delivered, or dropped and counted while the VM is disabled (never sent to the host).
inline DeliveryDecision deliver_to_vm(OwnerId id, const OwnerTarget* owners) {
    DeliveryDecision d;
    d.owner = id;
    if (owners[id].enabled) {
        d.delivery = Delivery::kVm;
    } else {
        d.delivery = Delivery::kDrop;
        d.drop_reason = SwitchCounter::drop_vm_disabled;
    }
    return d;
}

// Where an ICMP/ICMPv6 error quoting a TCP/UDP packet goes (see decide_delivery). Pure function.
DeliveryDecision decide_icmp_error(const ParsedFrame& frame, const PortOwnerTable& table, const OwnerTarget* owners);

// Steps 4 and 5 for a packet the firewall accepted: not TCP/UDP -> host (ICMP errors: the VM that sent the
// quoted packet); a VM's port -> that VM (or drop, counted drop_vm_disabled, when the VM is disabled); a host
// port -> host; no owner -> the unmatched policy. `owners` is indexed by OwnerId. Pure function, inline
// because it runs for nearly every packet and is little more than one table load.
// A group's port -> one of its members (decide_group; without `lb` such packets are dropped,
// drop_group_empty).
inline DeliveryDecision decide_delivery(const ParsedFrame& frame, const PortOwnerTable& table,
                                        const OwnerTarget* owners, UnmatchedPolicy unmatched,
                                        const LbContext* lb = nullptr) {
    DeliveryDecision d;
    if (!frame.has_ports || (frame.ip_proto != kIpProtoTcp && frame.ip_proto != kIpProtoUdp)) {
        if (frame.has_quoted_ports) return decide_icmp_error(frame, table, owners);
        d.delivery = Delivery::kHost;
        return d;
    }
    const L4Proto proto = frame.ip_proto == kIpProtoTcp ? L4Proto::kTcp : L4Proto::kUdp;
    const OwnerId id = table.lookup(proto, frame.dst_port);
    const OwnerKind kind = id == kNoOwner ? OwnerKind::kNone : owners[id].kind;
    d.owner = id;
    switch (kind) {
        case OwnerKind::kVm:
            return deliver_to_vm(id, owners);
        case OwnerKind::kRemote:
            d.delivery = Delivery::kRemote;
            return d;
        case OwnerKind::kGroup:
            if (lb != nullptr && lb->groups != nullptr) return decide_group(frame, id, owners, *lb);
            d.delivery = Delivery::kDrop;
            d.drop_reason = SwitchCounter::drop_group_empty;
            return d;
        case OwnerKind::kHost:
            // The host's own ports reach it whatever `unmatched` says: that policy is for ports nobody owns.
            d.delivery = Delivery::kHost;
            return d;
        case OwnerKind::kNone:
        default:
            d.owner = kNoOwner;
            break;
    }
    switch (unmatched) {
        case UnmatchedPolicy::kDrop:
            d.delivery = Delivery::kDrop;
            d.drop_reason = SwitchCounter::drop_unmatched;
            break;
        case UnmatchedPolicy::kReject:
            d.delivery = Delivery::kReject;
            break;
        case UnmatchedPolicy::kHost:
        default:
            d.delivery = Delivery::kHost;
            break;
    }
    return d;
}

}  // namespace portmux
