// Egress checks and rewrites for frames a VM sends toward the uplink (anti-spoofing, then the uplink's MAC).
#include "pipeline/vm_egress.hpp"

#include <algorithm>
#include <cstring>
#include <iterator>

#include "core/port_range.hpp"
#include "packet/checksum.hpp"
#include "tables/lb_group.hpp"

namespace portmux {
namespace {

constexpr uint32_t kEthSrcOffset = 6;
constexpr uint32_t kMacLen = 6;
constexpr uint32_t kArpSenderHwOffset = 8;  // htype, ptype, hlen, plen, op
constexpr uint8_t kIcmp6RouterSolicit = 133;
constexpr uint8_t kIcmp6NeighborSolicit = 135;
constexpr uint8_t kIcmp6NeighborAdvert = 136;
constexpr uint8_t kNdOptSourceLinkAddr = 1;
constexpr uint8_t kNdOptTargetLinkAddr = 2;

EgressDecision drop(SwitchCounter reason) { return EgressDecision{false, reason}; }

EgressDecision check_ports(const ParsedFrame& frame, const PortOwnerTable& table, OwnerId self,
                           const OwnerTarget* owners, const LbGroup* groups) {
    // A non-first fragment carries no port: its address was checked, the first fragment carries the port.
    if (frame.has_ports && (frame.ip_proto == kIpProtoTcp || frame.ip_proto == kIpProtoUdp)) {
        const L4Proto proto = frame.ip_proto == kIpProtoTcp ? L4Proto::kTcp : L4Proto::kUdp;
        const OwnerId owner = table.lookup(proto, frame.src_port);
        const bool stands_in = owners != nullptr && owner != kNoOwner && owners[owner].kind == OwnerKind::kVm &&
                               owners[owner].port == owners[self].port;
        // Only reached for a port that is not the VM's own: its own ports pay nothing for groups.
        if (owner != self && !stands_in &&
            !(groups != nullptr && owners != nullptr && owner != kNoOwner && owners[owner].kind == OwnerKind::kGroup &&
              groups[owners[owner].group].is_member(self)))
            return drop(SwitchCounter::drop_spoof_port);
    }
    return EgressDecision{true, SwitchCounter::drop_spoof_address};
}

// Where the neighbour discovery options of an ICMPv6 message start (relative to the ICMPv6 header), or 0
// when the message type carries no link-layer address option we rewrite.
uint32_t nd_options_offset(uint8_t icmp6_type) {
    switch (icmp6_type) {
        case kIcmp6RouterSolicit:
            return 8;
        case kIcmp6NeighborSolicit:
        case kIcmp6NeighborAdvert:
            return 24;
        default:
            return 0;
    }
}

void rewrite_nd_options(uint8_t* frame, uint32_t length, const ParsedFrame& parsed, const MacAddr& mac) {
    const uint32_t icmp = parsed.l4_offset;
    const uint32_t options = nd_options_offset(parsed.icmp6_type);
    uint32_t end = static_cast<uint32_t>(parsed.l3_offset) + parsed.l3_length;
    if (end > length) end = length;
    if (options == 0 || icmp >= end || end - icmp < options) return;

    uint16_t checksum = wire::load16(frame + icmp + 2);
    bool changed = false;
    uint32_t pos = icmp + options;
    while (end - pos >= 8) {
        const uint8_t type = frame[pos];
        const uint32_t len = static_cast<uint32_t>(frame[pos + 1]) * 8;
        if (len == 0 || end - pos < len) break;  // RFC 4861: a zero-length option invalidates the rest
        if ((type == kNdOptSourceLinkAddr || type == kNdOptTargetLinkAddr) && len == 8) {
            // Options start 8-byte aligned within the message, so the address is three whole checksum words.
            uint8_t* addr = frame + pos + 2;
            for (uint32_t i = 0; i < kMacLen; i += 2) {
                const uint16_t old_word = wire::load16(addr + i);
                const uint16_t new_word = static_cast<uint16_t>((mac.bytes[i] << 8) | mac.bytes[i + 1]);
                checksum = wire::csum_replace16(checksum, old_word, new_word);
            }
            std::memcpy(addr, mac.bytes.data(), kMacLen);
            changed = true;
        }
        pos += len;
    }
    if (changed) wire::store16(frame + icmp + 2, checksum);
}

}  // namespace

EgressDecision check_vm_egress(const ParsedFrame& frame, const SharedAddresses& shared, const PortOwnerTable& table,
                               OwnerId self, const OwnerTarget* owners, const LbGroup* groups) {
    const PortOwnerTable* tables[1 + kMaxExtraSharedIps];
    std::fill(std::begin(tables), std::end(tables), &table);
    return check_vm_egress(frame, shared, tables, self, owners, groups);
}

EgressDecision check_vm_egress(const ParsedFrame& frame, const SharedAddresses& shared,
                               const PortOwnerTable* const* tables, OwnerId self, const OwnerTarget* owners,
                               const LbGroup* groups) {
    switch (frame.kind) {
        case FrameKind::kArp:
            // 0.0.0.0 is an ARP probe (RFC 5227): it claims nothing.
            if (frame.arp_sender_ip == 0 || shared.ip4_index(frame.arp_sender_ip) >= 0) {
                return EgressDecision{true, SwitchCounter::drop_spoof_arp};
            }
            return drop(SwitchCounter::drop_spoof_arp);
        case FrameKind::kIpv4: {
            const int address = shared.ip4_index(frame.key.v4.src);
            if (address < 0) return drop(SwitchCounter::drop_spoof_address);
            return check_ports(frame, *tables[address], self, owners, groups);
        }
        case FrameKind::kIpv6:
            // NDP included: a VM speaks only from the shared address (so no DAD from "::"; guests use nodad).
            if (!shared.is_ip6(frame.key.v6.src)) return drop(SwitchCounter::drop_spoof_address);
            return check_ports(frame, *tables[0], self, owners, groups);
        case FrameKind::kMalformed:
            return drop(SwitchCounter::drop_malformed);
        case FrameKind::kOther:
        default:
            return drop(SwitchCounter::drop_spoof_address);
    }
}

void rewrite_vm_egress(uint8_t* frame, uint32_t length, const ParsedFrame& parsed, const MacAddr& uplink_mac) {
    if (length < kEthSrcOffset + kMacLen) return;
    std::memcpy(frame + kEthSrcOffset, uplink_mac.bytes.data(), kMacLen);

    if (parsed.kind == FrameKind::kArp) {
        const uint32_t sha = static_cast<uint32_t>(parsed.l3_offset) + kArpSenderHwOffset;
        if (sha <= length && length - sha >= kMacLen) std::memcpy(frame + sha, uplink_mac.bytes.data(), kMacLen);
    } else if (parsed.kind == FrameKind::kIpv6 && parsed.ip_proto == kIpProtoIcmpv6 && !parsed.is_fragment) {
        rewrite_nd_options(frame, length, parsed, uplink_mac);
    }
}

}  // namespace portmux
