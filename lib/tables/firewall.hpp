// The firewall: rules compiled into rte_acl contexts (one IPv4, one IPv6) on the control side, classified
// a burst at a time on the data path.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "config/config.hpp"
#include "core/result.hpp"
#include "packet/parsed_frame.hpp"

struct rte_acl_ctx;

namespace portmux {

class Firewall {
public:
    // Compiles `config`. Rules without addresses go into both contexts, rules with IPv4 (IPv6) prefixes
    // only into the IPv4 (IPv6) one; a rule with ports but no protocol becomes one TCP and one UDP rule, so
    // it never matches a packet without ports. `name` must be unique among live firewalls (rte_acl returns
    // an existing context of the same name): the caller gives each generation its own. Needs the EAL.
    // Thread safety: control side only; not multi-thread safe.
    static Result<std::shared_ptr<const Firewall>> build(const FirewallConfig& config, const std::string& name,
                                                         int socket_id);
    ~Firewall();
    Firewall(const Firewall&) = delete;
    Firewall& operator=(const Firewall&) = delete;

    // Classifies `count` keys (at most 64 a call) and writes true into `drop` for each key the rules (or the
    // default) drop. Data path: any number of readers at once; no allocation.
    void classify_v4(const FlowKey4* const* keys, bool* drop, uint32_t count) const;
    void classify_v6(const FlowKey6* const* keys, bool* drop, uint32_t count) const;

    size_t rule_count() const { return rule_count_; }  // configured rules, before TCP/UDP expansion

private:
    Firewall() = default;

    rte_acl_ctx* ctx4_ = nullptr;  // null when no rule applies to IPv4
    rte_acl_ctx* ctx6_ = nullptr;
    bool default_drop_ = false;
    size_t rule_count_ = 0;
    // verdict_by_userdata_[u] for rte_acl userdata u (1-based rule index + 1); index 0 = no match -> default
    std::unique_ptr<bool[]> verdict_by_userdata_;
};

}  // namespace portmux
