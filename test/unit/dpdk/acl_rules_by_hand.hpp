// Firewall rules turned into rte_acl rules by hand, independently of lib/tables/firewall.cpp, following the
// mapping of docs/firewall.md: the firewall test and the stage benchmark build their own rte_acl contexts
// with it to compare Firewall against rte_acl_classify called directly.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <vector>

#include <rte_acl.h>

#include "config/config.hpp"
#include "core/port_range.hpp"

namespace portmux::acl_by_hand {

// An address prefix as `word_count` 32-bit MASK fields (host byte order values, prefix lengths as masks).
inline void put_prefix(rte_acl_field* words, const std::optional<IpPrefix>& p, unsigned word_count) {
    for (unsigned w = 0; w < word_count; ++w) {
        const uint8_t* b = p ? (p->is_v6 ? p->v6.bytes.data() : p->v4.bytes.data()) + 4 * w : nullptr;
        const int len = p ? std::max(0, std::min(32, int(p->length) - 32 * int(w))) : 0;
        words[w].value.u32 = b ? (uint32_t(b[0]) << 24 | uint32_t(b[1]) << 16 | uint32_t(b[2]) << 8 | b[3]) : 0;
        words[w].mask_range.u32 = static_cast<uint32_t>(len);
    }
}

// One configured rule; a rule with ports and no protocol becomes a TCP and a UDP rule. Rule i of `count`
// gets priority count - i and userdata i + 1, as Firewall gives them.
template <class Rule, unsigned kWords>
inline void put_rule(std::vector<Rule>& out, const FirewallRule& r, size_t index, size_t count) {
    std::vector<int> protos;  // -1: any
    const bool ports = r.src_ports || r.dst_ports;
    if (!ports) protos = {r.proto ? int(*r.proto) : -1};
    else if (!r.proto) protos = {kIpProtoTcp, kIpProtoUdp};
    else if (*r.proto == kIpProtoTcp || *r.proto == kIpProtoUdp) protos = {int(*r.proto)};
    for (int proto : protos) {
        Rule a{};
        a.data = rte_acl_rule_data{1, int32_t(count - index), uint32_t(index + 1)};
        a.field[0].value.u8 = proto < 0 ? 0 : uint8_t(proto);
        a.field[0].mask_range.u8 = proto < 0 ? 0 : 0xff;
        put_prefix(&a.field[1], r.src, kWords);
        put_prefix(&a.field[1 + kWords], r.dst, kWords);
        a.field[1 + 2 * kWords].value.u16 = r.src_ports ? r.src_ports->first : 0;
        a.field[1 + 2 * kWords].mask_range.u16 = r.src_ports ? r.src_ports->last : 65535;
        a.field[2 + 2 * kWords].value.u16 = r.dst_ports ? r.dst_ports->first : 0;
        a.field[2 + 2 * kWords].mask_range.u16 = r.dst_ports ? r.dst_ports->last : 65535;
        out.push_back(a);
    }
}

}  // namespace portmux::acl_by_hand
