// Stage micro-benchmark: TSC cycles per packet of each data-path stage, beside the DPDK library that is its
// reference (rte_acl for the firewall, rte_lpm and rte_fib for the port lookup), measured in one process.
//
// Usage: bench_stages [--quick] [--runs N] [--json FILE] [-- EAL-ARGS...]
// Default EAL arguments: --no-huge --no-pci --lcores 0@0 -m 1024 (a private --file-prefix, no shared files).
#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <rte_acl.h>

#include "dpdk/acl_rules_by_hand.hpp"
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_fib.h>
#include <rte_lpm.h>
#include <rte_memory.h>
#include <rte_vect.h>

#include "frame_builder.hpp"
#include "core/port_owners.hpp"
#include "pipeline/connection_table.hpp"
#include "pipeline/ingress_decision.hpp"
#include "pipeline/parse.hpp"
#include "pipeline/vm_egress.hpp"
#include "pipeline/vxlan.hpp"
#include "tables/firewall.hpp"
#include "tables/lb_group.hpp"
#include "tables/owner_target.hpp"

using namespace portmux;
using namespace portmux::test;
using nlohmann::json;

namespace {

constexpr uint32_t kBurst = 32;
constexpr size_t kFrameCount = 1024;  // frames in the mix, each in its own 2 KiB slot like an mbuf
constexpr size_t kSlot = 2048;
constexpr size_t kLookupKeys = 4096;
constexpr double kSpreadWarning = 1.5;

struct Options {
    bool quick = false;
    int runs = 21;
    std::string json_file;
    std::vector<std::string> eal;
};

// min / median / max of the cycles-per-packet figures of the runs.
struct Stat {
    double min = 0, median = 0, max = 0;
    json to_json() const { return json{{"min", min}, {"median", median}, {"max", max}}; }
};

std::vector<std::string> g_warnings;
volatile uint64_t g_sink;  // keeps results alive so the compiler cannot drop the measured work

// Runs `body` (which handles `packets` packets) `reps` times per run, `runs` times; cycles per packet.
Stat measure(const std::string& name, const Options& opt, uint64_t packets, const std::function<void()>& body) {
    const uint64_t target = opt.quick ? 20000 : 400000;  // packets per run
    const uint64_t reps = std::max<uint64_t>(1, target / std::max<uint64_t>(packets, 1));
    body();  // warm the caches and the branch predictors
    std::vector<double> per_run;
    for (int r = 0; r < opt.runs; ++r) {
        const uint64_t t0 = rte_rdtsc_precise();
        for (uint64_t i = 0; i < reps; ++i) body();
        const uint64_t t1 = rte_rdtsc_precise();
        per_run.push_back(static_cast<double>(t1 - t0) / static_cast<double>(reps * packets));
    }
    std::sort(per_run.begin(), per_run.end());
    Stat s{per_run.front(), per_run[per_run.size() / 2], per_run.back()};
    if (s.min > 0 && s.max / s.min > kSpreadWarning) {
        char text[200];
        std::snprintf(text, sizeof(text), "%s: runs disagree (min %.1f, max %.1f cycles/pkt): the core is shared",
                      name.c_str(), s.min, s.max);
        g_warnings.emplace_back(text);
    }
    return s;
}

// ---- the frame mix -----------------------------------------------------------------------------------------

struct FrameSet {
    std::unique_ptr<uint8_t[]> memory;
    std::vector<uint8_t*> data;
    std::vector<uint32_t> length;
    void add(const Bytes& frame) {
        uint8_t* slot = memory.get() + data.size() * kSlot + 128;  // 128: mbuf headroom
        std::memcpy(slot, frame.data(), std::min(frame.size(), kSlot - 128));
        data.push_back(slot);
        length.push_back(static_cast<uint32_t>(frame.size()));
    }
    uint32_t available(size_t i) const { return std::min<uint32_t>(length[i], kSlot - 128); }
};

V4 random_peer4(std::mt19937& rng) {
    uint32_t a = rng();
    return V4{static_cast<uint8_t>(rng() % 2 ? 10 : 198), static_cast<uint8_t>(a >> 8), static_cast<uint8_t>(a >> 16),
              static_cast<uint8_t>(a >> 24)};
}

V6 random_peer6(std::mt19937& rng) {
    V6 a = kPeerIp6;
    for (int i = 8; i < 16; ++i) a[i] = static_cast<uint8_t>(rng());
    return a;
}

// IMIX-like payload: mostly small frames, some full-size.
size_t payload_size(std::mt19937& rng) {
    unsigned r = rng() % 12;
    return r < 7 ? 6 : r < 11 ? 540 : 1400;
}

// Uplink traffic: 40% IPv4 TCP (a tenth with IP options), 30% IPv4 UDP, 12% IPv6 TCP/UDP, 6% ICMP,
// 4% ARP, 4% IPv4 not for the shared address, 4% other EtherTypes. Ports fall on owned and unowned ports.
FrameSet uplink_mix(std::mt19937& rng) {
    FrameSet set;
    set.memory.reset(new uint8_t[kFrameCount * kSlot]());
    for (size_t i = 0; i < kFrameCount; ++i) {
        const unsigned kind = rng() % 100;
        const uint16_t sport = static_cast<uint16_t>(1024 + rng() % 60000);
        const uint16_t dport = static_cast<uint16_t>(rng() % 65536);
        Ip4 ip4;
        ip4.src = random_peer4(rng);
        Ip6 ip6;
        ip6.src = random_peer6(rng);
        if (kind < 40) {
            ip4.proto = kIpProtoTcp;
            if (kind < 4) ip4.options = Bytes{1, 1, 1, 0};  // NOP NOP NOP EOL
            set.add(eth_ipv4(ip4, tcp(sport, dport, 0x10, 1, 1, payload_size(rng))));
        } else if (kind < 70) {
            ip4.proto = kIpProtoUdp;
            set.add(eth_ipv4(ip4, udp(sport, dport, payload_size(rng))));
        } else if (kind < 82) {
            ip6.proto = kind % 2 ? kIpProtoTcp : kIpProtoUdp;
            Bytes l4 = ip6.proto == kIpProtoTcp ? tcp(sport, dport, 0x10, 1, 1, payload_size(rng))
                                                : udp(sport, dport, payload_size(rng));
            set.add(eth_ipv6(ip6, l4));
        } else if (kind < 88) {
            ip4.proto = kIpProtoIcmp;
            set.add(eth_ipv4(ip4, Bytes{8, 0, 0, 0, 0, 1, 0, 1, 'p', 'i', 'n', 'g', 0, 0}));
        } else if (kind < 92) {
            set.add(ethernet(0x0806, arp(1, ip4.src, kSharedIp), kBroadcastMac));
        } else if (kind < 96) {
            ip4.proto = kIpProtoUdp;
            ip4.dst = V4{255, 255, 255, 255};
            set.add(eth_ipv4(ip4, udp(68, 67, 300)));
        } else {
            set.add(ethernet(0x88cc, Bytes(46, 0)));  // LLDP
        }
    }
    return set;
}

// VM egress traffic of VM 0: from the shared address and a source port of its own, plus some ARP.
FrameSet vm_mix(std::mt19937& rng, uint16_t port_first, uint16_t port_last) {
    FrameSet set;
    set.memory.reset(new uint8_t[kFrameCount * kSlot]());
    for (size_t i = 0; i < kFrameCount; ++i) {
        const unsigned kind = rng() % 100;
        const uint16_t sport = static_cast<uint16_t>(port_first + rng() % (port_last - port_first + 1u));
        Ip4 ip4;
        ip4.src = kSharedIp;
        ip4.dst = random_peer4(rng);
        if (kind < 50) {
            ip4.proto = kIpProtoTcp;
            set.add(ethernet(0x0800, ipv4(ip4, tcp(sport, 443, 0x10, 1, 1, payload_size(rng))), kPeerMac, kVmMac));
        } else if (kind < 85) {
            ip4.proto = kIpProtoUdp;
            set.add(ethernet(0x0800, ipv4(ip4, udp(sport, 53, payload_size(rng))), kPeerMac, kVmMac));
        } else if (kind < 95) {
            Ip6 ip6;
            ip6.src = kSharedIp6;
            ip6.dst = random_peer6(rng);
            set.add(ethernet(0x86dd, ipv6(ip6, tcp(sport, 443, 0x10, 1, 1, payload_size(rng))), kPeerMac, kVmMac));
        } else {
            set.add(ethernet(0x0806, arp(1, kSharedIp, kPeerIp, kVmMac), kBroadcastMac, kVmMac));
        }
    }
    return set;
}

std::vector<ParsedFrame> parse_all(const FrameSet& set) {
    std::vector<ParsedFrame> out;
    for (size_t i = 0; i < set.data.size(); ++i) out.push_back(parse_frame(set.data[i], set.available(i), set.length[i]));
    return out;
}

// ---- firewall rules and the same contexts built by hand ----------------------------------------------------

IpPrefix prefix4(uint32_t host_order, uint8_t length) {
    IpPrefix p;
    p.length = length;
    uint32_t masked = length == 0 ? 0 : host_order & (~uint32_t{0} << (32 - length));
    for (int b = 0; b < 4; ++b) p.v4.bytes[b] = static_cast<uint8_t>(masked >> (24 - 8 * b));
    return p;
}

IpPrefix prefix6(const V6& addr, uint8_t length) {
    IpPrefix p;
    p.is_v6 = true;
    p.length = length;
    for (unsigned bit = 0; bit < 128; ++bit) {
        if (bit < length && (addr[bit / 8] & (0x80 >> (bit % 8)))) p.v6.bytes[bit / 8] |= static_cast<uint8_t>(0x80 >> (bit % 8));
    }
    return p;
}

// Rules an operator might write: source blocks (IPv4 45%, IPv6 45%, none 10%), mostly with a protocol and
// destination ports; 1 in 4 accepts, the rest drop; default accept.
FirewallConfig random_rules(size_t count, std::mt19937& rng) {
    FirewallConfig config;
    for (size_t i = 0; i < count; ++i) {
        FirewallRule r;
        r.action = rng() % 4 == 0 ? FirewallAction::kAccept : FirewallAction::kDrop;
        const unsigned family = rng() % 20;
        if (family < 9) {
            uint32_t base = (rng() % 2 ? 10u << 24 : (198u << 24 | 51u << 16)) | (rng() & 0xffffu) << 0;
            r.src = prefix4(base ^ (rng() & 0x00ff0000u), static_cast<uint8_t>(16 + rng() % 17));
        } else if (family < 18) {
            r.src = prefix6(random_peer6(rng), static_cast<uint8_t>(64 + rng() % 65));
        }
        const unsigned proto = rng() % 10;
        if (proto < 5) r.proto = kIpProtoTcp;
        else if (proto < 8) r.proto = kIpProtoUdp;
        if (rng() % 4 != 0) {
            uint16_t first = static_cast<uint16_t>(rng() % 65536);
            uint16_t span = static_cast<uint16_t>(rng() % 3 == 0 ? 0 : rng() % 2048);
            r.dst_ports = PortSpan{first, static_cast<uint16_t>(std::min<uint32_t>(65535u, first + span))};
        }
        config.rules.push_back(r);
    }
    return config;
}

RTE_ACL_RULE_DEF(DirectRule4, 5);
RTE_ACL_RULE_DEF(DirectRule6, 11);

rte_acl_field_def def(uint8_t type, uint8_t size, uint8_t index, uint8_t input, size_t offset) {
    return rte_acl_field_def{type, size, index, input, static_cast<uint32_t>(offset)};
}



using acl_by_hand::put_prefix;
using acl_by_hand::put_rule;

template <class Rule>
rte_acl_ctx* direct_context(const std::string& name, const std::vector<Rule>& rules, const rte_acl_config& cfg) {
    if (rules.empty()) return nullptr;
    rte_acl_param param{name.c_str(), SOCKET_ID_ANY, uint32_t(sizeof(Rule)), uint32_t(rules.size())};
    rte_acl_ctx* ctx = rte_acl_create(&param);
    if (ctx == nullptr || rte_acl_add_rules(ctx, reinterpret_cast<const rte_acl_rule*>(rules.data()),
                                            uint32_t(rules.size())) != 0 ||
        rte_acl_build(ctx, &cfg) != 0) {
        std::fprintf(stderr, "bench_stages: cannot build the rte_acl context %s\n", name.c_str());
        std::exit(1);
    }
    return ctx;
}

struct DirectAcl {
    rte_acl_ctx* v4 = nullptr;
    rte_acl_ctx* v6 = nullptr;
    ~DirectAcl() {
        rte_acl_free(v4);
        rte_acl_free(v6);
    }
};

void build_direct(DirectAcl& acl, const FirewallConfig& config, const std::string& name) {
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
    acl.v4 = direct_context(name + "d4", r4, c4);
    acl.v6 = direct_context(name + "d6", r6, c6);
}

// ---- range tables --------------------------------------------------------------------------------------------

// `count` ranges for TCP and UDP: 1 range (1024-49151), or `count` equal blocks from port 1024 (1,000), or
// every port its own range (65,536). Owners cycle over 64 VMs (4,000 for the per-port case).
RangeRegistry make_ranges(size_t count) {
    RangeRegistry reg;
    if (count == 1) {
        reg.add(PortRange{true, true, PortSpan{1024, 49151}}, vm_owner_id(0));
    } else if (count >= 65536) {
        for (uint32_t p = 0; p < 65536; ++p)
            reg.add(PortRange{true, true, PortSpan{uint16_t(p), uint16_t(p)}}, vm_owner_id(p % 4000));
    } else {
        const uint32_t width = (65536 - 1024) / count;
        for (uint32_t i = 0; i < count; ++i) {
            const uint32_t first = 1024 + i * width;
            reg.add(PortRange{true, true, PortSpan{uint16_t(first), uint16_t(first + width - 1)}}, vm_owner_id(i % 64));
        }
    }
    return reg;
}

// Aligned power-of-two blocks covering [first, last]: the prefixes rte_lpm / rte_fib need for a range.
template <class F>
void for_each_prefix(uint32_t first, uint32_t last, F&& add) {
    while (first <= last) {
        uint32_t size = first == 0 ? 65536 : (first & (~first + 1));
        while (first + size - 1 > last) size >>= 1;
        uint8_t bits = 0;
        while ((1u << bits) < size) ++bits;
        add(first, static_cast<uint8_t>(32 - bits));
        first += size;
    }
}

struct LookupKeys {
    std::vector<uint8_t> proto;  // 0 TCP, 1 UDP
    std::vector<uint16_t> port;
    std::vector<uint32_t> ip;    // proto << 16 | port, the rte_lpm / rte_fib key
};

void print_row(const char* stage, const std::string& variant, const Stat& s, const std::string& note = "") {
    std::printf("%-22s %-28s %8.1f %8.1f %8.1f  %s\n", stage, variant.c_str(), s.min, s.median, s.max, note.c_str());
}

std::string ratio_text(double a, double b) {
    char t[64];
    std::snprintf(t, sizeof(t), "%.2fx", b > 0 ? a / b : 0.0);
    return t;
}

Options parse_options(int argc, char** argv) {
    Options opt;
    bool eal = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (eal) {
            opt.eal.push_back(a);
        } else if (a == "--") {
            eal = true;
        } else if (a == "--quick") {
            opt.quick = true;
        } else if (a == "--runs" && i + 1 < argc) {
            opt.runs = std::max(1, std::atoi(argv[++i]));
        } else if (a == "--json" && i + 1 < argc) {
            opt.json_file = argv[++i];
        } else {
            std::fprintf(stderr, "usage: bench_stages [--quick] [--runs N] [--json FILE] [-- EAL-ARGS...]\n");
            std::exit(a == "--help" || a == "-h" ? 0 : 2);
        }
    }
    if (opt.quick && opt.runs == 21) opt.runs = 3;
    if (opt.eal.empty()) opt.eal = {"--no-huge", "--no-pci", "--lcores", "0@0", "-m", "1024"};
    opt.eal.push_back("--no-shconf");
    opt.eal.push_back("--file-prefix=pmx-bench-stages-" + std::to_string(getpid()));
    opt.eal.push_back("--log-level=lib.eal:error");
    return opt;
}

}  // namespace

int main(int argc, char** argv) {
    Options opt = parse_options(argc, argv);
    std::vector<char*> eal_argv{argv[0]};
    for (std::string& a : opt.eal) eal_argv.push_back(a.data());
    if (rte_eal_init(static_cast<int>(eal_argv.size()), eal_argv.data()) < 0) {
        std::fprintf(stderr, "bench_stages: cannot initialise the EAL\n");
        return 1;
    }
    std::mt19937 rng(20240611);
    json out;
    std::string eal_text;
    for (const std::string& a : opt.eal) eal_text += (eal_text.empty() ? "" : " ") + a;
    out["tsc_hz"] = rte_get_tsc_hz();
    out["burst"] = kBurst;
    out["runs"] = opt.runs;
    out["quick"] = opt.quick;
    out["eal"] = eal_text;
    out["max_simd_bitwidth"] = rte_vect_get_max_simd_bitwidth();
    out["frames_in_mix"] = kFrameCount;
    json stages;

    std::printf("portmux stage costs: TSC cycles per packet (TSC %.3f GHz), bursts of %u, %d runs, max SIMD %u bits\n",
                rte_get_tsc_hz() / 1e9, kBurst, opt.runs, rte_vect_get_max_simd_bitwidth());
    std::printf("EAL: %s\n\n", eal_text.c_str());
    std::printf("%-22s %-28s %8s %8s %8s  %s\n", "stage", "variant", "min", "median", "max", "vs reference");

    // ---- parse ----
    const FrameSet uplink = uplink_mix(rng);
    {
        // parse_frame (the straight-line path for the common case, the full parser for the rest) beside the
        // full parser alone on every frame, which is what parse_frame cost before the straight-line path.
        using ParseFn = ParsedFrame (*)(const uint8_t*, uint32_t, uint32_t);
        const auto parse_cost = [&](const char* name, ParseFn fn) {
            ParsedFrame parsed[kBurst];
            return measure(name, opt, kFrameCount, [&] {
                uint64_t sum = 0;
                for (size_t b = 0; b < kFrameCount; b += kBurst) {
                    for (uint32_t i = 0; i < kBurst; ++i) {
                        const size_t f = b + i;
                        parsed[i] = fn(uplink.data[f], uplink.available(f), uplink.length[f]);
                    }
                    for (uint32_t i = 0; i < kBurst; ++i) sum += parsed[i].dst_port + static_cast<uint8_t>(parsed[i].kind);
                }
                g_sink = g_sink + sum;
            });
        };
        const Stat s = parse_cost("parse_frame", [](const uint8_t* d, uint32_t a, uint32_t l) { return parse_frame(d, a, l); });
        print_row("parse_frame", "uplink mix", s);
        stages["parse_frame"] = s.to_json();
        const Stat full = parse_cost("parse_frame_full",
                                     [](const uint8_t* d, uint32_t a, uint32_t l) { return parse_frame_full(d, a, l); });
        print_row("parse_frame_full", "uplink mix", full);
        stages["parse_frame_full"] = full.to_json();
    }

    // Firewall keys: the parsed frames that reach the firewall (IP for the shared address), by family.
    const std::vector<ParsedFrame> parsed = parse_all(uplink);
    const SharedAddresses shared = shared_addresses(true);
    std::vector<const FlowKey4*> keys4;
    std::vector<const FlowKey6*> keys6;
    std::vector<const ParsedFrame*> to_decide;
    for (const ParsedFrame& p : parsed) {
        if (plan_uplink_frame(p, shared).step != UplinkStep::kFirewall) continue;
        to_decide.push_back(&p);
        if (p.kind == FrameKind::kIpv4) keys4.push_back(&p.key.v4);
        else keys6.push_back(&p.key.v6);
    }
    keys4.resize(keys4.size() / kBurst * kBurst);
    keys6.resize(keys6.size() / kBurst * kBurst);

    // ---- firewall ----
    json fw_json;
    std::vector<size_t> rule_counts = {0, 100, 1000, 10000};
    for (size_t count : rule_counts) {
        std::mt19937 rule_rng(1000 + static_cast<unsigned>(count));
        FirewallConfig config = random_rules(count, rule_rng);
        const std::string name = "bfw" + std::to_string(count);
        auto fw = Firewall::build(config, name, SOCKET_ID_ANY);
        if (!fw) {
            std::fprintf(stderr, "bench_stages: %s\n", fw.error().c_str());
            return 1;
        }
        DirectAcl direct;
        build_direct(direct, config, name);
        json entry;
        size_t dropped = 0;
        for (int family = 4; family <= 6; family += 2) {
            const size_t n = family == 4 ? keys4.size() : keys6.size();
            const uint8_t* const* data = family == 4 ? reinterpret_cast<const uint8_t* const*>(keys4.data())
                                                     : reinterpret_cast<const uint8_t* const*>(keys6.data());
            bool drop[kBurst];
            Stat mine = measure("firewall v" + std::to_string(family) + " " + std::to_string(count), opt, n, [&] {
                uint64_t sum = 0;
                for (size_t b = 0; b < n; b += kBurst) {
                    if (family == 4) (*fw)->classify_v4(keys4.data() + b, drop, kBurst);
                    else (*fw)->classify_v6(keys6.data() + b, drop, kBurst);
                    for (uint32_t i = 0; i < kBurst; ++i) sum += drop[i];
                }
                g_sink = g_sink + sum;
                dropped = sum;
            });
            const std::string fam = "v" + std::to_string(family);
            entry["portmux_" + fam] = mine.to_json();
            entry["drop_fraction_" + fam] = n ? static_cast<double>(dropped) / n : 0.0;
            const rte_acl_ctx* ctx = family == 4 ? direct.v4 : direct.v6;
            std::string note;
            if (ctx != nullptr) {
                uint32_t results[kBurst];
                Stat ref = measure("rte_acl v" + std::to_string(family) + " " + std::to_string(count), opt, n, [&] {
                    uint64_t sum = 0;
                    for (size_t b = 0; b < n; b += kBurst) {
                        rte_acl_classify(ctx, const_cast<const uint8_t**>(data + b), results, kBurst, 1);
                        for (uint32_t i = 0; i < kBurst; ++i) sum += results[i];
                    }
                    g_sink = g_sink + sum;
                });
                entry["rte_acl_" + fam] = ref.to_json();
                entry["ratio_" + fam] = mine.median / ref.median;
                note = ratio_text(mine.median, ref.median) + " of rte_acl_classify (" + std::to_string(int(ref.median)) + ")";
                print_row("Firewall::classify", fam + ", " + std::to_string(count) + " rules", mine, note);
                print_row("rte_acl_classify", fam + ", " + std::to_string(count) + " rules", ref);
            } else {
                entry["rte_acl_" + fam] = nullptr;
                entry["ratio_" + fam] = nullptr;
                print_row("Firewall::classify", fam + ", " + std::to_string(count) + " rules", mine,
                          "(no rules: default action, no rte_acl call)");
            }
        }
        fw_json[std::to_string(count)] = entry;
    }
    stages["firewall"] = fw_json;

    // ---- range lookup ----
    LookupKeys keys;
    for (size_t i = 0; i < kLookupKeys; ++i) {
        keys.proto.push_back(static_cast<uint8_t>(rng() % 2));
        keys.port.push_back(static_cast<uint16_t>(rng() % 65536));
        keys.ip.push_back(uint32_t{keys.proto.back()} << 16 | keys.port.back());
    }
    json lookup_json;
    auto table = std::make_unique<PortOwnerTable>();
    std::unique_ptr<PortOwnerTable> table_1000;
    for (size_t count : {size_t{1}, size_t{1000}, size_t{65536}}) {
        RangeRegistry reg = make_ranges(count);
        reg.fill(*table);
        OwnerId owners[kBurst];
        Stat mine = measure("lookup " + std::to_string(count), opt, kLookupKeys, [&] {
            uint64_t sum = 0;
            for (size_t b = 0; b < kLookupKeys; b += kBurst) {
                for (uint32_t i = 0; i < kBurst; ++i)
                    owners[i] = table->lookup(static_cast<L4Proto>(keys.proto[b + i]), keys.port[b + i]);
                for (uint32_t i = 0; i < kBurst; ++i) sum += owners[i];
            }
            g_sink = g_sink + sum;
        });

        size_t routes = 0;
        rte_lpm_config lpm_cfg{};
        lpm_cfg.max_rules = 2 * 65536 + 16;
        lpm_cfg.number_tbl8s = 1024;
        const std::string lpm_name = "blpm" + std::to_string(count);
        rte_lpm* lpm = rte_lpm_create(lpm_name.c_str(), SOCKET_ID_ANY, &lpm_cfg);
        rte_fib_conf fib_cfg{};
        fib_cfg.type = RTE_FIB_DIR24_8;
        fib_cfg.default_nh = 0;
        fib_cfg.max_routes = 2 * 65536 + 16;
        fib_cfg.dir24_8.nh_sz = RTE_FIB_DIR24_8_2B;
        fib_cfg.dir24_8.num_tbl8 = 1024;
        const std::string fib_name = "bfib" + std::to_string(count);
        rte_fib* fib = rte_fib_create(fib_name.c_str(), SOCKET_ID_ANY, &fib_cfg);
        if (lpm == nullptr || fib == nullptr) {
            std::fprintf(stderr, "bench_stages: cannot create rte_lpm/rte_fib (memory: give -m 1024)\n");
            return 1;
        }
        for (const OwnedRange& r : reg.list()) {
            for (uint32_t proto = 0; proto < 2; ++proto) {
                if (!r.range.covers(static_cast<L4Proto>(proto))) continue;
                for_each_prefix(r.range.ports.first, r.range.ports.last, [&](uint32_t first, uint8_t depth) {
                    const uint32_t ip = proto << 16 | first;
                    if (rte_lpm_add(lpm, ip, depth, r.owner) != 0 || rte_fib_add(fib, ip, depth, r.owner) != 0) {
                        std::fprintf(stderr, "bench_stages: cannot add a route to rte_lpm/rte_fib\n");
                        std::exit(1);
                    }
                    ++routes;
                });
            }
        }
        uint32_t hops[kBurst];
        Stat lpm_stat = measure("rte_lpm " + std::to_string(count), opt, kLookupKeys, [&] {
            uint64_t sum = 0;
            for (size_t b = 0; b < kLookupKeys; b += kBurst) {
                rte_lpm_lookup_bulk(lpm, keys.ip.data() + b, hops, kBurst);
                for (uint32_t i = 0; i < kBurst; ++i) sum += hops[i] & 0xffff;
            }
            g_sink = g_sink + sum;
        });
        uint64_t fib_hops[kBurst];
        Stat fib_stat = measure("rte_fib " + std::to_string(count), opt, kLookupKeys, [&] {
            uint64_t sum = 0;
            for (size_t b = 0; b < kLookupKeys; b += kBurst) {
                rte_fib_lookup_bulk(fib, const_cast<uint32_t*>(keys.ip.data() + b), fib_hops, kBurst);
                for (uint32_t i = 0; i < kBurst; ++i) sum += fib_hops[i];
            }
            g_sink = g_sink + sum;
        });
        // The three must agree on every key, or the comparison means nothing.
        for (size_t i = 0; i < kLookupKeys; i += kBurst) {
            rte_lpm_lookup_bulk(lpm, keys.ip.data() + i, hops, kBurst);
            rte_fib_lookup_bulk(fib, const_cast<uint32_t*>(keys.ip.data() + i), fib_hops, kBurst);
            for (uint32_t j = 0; j < kBurst; ++j) {
                const OwnerId want = table->lookup(static_cast<L4Proto>(keys.proto[i + j]), keys.port[i + j]);
                const OwnerId lpm_owner = (hops[j] & RTE_LPM_LOOKUP_SUCCESS) ? OwnerId(hops[j] & 0xffffff) : kNoOwner;
                if (lpm_owner != want || fib_hops[j] != want) {
                    std::fprintf(stderr, "bench_stages: rte_lpm/rte_fib disagree with the port table on key %u\n",
                                 keys.ip[i + j]);
                    return 1;
                }
            }
        }
        rte_lpm_free(lpm);
        rte_fib_free(fib);
        const std::string variant = std::to_string(count) + " ranges";
        print_row("PortOwnerTable::lookup", variant, mine,
                  ratio_text(mine.median, lpm_stat.median) + " of rte_lpm, " + ratio_text(mine.median, fib_stat.median) +
                      " of rte_fib");
        print_row("rte_lpm_lookup_bulk", variant + " (" + std::to_string(routes) + " prefixes)", lpm_stat);
        print_row("rte_fib_lookup_bulk", variant, fib_stat);
        lookup_json[std::to_string(count)] = json{{"portmux", mine.to_json()},
                                                  {"rte_lpm", lpm_stat.to_json()},
                                                  {"rte_fib", fib_stat.to_json()},
                                                  {"prefixes", routes},
                                                  {"ratio_lpm", mine.median / lpm_stat.median},
                                                  {"ratio_fib", mine.median / fib_stat.median}};
        if (count == 1000) {
            table_1000 = std::make_unique<PortOwnerTable>();
            *table_1000 = *table;
        }
    }
    stages["range_lookup"] = lookup_json;

    // ---- decide_delivery (1,000 ranges over 64 VMs) ----
    std::vector<OwnerTarget> targets(kFirstVmOwner + 64);
    targets[kHostOwner].kind = OwnerKind::kHost;
    for (size_t v = 0; v < 64; ++v) {
        OwnerTarget& t = targets[vm_owner_id(v)];
        t.kind = OwnerKind::kVm;
        t.port = static_cast<uint16_t>(2 + v);
        t.enabled = v != 63;
    }
    {
        const size_t n = to_decide.size() / kBurst * kBurst;
        DeliveryDecision decisions[kBurst];
        Stat s = measure("decide_delivery", opt, n, [&] {
            uint64_t sum = 0;
            for (size_t b = 0; b < n; b += kBurst) {
                for (uint32_t i = 0; i < kBurst; ++i)
                    decisions[i] = decide_delivery(*to_decide[b + i], *table_1000, targets.data(), UnmatchedPolicy::kHost);
                for (uint32_t i = 0; i < kBurst; ++i) sum += decisions[i].owner + static_cast<uint8_t>(decisions[i].delivery);
            }
            g_sink = g_sink + sum;
        });
        print_row("decide_delivery", "1,000 ranges, 64 VMs", s);
        stages["decide_delivery"] = s.to_json();
    }

    // ---- several shared addresses: the destination picks the range table, then decide_delivery ----
    // What the extension costs when used: 16 addresses, packets spread evenly over them (the worker pays
    // only a zero test of extra_ip4_count when there is one address).
    {
        SharedAddresses many = shared;
        many.extra_ip4_count = kMaxExtraSharedIps;
        for (unsigned a = 0; a < kMaxExtraSharedIps; ++a) many.extra_ip4[a] = shared.ip4 + ((a + 1) << 24);
        std::vector<ParsedFrame> spread;
        for (const ParsedFrame* p : to_decide) spread.push_back(*p);
        for (size_t i = 0; i < spread.size(); ++i)
            if (spread[i].kind == FrameKind::kIpv4) {
                const unsigned a = static_cast<unsigned>(i % (1 + kMaxExtraSharedIps));
                spread[i].key.v4.dst = a == 0 ? many.ip4 : many.extra_ip4[a - 1];
            }
        const PortOwnerTable* tables[1 + kMaxExtraSharedIps];
        std::fill(std::begin(tables), std::end(tables), table_1000.get());
        const size_t n = spread.size() / kBurst * kBurst;
        DeliveryDecision decisions[kBurst];
        Stat s = measure("decide_delivery_16_addresses", opt, n, [&] {
            uint64_t sum = 0;
            for (size_t b = 0; b < n; b += kBurst) {
                for (uint32_t i = 0; i < kBurst; ++i) {
                    const ParsedFrame& f = spread[b + i];
                    const int a = f.kind == FrameKind::kIpv4 ? many.ip4_index(f.key.v4.dst) : 0;
                    decisions[i] = decide_delivery(f, *tables[a < 0 ? 0 : a], targets.data(), UnmatchedPolicy::kHost);
                }
                for (uint32_t i = 0; i < kBurst; ++i) sum += decisions[i].owner + static_cast<uint8_t>(decisions[i].delivery);
            }
            g_sink = g_sink + sum;
        });
        print_row("table by address + decide", "16 shared addresses", s);
        stages["decide_delivery_16_addresses"] = s.to_json();
    }

    // ---- VM egress: check + rewrite (VM 0 owns 1024-1087 in the 1,000-range table) ----
    {
        FrameSet vm = vm_mix(rng, 1024, 1087);
        std::vector<ParsedFrame> vm_parsed = parse_all(vm);
        MacAddr uplink_mac;
        std::copy(kUplinkMac.begin(), kUplinkMac.end(), uplink_mac.bytes.begin());
        size_t forwarded = 0;
        Stat s = measure("vm_egress", opt, kFrameCount, [&] {
            uint64_t sum = 0;
            for (size_t b = 0; b < kFrameCount; b += kBurst) {
                for (uint32_t i = 0; i < kBurst; ++i) {
                    const size_t f = b + i;
                    EgressDecision d = check_vm_egress(vm_parsed[f], shared, *table_1000, vm_owner_id(0));
                    if (d.forward) {
                        rewrite_vm_egress(vm.data[f], vm.available(f), vm_parsed[f], uplink_mac);
                        ++sum;
                    }
                }
            }
            g_sink = g_sink + sum;
            forwarded = sum;
        });
        print_row("check+rewrite_vm_egress", "VM mix (95% IP, 5% ARP)", s,
                  std::to_string(forwarded) + "/" + std::to_string(kFrameCount) + " forwarded");
        stages["vm_egress"] = s.to_json();
        stages["vm_egress"]["forwarded_fraction"] = static_cast<double>(forwarded) / kFrameCount;
    }

    // ---- VXLAN toward a remote VM: outer source port from the inner flow + the 50 header bytes ----
    {
        VxlanSettings vxlan;
        vxlan.local_ip = htonl(0xc6336401);  // 198.51.100.1
        vxlan.port = 4789;
        vxlan.vni = 4242;
        MacAddr uplink_mac, next_hop;
        std::copy(kUplinkMac.begin(), kUplinkMac.end(), uplink_mac.bytes.begin());
        next_hop.bytes = {0x02, 0, 0, 0, 0x0b, 0x01};
        const uint32_t remote_ip = htonl(0xc6336402);
        alignas(64) static uint8_t headers[kBurst][kVxlanOverhead];
        Stat s = measure("vxlan_encap", opt, kFrameCount, [&] {
            uint64_t sum = 0;
            for (size_t b = 0; b < kFrameCount; b += kBurst) {
                for (uint32_t i = 0; i < kBurst; ++i) {
                    const size_t f = b + i;
                    write_vxlan_headers(headers[i], uplink_mac, next_hop, remote_ip, vxlan, uplink.length[f],
                                        vxlan_source_port(parsed[f]));
                }
                for (uint32_t i = 0; i < kBurst; ++i) sum += headers[i][34] + headers[i][24];
            }
            g_sink = g_sink + sum;
        });
        print_row("vxlan_encap", "uplink mix, headers only", s, "the prepend itself is an mbuf pointer move");
        stages["vxlan_encap"] = s.to_json();
    }

    // ---- load-balanced group: connection-table hit, miss (+ insert), Maglev alone ----
    {
        const OwnerId group_id = vm_owner_id(64);
        std::vector<OwnerTarget> group_targets = targets;
        group_targets.resize(group_id + 1);
        group_targets[group_id].kind = OwnerKind::kGroup;
        group_targets[group_id].group = 0;
        std::vector<LbGroup> groups(1);
        std::vector<MaglevMember> members;
        for (size_t v = 0; v < 4; ++v) {
            groups[0].members.push_back(LbMember{vm_owner_id(v), static_cast<uint8_t>(v + 1), MemberState::kActive});
            members.push_back(MaglevMember{"vm" + std::to_string(v), static_cast<uint8_t>(v + 1), vm_owner_id(v)});
        }
        groups[0].id = group_id;
        groups[0].maglev = build_maglev(members);
        index_members(groups[0]);
        auto group_table = std::make_unique<PortOwnerTable>();
        *group_table = PortOwnerTable{};
        group_table->owner[0][80] = group_id;
        // kFrameCount flows to tcp:80 from different addresses and ports.
        std::vector<Bytes> flows;
        std::vector<ParsedFrame> flow_parsed;
        for (size_t f = 0; f < kFrameCount; ++f) {
            Ip4 ip = ip4_proto(6);
            ip.src = {198, 51, static_cast<uint8_t>(f >> 8), static_cast<uint8_t>(f)};
            flows.push_back(eth_ipv4(ip, tcp(static_cast<uint16_t>(1024 + rng() % 60000), 80)));
        }
        for (const Bytes& b : flows)
            flow_parsed.push_back(parse_frame(b.data(), static_cast<uint32_t>(b.size()), static_cast<uint32_t>(b.size())));
        constexpr uint64_t kTimeout = uint64_t{4} << kTimeShift;  // a few units of the table's clock
        ConnectionTable conns(kDefaultMaxConnections, kTimeout, kTimeout);
        uint64_t now = 1;
        auto run = [&](LbContext lb) {
            uint64_t sum = 0;
            for (size_t b = 0; b < kFrameCount; b += kBurst)
                for (uint32_t i = 0; i < kBurst; ++i) {
                    DeliveryDecision d = decide_delivery(flow_parsed[b + i], *group_table, group_targets.data(),
                                                         UnmatchedPolicy::kHost, &lb);
                    sum += d.owner + static_cast<uint8_t>(d.lb_event);
                }
            g_sink = g_sink + sum;
        };
        json group_json;
        run(LbContext{groups.data(), &conns, now});  // every flow is in the table now
        Stat hit = measure("group hit", opt, kFrameCount, [&] { run(LbContext{groups.data(), &conns, now}); });
        print_row("decide_delivery group", "connection-table hit", hit, "4 members, 1,024 flows");
        group_json["hit"] = hit.to_json();
        // Each run starts after the timeout: every lookup misses and the pick is inserted again.
        Stat miss = measure("group miss", opt, kFrameCount, [&] {
            now += 2 * kTimeout;
            run(LbContext{groups.data(), &conns, now});
        });
        print_row("decide_delivery group", "miss: Maglev pick + insert", miss);
        group_json["miss"] = miss.to_json();
        Stat maglev = measure("group maglev", opt, kFrameCount, [&] { run(LbContext{groups.data(), nullptr, now}); });
        print_row("decide_delivery group", "Maglev alone (max 0)", maglev);
        group_json["maglev_only"] = maglev.to_json();
        stages["decide_delivery_group"] = group_json;
    }

    out["stages"] = stages;
    out["warnings"] = g_warnings;
    for (const std::string& w : g_warnings) std::printf("WARNING: %s\n", w.c_str());
    if (!opt.json_file.empty()) {
        std::ofstream f(opt.json_file);
        f << out.dump(2) << "\n";
        if (!f) {
            std::fprintf(stderr, "bench_stages: cannot write %s\n", opt.json_file.c_str());
            return 1;
        }
    }
    // A private prefix leaves a runtime directory (telemetry socket) behind: remove it with the EAL.
    const std::string runtime_dir = rte_eal_get_runtime_dir();
    rte_eal_cleanup();
    std::error_code ignored;
    std::filesystem::remove_all(runtime_dir, ignored);
    return 0;
}
