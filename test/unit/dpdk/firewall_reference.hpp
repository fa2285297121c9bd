// The firewall semantics written the slow, obvious way: the oracle the rte_acl firewall is compared with.
#pragma once

#include <arpa/inet.h>

#include <cstdint>
#include <cstring>
#include <optional>

#include "config/config.hpp"
#include "core/port_range.hpp"
#include "packet/parsed_frame.hpp"

namespace portmux::test {

// A key with every field in host-friendly form; addresses as 16 bytes (IPv4 uses the first 4).
struct ReferenceKey {
    bool is_v6 = false;
    uint8_t proto = 0;
    uint8_t src[16] = {};
    uint8_t dst[16] = {};
    uint16_t src_port = 0;  // host byte order
    uint16_t dst_port = 0;
};

inline ReferenceKey reference_key(const FlowKey4& k) {
    ReferenceKey r;
    r.proto = k.proto;
    std::memcpy(r.src, &k.src, 4);
    std::memcpy(r.dst, &k.dst, 4);
    r.src_port = ntohs(k.src_port);
    r.dst_port = ntohs(k.dst_port);
    return r;
}

inline ReferenceKey reference_key(const FlowKey6& k) {
    ReferenceKey r;
    r.is_v6 = true;
    r.proto = k.proto;
    std::memcpy(r.src, k.src, 16);
    std::memcpy(r.dst, k.dst, 16);
    r.src_port = ntohs(k.src_port);
    r.dst_port = ntohs(k.dst_port);
    return r;
}

inline bool bit_at(const uint8_t* bytes, unsigned i) { return (bytes[i / 8] >> (7 - i % 8)) & 1; }

// An absent prefix matches anything; a prefix of the other family matches nothing; otherwise the first
// `length` bits must be equal, compared one bit at a time.
inline bool reference_prefix_matches(const std::optional<IpPrefix>& prefix, const ReferenceKey& key,
                                     const uint8_t* address) {
    if (!prefix) return true;
    if (prefix->is_v6 != key.is_v6) return false;
    const uint8_t* want = prefix->is_v6 ? prefix->v6.bytes.data() : prefix->v4.bytes.data();
    for (unsigned i = 0; i < prefix->length; ++i) {
        if (bit_at(want, i) != bit_at(address, i)) return false;
    }
    return true;
}

inline bool reference_rule_matches(const FirewallRule& rule, const ReferenceKey& key) {
    if (rule.proto && *rule.proto != key.proto) return false;
    if (rule.src_ports || rule.dst_ports) {
        // Only TCP and UDP carry ports.
        if (key.proto != kIpProtoTcp && key.proto != kIpProtoUdp) return false;
        if (rule.src_ports && !(rule.src_ports->first <= key.src_port && key.src_port <= rule.src_ports->last)) {
            return false;
        }
        if (rule.dst_ports && !(rule.dst_ports->first <= key.dst_port && key.dst_port <= rule.dst_ports->last)) {
            return false;
        }
    }
    return reference_prefix_matches(rule.src, key, key.src) && reference_prefix_matches(rule.dst, key, key.dst);
}

// Index of the first matching rule, or nothing.
inline std::optional<size_t> reference_first_match(const FirewallConfig& config, const ReferenceKey& key) {
    for (size_t i = 0; i < config.rules.size(); ++i) {
        if (reference_rule_matches(config.rules[i], key)) return i;
    }
    return std::nullopt;
}

inline bool reference_drop(const FirewallConfig& config, const ReferenceKey& key) {
    std::optional<size_t> i = reference_first_match(config, key);
    FirewallAction action = i ? config.rules[*i].action : config.default_action;
    return action == FirewallAction::kDrop;
}

}  // namespace portmux::test
