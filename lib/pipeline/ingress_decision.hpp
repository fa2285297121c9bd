// Decisions for frames received on the uplink (CONTRACT.md section 3, "uplink to inside").
#pragma once

#include <cstdint>

#include "config/config.hpp"
#include "core/counters.hpp"
#include "pipeline/parsed_frame.hpp"
#include "pipeline/shared_addresses.hpp"
#include "tables/port_owners.hpp"

namespace portmux {

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

enum class Delivery : uint8_t {
    kVm,      // to owner `owner` (an enabled VM)
    kHost,    // to the host port
    kDrop,    // `drop_reason` says why
    kReject,  // answer with a TCP RST / ICMP port unreachable (unmatched = reject)
};

struct DeliveryDecision {
    Delivery delivery = Delivery::kHost;
    OwnerId owner = kNoOwner;
    SwitchCounter drop_reason = SwitchCounter::drop_unmatched;  // meaningful for kDrop
};

// Steps 4 and 5 for a packet the firewall accepted: not TCP/UDP -> host; a VM's port -> that VM (or drop,
// counted drop_vm_disabled, when the VM is disabled); a host port -> host; no owner -> the unmatched policy.
// `owners` is indexed by OwnerId. Pure function.
DeliveryDecision decide_delivery(const ParsedFrame& frame, const PortOwnerTable& table, const OwnerTarget* owners,
                                 UnmatchedPolicy unmatched);

}  // namespace portmux
