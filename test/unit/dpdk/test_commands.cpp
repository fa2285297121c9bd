// The /portmux/* command handlers through run_command(): answers, errors that change nothing, paging, and the
// snapshot the workers would see after each change.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <memory>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "config/config.hpp"
#include "control/commands.hpp"
#include "control/switch_state.hpp"
#include "control/telemetry.hpp"
#include "core/port_index.hpp"
#include "core/worker_counters.hpp"
#include "ports/vm_capture.hpp"
#include "tables/snapshot.hpp"

using namespace portmux;
using nlohmann::json;

namespace {

// What rte_telemetry can carry (DPDK 22.11): the default max_output_len, and the longest string value.
constexpr size_t kTelemetryMaxOutput = 16 * 1024;
constexpr size_t kTelemetryMaxString = 127;
constexpr size_t kTelemetryMaxDictEntries = 256;

PortRange range(const char* text) {
    auto r = PortRange::parse(text);
    INFO(text);
    REQUIRE(r);
    return *r;
}

MacAddr mac(const char* text) {
    auto m = MacAddr::parse(text);
    REQUIRE(m);
    return *m;
}

VmConfig vm(const char* name, const char* mac_text, std::initializer_list<const char*> ranges) {
    VmConfig v;
    v.name = name;
    v.mac = mac(mac_text);
    for (const char* r : ranges) v.ranges.push_back(range(r));
    return v;
}

// host: tcp:22, udp:53; web: tcp:8000-8099, udp:5353; db: tcp:5432, udp:6000-6099; my-vm.1: 9000-9099.
Config base_config(UnmatchedPolicy unmatched = UnmatchedPolicy::kHost) {
    Config c;
    auto ip = Ipv4Addr::parse("192.0.2.10");
    REQUIRE(ip);
    c.shared_ip = *ip;
    c.uplink.device = "net_null0";
    c.uplink.mac = mac("02:00:00:00:0a:01");
    c.host.device = "net_tap0,iface=pmx0";
    c.host.ranges = {range("tcp:22"), range("udp:53")};
    VmConfig web = vm("web", "52:54:00:12:34:01", {"tcp:8000-8099", "udp:5353"});
    web.vhost = "/run/portmux/web.sock";
    VmConfig db = vm("db", "52:54:00:12:34:02", {"tcp:5432", "udp:6000-6099"});
    db.device = "net_null1";
    VmConfig third = vm("my-vm.1", "52:54:00:12:34:03", {"9000-9099"});
    third.vhost = "/run/portmux/my-vm.1.sock";
    third.vhost_mode = VhostMode::kServer;
    c.vms = {web, db, third};
    FirewallRule telnet;
    telnet.action = FirewallAction::kDrop;
    telnet.proto = kIpProtoTcp;
    telnet.dst_ports = PortSpan{23, 23};
    c.firewall.rules = {telnet};
    c.unmatched = unmatched;
    return c;
}

// A switch without ports or workers: the real SwitchState and publisher, and a context filled by hand.
struct Switch {
    SnapshotPublisher publisher{1};  // one reader that never registers: publish never waits
    std::unique_ptr<SwitchState> state;
    std::unique_ptr<WorkerCounters> counters;
    std::set<uint16_t> links_up{kUplinkPortIndex, kFirstVmPortIndex};
    ControlContext ctx;

    explicit Switch(const Config& config, bool read_only = false) {
        // The configuration must be one the loader accepts, or the save test proves nothing.
        parse_config(config_to_json(config));
        state = std::make_unique<SwitchState>(config, publisher);
        state->publish_initial();
        ctx.state = state.get();
        add_port("uplink", config.uplink.device, PortRole::kUplink, kNoOwner);
        add_port("host", config.host.device, PortRole::kHost, kHostOwner);
        for (size_t i = 0; i < config.vms.size(); ++i) {
            const VmConfig& v = config.vms[i];
            Port& p = add_port(v.name, v.device, PortRole::kVm, vm_owner_id(i));
            p.mac = v.mac;
            p.is_vhost = !v.vhost.empty();
            p.vhost_path = v.vhost;
            p.vhost_mode = v.vhost_mode;
        }
        ctx.link_up = [this](uint16_t index) { return links_up.count(index) != 0; };
        counters = std::make_unique<WorkerCounters>(kFirstVmPortIndex + kMaxVms);  // as the workers count
        ctx.counters = {counters.get()};
        ctx.worker_lcores = {1};
        ctx.main_lcore = 0;
        ctx.started = std::chrono::steady_clock::now();
        ctx.read_only = read_only;
    }
    Switch() : Switch(base_config()) {}

    Port& add_port(const std::string& name, const std::string& devargs, PortRole role, OwnerId owner) {
        Port p;
        p.name = name;
        p.devargs = devargs;
        p.role = role;
        p.index = static_cast<uint16_t>(ctx.ports.size());
        p.eth_port = static_cast<uint16_t>(10 + ctx.ports.size());  // distinct from the dense index on purpose
        p.owner = owner;
        p.probed = true;
        ctx.ports.push_back(p);
        return ctx.ports.back();
    }

    json run(const std::string& name, const std::string& params = "") { return run_command(ctx, name, params); }

    // Everything a refused command must leave alone.
    std::string fingerprint() const {
        const Snapshot* snap = publisher.current();
        return fmt::format("{} gen={} snap={} snapgen={}", config_to_json(state->running_config()).dump(),
                           state->generation(), static_cast<const void*>(snap), snap->generation);
    }

    const Snapshot& snap() const { return *publisher.current(); }
    OwnerId table(L4Proto proto, uint16_t port) const { return snap().table->lookup(proto, port); }
};

std::string error_of(const json& answer) {
    if (!answer.is_object() || answer.size() != 1 || !answer.contains("error") || !answer["error"].is_string())
        return "";
    return answer["error"].get<std::string>();
}

// The command answers {"error": ...} mentioning every one of `words`, and nothing changed.
void expect_refused(Switch& sw, const std::string& name, const std::string& params,
                    std::initializer_list<const char*> words) {
    INFO(name << "," << params);
    std::string before = sw.fingerprint();
    json answer = sw.run(name, params);
    INFO("answer: " << answer.dump());
    std::string message = error_of(answer);
    REQUIRE_FALSE(message.empty());
    for (const char* w : words) CHECK_THAT(message, Catch::Contains(w));
    // The whole message must reach the client: telemetry cuts longer strings.
    CHECK(message.size() <= kTelemetryMaxString);
    CHECK(sw.fingerprint() == before);
}

// The command succeeds, answers the new generation, and the state and the published snapshot advanced by one.
json expect_change(Switch& sw, const std::string& name, const std::string& params) {
    INFO(name << "," << params);
    uint64_t generation = sw.state->generation();
    REQUIRE(sw.snap().generation == generation);
    json answer = sw.run(name, params);
    INFO("answer: " << answer.dump());
    REQUIRE(answer.is_object());
    REQUIRE_FALSE(answer.contains("error"));
    CHECK(answer.value("generation", uint64_t{0}) == generation + 1);
    CHECK(sw.state->generation() == generation + 1);
    CHECK(sw.snap().generation == generation + 1);
    return answer;
}

json expect_ok(Switch& sw, const std::string& name, const std::string& params = "") {
    INFO(name << "," << params);
    json answer = sw.run(name, params);
    INFO("answer: " << answer.dump());
    REQUIRE(answer.is_object());
    REQUIRE_FALSE(answer.contains("error"));
    return answer;
}

// Telemetry accepts keys of [A-Za-z0-9_/] only, one level of nesting, and 16 KiB per answer.
void expect_fits_telemetry(const std::string& name, const json& answer) {
    static const std::regex key_syntax("[A-Za-z0-9_/]+");
    INFO(name << ": " << answer.dump().substr(0, 300));
    size_t size = json{{name, answer}}.dump().size();
    CHECK(size <= kTelemetryMaxOutput);
    CHECK(answer.size() <= kTelemetryMaxDictEntries);
    for (auto it = answer.begin(); it != answer.end(); ++it) {
        CHECK(std::regex_match(it.key(), key_syntax));
        if (it.value().is_object())
            for (auto inner = it.value().begin(); inner != it.value().end(); ++inner)
                CHECK(std::regex_match(inner.key(), key_syntax));
    }
}

std::vector<std::string> strings(const json& array) {
    std::vector<std::string> out;
    for (const json& v : array) out.push_back(v.get<std::string>());
    return out;
}

std::string temp_dir() {
    char pattern[] = "/tmp/pmx-commands-XXXXXX";
    REQUIRE(mkdtemp(pattern) != nullptr);
    return pattern;
}

}  // namespace

// ---- reading ------------------------------------------------------------------------------------------------

TEST_CASE("control info: version, shared address, lcores, ports, VMs and generation", "[control]") {
    Switch sw;
    sw.ctx.config_file = "/etc/portmux/portmux.json";
    json a = expect_ok(sw, "/portmux/info");
    CHECK(a["version"] == PORTMUX_VERSION);
    CHECK(a["shared_ip"] == "192.0.2.10");
    CHECK_FALSE(a.contains("shared_ip6"));
    CHECK(a["main_lcore"] == 0);
    CHECK(a["worker_lcores"] == json::array({1}));
    CHECK(a["uplink_port"] == 10);
    CHECK(a["host_port"] == 11);
    CHECK(a["ports"] == 5);
    CHECK(a["vms"] == 3);
    CHECK(a["generation"] == 1);
    CHECK(a["uptime_s"] == 0);
    CHECK(a["config"] == "/etc/portmux/portmux.json");
    CHECK(a["read_only"] == 0);
    expect_fits_telemetry("/portmux/info", a);
    expect_refused(sw, "/portmux/info", "web", {"no parameters"});
}

TEST_CASE("control stats: per-kind port sums and switch counters summed over workers", "[control]") {
    Switch sw;
    WorkerCounters second(sw.ctx.ports.size());
    sw.ctx.counters.push_back(&second);
    sw.counters->add(kUplinkPortIndex, PortCounter::rx_packets, 100);
    second.add(kUplinkPortIndex, PortCounter::rx_packets, 5);
    sw.counters->add(kHostPortIndex, PortCounter::rx_packets, 7);
    sw.counters->add(kHostPortIndex, PortCounter::tx_packets, 8);
    sw.counters->add(kFirstVmPortIndex + 0, PortCounter::rx_packets, 3);
    second.add(kFirstVmPortIndex + 2, PortCounter::rx_packets, 4);
    sw.counters->add(kFirstVmPortIndex + 1, PortCounter::tx_packets, 60);
    sw.counters->add(kFirstVmPortIndex + 1, PortCounter::tx_dropped, 2);
    sw.counters->add(SwitchCounter::to_vm, 60);
    second.add(SwitchCounter::to_vm, 1);
    sw.counters->add(SwitchCounter::drop_firewall, 9);
    json a = expect_ok(sw, "/portmux/stats");
    CHECK(a["rx_uplink"] == 105);
    CHECK(a["rx_host"] == 7);
    CHECK(a["tx_host"] == 8);
    CHECK(a["rx_vms"] == 7);
    CHECK(a["tx_vms"] == 60);
    CHECK(a["tx_dropped_vms"] == 2);
    CHECK(a["tx_uplink"] == 0);
    CHECK(a["to_vm"] == 61);
    CHECK(a["drop_firewall"] == 9);
    for (size_t c = 0; c < kSwitchCounterCount; ++c) CHECK(a.contains(counter_name(static_cast<SwitchCounter>(c))));
    expect_fits_telemetry("/portmux/stats", a);
    expect_refused(sw, "/portmux/stats", "x", {"no parameters"});
}

TEST_CASE("control workers: each worker's own frames, bytes and drops, with its lcore", "[control]") {
    Switch sw;
    WorkerCounters second(sw.ctx.ports.size());
    sw.ctx.counters.push_back(&second);
    sw.ctx.worker_lcores = {1, 3};
    sw.counters->add(kUplinkPortIndex, PortCounter::rx_packets, 100);
    sw.counters->add(kUplinkPortIndex, PortCounter::rx_bytes, 6400);
    sw.counters->add(kFirstVmPortIndex + 1, PortCounter::tx_packets, 60);
    sw.counters->add(kFirstVmPortIndex + 1, PortCounter::tx_dropped, 2);
    second.add(kUplinkPortIndex, PortCounter::rx_packets, 5);
    second.add(kHostPortIndex, PortCounter::rx_packets, 7);
    second.add(kHostPortIndex, PortCounter::tx_bytes, 900);
    sw.counters->add(SwitchCounter::drop_firewall, 9);
    second.add(SwitchCounter::drop_malformed, 1);
    second.add(SwitchCounter::drop_spoof_port, 2);
    second.add(SwitchCounter::to_vm, 50);  // a delivery, not a drop
    json a = expect_ok(sw, "/portmux/workers");
    CHECK(a["page_total"] == 2);
    REQUIRE(a.contains("0"));
    REQUIRE(a.contains("1"));
    CHECK(a["0"]["worker"] == 0);
    CHECK(a["0"]["lcore"] == 1);
    CHECK(a["0"]["rx_packets"] == 100);
    CHECK(a["0"]["rx_bytes"] == 6400);
    CHECK(a["0"]["tx_packets"] == 60);
    CHECK(a["0"]["tx_dropped"] == 2);
    CHECK(a["0"]["drops"] == 9);
    CHECK(a["1"]["lcore"] == 3);
    CHECK(a["1"]["rx_packets"] == 12);
    CHECK(a["1"]["tx_bytes"] == 900);
    CHECK(a["1"]["drops"] == 3);
    // The workers' shares add up to what /portmux/stats reports.
    json stats = expect_ok(sw, "/portmux/stats");
    CHECK(a["0"]["rx_packets"].get<uint64_t>() + a["1"]["rx_packets"].get<uint64_t>() ==
          stats["rx_uplink"].get<uint64_t>() + stats["rx_host"].get<uint64_t>() + stats["rx_vms"].get<uint64_t>());
    expect_fits_telemetry("/portmux/workers", a);
    json past = expect_ok(sw, "/portmux/workers", "offset=2");
    CHECK_FALSE(past.contains("0"));
    CHECK(past["page_total"] == 2);
    expect_refused(sw, "/portmux/workers", "x", {"usage"});
    expect_refused(sw, "/portmux/workers", "offset=x", {"offset"});
}

TEST_CASE("control workers: 127 workers come in pages that fit telemetry's limits", "[control]") {
    Switch sw;
    std::vector<std::unique_ptr<WorkerCounters>> more;
    sw.ctx.worker_lcores = {1};
    for (unsigned i = 1; i < 127; ++i) {
        more.push_back(std::make_unique<WorkerCounters>(sw.ctx.ports.size()));
        more.back()->add(kUplinkPortIndex, PortCounter::rx_packets, UINT64_MAX / 2);
        more.back()->add(kUplinkPortIndex, PortCounter::rx_bytes, UINT64_MAX / 2);
        sw.ctx.counters.push_back(more.back().get());
        sw.ctx.worker_lcores.push_back(i + 1);
    }
    std::set<uint64_t> lcores;
    std::string params;
    size_t pages = 0;
    while (true) {
        json a = expect_ok(sw, "/portmux/workers", params);
        REQUIRE(++pages <= 127);
        expect_fits_telemetry("/portmux/workers", a);
        for (auto it = a.begin(); it != a.end(); ++it)
            if (it.value().is_object()) lcores.insert(it.value()["lcore"].get<uint64_t>());
        if (!a.contains("page_next")) break;
        params = a["page_next"].get<std::string>();
    }
    CHECK(lcores.size() == 127);
    CHECK(pages > 1);
}

TEST_CASE("control vms: one object per VM keyed by position, names as values", "[control]") {
    Switch sw;
    sw.counters->add(kFirstVmPortIndex + 1, PortCounter::tx_packets, 12);
    REQUIRE(expect_change(sw, "/portmux/vm/disable", "db")["enabled"] == 0);
    json a = expect_ok(sw, "/portmux/vms");
    expect_fits_telemetry("/portmux/vms", a);
    CHECK(a["page_total"] == 3);
    CHECK(a["page_offset"] == 0);
    CHECK_FALSE(a.contains("page_next"));
    REQUIRE(a.contains("0"));
    REQUIRE(a.contains("1"));
    REQUIRE(a.contains("2"));
    CHECK(a["0"]["name"] == "web");
    CHECK(a["0"]["port"] == kFirstVmPortIndex);  // a vhost-user VM has no ethdev: its portmux port index
    CHECK(a["1"]["port"] == 13);                 // a device VM: its DPDK port id
    CHECK(a["0"]["mac"] == "52:54:00:12:34:01");
    CHECK(a["0"]["enabled"] == 1);
    CHECK(a["0"]["link"] == "up");
    CHECK(a["0"]["vhost"] == "/run/portmux/web.sock");
    CHECK(a["0"]["vhost_mode"] == "client");
    CHECK(a["0"]["ranges"] == 2);
    CHECK(a["1"]["name"] == "db");
    CHECK(a["1"]["enabled"] == 0);
    CHECK(a["1"]["link"] == "down");
    CHECK(a["1"]["device"] == "net_null1");
    CHECK_FALSE(a["1"].contains("vhost"));
    CHECK(a["1"]["tx_packets"] == 12);
    CHECK(a["0"]["tx_packets"] == 0);
    CHECK(a["2"]["name"] == "my-vm.1");
    CHECK(a["2"]["vhost_mode"] == "server");
    CHECK(a["2"]["ranges"] == 1);

    json one = expect_ok(sw, "/portmux/vms", "my-vm.1");
    CHECK(one["page_total"] == 1);
    CHECK(one["2"]["name"] == "my-vm.1");
    CHECK_FALSE(one.contains("0"));

    expect_refused(sw, "/portmux/vms", "nope", {"unknown VM", "nope"});
    expect_refused(sw, "/portmux/vms", "web,db", {"usage"});
    expect_refused(sw, "/portmux/vms", "offset=x", {"offset", "x"});
}

TEST_CASE("control ranges: every owner's ranges in config syntax, host first, or one target's", "[control]") {
    Switch sw;
    json a = expect_ok(sw, "/portmux/ranges");
    expect_fits_telemetry("/portmux/ranges", a);
    CHECK(strings(a["ranges"]) == std::vector<std::string>{"host tcp:22", "host udp:53", "web udp:5353",
                                                             "web tcp:8000-8099", "db tcp:5432",
                                                             "db udp:6000-6099", "my-vm.1 9000-9099"});
    CHECK(a["page_total"] == 7);
    CHECK(a["page_offset"] == 0);
    CHECK_FALSE(a.contains("page_next"));
    CHECK_FALSE(a.contains("target"));

    json web = expect_ok(sw, "/portmux/ranges", "web");
    CHECK(web["target"] == "web");
    CHECK(strings(web["ranges"]) == std::vector<std::string>{"udp:5353", "tcp:8000-8099"});
    json host = expect_ok(sw, "/portmux/ranges", "host");
    CHECK(strings(host["ranges"]) == std::vector<std::string>{"tcp:22", "udp:53"});
    json dotted = expect_ok(sw, "/portmux/ranges", "my-vm.1");
    CHECK(strings(dotted["ranges"]) == std::vector<std::string>{"9000-9099"});

    expect_refused(sw, "/portmux/ranges", "nope", {"unknown target", "nope"});
    expect_refused(sw, "/portmux/ranges", "web,db", {"usage"});
    expect_refused(sw, "/portmux/ranges", "offset=abc", {"offset", "abc"});
    expect_refused(sw, "/portmux/ranges", "offset=-1", {"offset", "-1"});
    expect_refused(sw, "/portmux/ranges", "web,offset=", {"offset"});
}

TEST_CASE("control ranges: 1,000 ranges come in pages of kPageSize, page_next chains to the end", "[control]") {
    Switch sw;
    // 1,000 single-port ranges beside the configured ones, timed (no assertion on the time).
    auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < 1000; ++i) {
        json a = sw.run("/portmux/range/add", fmt::format("{},tcp:{}", i % 2 ? "db" : "my-vm.1", 20000 + i));
        REQUIRE_FALSE(a.contains("error"));
    }
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
    WARN(fmt::format("1,000 single-range adds through /portmux/range/add took {} ms ({:.3f} ms each)", ms,
                     static_cast<double>(ms) / 1000.0));
    CHECK(sw.state->generation() == 1001);
    CHECK(sw.snap().generation == 1001);
    CHECK(sw.table(L4Proto::kTcp, 20999) == vm_owner_id(1));
    CHECK(sw.table(L4Proto::kTcp, 20998) == vm_owner_id(2));
    CHECK(sw.table(L4Proto::kUdp, 20999) == kNoOwner);

    const size_t total = 1007;
    std::multiset<std::string> seen;
    std::string params;
    size_t pages = 0;
    while (true) {
        json a = expect_ok(sw, "/portmux/ranges", params);
        expect_fits_telemetry("/portmux/ranges", a);
        CHECK(a["page_total"] == total);
        CHECK(a["page_offset"] == pages * kPageSize);
        size_t n = a["ranges"].size();
        CHECK(n == std::min(kPageSize, total - pages * kPageSize));
        for (const json& r : a["ranges"]) seen.insert(r.get<std::string>());
        ++pages;
        REQUIRE(pages <= total / kPageSize + 1);
        if (!a.contains("page_next")) break;
        params = a["page_next"].get<std::string>();
    }
    CHECK(pages == (total + kPageSize - 1) / kPageSize);
    CHECK(seen.size() == total);
    CHECK(std::set<std::string>(seen.begin(), seen.end()).size() == total);
    for (int i = 0; i < 1000; ++i)
        CHECK(seen.count(fmt::format("{} tcp:{}", i % 2 ? "db" : "my-vm.1", 20000 + i)) == 1);
    CHECK(seen.count("host tcp:22") == 1);

    // One target's pages carry the target on every page.
    json db = expect_ok(sw, "/portmux/ranges", "db");
    CHECK(db["page_total"] == 502);
    CHECK(db["ranges"].size() == kPageSize);
    REQUIRE(db.contains("page_next"));
    json db2 = expect_ok(sw, "/portmux/ranges", "db," + db["page_next"].get<std::string>());
    CHECK(db2["target"] == "db");
    CHECK(db2["page_offset"] == kPageSize);

    // Past the end: an empty page with no next.
    json end = expect_ok(sw, "/portmux/ranges", fmt::format("offset={}", total));
    CHECK(end["ranges"].empty());
    CHECK_FALSE(end.contains("page_next"));
}

TEST_CASE("control vms: every page fits telemetry's output limit with many VMs", "[control]") {
    Config c = base_config();
    c.vms.clear();
    for (int i = 0; i < 450; ++i) {
        VmConfig v = vm(fmt::format("vm-{:03}", i).c_str(), fmt::format("52:54:00:00:{:02x}:{:02x}", i / 256, i % 256).c_str(),
                        {});
        v.ranges.push_back(range(fmt::format("tcp:{}", 10000 + i).c_str()));
        v.vhost = fmt::format("/run/portmux/vm-{:03}.sock", i);
        c.vms.push_back(v);
    }
    Switch sw(c);
    std::set<std::string> names;
    std::string params;
    size_t pages = 0;
    while (true) {
        json a = expect_ok(sw, "/portmux/vms", params);
        ++pages;
        REQUIRE(pages <= 450);
        expect_fits_telemetry("/portmux/vms", a);
        for (auto it = a.begin(); it != a.end(); ++it)
            if (it.value().is_object()) names.insert(it.value()["name"].get<std::string>());
        if (!a.contains("page_next")) break;
        params = a["page_next"].get<std::string>();
    }
    CHECK(names.size() == 450);
    CHECK(pages > 1);
}

TEST_CASE("control firewall/list: many rules come in pages that fit telemetry's limits", "[control]") {
    Switch sw;
    for (int i = 0; i < 120; ++i)
        expect_change(sw, "/portmux/firewall/add",
                      fmt::format(R"({{"action": "drop", "proto": "udp", "src": "2001:db8:{:x}::/48", "dst_ports": "{}-{}"}})",
                                  i, 1000 + i, 2000 + i));
    std::vector<std::string> seen;
    std::string params;
    size_t pages = 0;
    while (true) {
        json a = expect_ok(sw, "/portmux/firewall/list", params);
        expect_fits_telemetry("/portmux/firewall/list", a);
        CHECK(a["default"] == "accept");
        CHECK(a["page_total"] == 121);
        for (auto it = a.begin(); it != a.end(); ++it)
            if (it.value().is_object()) seen.push_back(it.key() + " " + it.value().value("dst_ports", ""));
        ++pages;
        REQUIRE(pages <= 121);
        if (!a.contains("page_next")) break;
        params = a["page_next"].get<std::string>();
    }
    CHECK(pages > 1);
    REQUIRE(seen.size() == 121);
    std::set<std::string> unique(seen.begin(), seen.end());
    CHECK(unique.size() == 121);
    CHECK(unique.count("0 23") == 1);
    CHECK(unique.count("120 1119-2119") == 1);
}

TEST_CASE("control lookup: who receives a port now, for VM, host, unowned and disabled VM", "[control]") {
    Switch sw;
    json vm_port = expect_ok(sw, "/portmux/lookup", "tcp:8099");
    CHECK(vm_port["proto"] == "tcp");
    CHECK(vm_port["port"] == 8099);
    CHECK(vm_port["target"] == "web");
    CHECK(vm_port["owner"] == "web");
    CHECK(vm_port["range"] == "tcp:8000-8099");
    CHECK(vm_port["enabled"] == 1);
    CHECK(vm_port["delivery"] == "vm");
    expect_fits_telemetry("/portmux/lookup", vm_port);

    json both = expect_ok(sw, "/portmux/lookup", "udp:9000");
    CHECK(both["target"] == "my-vm.1");
    CHECK(both["range"] == "9000-9099");

    json host = expect_ok(sw, "/portmux/lookup", "tcp:22");
    CHECK(host["target"] == "host");
    CHECK(host["owner"] == "host");
    CHECK(host["delivery"] == "host");

    // udp:22 is not the host's: only tcp:22 is.
    json unowned = expect_ok(sw, "/portmux/lookup", "udp:22");
    CHECK(unowned["owner"] == "none");
    CHECK(unowned["target"] == "host");
    CHECK(unowned["delivery"] == "host");
    CHECK_FALSE(unowned.contains("range"));

    expect_change(sw, "/portmux/vm/disable", "web");
    json disabled = expect_ok(sw, "/portmux/lookup", "tcp:8000");
    CHECK(disabled["target"] == "web");
    CHECK(disabled["enabled"] == 0);
    CHECK(disabled["delivery"] == "drop");
    // The VM's other ranges are closed too.
    CHECK(expect_ok(sw, "/portmux/lookup", "udp:5353")["delivery"] == "drop");
    // Other VMs are untouched.
    CHECK(expect_ok(sw, "/portmux/lookup", "tcp:5432")["delivery"] == "vm");
}

TEST_CASE("control lookup: an unowned port follows the unmatched policy", "[control]") {
    SECTION("drop") {
        Switch sw(base_config(UnmatchedPolicy::kDrop));
        json a = expect_ok(sw, "/portmux/lookup", "tcp:1");
        CHECK(a["owner"] == "none");
        CHECK(a["target"] == "none");
        CHECK(a["delivery"] == "drop");
        CHECK(expect_ok(sw, "/portmux/lookup", "tcp:22")["delivery"] == "host");
    }
    SECTION("reject") {
        Switch sw(base_config(UnmatchedPolicy::kReject));
        json a = expect_ok(sw, "/portmux/lookup", "udp:65535");
        CHECK(a["owner"] == "none");
        CHECK(a["target"] == "none");
        CHECK(a["delivery"] == "reject");
    }
}

TEST_CASE("control lookup: bad input is refused with what is wrong", "[control]") {
    Switch sw;
    expect_refused(sw, "/portmux/lookup", "", {"0 parameters", "PROTO:PORT"});
    expect_refused(sw, "/portmux/lookup", "8080", {"one protocol"});
    expect_refused(sw, "/portmux/lookup", "tcp:80-81", {"one port"});
    expect_refused(sw, "/portmux/lookup", "tcp:65536", {"above 65535"});
    expect_refused(sw, "/portmux/lookup", "sctp:80", {"unknown protocol", "sctp"});
    expect_refused(sw, "/portmux/lookup", "tcp:http", {"not a decimal port"});
    expect_refused(sw, "/portmux/lookup", "tcp:80,udp:80", {"2 parameters"});
}

// ---- changes ------------------------------------------------------------------------------------------------

TEST_CASE("control range/add: the range reaches the snapshot at once", "[control]") {
    Switch sw;
    REQUIRE(sw.table(L4Proto::kTcp, 8100) == kNoOwner);
    json a = expect_change(sw, "/portmux/range/add", "web,tcp:8100-8199");
    CHECK(a["added"] == "tcp:8100-8199");
    CHECK(a["target"] == "web");
    CHECK(sw.table(L4Proto::kTcp, 8100) == vm_owner_id(0));
    CHECK(sw.table(L4Proto::kTcp, 8199) == vm_owner_id(0));
    CHECK(sw.table(L4Proto::kTcp, 8200) == kNoOwner);
    CHECK(sw.table(L4Proto::kUdp, 8100) == kNoOwner);
    CHECK(expect_ok(sw, "/portmux/lookup", "tcp:8150")["target"] == "web");

    // Without a protocol: both; to the host; to a name with '.' and '-'; spaces around parameters.
    expect_change(sw, "/portmux/range/add", "db,7000");
    CHECK(sw.table(L4Proto::kTcp, 7000) == vm_owner_id(1));
    CHECK(sw.table(L4Proto::kUdp, 7000) == vm_owner_id(1));
    expect_change(sw, "/portmux/range/add", "host,udp:67-68");
    CHECK(sw.table(L4Proto::kUdp, 68) == kHostOwner);
    expect_change(sw, "/portmux/range/add", " my-vm.1 , udp:0 ");
    CHECK(sw.table(L4Proto::kUdp, 0) == vm_owner_id(2));
    expect_change(sw, "/portmux/range/add", "my-vm.1,tcp:65535");
    CHECK(sw.table(L4Proto::kTcp, 65535) == vm_owner_id(2));
    // The other protocol of an owned port is free.
    expect_change(sw, "/portmux/range/add", "db,udp:8000-8099");
    CHECK(sw.table(L4Proto::kUdp, 8000) == vm_owner_id(1));
    CHECK(sw.table(L4Proto::kTcp, 8000) == vm_owner_id(0));

    Config running = sw.state->running_config();
    CHECK(running.vms[0].ranges.size() == 3);
    CHECK(running.host.ranges.size() == 3);
}

TEST_CASE("control range/add: every bad request is refused and changes nothing", "[control]") {
    Switch sw;
    const char* add = "/portmux/range/add";
    expect_refused(sw, add, "nope,tcp:100", {"unknown target", "nope"});
    expect_refused(sw, add, "Web,tcp:100", {"unknown target", "Web"});
    expect_refused(sw, add, "web,tcp:80x", {"tcp:80x", "not a decimal port"});
    expect_refused(sw, add, "web,tcp:", {"tcp:", "empty"});
    expect_refused(sw, add, "web,tcp:65536", {"above 65535"});
    expect_refused(sw, add, "web,99999999999", {"above 65535"});
    expect_refused(sw, add, "web,tcp:90-80", {"FROM is above TO"});
    expect_refused(sw, add, "web,sctp:80", {"unknown protocol", "sctp"});
    expect_refused(sw, add, "web,tcp:-5", {"FROM"});
    // Another owner's range, in whole or in part, for a protocol both cover.
    expect_refused(sw, add, "db,tcp:8050", {"overlaps", "tcp:8000-8099", "web", "tcp:8050"});
    expect_refused(sw, add, "db,8099-8100", {"overlaps", "web", "tcp:8099"});
    expect_refused(sw, add, "web,22", {"overlaps", "host", "tcp:22"});
    expect_refused(sw, add, "host,udp:6099", {"overlaps", "db", "udp:6099"});
    // The same owner's range: still an overlap (a range is kept exactly as given).
    expect_refused(sw, add, "web,tcp:8099-8100", {"overlaps", "web"});
    expect_refused(sw, add, "web,tcp:8000-8099", {"overlaps", "web"});
    expect_refused(sw, add, "my-vm.1,tcp:9000", {"overlaps", "my-vm.1"});
    // Parameter count.
    expect_refused(sw, add, "", {"0 parameters", "TARGET,RANGE"});
    expect_refused(sw, add, "web", {"1 parameter given", "TARGET,RANGE"});
    expect_refused(sw, add, "web,tcp:1,tcp:2", {"3 parameters", "TARGET,RANGE"});
    expect_refused(sw, add, "web,", {"empty parameter"});
    expect_refused(sw, add, ",tcp:1", {"empty parameter"});
}

TEST_CASE("control range/del: removes exactly that range", "[control]") {
    Switch sw;
    json a = expect_change(sw, "/portmux/range/del", "udp:5353");
    CHECK(a["removed"] == "udp:5353");
    CHECK(a["from"] == "web");
    CHECK(sw.table(L4Proto::kUdp, 5353) == kNoOwner);
    CHECK(expect_ok(sw, "/portmux/lookup", "udp:5353")["owner"] == "none");
    CHECK(sw.table(L4Proto::kTcp, 8000) == vm_owner_id(0));
    a = expect_change(sw, "/portmux/range/del", "9000-9099");
    CHECK(a["from"] == "my-vm.1");
    CHECK(sw.table(L4Proto::kTcp, 9050) == kNoOwner);
    CHECK(sw.table(L4Proto::kUdp, 9050) == kNoOwner);
    a = expect_change(sw, "/portmux/range/del", "tcp:22");
    CHECK(a["from"] == "host");
    CHECK(sw.state->ranges(vm_owner_id(2)).empty());
}

TEST_CASE("control range/del: a range that does not exist exactly is refused", "[control]") {
    Switch sw;
    const char* del = "/portmux/range/del";
    expect_refused(sw, del, "tcp:12345", {"no range", "tcp:12345"});
    // Part of a range, or the same ports for other protocols: name the owner and the way out.
    expect_refused(sw, del, "tcp:8000-8049", {"no range", "web", "/portmux/ranges"});
    expect_refused(sw, del, "8000-8099", {"no range", "web"});
    expect_refused(sw, del, "udp:8000-8099", {"no range", "udp:8000-8099"});
    expect_refused(sw, del, "tcp:9000-9099", {"no range", "my-vm.1"});
    expect_refused(sw, del, "tcp:90-80", {"FROM is above TO"});
    expect_refused(sw, del, "tcp:70000", {"above 65535"});
    expect_refused(sw, del, "icmp:1", {"unknown protocol"});
    expect_refused(sw, del, "", {"0 parameters", "RANGE"});
    expect_refused(sw, del, "web,udp:5353", {"2 parameters", "RANGE"});
}

TEST_CASE("control range/move: hands a range to another owner, lookup changes at once", "[control]") {
    Switch sw;
    json a = expect_change(sw, "/portmux/range/move", "tcp:8000-8099,db");
    CHECK(a["moved"] == "tcp:8000-8099");
    CHECK(a["from"] == "web");
    CHECK(a["to"] == "db");
    CHECK(sw.table(L4Proto::kTcp, 8000) == vm_owner_id(1));
    CHECK(sw.table(L4Proto::kTcp, 8099) == vm_owner_id(1));
    json lookup = expect_ok(sw, "/portmux/lookup", "tcp:8042");
    CHECK(lookup["target"] == "db");
    CHECK(lookup["range"] == "tcp:8000-8099");
    CHECK(strings(expect_ok(sw, "/portmux/ranges", "web")["ranges"]) == std::vector<std::string>{"udp:5353"});

    // To the host and back to a VM.
    expect_change(sw, "/portmux/range/move", "9000-9099,host");
    CHECK(sw.table(L4Proto::kUdp, 9000) == kHostOwner);
    CHECK(expect_ok(sw, "/portmux/lookup", "udp:9000")["delivery"] == "host");
    a = expect_change(sw, "/portmux/range/move", "9000-9099,my-vm.1");
    CHECK(a["from"] == "host");
    CHECK(sw.table(L4Proto::kTcp, 9099) == vm_owner_id(2));

    // Onto a disabled VM: its packets are dropped from then on.
    expect_change(sw, "/portmux/vm/disable", "web");
    expect_change(sw, "/portmux/range/move", "tcp:5432,web");
    CHECK(expect_ok(sw, "/portmux/lookup", "tcp:5432")["delivery"] == "drop");
}

TEST_CASE("control range/move: unknown target, missing range and bad syntax are refused", "[control]") {
    Switch sw;
    const char* move = "/portmux/range/move";
    expect_refused(sw, move, "tcp:8000-8099,nope", {"unknown target", "nope"});
    expect_refused(sw, move, "tcp:12345,db", {"no range", "tcp:12345"});
    expect_refused(sw, move, "tcp:8000-8049,db", {"no range", "tcp:8000-8049"});
    expect_refused(sw, move, "8000-8099,db", {"no range"});
    expect_refused(sw, move, "tcp:8099-8000,db", {"FROM is above TO"});
    expect_refused(sw, move, "tcp:65536,db", {"above 65535"});
    expect_refused(sw, move, "gre:1,db", {"unknown protocol", "gre"});
    expect_refused(sw, move, "tcp:8000-8099", {"1 parameter given", "RANGE,TARGET"});
    expect_refused(sw, move, "", {"0 parameters"});
    expect_refused(sw, move, "tcp:8000-8099,db,web", {"3 parameters"});
    // The order is RANGE,TARGET: the swapped form reads the target as a range.
    expect_refused(sw, move, "db,tcp:8000-8099", {"db"});
}

TEST_CASE("control vm/disable and vm/enable: the snapshot's owner flag and lookup follow", "[control]") {
    Switch sw;
    REQUIRE(sw.snap().owners[vm_owner_id(0)].enabled);
    json a = expect_change(sw, "/portmux/vm/disable", "web");
    CHECK(a["vm"] == "web");
    CHECK(a["enabled"] == 0);
    CHECK(a["was"] == "enabled");
    CHECK_FALSE(sw.snap().owners[vm_owner_id(0)].enabled);
    CHECK(sw.snap().owners[vm_owner_id(1)].enabled);
    // The ranges stay the VM's: the table still names it, delivery is dropped.
    CHECK(sw.table(L4Proto::kTcp, 8000) == vm_owner_id(0));
    CHECK(expect_ok(sw, "/portmux/lookup", "tcp:8000")["delivery"] == "drop");
    CHECK(expect_ok(sw, "/portmux/vms", "web")["0"]["enabled"] == 0);
    CHECK_FALSE(sw.state->running_config().vms[0].enabled);

    // Disabling twice is allowed and says it already was.
    CHECK(expect_change(sw, "/portmux/vm/disable", "web")["was"] == "disabled");

    a = expect_change(sw, "/portmux/vm/enable", "web");
    CHECK(a["enabled"] == 1);
    CHECK(a["was"] == "disabled");
    CHECK(sw.snap().owners[vm_owner_id(0)].enabled);
    CHECK(expect_ok(sw, "/portmux/lookup", "tcp:8000")["delivery"] == "vm");

    expect_change(sw, "/portmux/vm/disable", "my-vm.1");
    CHECK_FALSE(sw.snap().owners[vm_owner_id(2)].enabled);
}

TEST_CASE("control vm/disable and vm/enable: unknown VMs and bad parameters are refused", "[control]") {
    Switch sw;
    for (const char* cmd : {"/portmux/vm/disable", "/portmux/vm/enable"}) {
        expect_refused(sw, cmd, "nope", {"unknown VM", "nope"});
        expect_refused(sw, cmd, "host", {"unknown VM", "host"});
        expect_refused(sw, cmd, "", {"0 parameters", "VM"});
        expect_refused(sw, cmd, "web,db", {"2 parameters"});
    }
}

TEST_CASE("control firewall: list, add at an index or last, delete, default", "[control]") {
    Switch sw;
    json list = expect_ok(sw, "/portmux/firewall/list");
    expect_fits_telemetry("/portmux/firewall/list", list);
    CHECK(list["default"] == "accept");
    CHECK(list["page_total"] == 1);
    CHECK(list["0"]["action"] == "drop");
    CHECK(list["0"]["proto"] == "tcp");
    CHECK(list["0"]["dst_ports"] == "23");

    const Firewall* before = sw.snap().firewall.get();
    json a = expect_change(sw, "/portmux/firewall/add",
                           R"({"action": "drop", "proto": "udp", "src": "203.0.113.0/24", "dst_ports": "6050-6059"})");
    CHECK(a["added"] == 1);
    CHECK(a["rules"] == 2);
    CHECK(sw.snap().firewall.get() != before);
    a = expect_change(sw, "/portmux/firewall/add", R"(0,{"action": "accept", "src": "198.51.100.7/32"})");
    CHECK(a["added"] == 0);
    CHECK(a["rules"] == 3);
    list = expect_ok(sw, "/portmux/firewall/list");
    CHECK(list["page_total"] == 3);
    CHECK(list["0"]["src"] == "198.51.100.7/32");
    CHECK(list["1"]["dst_ports"] == "23");
    CHECK(list["2"]["src"] == "203.0.113.0/24");
    CHECK(sw.state->firewall().rules.size() == 3);
    // Last, with an explicit index equal to the count.
    CHECK(expect_change(sw, "/portmux/firewall/add", R"(3,{"action": "drop", "proto": "icmp"})")["added"] == 3);

    a = expect_change(sw, "/portmux/firewall/del", "1");
    CHECK(a["removed"] == 1);
    CHECK(a["rules"] == 3);
    list = expect_ok(sw, "/portmux/firewall/list");
    CHECK(list["1"]["src"] == "203.0.113.0/24");
    CHECK(list["2"]["proto"] == "icmp");

    a = expect_change(sw, "/portmux/firewall/default", "drop");
    CHECK(a["default"] == "drop");
    CHECK(expect_ok(sw, "/portmux/firewall/list")["default"] == "drop");
    CHECK(sw.state->running_config().firewall.default_action == FirewallAction::kDrop);
    // Firewall changes leave the range table alone.
    CHECK(sw.table(L4Proto::kTcp, 8000) == vm_owner_id(0));
}

TEST_CASE("control firewall: bad JSON, bad rules and indexes out of range are refused", "[control]") {
    Switch sw;
    const char* add = "/portmux/firewall/add";
    expect_refused(sw, add, "", {"usage"});
    expect_refused(sw, add, "{x", {"invalid JSON"});
    expect_refused(sw, add, R"({"action": "drop")", {"invalid JSON"});
    expect_refused(sw, add, "[1,2]", {"rule"});
    expect_refused(sw, add, R"({"action": "reject"})", {"rule.action", "reject"});
    expect_refused(sw, add, R"({"action": "drop", "prot": "tcp"})", {"rule.prot", "unknown key"});
    expect_refused(sw, add, R"({"action": "drop", "proto": "tcp", "dst_ports": "90-80"})", {"dst_ports", "FROM is above TO"});
    expect_refused(sw, add, R"({"action": "drop", "src": "10.0.0.0/33"})", {"rule.src"});
    expect_refused(sw, add, R"({"action": "drop", "proto": "icmp", "dst_ports": "80"})", {"ports need proto"});
    expect_refused(sw, add, R"(5,{"action": "drop"})", {"index 5", "1 rules"});
    expect_refused(sw, add, R"(1x,{"action": "drop"})", {"INDEX"});
    expect_refused(sw, add, "3", {"usage"});

    const char* del = "/portmux/firewall/del";
    expect_refused(sw, del, "1", {"no rule 1", "1 rules"});
    expect_refused(sw, del, "-1", {"INDEX", "-1"});
    expect_refused(sw, del, "one", {"INDEX", "one"});
    expect_refused(sw, del, "", {"0 parameters"});
    expect_refused(sw, del, "0,1", {"2 parameters"});

    const char* dflt = "/portmux/firewall/default";
    expect_refused(sw, dflt, "reject", {"reject", "accept or drop"});
    expect_refused(sw, dflt, "", {"0 parameters"});
    expect_refused(sw, dflt, "drop,accept", {"2 parameters"});

    expect_refused(sw, "/portmux/firewall/list", "x", {"usage"});
    expect_refused(sw, "/portmux/firewall/list", "offset=z", {"offset"});
}

TEST_CASE("control config/save: writes the running configuration, which loads back equal", "[control]") {
    Switch sw;
    std::string dir = temp_dir();
    std::string file = dir + "/portmux.json";
    {
        std::ofstream out(file);
        out << "{}\n";
    }
    sw.ctx.config_file = file;
    expect_change(sw, "/portmux/range/add", "web,tcp:8100-8199");
    expect_change(sw, "/portmux/range/move", "udp:6000-6099,my-vm.1");
    expect_change(sw, "/portmux/range/del", "tcp:22");
    expect_change(sw, "/portmux/vm/disable", "db");
    expect_change(sw, "/portmux/firewall/add", R"({"action": "drop", "proto": "udp", "dst_ports": "7"})");
    expect_change(sw, "/portmux/firewall/default", "drop");

    uint64_t generation = sw.state->generation();
    json a = expect_ok(sw, "/portmux/config/save");
    CHECK(a["saved"] == file);
    // Saving is not a change of the switch.
    CHECK(sw.state->generation() == generation);
    CHECK(sw.snap().generation == generation);

    Config loaded = load_config_file(file);
    CHECK(config_to_json(loaded) == config_to_json(sw.state->running_config()));
    CHECK_FALSE(loaded.vms[1].enabled);
    CHECK(loaded.vms[2].ranges.size() == 2);
    CHECK(loaded.host.ranges.size() == 1);
    CHECK(loaded.firewall.default_action == FirewallAction::kDrop);
    // No temporary file is left beside it.
    CHECK(std::system(fmt::format("test $(ls -A '{}' | wc -l) -eq 1", dir).c_str()) == 0);

    expect_refused(sw, "/portmux/config/save", "elsewhere.json", {"no parameters"});
    sw.ctx.config_file = dir + "/missing-dir/portmux.json";
    expect_refused(sw, "/portmux/config/save", "", {"cannot create", "missing-dir"});
    sw.ctx.config_file.clear();
    expect_refused(sw, "/portmux/config/save", "", {"no configuration file"});
    std::system(fmt::format("rm -rf '{}'", dir).c_str());
}

TEST_CASE("control read-only: every mutating command is refused, reading still works", "[control]") {
    Config c = base_config();
    c.control.read_only = true;
    Switch sw(c, true);
    std::string dir = temp_dir();
    sw.ctx.config_file = dir + "/portmux.json";
    const std::vector<std::pair<std::string, std::string>> valid = {
        {"/portmux/range/add", "web,tcp:8100"},    {"/portmux/range/del", "udp:5353"},
        {"/portmux/range/move", "udp:5353,db"},    {"/portmux/vm/disable", "web"},
        {"/portmux/vm/enable", "web"},             {"/portmux/config/save", ""},
        {"/portmux/firewall/add", R"({"action": "drop"})"}, {"/portmux/firewall/del", "0"},
        {"/portmux/firewall/default", "drop"},
        {"/portmux/address/add", "192.0.2.20"},    {"/portmux/address/del", "192.0.2.20"},
        {"/portmux/vm/backup", "web,db"},
        {"/portmux/vm/add", "new,/run/portmux/new.sock,52:54:00:12:34:99"}, {"/portmux/vm/del", "web"},
        {"/portmux/remote/add", "db-b,198.51.100.2,02:00:00:00:0b:01"}, {"/portmux/remote/del", "db-b"},
        {"/portmux/group/add", "pool,web"},        {"/portmux/group/del", "pool"},
        {"/portmux/group/member/add", "pool,web"}, {"/portmux/group/member/del", "pool,web"},
        {"/portmux/group/member/weight", "pool,web,2"}, {"/portmux/group/member/drain", "pool,web"},
        {"/portmux/capture/start", "web," + dir + "/web.pcapng"}, {"/portmux/capture/stop", "web"},
    };
    size_t mutating = 0;
    for (const CommandSpec& spec : command_table()) {
        if (!spec.mutating) {
            json a = sw.run(spec.name, spec.name == std::string("/portmux/lookup") ? "tcp:80" : "");
            CHECK(error_of(a).empty());
            continue;
        }
        ++mutating;
        auto it = std::find_if(valid.begin(), valid.end(), [&](const auto& v) { return v.first == spec.name; });
        INFO(spec.name);
        REQUIRE(it != valid.end());
        expect_refused(sw, it->first, it->second, {"read-only"});
    }
    CHECK(mutating == valid.size());
    CHECK(access(sw.ctx.config_file.c_str(), F_OK) != 0);
    CHECK(access((dir + "/web.pcapng").c_str(), F_OK) != 0);
    std::system(fmt::format("rm -rf '{}'", dir).c_str());
}

TEST_CASE("control capture: a vhost VM's capture starts, is listed and stops; refusals change nothing",
          "[control][capture]") {
    Switch sw;
    VmCapture capture(nullptr);
    sw.ctx.capture = &capture;
    const std::string dir = temp_dir();
    const std::string file = dir + "/web.pcapng";
    expect_refused(sw, "/portmux/capture/start", "nobody," + file, {"unknown VM", "nobody"});
    expect_refused(sw, "/portmux/capture/start", "db," + file, {"device port", "dpdk-dumpcap"});
    expect_refused(sw, "/portmux/capture/start", "web,web.pcapng", {"absolute"});
    expect_refused(sw, "/portmux/capture/start", "web," + file + ",0", {"MAX_PACKETS"});
    expect_refused(sw, "/portmux/capture/start", "web," + file + ",ten", {"MAX_PACKETS"});
    expect_refused(sw, "/portmux/capture/start", "web,/" + std::string(130, 'a'), {"at most 120 bytes"});
    expect_refused(sw, "/portmux/capture/start", "web", {"usage"});
    expect_refused(sw, "/portmux/capture/start", dir + "/missing/web.pcapng", {"usage"});
    expect_refused(sw, "/portmux/capture/start", "web," + dir + "/missing/web.pcapng", {"cannot create"});
    expect_refused(sw, "/portmux/capture/stop", "web", {"not captured"});
    expect_refused(sw, "/portmux/capture/stop", "nobody", {"unknown VM"});
    CHECK(sw.run("/portmux/captures")["captures"] == 0);
    CHECK(access(file.c_str(), F_OK) != 0);

    json started = sw.run("/portmux/capture/start", "web," + file + ",7");
    CHECK(error_of(started).empty());
    CHECK(started["vm"] == "web");
    CHECK(started["max_packets"] == 7);
    CHECK(access(file.c_str(), F_OK) == 0);
    expect_refused(sw, "/portmux/capture/start", "web," + dir + "/again.pcapng", {"already captured"});
    json listed = sw.run("/portmux/captures");
    CHECK(listed["captures"] == 1);
    CHECK(listed["max_captures"] == kMaxCaptures);
    CHECK(listed["0"]["vm"] == "web");
    CHECK(listed["0"]["file"] == file);
    CHECK(listed["0"]["state"] == "running");
    json stopped = sw.run("/portmux/capture/stop", "web");
    CHECK(error_of(stopped).empty());
    CHECK(stopped["state"] == "stopped");
    CHECK(stopped["written"] == 0);
    CHECK(stopped["dropped"] == 0);
    CHECK(sw.run("/portmux/captures")["captures"] == 0);
    std::system(fmt::format("rm -rf '{}'", dir).c_str());
}

TEST_CASE("control: an unknown command is refused by name", "[control]") {
    Switch sw;
    expect_refused(sw, "/portmux/range/rename", "a,b", {"unknown command", "/portmux/range/rename"});
}

TEST_CASE("control: the generation grows by one per change and not at all on a refusal", "[control]") {
    Switch sw;
    REQUIRE(sw.state->generation() == 1);
    REQUIRE(sw.snap().generation == 1);
    const Snapshot* first = &sw.snap();
    expect_change(sw, "/portmux/range/add", "web,tcp:1");
    CHECK(&sw.snap() != first);
    expect_refused(sw, "/portmux/range/add", "db,tcp:1", {"overlaps"});
    expect_change(sw, "/portmux/range/move", "tcp:1,db");
    expect_refused(sw, "/portmux/range/move", "tcp:1,nobody", {"unknown target"});
    expect_change(sw, "/portmux/range/del", "tcp:1");
    expect_refused(sw, "/portmux/range/del", "tcp:1", {"no range"});
    expect_change(sw, "/portmux/vm/disable", "db");
    expect_change(sw, "/portmux/vm/enable", "db");
    expect_change(sw, "/portmux/firewall/default", "drop");
    expect_refused(sw, "/portmux/firewall/del", "7", {"no rule"});
    CHECK(sw.state->generation() == 7);
    CHECK(sw.snap().generation == 7);
    // Reads publish nothing.
    expect_ok(sw, "/portmux/ranges");
    expect_ok(sw, "/portmux/vms");
    expect_ok(sw, "/portmux/lookup", "tcp:1");
    CHECK(sw.snap().generation == 7);
}

TEST_CASE("control: ranges of another shared address are added, looked up, moved and removed on its table",
          "[control]") {
    Config config = base_config();
    config.extra_shared_ips = {*Ipv4Addr::parse("192.0.2.20")};
    Switch sw(config);
    REQUIRE(sw.snap().extra_tables.size() == 1);
    REQUIRE(sw.snap().table_at[1] == sw.snap().extra_tables[0].get());
    auto second = [&](L4Proto proto, uint16_t port) { return sw.snap().table_at[1]->lookup(proto, port); };

    // tcp:8000 is web's on the first address; on the second it is free until db takes it.
    CHECK(second(L4Proto::kTcp, 8000) == kNoOwner);
    expect_change(sw, "/portmux/range/add", "db,192.0.2.20/tcp:8000-8009");
    CHECK(second(L4Proto::kTcp, 8005) == vm_owner_id(1));
    CHECK(sw.table(L4Proto::kTcp, 8005) == vm_owner_id(0));
    json lookup = expect_ok(sw, "/portmux/lookup", "192.0.2.20/tcp:8005");
    CHECK(lookup["target"] == "db");
    CHECK(lookup["address"] == "192.0.2.20");
    CHECK(lookup["range"] == "192.0.2.20/tcp:8000-8009");
    CHECK(expect_ok(sw, "/portmux/lookup", "tcp:8005")["target"] == "web");
    CHECK(expect_ok(sw, "/portmux/lookup", "192.0.2.10/tcp:8005")["target"] == "web");
    CHECK(strings(expect_ok(sw, "/portmux/ranges", "db")["ranges"]) ==
          std::vector<std::string>{"tcp:5432", "udp:6000-6099", "192.0.2.20/tcp:8000-8009"});
    CHECK(expect_ok(sw, "/portmux/info")["more_shared_ips"] == json::array({"192.0.2.20"}));

    expect_change(sw, "/portmux/range/move", "192.0.2.20/tcp:8000-8009,host");
    CHECK(second(L4Proto::kTcp, 8000) == kHostOwner);
    CHECK(sw.table(L4Proto::kTcp, 8000) == vm_owner_id(0));
    expect_refused(sw, "/portmux/range/add", "web,192.0.2.20/tcp:8009", {"overlaps", "192.0.2.20/tcp:8000-8009"});
    expect_refused(sw, "/portmux/range/add", "web,192.0.2.30/tcp:80", {"192.0.2.30 is not a shared address"});
    expect_refused(sw, "/portmux/range/add", "web,192.0.2.20/tcp:81->80", {"first shared address only"});
    expect_refused(sw, "/portmux/lookup", "192.0.2.30/tcp:80", {"not a shared address"});
    expect_refused(sw, "/portmux/range/del", "192.0.2.20/tcp:8000", {"no range"});
    expect_change(sw, "/portmux/range/del", "192.0.2.20/tcp:8000-8009");
    CHECK(second(L4Proto::kTcp, 8000) == kNoOwner);
    CHECK(sw.table(L4Proto::kTcp, 8000) == vm_owner_id(0));
}

TEST_CASE("control vm/backup: sets and clears a VM's backup, refuses what is not a VM", "[control]") {
    Switch sw;
    json a = expect_change(sw, "/portmux/vm/backup", "web,db");
    CHECK(a["backup"] == "db");
    CHECK(a["was"] == "none");
    CHECK(a["served_by"] == "web");  // web's port is up
    CHECK(sw.state->running_config().vms[0].backup == "db");
    a = expect_change(sw, "/portmux/vm/backup", "web");
    CHECK(a["backup"] == "none");
    CHECK(a["was"] == "db");
    expect_refused(sw, "/portmux/vm/backup", "web,web", {"own backup"});
    expect_refused(sw, "/portmux/vm/backup", "web,nobody", {"unknown VM \"nobody\""});
    expect_refused(sw, "/portmux/vm/backup", "nobody,web", {"unknown VM \"nobody\""});
    expect_refused(sw, "/portmux/vm/backup", "", {"usage"});
}

TEST_CASE("control address/add and address/del: a shared address gets an empty table, leaves only when empty",
          "[control]") {
    Switch sw;
    json added = expect_change(sw, "/portmux/address/add", "192.0.2.20");
    CHECK(added["shared_ips"] == json::array({"192.0.2.10", "192.0.2.20"}));
    REQUIRE(sw.snap().extra_tables.size() == 1);
    REQUIRE(sw.snap().shared.extra_ip4_count == 1);
    CHECK(sw.snap().table_at[1]->lookup(L4Proto::kTcp, 8000) == kNoOwner);
    expect_change(sw, "/portmux/address/add", "192.0.2.30");
    expect_change(sw, "/portmux/range/add", "db,192.0.2.30/tcp:80");
    expect_change(sw, "/portmux/range/add", "web,192.0.2.20/tcp:80");
    CHECK(sw.snap().table_at[1]->lookup(L4Proto::kTcp, 80) == vm_owner_id(0));
    CHECK(sw.snap().table_at[2]->lookup(L4Proto::kTcp, 80) == vm_owner_id(1));

    expect_refused(sw, "/portmux/address/del", "192.0.2.20", {"still has ranges", "192.0.2.20/tcp:80", "web"});
    expect_refused(sw, "/portmux/address/del", "192.0.2.10", {"first shared address"});
    expect_refused(sw, "/portmux/address/del", "192.0.2.99", {"not a shared address"});
    expect_refused(sw, "/portmux/address/add", "192.0.2.30", {"already"});
    expect_refused(sw, "/portmux/address/add", "192.0.2.10", {"first shared address"});
    expect_refused(sw, "/portmux/address/add", "224.0.0.1", {"not a unicast address"});
    expect_refused(sw, "/portmux/address/add", "192.0.2", {"not an IPv4 address"});
    expect_refused(sw, "/portmux/address/add", "", {"usage"});

    // Removing the middle address keeps the other address's table with its owner (tables follow addresses).
    expect_change(sw, "/portmux/range/del", "192.0.2.20/tcp:80");
    expect_change(sw, "/portmux/address/del", "192.0.2.20");
    REQUIRE(sw.snap().shared.extra_ip4_count == 1);
    CHECK(sw.snap().table_at[1]->lookup(L4Proto::kTcp, 80) == vm_owner_id(1));
    CHECK(expect_ok(sw, "/portmux/lookup", "192.0.2.30/tcp:80")["target"] == "db");
    CHECK(sw.state->running_config().extra_shared_ips == std::vector<Ipv4Addr>{*Ipv4Addr::parse("192.0.2.30")});
    for (int i = 0; i < 14; ++i) expect_change(sw, "/portmux/address/add", fmt::format("198.51.100.{}", i + 1));
    expect_refused(sw, "/portmux/address/add", "198.51.100.99", {"the most supported"});
}

// ---- VMs added and removed at runtime ---------------------------------------------------------------------

namespace {

// The driver's side of vm/add and vm/del, recorded: which index was attached and detached, and a failure
// to answer when asked to.
struct FakeAttach {
    std::vector<size_t> attached, detached;
    std::string fail_with;
    void install(Switch& sw) {
        sw.ctx.attach_vm = [this](size_t index, const VmConfig&) {
            if (!fail_with.empty()) return fail_with;
            attached.push_back(index);
            return std::string();
        };
        sw.ctx.detach_vm = [this](size_t index) { detached.push_back(index); };
    }
};

}  // namespace

TEST_CASE("control vm/add: a vhost-user VM takes the next index, gets a snapshot entry and ranges", "[control]") {
    Switch sw;
    FakeAttach driver;
    driver.install(sw);
    json a = expect_change(sw, "/portmux/vm/add", "api,/run/portmux/api.sock,52:54:00:12:34:10,server");
    CHECK(a["index"] == 3);
    CHECK(a["vhost_mode"] == "server");
    CHECK(driver.attached == std::vector<size_t>{3});
    const OwnerTarget& target = sw.snap().owners.at(vm_owner_id(3));
    CHECK(target.kind == OwnerKind::kVm);
    CHECK(target.port == vm_port_index(3));
    CHECK(target.mac.to_string() == "52:54:00:12:34:10");
    expect_change(sw, "/portmux/range/add", "api,tcp:7000-7099");
    CHECK(sw.snap().table->lookup(L4Proto::kTcp, 7050) == vm_owner_id(3));
    json vms = expect_ok(sw, "/portmux/vms", "api");
    CHECK(vms["3"]["name"] == "api");
    CHECK(vms["3"]["ranges"] == 1);
    CHECK(vms["3"]["port"] == vm_port_index(3));
    // It is saved with the others.
    Config running = sw.state->running_config();
    REQUIRE(running.vms.size() == 4);
    CHECK(running.vms[3].name == "api");
    CHECK(running.vms[3].vhost_mode == VhostMode::kServer);
}

TEST_CASE("control vm/add: bad or conflicting VMs are refused and change nothing", "[control]") {
    Switch sw;
    FakeAttach driver;
    driver.install(sw);
    expect_refused(sw, "/portmux/vm/add", "api,/run/portmux/api.sock", {"usage"});
    expect_refused(sw, "/portmux/vm/add", "web,/run/portmux/x.sock,52:54:00:12:34:10", {"already used"});
    expect_refused(sw, "/portmux/vm/add", "host,/run/portmux/x.sock,52:54:00:12:34:10", {"already used"});
    expect_refused(sw, "/portmux/vm/add", "a b,/run/portmux/x.sock,52:54:00:12:34:10", {"NAME"});
    expect_refused(sw, "/portmux/vm/add", "api,relative.sock,52:54:00:12:34:10", {"absolute"});
    expect_refused(sw, "/portmux/vm/add", "api,/run/portmux/x.sock,01:00:5e:00:00:01", {"MAC"});
    expect_refused(sw, "/portmux/vm/add", "api,/run/portmux/x.sock,zz", {"MAC"});
    expect_refused(sw, "/portmux/vm/add", "api,/run/portmux/x.sock,52:54:00:12:34:01", {"MAC", "web"});
    expect_refused(sw, "/portmux/vm/add", "api,/run/portmux/web.sock,52:54:00:12:34:10", {"socket", "web"});
    expect_refused(sw, "/portmux/vm/add", "api,/run/portmux/x.sock,52:54:00:12:34:10,both", {"client or server"});
    driver.fail_with = "VM \"api\": vhost socket /run/portmux/x.sock: directory /run/portmux is not writable";
    expect_refused(sw, "/portmux/vm/add", "api,/run/portmux/x.sock,52:54:00:12:34:10", {"not writable"});
    CHECK(driver.attached.empty());
}

TEST_CASE("control vm/add: up to kMaxVms VMs, one more is refused", "[control]") {
    Switch sw;
    FakeAttach driver;
    driver.install(sw);
    for (size_t i = 3; i < kMaxVms; ++i) {
        json a = sw.run("/portmux/vm/add", fmt::format("vm{},/run/portmux/vm{}.sock,52:54:00:01:{:02x}:{:02x}", i, i,
                                                        i / 256, i % 256));
        REQUIRE(error_of(a).empty());
        REQUIRE(a["index"] == i);
    }
    CHECK(sw.state->vms().size() == kMaxVms);
    CHECK(sw.snap().owners.at(vm_owner_id(kMaxVms - 1)).kind == OwnerKind::kVm);
    expect_refused(sw, "/portmux/vm/add", "vm-extra,/run/portmux/extra.sock,52:54:00:02:00:01", {"too many VMs", "1024"});
    CHECK(driver.attached.size() == kMaxVms - 3);
    // A freed index is taken again, and its counters start from zero.
    sw.counters->add(vm_port_index(500), PortCounter::rx_packets, 7);
    expect_change(sw, "/portmux/vm/del", "vm500");
    CHECK(driver.detached == std::vector<size_t>{500});
    CHECK(sw.snap().owners.at(vm_owner_id(500)).kind == OwnerKind::kNone);
    json a = expect_change(sw, "/portmux/vm/add", "vm-new,/run/portmux/new.sock,52:54:00:02:00:02");
    CHECK(a["index"] == 500);
    json vms = expect_ok(sw, "/portmux/vms", "vm-new");
    CHECK(vms["500"]["rx_packets"] == 0);
    sw.counters->add(vm_port_index(500), PortCounter::rx_packets, 2);
    CHECK(expect_ok(sw, "/portmux/vms", "vm-new")["500"]["rx_packets"] == 2);
    // Every page of the full list fits telemetry.
    json page = expect_ok(sw, "/portmux/vms");
    expect_fits_telemetry("/portmux/vms", page);
    CHECK(page["page_total"] == kMaxVms);
}

TEST_CASE("control vm/del: refused while the VM owns ranges, backs up another or is a group member", "[control]") {
    Switch sw;
    FakeAttach driver;
    driver.install(sw);
    expect_refused(sw, "/portmux/vm/del", "web", {"owns 2 ranges"});
    expect_refused(sw, "/portmux/vm/del", "nobody", {"unknown VM"});
    expect_refused(sw, "/portmux/vm/del", "db", {"owns"});
    expect_change(sw, "/portmux/range/del", "tcp:8000-8099");
    expect_change(sw, "/portmux/range/del", "udp:5353");
    expect_change(sw, "/portmux/vm/backup", "my-vm.1,web");
    expect_refused(sw, "/portmux/vm/del", "web", {"backup", "my-vm.1"});
    expect_change(sw, "/portmux/vm/backup", "my-vm.1");
    expect_change(sw, "/portmux/group/add", "pool,web");
    expect_refused(sw, "/portmux/vm/del", "web", {"group", "pool"});
    expect_change(sw, "/portmux/group/del", "pool");
    json a = expect_change(sw, "/portmux/vm/del", "web");
    CHECK(a["index"] == 0);
    CHECK(driver.detached == std::vector<size_t>{0});
    CHECK(sw.snap().owners.at(vm_owner_id(0)).kind == OwnerKind::kNone);
    CHECK_FALSE(sw.state->owner_by_name("web"));
    expect_refused(sw, "/portmux/vms", "web", {"unknown VM"});
    // The other VMs keep their indexes and owner ids.
    CHECK(sw.state->owner_by_name("db") == vm_owner_id(1));
    Config running = sw.state->running_config();
    REQUIRE(running.vms.size() == 2);
    CHECK(running.vms[0].name == "db");
}
