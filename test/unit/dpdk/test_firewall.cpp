// Firewall on rte_acl: named semantic cases, and random rules and packets checked against a slow reference.
#include <catch2/catch.hpp>

#include <arpa/inet.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <rte_acl.h>

#include "acl_rules_by_hand.hpp"
#include <rte_memory.h>

#include "firewall_reference.hpp"
#include "tables/firewall.hpp"

using namespace portmux;
using namespace portmux::test;

namespace {

// rte_acl context names are global to the process: every firewall built here gets its own.
std::string next_name() {
    static unsigned counter = 0;
    return "fwt" + std::to_string(counter++);
}

std::shared_ptr<const Firewall> must_build(const FirewallConfig& config) {
    auto fw = Firewall::build(config, next_name(), SOCKET_ID_ANY);
    INFO(fw.error());
    REQUIRE(fw);
    return *fw;
}

IpPrefix prefix(const char* text) {
    auto p = IpPrefix::parse(text);
    INFO(text);
    REQUIRE(p);
    return *p;
}

FirewallRule rule(FirewallAction action) {
    FirewallRule r;
    r.action = action;
    return r;
}

FlowKey4 key4(uint8_t proto, const char* src, const char* dst, uint16_t sport, uint16_t dport) {
    FlowKey4 k{};
    k.proto = proto;
    REQUIRE(inet_pton(AF_INET, src, &k.src) == 1);
    REQUIRE(inet_pton(AF_INET, dst, &k.dst) == 1);
    k.src_port = htons(sport);
    k.dst_port = htons(dport);
    return k;
}

FlowKey6 key6(uint8_t proto, const char* src, const char* dst, uint16_t sport, uint16_t dport) {
    FlowKey6 k{};
    k.proto = proto;
    REQUIRE(inet_pton(AF_INET6, src, k.src) == 1);
    REQUIRE(inet_pton(AF_INET6, dst, k.dst) == 1);
    k.src_port = htons(sport);
    k.dst_port = htons(dport);
    return k;
}

bool drops(const Firewall& fw, const FlowKey4& k) {
    const FlowKey4* keys[] = {&k};
    bool drop = false;
    fw.classify_v4(keys, &drop, 1);
    return drop;
}

bool drops(const Firewall& fw, const FlowKey6& k) {
    const FlowKey6* keys[] = {&k};
    bool drop = false;
    fw.classify_v6(keys, &drop, 1);
    return drop;
}

constexpr auto kAccept = FirewallAction::kAccept;
constexpr auto kDrop = FirewallAction::kDrop;

}  // namespace

TEST_CASE("firewall: with no rules the default action applies to every packet") {
    for (FirewallAction def : {kAccept, kDrop}) {
        FirewallConfig config;
        config.default_action = def;
        auto fw = must_build(config);
        CHECK(fw->rule_count() == 0);
        const bool want = def == kDrop;
        CHECK(drops(*fw, key4(kIpProtoTcp, "10.0.0.1", "192.0.2.1", 1234, 80)) == want);
        CHECK(drops(*fw, key4(kIpProtoIcmp, "0.0.0.0", "255.255.255.255", 0, 0)) == want);
        CHECK(drops(*fw, key6(kIpProtoUdp, "2001:db8::1", "2001:db8::2", 53, 53)) == want);
    }
}

TEST_CASE("firewall: a packet no rule matches gets the default action") {
    FirewallConfig config;
    FirewallRule r = rule(kAccept);
    r.src = prefix("203.0.113.0/24");
    config.rules.push_back(r);
    config.default_action = kDrop;
    auto fw = must_build(config);
    CHECK_FALSE(drops(*fw, key4(kIpProtoTcp, "203.0.113.9", "192.0.2.1", 1, 2)));
    CHECK(drops(*fw, key4(kIpProtoTcp, "203.0.114.9", "192.0.2.1", 1, 2)));
    config.default_action = kAccept;
    config.rules[0].action = kDrop;
    auto fw2 = must_build(config);
    CHECK(drops(*fw2, key4(kIpProtoTcp, "203.0.113.9", "192.0.2.1", 1, 2)));
    CHECK_FALSE(drops(*fw2, key4(kIpProtoTcp, "203.0.114.9", "192.0.2.1", 1, 2)));
}

TEST_CASE("firewall: the first matching rule wins over a later broader rule") {
    FirewallConfig config;
    FirewallRule narrow = rule(kAccept);
    narrow.proto = kIpProtoTcp;
    narrow.src = prefix("198.51.100.7");
    narrow.dst_ports = PortSpan{22, 22};
    FirewallRule broad = rule(kDrop);
    broad.dst_ports = PortSpan{0, 1023};
    config.rules = {narrow, broad};
    auto fw = must_build(config);
    CHECK(fw->rule_count() == 2);
    CHECK_FALSE(drops(*fw, key4(kIpProtoTcp, "198.51.100.7", "192.0.2.1", 40000, 22)));
    CHECK(drops(*fw, key4(kIpProtoTcp, "198.51.100.8", "192.0.2.1", 40000, 22)));
    CHECK(drops(*fw, key4(kIpProtoUdp, "198.51.100.7", "192.0.2.1", 40000, 22)));

    // The same rules in the other order: the broad drop now shadows the accept.
    config.rules = {broad, narrow};
    auto fw2 = must_build(config);
    CHECK(drops(*fw2, key4(kIpProtoTcp, "198.51.100.7", "192.0.2.1", 40000, 22)));
}

TEST_CASE("firewall: a rule with ports and no protocol never matches ICMP") {
    FirewallConfig config;
    FirewallRule r = rule(kDrop);
    r.dst_ports = PortSpan{0, 65535};  // covers the zero ports of a packet without ports
    config.rules.push_back(r);
    auto fw = must_build(config);
    CHECK_FALSE(drops(*fw, key4(kIpProtoIcmp, "10.0.0.1", "10.0.0.2", 0, 0)));
    CHECK_FALSE(drops(*fw, key6(kIpProtoIcmpv6, "2001:db8::1", "2001:db8::2", 0, 0)));
    CHECK_FALSE(drops(*fw, key4(47, "10.0.0.1", "10.0.0.2", 0, 0)));
    CHECK(drops(*fw, key4(kIpProtoTcp, "10.0.0.1", "10.0.0.2", 0, 0)));
    CHECK(drops(*fw, key4(kIpProtoUdp, "10.0.0.1", "10.0.0.2", 5, 65535)));
    CHECK(drops(*fw, key6(kIpProtoTcp, "2001:db8::1", "2001:db8::2", 0, 0)));
    CHECK(drops(*fw, key6(kIpProtoUdp, "2001:db8::1", "2001:db8::2", 9, 9)));
}

TEST_CASE("firewall: a rule naming a protocol matches only that protocol") {
    FirewallConfig config;
    FirewallRule r = rule(kDrop);
    r.proto = kIpProtoIcmp;
    config.rules.push_back(r);
    auto fw = must_build(config);
    CHECK(drops(*fw, key4(kIpProtoIcmp, "10.0.0.1", "10.0.0.2", 0, 0)));
    CHECK(drops(*fw, key6(kIpProtoIcmp, "::1", "::2", 0, 0)));
    CHECK_FALSE(drops(*fw, key4(kIpProtoTcp, "10.0.0.1", "10.0.0.2", 0, 0)));
    CHECK_FALSE(drops(*fw, key6(kIpProtoIcmpv6, "::1", "::2", 0, 0)));
}

TEST_CASE("firewall: IPv4 rules never match IPv6 packets and IPv6 rules never match IPv4 packets") {
    FirewallConfig v4_only;
    FirewallRule r4 = rule(kDrop);
    r4.src = prefix("0.0.0.0/0");
    v4_only.rules.push_back(r4);
    auto fw4 = must_build(v4_only);
    CHECK(drops(*fw4, key4(kIpProtoTcp, "1.2.3.4", "5.6.7.8", 1, 2)));
    CHECK_FALSE(drops(*fw4, key6(kIpProtoTcp, "::", "::", 1, 2)));
    CHECK_FALSE(drops(*fw4, key6(kIpProtoTcp, "::ffff:1.2.3.4", "::ffff:5.6.7.8", 1, 2)));

    FirewallConfig v6_only;
    FirewallRule r6 = rule(kDrop);
    r6.dst = prefix("::/0");
    v6_only.rules.push_back(r6);
    auto fw6 = must_build(v6_only);
    CHECK(drops(*fw6, key6(kIpProtoUdp, "2001:db8::1", "2001:db8::2", 1, 2)));
    CHECK_FALSE(drops(*fw6, key4(kIpProtoUdp, "0.0.0.0", "0.0.0.0", 1, 2)));

    // Without addresses a rule applies to both families.
    FirewallConfig both;
    FirewallRule any = rule(kDrop);
    any.proto = kIpProtoUdp;
    both.rules.push_back(any);
    auto fw = must_build(both);
    CHECK(drops(*fw, key4(kIpProtoUdp, "1.2.3.4", "5.6.7.8", 1, 2)));
    CHECK(drops(*fw, key6(kIpProtoUdp, "2001:db8::1", "2001:db8::2", 1, 2)));
}

TEST_CASE("firewall: port range bounds are inclusive") {
    FirewallConfig config;
    FirewallRule r = rule(kDrop);
    r.proto = kIpProtoTcp;
    r.src_ports = PortSpan{1000, 2000};
    r.dst_ports = PortSpan{6050, 6059};
    config.rules.push_back(r);
    auto fw = must_build(config);
    const char* a = "192.0.2.10";
    CHECK(drops(*fw, key4(kIpProtoTcp, a, a, 1000, 6050)));
    CHECK(drops(*fw, key4(kIpProtoTcp, a, a, 2000, 6059)));
    CHECK_FALSE(drops(*fw, key4(kIpProtoTcp, a, a, 999, 6050)));
    CHECK_FALSE(drops(*fw, key4(kIpProtoTcp, a, a, 2001, 6050)));
    CHECK_FALSE(drops(*fw, key4(kIpProtoTcp, a, a, 1000, 6049)));
    CHECK_FALSE(drops(*fw, key4(kIpProtoTcp, a, a, 1000, 6060)));
    CHECK(drops(*fw, key6(kIpProtoTcp, "::1", "::1", 2000, 6050)));
    CHECK_FALSE(drops(*fw, key6(kIpProtoTcp, "::1", "::1", 2000, 6060)));

    FirewallConfig edges;
    FirewallRule e = rule(kDrop);
    e.dst_ports = PortSpan{65535, 65535};
    FirewallRule z = rule(kDrop);
    z.src_ports = PortSpan{0, 0};
    edges.rules = {e, z};
    auto fwe = must_build(edges);
    CHECK(drops(*fwe, key4(kIpProtoUdp, a, a, 7, 65535)));
    CHECK_FALSE(drops(*fwe, key4(kIpProtoUdp, a, a, 7, 65534)));
    CHECK(drops(*fwe, key4(kIpProtoUdp, a, a, 0, 1)));
}

TEST_CASE("firewall: prefix bounds: the first and last address are inside, their neighbours outside") {
    FirewallConfig config;
    FirewallRule r4 = rule(kDrop);
    r4.dst = prefix("192.0.2.64/26");
    FirewallRule r6 = rule(kDrop);
    r6.src = prefix("2001:db8:0:2::/63");  // the boundary falls inside the second 32-bit word
    config.rules = {r4, r6};
    auto fw = must_build(config);
    CHECK(drops(*fw, key4(kIpProtoTcp, "1.1.1.1", "192.0.2.64", 1, 1)));
    CHECK(drops(*fw, key4(kIpProtoTcp, "1.1.1.1", "192.0.2.127", 1, 1)));
    CHECK_FALSE(drops(*fw, key4(kIpProtoTcp, "1.1.1.1", "192.0.2.63", 1, 1)));
    CHECK_FALSE(drops(*fw, key4(kIpProtoTcp, "1.1.1.1", "192.0.2.128", 1, 1)));
    CHECK(drops(*fw, key6(kIpProtoTcp, "2001:db8:0:2::", "::", 1, 1)));
    CHECK(drops(*fw, key6(kIpProtoTcp, "2001:db8:0:3:ffff:ffff:ffff:ffff", "::", 1, 1)));
    CHECK_FALSE(drops(*fw, key6(kIpProtoTcp, "2001:db8:0:1:ffff:ffff:ffff:ffff", "::", 1, 1)));
    CHECK_FALSE(drops(*fw, key6(kIpProtoTcp, "2001:db8:0:4::", "::", 1, 1)));
}

TEST_CASE("firewall: a name in use is refused, and free again once that firewall is gone") {
    FirewallConfig config;
    FirewallRule r = rule(kDrop);
    r.proto = kIpProtoTcp;
    config.rules.push_back(r);
    const std::string name = next_name();
    auto first = Firewall::build(config, name, SOCKET_ID_ANY);
    REQUIRE(first);
    auto second = Firewall::build(config, name, SOCKET_ID_ANY);
    REQUIRE_FALSE(second);
    CHECK_THAT(second.error(), Catch::Contains("in use"));
    // The refused build left the live firewall untouched.
    CHECK(drops(**first, key4(kIpProtoTcp, "10.0.0.1", "10.0.0.2", 1, 2)));
    CHECK_FALSE(drops(**first, key4(kIpProtoUdp, "10.0.0.1", "10.0.0.2", 1, 2)));

    first = Result<std::shared_ptr<const Firewall>>::fail("released");
    CHECK(rte_acl_find_existing((name + ".v4").c_str()) == nullptr);
    CHECK(Firewall::build(config, name, SOCKET_ID_ANY));
}

TEST_CASE("firewall: a name rte_acl would truncate is refused") {
    FirewallConfig config;
    auto fw = Firewall::build(config, std::string(29, 'x'), SOCKET_ID_ANY);
    CHECK_FALSE(fw);
    CHECK(Firewall::build(config, std::string(28, 'y'), SOCKET_ID_ANY));
    CHECK_FALSE(Firewall::build(config, "", SOCKET_ID_ANY));
}

TEST_CASE("firewall: 10,000 rules build and the last one still matches") {
    constexpr unsigned kRules = 10000;
    FirewallConfig config;
    config.default_action = kAccept;
    for (unsigned i = 0; i < kRules; ++i) {
        FirewallRule r = rule(i % 2 ? kAccept : kDrop);
        r.proto = i % 3 ? kIpProtoTcp : kIpProtoUdp;
        r.src = IpPrefix{};
        r.src->v4.bytes = {10, uint8_t(i >> 16), uint8_t(i >> 8), uint8_t(i)};
        r.src->length = 32;
        r.dst_ports = PortSpan{uint16_t(1000 + i % 500), uint16_t(1000 + i % 500 + 10)};
        config.rules.push_back(r);
    }
    auto start = std::chrono::steady_clock::now();
    auto fw = must_build(config);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
    std::printf("firewall: built %u rules in %lld ms\n", kRules, static_cast<long long>(ms.count()));
    CHECK(fw->rule_count() == kRules);
    for (unsigned i : {0u, 1u, 4999u, kRules - 2, kRules - 1}) {
        char src[32];
        std::snprintf(src, sizeof src, "10.%u.%u.%u", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        const uint8_t proto = i % 3 ? kIpProtoTcp : kIpProtoUdp;
        INFO("rule " << i);
        CHECK(drops(*fw, key4(proto, src, "192.0.2.1", 5, uint16_t(1000 + i % 500 + 10))) == (i % 2 == 0));
        CHECK_FALSE(drops(*fw, key4(proto, src, "192.0.2.1", 5, uint16_t(1000 + i % 500 + 11))));
    }
}

// ---- Random rules and packets -------------------------------------------------------------------------------

namespace {

// Random rule sets drawn from small pools of addresses and ports, so rules overlap and shadow one another,
// and keys placed on and just beside rule edges (prefix boundaries, range bounds).
class RandomRules {
public:
    // `specific`: most rules name a protocol, both addresses with long prefixes and a few ports, so that
    // in a large set the keys reach rules deep in the list instead of an early catch-all.
    RandomRules(uint32_t seed, bool specific) : rng_(seed), specific_(specific) {
        for (const char* a : {"10.0.0.0", "192.0.2.0", "0.0.0.0", "255.255.255.255", "203.0.113.128"}) {
            IpPrefix p = prefix(a);
            bases4_.push_back(p.v4.bytes);
        }
        for (int i = 0; i < 3; ++i) bases4_.push_back({byte(), byte(), byte(), byte()});
        for (const char* a : {"2001:db8::", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::ffff:10.0.0.0",
                              "fe80::1:0:0:0"}) {
            IpPrefix p = prefix(a);
            bases6_.push_back(p.v6.bytes);
        }
        for (int i = 0; i < 3; ++i) {
            std::array<uint8_t, 16> b;
            for (auto& x : b) x = byte();
            bases6_.push_back(b);
        }
    }

    FirewallConfig config(size_t rule_count) {
        FirewallConfig c;
        c.default_action = chance(50) ? kDrop : kAccept;
        for (size_t i = 0; i < rule_count; ++i) c.rules.push_back(random_rule());
        return c;
    }

    // A key near a random rule (mostly) or anywhere in the pools. Its family is the rule's when the rule names
    // an address (now and then the other one), else IPv6 when `v6`.
    ReferenceKey random_key(const FirewallConfig& c, bool v6) {
        const FirewallRule* r = (!c.rules.empty() && chance(85)) ? &c.rules[below(c.rules.size())] : nullptr;
        if (r && (r->src || r->dst)) v6 = (r->src ? r->src->is_v6 : r->dst->is_v6) != chance(10);
        // Aimed keys sit inside every field of the rule (on its edges, often); the others stray from it in
        // any field, mostly just beside an edge.
        const bool aim = r != nullptr && chance(50);
        ReferenceKey k;
        k.is_v6 = v6;
        k.proto = (r && r->proto && (aim || chance(60))) ? *r->proto : random_proto_value();
        if (r && !r->proto && (r->src_ports || r->dst_ports) && (aim || chance(30))) {
            k.proto = chance(50) ? kIpProtoTcp : kIpProtoUdp;
        }
        address_near(r ? r->src : std::nullopt, v6, aim, k.src);
        address_near(r ? r->dst : std::nullopt, v6, aim, k.dst);
        k.src_port = port_near(r ? r->src_ports : std::nullopt, aim);
        k.dst_port = port_near(r ? r->dst_ports : std::nullopt, aim);
        return k;
    }

    unsigned below(size_t n) { return std::uniform_int_distribution<unsigned>(0, unsigned(n - 1))(rng_); }
    bool chance(unsigned percent) { return below(100) < percent; }

private:
    uint8_t byte() { return uint8_t(below(256)); }

    uint8_t random_proto_value() {
        static const uint8_t kProtos[] = {kIpProtoTcp, kIpProtoUdp, kIpProtoIcmp, kIpProtoIcmpv6, 47, 0, 255};
        return kProtos[below(sizeof kProtos)];
    }

    uint8_t prefix_length(unsigned max, bool specific) {
        if (specific) return uint8_t(max / 2 + below(max / 2 + 1));
        if (chance(35)) return uint8_t(8 * below(max / 8 + 1));  // byte and word boundaries, 0 and max
        if (chance(10)) return uint8_t(chance(50) ? 0 : max);
        return uint8_t(below(max + 1));
    }

    IpPrefix random_prefix(bool v6, bool specific = false) {
        IpPrefix p;
        p.is_v6 = v6;
        uint8_t* bytes = v6 ? p.v6.bytes.data() : p.v4.bytes.data();
        const unsigned max = v6 ? 128 : 32;
        if (v6) p.v6.bytes = bases6_[below(bases6_.size())];
        else p.v4.bytes = bases4_[below(bases4_.size())];
        for (unsigned flips = (specific || chance(40)) ? below(3) + 1 : 0; flips > 0; --flips) {
            unsigned bit = below(max);
            bytes[bit / 8] ^= uint8_t(0x80 >> (bit % 8));
        }
        p.length = prefix_length(max, specific);
        for (unsigned bit = p.length; bit < max; ++bit) bytes[bit / 8] &= uint8_t(~(0x80 >> (bit % 8)));
        return p;
    }

    PortSpan random_span() {
        static const uint16_t kPorts[] = {0, 1, 22, 53, 79, 80, 81, 443, 1023, 1024, 6050, 6059, 8080, 65534, 65535};
        uint16_t first = chance(60) ? kPorts[below(sizeof kPorts / sizeof kPorts[0])] : uint16_t(below(65536));
        unsigned width = chance(25) ? 0 : (chance(60) ? below(21) : below(65536));
        return PortSpan{first, uint16_t(std::min<unsigned>(65535, first + width))};
    }

    FirewallRule random_rule() {
        FirewallRule r;
        r.action = chance(50) ? kDrop : kAccept;
        if (specific_ && !chance(3)) {
            r.proto = random_proto_value();
            const bool v6 = chance(50);
            r.src = random_prefix(v6, true);
            r.dst = random_prefix(v6, true);
            if (*r.proto == kIpProtoTcp || *r.proto == kIpProtoUdp) {
                if (chance(20)) r.src_ports = random_span();
                if (chance(80)) r.dst_ports = random_span();
            }
            return r;
        }
        if (chance(65)) r.proto = random_proto_value();
        unsigned family = below(10);  // 0-3 IPv4, 4-7 IPv6, 8-9 no address
        if (family < 8) {
            bool v6 = family >= 4;
            bool src = chance(60);
            bool dst = !src || chance(50);
            if (src) r.src = random_prefix(v6);
            if (dst) r.dst = random_prefix(chance(2) ? !v6 : v6);  // now and then a rule no packet can match
        }
        // Ports with a protocol other than TCP/UDP make a rule that matches nothing: keep a few of those.
        const bool ports_fit = !r.proto || *r.proto == kIpProtoTcp || *r.proto == kIpProtoUdp || chance(10);
        if (ports_fit && chance(30)) r.src_ports = random_span();
        if (ports_fit && chance(50)) r.dst_ports = random_span();
        return r;
    }

    // Inside the prefix (host bits random, all zero or all one) or just outside it (last prefix bit flipped).
    void address_near(const std::optional<IpPrefix>& p, bool v6, bool inside, uint8_t* out) {
        const unsigned max = v6 ? 128 : 32;
        IpPrefix base = (p && p->is_v6 == v6 && (inside || chance(90))) ? *p : random_prefix(v6);
        std::memcpy(out, v6 ? base.v6.bytes.data() : base.v4.bytes.data(), max / 8);
        unsigned host = below(3);
        for (unsigned bit = base.length; bit < max; ++bit) {
            bool one = host == 0 ? chance(50) : host == 1;
            if (one) out[bit / 8] |= uint8_t(0x80 >> (bit % 8));
        }
        if (!inside && base.length > 0 && chance(30)) {
            unsigned bit = base.length - 1;
            out[bit / 8] ^= uint8_t(0x80 >> (bit % 8));
        }
    }

    uint16_t port_near(const std::optional<PortSpan>& s, bool inside) {
        PortSpan span = (s && (inside || chance(90))) ? *s : random_span();
        if (inside) {
            unsigned pick = below(3);
            if (pick == 0) return span.first;
            if (pick == 1) return span.last;
            return uint16_t(span.first + below(unsigned(span.last - span.first) + 1));
        }
        switch (below(6)) {
        case 0: return span.first == 0 ? 0 : uint16_t(span.first - 1);
        case 1: return span.first;
        case 2: return span.last;
        case 3: return span.last == 65535 ? 65535 : uint16_t(span.last + 1);
        case 4: return uint16_t(span.first + below(unsigned(span.last - span.first) + 1));
        default: return uint16_t(below(65536));
        }
    }

    std::mt19937 rng_;
    bool specific_;
    std::vector<std::array<uint8_t, 4>> bases4_;
    std::vector<std::array<uint8_t, 16>> bases6_;
};

FlowKey4 to_flow_key4(const ReferenceKey& k) {
    FlowKey4 f{};
    f.proto = k.proto;
    std::memcpy(&f.src, k.src, 4);
    std::memcpy(&f.dst, k.dst, 4);
    f.src_port = htons(k.src_port);
    f.dst_port = htons(k.dst_port);
    return f;
}

FlowKey6 to_flow_key6(const ReferenceKey& k) {
    FlowKey6 f{};
    f.proto = k.proto;
    std::memcpy(f.src, k.src, 16);
    std::memcpy(f.dst, k.dst, 16);
    f.src_port = htons(k.src_port);
    f.dst_port = htons(k.dst_port);
    return f;
}

std::string describe(const ReferenceKey& k) {
    char src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN];
    int af = k.is_v6 ? AF_INET6 : AF_INET;
    inet_ntop(af, k.src, src, sizeof src);
    inet_ntop(af, k.dst, dst, sizeof dst);
    return "proto " + std::to_string(k.proto) + " " + src + ":" + std::to_string(k.src_port) + " -> " + dst + ":" +
           std::to_string(k.dst_port);
}

// Classifies `keys` through `fw` in bursts of random size (1..64) and returns the verdicts.
std::vector<bool> firewall_verdicts(const Firewall& fw, const std::vector<ReferenceKey>& keys, RandomRules& gen) {
    std::vector<bool> verdicts;
    for (size_t done = 0; done < keys.size();) {
        size_t n = std::min<size_t>(keys.size() - done, 1 + gen.below(64));
        FlowKey4 k4[64];
        FlowKey6 k6[64];
        const FlowKey4* p4[64];
        const FlowKey6* p6[64];
        bool drop[64];
        const bool v6 = keys[done].is_v6;
        size_t m = 0;
        for (; m < n && keys[done + m].is_v6 == v6; ++m) {
            k4[m] = to_flow_key4(keys[done + m]);
            k6[m] = to_flow_key6(keys[done + m]);
            p4[m] = &k4[m];
            p6[m] = &k6[m];
        }
        if (v6) fw.classify_v6(p6, drop, uint32_t(m));
        else fw.classify_v4(p4, drop, uint32_t(m));
        verdicts.insert(verdicts.end(), drop, drop + m);
        done += m;
    }
    return verdicts;
}

// How much of the rules the random keys reached.
struct Coverage {
    size_t total = 0;
    size_t matched = 0;  // some rule matched (not the default)
    size_t deep = 0;     // the first match lies past the first quarter of the rules
    size_t dropped = 0;
};

std::vector<ReferenceKey> random_keys(RandomRules& gen, const FirewallConfig& config, size_t count) {
    std::vector<ReferenceKey> keys;
    for (size_t i = 0; i < count; ++i) keys.push_back(gen.random_key(config, i >= count / 2));
    return keys;
}

// Random rule sets of `rules` rules with `keys` packets each, IPv4 and IPv6, compared with the reference.
Coverage compare_with_reference(uint32_t seed, unsigned sets, size_t rules, size_t keys, bool specific) {
    RandomRules gen(seed, specific);
    Coverage cov;
    for (unsigned s = 0; s < sets; ++s) {
        FirewallConfig config = gen.config(rules);
        auto fw = must_build(config);
        std::vector<ReferenceKey> packets = random_keys(gen, config, keys);
        std::vector<bool> got = firewall_verdicts(*fw, packets, gen);
        for (size_t i = 0; i < packets.size(); ++i) {
            std::optional<size_t> first = reference_first_match(config, packets[i]);
            const bool want = reference_drop(config, packets[i]);
            ++cov.total;
            cov.matched += first.has_value();
            cov.deep += first && *first > rules / 4;
            cov.dropped += want;
            if (got[i] != want) {
                FAIL("seed " << seed << " set " << s << ": " << describe(packets[i]) << ": firewall says "
                              << (got[i] ? "drop" : "accept") << ", reference " << (want ? "drop" : "accept")
                              << " (first match " << (first ? std::to_string(*first) : std::string("none"))
                              << ")");
            }
        }
    }
    // The keys must exercise the rules, not only the default, and see both verdicts.
    CHECK(cov.matched * 3 > cov.total);
    CHECK(cov.dropped * 5 > cov.total);
    CHECK((cov.total - cov.dropped) * 5 > cov.total);
    return cov;
}

// rte_acl driven by hand, written apart from Firewall: the same fields, priorities and expansion, so the
// raw userdata it returns can be set beside Firewall's verdicts.
RTE_ACL_RULE_DEF(DirectRule4, 5);
RTE_ACL_RULE_DEF(DirectRule6, 11);

struct DirectAcl {
    rte_acl_ctx* v4 = nullptr;
    rte_acl_ctx* v6 = nullptr;
    ~DirectAcl() {
        rte_acl_free(v4);
        rte_acl_free(v6);
    }
};

rte_acl_field_def def(uint8_t type, uint8_t size, uint8_t index, uint8_t input, size_t offset) {
    return rte_acl_field_def{type, size, index, input, uint32_t(offset)};
}



using acl_by_hand::put_prefix;
using acl_by_hand::put_rule;

template <class Rule>
rte_acl_ctx* direct_context(const std::string& name, const std::vector<Rule>& rules, const rte_acl_config& cfg) {
    if (rules.empty()) return nullptr;
    rte_acl_param param{name.c_str(), SOCKET_ID_ANY, uint32_t(sizeof(Rule)), uint32_t(rules.size())};
    rte_acl_ctx* ctx = rte_acl_create(&param);
    REQUIRE(ctx != nullptr);
    REQUIRE(rte_acl_add_rules(ctx, reinterpret_cast<const rte_acl_rule*>(rules.data()), uint32_t(rules.size())) == 0);
    REQUIRE(rte_acl_build(ctx, &cfg) == 0);
    return ctx;
}

void build_direct(DirectAcl& acl, const FirewallConfig& config) {
    std::vector<DirectRule4> r4;
    std::vector<DirectRule6> r6;
    for (size_t i = 0; i < config.rules.size(); ++i) {
        const FirewallRule& r = config.rules[i];
        const bool has_v4 = (r.src && !r.src->is_v6) || (r.dst && !r.dst->is_v6);
        const bool has_v6 = (r.src && r.src->is_v6) || (r.dst && r.dst->is_v6);
        if (!has_v6) put_rule<DirectRule4, 1>(r4, r, i, config.rules.size());
        if (!has_v4) put_rule<DirectRule6, 4>(r6, r, i, config.rules.size());
    }
    rte_acl_config c4{};
    c4.num_categories = 1;
    c4.num_fields = 5;
    c4.defs[0] = def(RTE_ACL_FIELD_TYPE_BITMASK, 1, 0, 0, offsetof(FlowKey4, proto));
    c4.defs[1] = def(RTE_ACL_FIELD_TYPE_MASK, 4, 1, 1, offsetof(FlowKey4, src));
    c4.defs[2] = def(RTE_ACL_FIELD_TYPE_MASK, 4, 2, 2, offsetof(FlowKey4, dst));
    c4.defs[3] = def(RTE_ACL_FIELD_TYPE_RANGE, 2, 3, 3, offsetof(FlowKey4, src_port));
    c4.defs[4] = def(RTE_ACL_FIELD_TYPE_RANGE, 2, 4, 3, offsetof(FlowKey4, dst_port));
    rte_acl_config c6{};
    c6.num_categories = 1;
    c6.num_fields = 11;
    c6.defs[0] = def(RTE_ACL_FIELD_TYPE_BITMASK, 1, 0, 0, offsetof(FlowKey6, proto));
    for (uint8_t w = 0; w < 4; ++w) {
        c6.defs[1 + w] = def(RTE_ACL_FIELD_TYPE_MASK, 4, 1 + w, 1 + w, offsetof(FlowKey6, src) + 4 * w);
        c6.defs[5 + w] = def(RTE_ACL_FIELD_TYPE_MASK, 4, 5 + w, 5 + w, offsetof(FlowKey6, dst) + 4 * w);
    }
    c6.defs[9] = def(RTE_ACL_FIELD_TYPE_RANGE, 2, 9, 9, offsetof(FlowKey6, src_port));
    c6.defs[10] = def(RTE_ACL_FIELD_TYPE_RANGE, 2, 10, 9, offsetof(FlowKey6, dst_port));
    acl.v4 = direct_context(next_name(), r4, c4);
    acl.v6 = direct_context(next_name(), r6, c6);
}

// The raw rte_acl userdata for one key (0: no rule), one rte_acl_classify call per key.
uint32_t direct_userdata(const DirectAcl& acl, const ReferenceKey& k) {
    uint32_t result = 0;
    FlowKey4 f4 = to_flow_key4(k);
    FlowKey6 f6 = to_flow_key6(k);
    const uint8_t* data = k.is_v6 ? reinterpret_cast<const uint8_t*>(&f6) : reinterpret_cast<const uint8_t*>(&f4);
    const rte_acl_ctx* ctx = k.is_v6 ? acl.v6 : acl.v4;
    if (ctx != nullptr) REQUIRE(rte_acl_classify(ctx, &data, &result, 1, 1) == 0);
    return result;
}

}  // namespace

TEST_CASE("firewall: agrees with the reference on many small random rule sets") {
    compare_with_reference(1, 300, 12, 400, false);
}

TEST_CASE("firewall: agrees with the reference on large random rule sets") {
    compare_with_reference(2, 3, 1500, 20000, false);
}

TEST_CASE("firewall: agrees with the reference on large random sets of specific rules") {
    Coverage cov = compare_with_reference(3, 2, 4000, 30000, true);
    CHECK(cov.deep * 4 > cov.matched);  // the keys reach rules far down the list
}

TEST_CASE("firewall: gives the verdicts of rte_acl_classify called directly on the same rules") {
    for (uint32_t seed : {11u, 12u, 13u}) {
        RandomRules gen(seed, seed == 13);
        const size_t rule_count = seed == 11 ? 20 : 1000;
        FirewallConfig config = gen.config(rule_count);
        auto fw = must_build(config);
        DirectAcl direct;
        build_direct(direct, config);
        std::vector<ReferenceKey> keys = random_keys(gen, config, 10000);
        std::vector<bool> got = firewall_verdicts(*fw, keys, gen);
        for (size_t i = 0; i < keys.size(); ++i) {
            const uint32_t userdata = direct_userdata(direct, keys[i]);
            REQUIRE(userdata <= config.rules.size());
            const FirewallAction action = userdata == 0 ? config.default_action : config.rules[userdata - 1].action;
            const bool direct_drop = action == kDrop;
            if (got[i] != direct_drop) {
                FAIL("seed " << seed << ": " << describe(keys[i]) << ": Firewall says " << (got[i] ? "drop" : "accept")
                              << ", rte_acl_classify gives userdata " << userdata);
            }
            // And rte_acl's own answer is the first matching rule.
            std::optional<size_t> first = reference_first_match(config, keys[i]);
            if (userdata != (first ? *first + 1 : 0)) {
                FAIL("seed " << seed << ": " << describe(keys[i]) << ": rte_acl_classify gives userdata " << userdata
                              << ", the first matching rule is " << (first ? std::to_string(*first) : "none"));
            }
        }
    }
}
