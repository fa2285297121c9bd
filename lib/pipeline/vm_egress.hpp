// Checks and rewrites for frames a VM sends toward the uplink ("from a VM" in docs/forwarding.md).
#pragma once

#include <cstdint>

#include "core/counters.hpp"
#include "core/net_types.hpp"
#include "core/port_owners.hpp"
#include "packet/parsed_frame.hpp"
#include "packet/shared_addresses.hpp"
#include "tables/owner_target.hpp"

namespace portmux {

struct LbGroup;

struct EgressDecision {
    bool forward = false;
    SwitchCounter drop_reason = SwitchCounter::drop_spoof_address;  // meaningful when !forward
};

// A VM (owner `self`) may send: ARP whose sender IP is the shared IPv4 address (or 0.0.0.0 for a probe);
// IPv4/IPv6 whose source is the shared address, where TCP/UDP must use a source port that `table` gives to
// `self` for that protocol (a non-first fragment carries no port and passes on its address alone);
// nothing else (malformed frames, other non-IP frames: dropped). Pure function.
// With `owners` (indexed by OwnerId), a source port also passes when its owner is currently served by the
// same port as `self`: a backup VM answers for the ranges of the VM it stands in for.
// With `groups` (the snapshot's, indexed by OwnerTarget::group), a source port of a load-balanced group passes
// when `self` is one of its members, in any state (a draining or returning member still answers its flows).
EgressDecision check_vm_egress(const ParsedFrame& frame, const SharedAddresses& shared, const PortOwnerTable& table,
                               OwnerId self, const OwnerTarget* owners = nullptr, const LbGroup* groups = nullptr);
// The same with several shared addresses: an IPv4 source may be any of them, and its port is checked in that
// address's table, `tables[shared.ip4_index(source)]` (IPv6 uses tables[0]).
EgressDecision check_vm_egress(const ParsedFrame& frame, const SharedAddresses& shared,
                               const PortOwnerTable* const* tables, OwnerId self, const OwnerTarget* owners,
                               const LbGroup* groups = nullptr);

// Makes a checked VM frame look like the uplink's own: Ethernet source, ARP sender hardware address, and
// the source/target link-layer address options of neighbour discovery (fixing the ICMPv6 checksum) all
// become `uplink_mac`. `frame` holds `length` contiguous bytes. Pure function.
void rewrite_vm_egress(uint8_t* frame, uint32_t length, const ParsedFrame& parsed, const MacAddr& uplink_mac);

}  // namespace portmux
