// The firewall: FirewallConfig rules translated into rte_acl rules and built into one context per IP family.
#include "tables/firewall.hpp"

#include <cstddef>
#include <cstring>
#include <vector>

#include <rte_acl.h>
#include <rte_branch_prediction.h>
#include <rte_errno.h>

#include "core/port_range.hpp"

namespace portmux {

namespace {

// rte_acl_classify takes up to this many keys per call in Firewall::classify_*; the results live on the stack.
constexpr uint32_t kMaxBurst = 64;

// Field numbers inside one rule. The first field must be the single byte (proto): rte_acl consumes the first
// input byte on its own and the rest in groups of four, so every later input_index names 4 bytes.
enum : uint8_t { kV4Proto, kV4Src, kV4Dst, kV4SrcPort, kV4DstPort, kV4FieldCount };
enum : uint8_t {
    kV6Proto,
    kV6Src0,  // four 32-bit words, most significant first
    kV6Dst0 = kV6Src0 + 4,
    kV6SrcPort = kV6Dst0 + 4,
    kV6DstPort,
    kV6FieldCount
};

RTE_ACL_RULE_DEF(AclRule4, kV4FieldCount);
RTE_ACL_RULE_DEF(AclRule6, kV6FieldCount);

rte_acl_field_def field_def(uint8_t type, uint8_t size, uint8_t field, uint8_t input, size_t offset) {
    rte_acl_field_def def{};
    def.type = type;
    def.size = size;
    def.field_index = field;
    def.input_index = input;
    def.offset = static_cast<uint32_t>(offset);
    return def;
}

rte_acl_config acl_config_v4() {
    rte_acl_config cfg{};
    cfg.num_categories = 1;
    cfg.num_fields = kV4FieldCount;
    cfg.defs[kV4Proto] = field_def(RTE_ACL_FIELD_TYPE_BITMASK, 1, kV4Proto, 0, offsetof(FlowKey4, proto));
    cfg.defs[kV4Src] = field_def(RTE_ACL_FIELD_TYPE_MASK, 4, kV4Src, 1, offsetof(FlowKey4, src));
    cfg.defs[kV4Dst] = field_def(RTE_ACL_FIELD_TYPE_MASK, 4, kV4Dst, 2, offsetof(FlowKey4, dst));
    // Both ports fit in one 4-byte input group, so they share an input_index.
    cfg.defs[kV4SrcPort] = field_def(RTE_ACL_FIELD_TYPE_RANGE, 2, kV4SrcPort, 3, offsetof(FlowKey4, src_port));
    cfg.defs[kV4DstPort] = field_def(RTE_ACL_FIELD_TYPE_RANGE, 2, kV4DstPort, 3, offsetof(FlowKey4, dst_port));
    cfg.max_size = 0;  // no limit: rte_acl splits the rules into several tries when one grows too large
    return cfg;
}

rte_acl_config acl_config_v6() {
    rte_acl_config cfg{};
    cfg.num_categories = 1;
    cfg.num_fields = kV6FieldCount;
    cfg.defs[kV6Proto] = field_def(RTE_ACL_FIELD_TYPE_BITMASK, 1, kV6Proto, 0, offsetof(FlowKey6, proto));
    for (uint8_t w = 0; w < 4; ++w) {
        cfg.defs[kV6Src0 + w] = field_def(RTE_ACL_FIELD_TYPE_MASK, 4, kV6Src0 + w, 1 + w, offsetof(FlowKey6, src) + 4u * w);
        cfg.defs[kV6Dst0 + w] = field_def(RTE_ACL_FIELD_TYPE_MASK, 4, kV6Dst0 + w, 5 + w, offsetof(FlowKey6, dst) + 4u * w);
    }
    cfg.defs[kV6SrcPort] = field_def(RTE_ACL_FIELD_TYPE_RANGE, 2, kV6SrcPort, 9, offsetof(FlowKey6, src_port));
    cfg.defs[kV6DstPort] = field_def(RTE_ACL_FIELD_TYPE_RANGE, 2, kV6DstPort, 9, offsetof(FlowKey6, dst_port));
    cfg.max_size = 0;
    return cfg;
}

// One 32-bit word of an address (bytes in network order) as rte_acl wants rule values: host order.
uint32_t host_word(const uint8_t* bytes) {
    return (uint32_t{bytes[0]} << 24) | (uint32_t{bytes[1]} << 16) | (uint32_t{bytes[2]} << 8) | bytes[3];
}

// Fills one MASK field for word `word` (0-based) of a prefix of `length` bits; absent prefix -> /0.
// Host bits are cleared so the rule means exactly the prefix whatever the caller left in them.
void set_address_word(rte_acl_field& field, const uint8_t* address, unsigned length, unsigned word) {
    int bits = static_cast<int>(length) - 32 * static_cast<int>(word);
    bits = bits < 0 ? 0 : (bits > 32 ? 32 : bits);
    uint32_t mask = bits == 0 ? 0 : ~uint32_t{0} << (32 - bits);
    field.value.u32 = address == nullptr ? 0 : host_word(address + 4 * word) & mask;
    field.mask_range.u32 = static_cast<uint32_t>(bits);
}

void set_ports(rte_acl_field& field, const std::optional<PortSpan>& span) {
    field.value.u16 = span ? span->first : 0;
    field.mask_range.u16 = span ? span->last : 0xffff;
}

void set_proto(rte_acl_field& field, std::optional<uint8_t> proto) {
    field.value.u8 = proto ? *proto : 0;
    field.mask_range.u8 = proto ? 0xff : 0;
}

// The protocols a rule becomes: ports exist only on TCP and UDP, so a rule with ports and no protocol is
// one rule per protocol, and one naming another protocol can never match (returns no protocol at all).
// An unset optional in the result stands for "any protocol".
std::vector<std::optional<uint8_t>> expand_protocols(const FirewallRule& rule) {
    bool has_ports = rule.src_ports.has_value() || rule.dst_ports.has_value();
    if (!has_ports) return {rule.proto};
    if (!rule.proto) return {uint8_t{kIpProtoTcp}, uint8_t{kIpProtoUdp}};
    if (*rule.proto == kIpProtoTcp || *rule.proto == kIpProtoUdp) return {rule.proto};
    return {};
}

AclRule4 make_rule_v4(const FirewallRule& rule, std::optional<uint8_t> proto, int32_t priority, uint32_t userdata) {
    AclRule4 r{};
    r.data.category_mask = 1;
    r.data.priority = priority;
    r.data.userdata = userdata;
    set_proto(r.field[kV4Proto], proto);
    set_address_word(r.field[kV4Src], rule.src ? rule.src->v4.bytes.data() : nullptr, rule.src ? rule.src->length : 0, 0);
    set_address_word(r.field[kV4Dst], rule.dst ? rule.dst->v4.bytes.data() : nullptr, rule.dst ? rule.dst->length : 0, 0);
    set_ports(r.field[kV4SrcPort], rule.src_ports);
    set_ports(r.field[kV4DstPort], rule.dst_ports);
    return r;
}

AclRule6 make_rule_v6(const FirewallRule& rule, std::optional<uint8_t> proto, int32_t priority, uint32_t userdata) {
    AclRule6 r{};
    r.data.category_mask = 1;
    r.data.priority = priority;
    r.data.userdata = userdata;
    set_proto(r.field[kV6Proto], proto);
    for (unsigned w = 0; w < 4; ++w) {
        set_address_word(r.field[kV6Src0 + w], rule.src ? rule.src->v6.bytes.data() : nullptr,
                         rule.src ? rule.src->length : 0, w);
        set_address_word(r.field[kV6Dst0 + w], rule.dst ? rule.dst->v6.bytes.data() : nullptr,
                         rule.dst ? rule.dst->length : 0, w);
    }
    set_ports(r.field[kV6SrcPort], rule.src_ports);
    set_ports(r.field[kV6DstPort], rule.dst_ports);
    return r;
}

std::string rte_error_text(int error) { return rte_strerror(error < 0 ? -error : error); }

// Creates, fills and builds one context. On failure nothing is left allocated.
template <class AclRule>
Result<rte_acl_ctx*> build_context(const std::string& name, int socket_id, const std::vector<AclRule>& rules,
                                   const rte_acl_config& cfg) {
    rte_acl_param param{};
    param.name = name.c_str();
    param.socket_id = socket_id;
    param.rule_size = sizeof(AclRule);
    param.max_rule_num = static_cast<uint32_t>(rules.size());
    rte_acl_ctx* ctx = rte_acl_create(&param);
    if (ctx == nullptr) {
        return Result<rte_acl_ctx*>::fail("firewall: cannot create ACL context \"" + name +
                                          "\": " + rte_error_text(rte_errno));
    }
    int rc = rte_acl_add_rules(ctx, reinterpret_cast<const rte_acl_rule*>(rules.data()),
                               static_cast<uint32_t>(rules.size()));
    if (rc != 0) {
        rte_acl_free(ctx);
        return Result<rte_acl_ctx*>::fail("firewall: cannot add " + std::to_string(rules.size()) +
                                          " rules to \"" + name + "\": " + rte_error_text(rc));
    }
    rc = rte_acl_build(ctx, &cfg);
    if (rc != 0) {
        rte_acl_free(ctx);
        return Result<rte_acl_ctx*>::fail("firewall: cannot build \"" + name + "\" (" +
                                          std::to_string(rules.size()) + " rules): " + rte_error_text(rc));
    }
    return Result<rte_acl_ctx*>::ok(ctx);
}

// The common classify loop: `data` points at FlowKey4s or FlowKey6s, laid out as the context expects.
void classify_keys(const rte_acl_ctx* ctx, const uint8_t* const* data, bool* drop, uint32_t count,
                   const bool* verdict_by_userdata, bool default_drop) {
    if (ctx == nullptr) {
        for (uint32_t i = 0; i < count; ++i) drop[i] = default_drop;
        return;
    }
    uint32_t results[kMaxBurst];
    // The interface promises at most kMaxBurst keys; a longer call is served in chunks rather than overrun.
    for (uint32_t done = 0; done < count;) {
        uint32_t n = count - done < kMaxBurst ? count - done : kMaxBurst;
        int rc = rte_acl_classify(ctx, const_cast<const uint8_t**>(data + done), results, n, 1);
        if (unlikely(rc != 0)) {
            for (uint32_t i = 0; i < n; ++i) drop[done + i] = default_drop;
        } else {
            // userdata 0 (no rule matched) maps to the default action through verdict_by_userdata[0].
            for (uint32_t i = 0; i < n; ++i) drop[done + i] = verdict_by_userdata[results[i]];
        }
        done += n;
    }
}

}  // namespace

Result<std::shared_ptr<const Firewall>> Firewall::build(const FirewallConfig& config, const std::string& name,
                                                        int socket_id) {
    using R = Result<std::shared_ptr<const Firewall>>;
    const std::string name4 = name + ".v4";
    const std::string name6 = name + ".v6";
    // rte_acl keeps RTE_ACL_NAMESIZE - 1 characters: longer names would be cut and could collide silently.
    if (name.empty() || name6.size() >= RTE_ACL_NAMESIZE) {
        return R::fail("firewall: name \"" + name + "\" must have 1 to " +
                       std::to_string(RTE_ACL_NAMESIZE - 1 - 3) + " characters");
    }
    // rte_acl_create hands back an existing context of the same name; building into it would rewrite a
    // table that workers may be reading.
    for (const std::string* n : {&name4, &name6}) {
        if (rte_acl_find_existing(n->c_str()) != nullptr) {
            return R::fail("firewall: ACL context \"" + *n + "\" already exists (firewall name \"" + name +
                           "\" is in use)");
        }
    }
    const size_t n = config.rules.size();
    if (n >= static_cast<size_t>(RTE_ACL_MAX_PRIORITY)) {
        return R::fail("firewall: too many rules (" + std::to_string(n) + ")");
    }

    std::vector<AclRule4> rules4;
    std::vector<AclRule6> rules6;
    for (size_t i = 0; i < n; ++i) {
        const FirewallRule& rule = config.rules[i];
        const std::string where = "firewall: rules[" + std::to_string(i) + "]: ";
        for (const std::optional<IpPrefix>* p : {&rule.src, &rule.dst}) {
            if (*p && (*p)->length > ((*p)->is_v6 ? 128 : 32)) {
                return R::fail(where + "prefix length " + std::to_string((*p)->length) + " is out of range");
            }
        }
        if (rule.src_ports && rule.src_ports->first > rule.src_ports->last) return R::fail(where + "src_ports FROM is above TO");
        if (rule.dst_ports && rule.dst_ports->first > rule.dst_ports->last) return R::fail(where + "dst_ports FROM is above TO");

        // A rule naming an IPv4 and an IPv6 prefix matches no packet and goes into neither context.
        bool any_v6 = (rule.src && rule.src->is_v6) || (rule.dst && rule.dst->is_v6);
        bool any_v4 = (rule.src && !rule.src->is_v6) || (rule.dst && !rule.dst->is_v6);
        // First match wins: earlier rules get higher priorities (rte_acl returns the highest).
        const auto priority = static_cast<int32_t>(n - i);
        const auto userdata = static_cast<uint32_t>(i + 1);
        for (std::optional<uint8_t> proto : expand_protocols(rule)) {
            if (!any_v6) rules4.push_back(make_rule_v4(rule, proto, priority, userdata));
            if (!any_v4) rules6.push_back(make_rule_v6(rule, proto, priority, userdata));
        }
    }

    std::shared_ptr<Firewall> fw(new Firewall());
    fw->default_drop_ = config.default_action == FirewallAction::kDrop;
    fw->rule_count_ = n;
    fw->verdict_by_userdata_.reset(new bool[n + 1]);
    fw->verdict_by_userdata_[0] = fw->default_drop_;
    for (size_t i = 0; i < n; ++i) {
        fw->verdict_by_userdata_[i + 1] = config.rules[i].action == FirewallAction::kDrop;
    }
    // A context with no rules is not created (rte_acl_build refuses an empty context); classify then
    // applies the default. On failure `fw` frees whatever was built.
    if (!rules4.empty()) {
        auto ctx = build_context(name4, socket_id, rules4, acl_config_v4());
        if (!ctx) return R::fail(ctx.error());
        fw->ctx4_ = *ctx;
    }
    if (!rules6.empty()) {
        auto ctx = build_context(name6, socket_id, rules6, acl_config_v6());
        if (!ctx) return R::fail(ctx.error());
        fw->ctx6_ = *ctx;
    }
    return R::ok(std::move(fw));
}

Firewall::~Firewall() {
    rte_acl_free(ctx4_);
    rte_acl_free(ctx6_);
}

void Firewall::classify_v4(const FlowKey4* const* keys, bool* drop, uint32_t count) const {
    classify_keys(ctx4_, reinterpret_cast<const uint8_t* const*>(keys), drop, count, verdict_by_userdata_.get(),
                  default_drop_);
}

void Firewall::classify_v6(const FlowKey6* const* keys, bool* drop, uint32_t count) const {
    classify_keys(ctx6_, reinterpret_cast<const uint8_t* const*>(keys), drop, count, verdict_by_userdata_.get(),
                  default_drop_);
}

}  // namespace portmux
