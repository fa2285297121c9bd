// Remote VMs through the /portmux/* commands and SwitchState: adding, listing, removing, moving ranges to
// and from a remote, and what the published snapshot tells the workers.
#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "config/config.hpp"
#include "control/commands.hpp"
#include "control/switch_state.hpp"
#include "core/port_index.hpp"
#include "core/worker_counters.hpp"
#include "tables/snapshot.hpp"

using namespace portmux;
using nlohmann::json;

namespace {

json example_config() {
    return {{"shared_ip", "192.0.2.10"},
            {"uplink", {{"device", "net_null0"}, {"mac", "02:00:00:00:0a:01"}}},
            {"host", {{"ranges", {"tcp:22"}}}},
            {"vms", json::array({{{"name", "web"}, {"device", "net_null1"}, {"mac", "52:54:00:12:34:01"},
                                  {"ranges", {"tcp:80", "udp:7000"}}}})},
            {"vxlan", {{"local_ip", "198.51.100.1"}, {"vni", 4242}, {"peers", {"198.51.100.9"}}}},
            {"remotes", json::array({{{"name", "db-b"}, {"host", "198.51.100.2"}, {"mac", "02:00:00:00:0b:01"},
                                      {"ranges", {"tcp:5432"}}}})}};
}

struct RemoteSwitch {
    SnapshotPublisher publisher{1};
    std::unique_ptr<SwitchState> state;
    std::unique_ptr<WorkerCounters> counters;
    ControlContext ctx;

    explicit RemoteSwitch(const json& doc = example_config(), bool read_only = false) {
        Config config = parse_config(doc);
        state = std::make_unique<SwitchState>(config, publisher);
        state->publish_initial();
        ctx.state = state.get();
        for (size_t i = 0; i < 2 + config.vms.size(); ++i) {
            Port p;
            p.name = i == 0 ? "uplink" : i == 1 ? "host" : config.vms[i - 2].name;
            p.role = role_of_port(static_cast<uint16_t>(i));
            p.index = static_cast<uint16_t>(i);
            p.owner = i == 0 ? kNoOwner : i == 1 ? kHostOwner : vm_owner_id(i - 2);
            ctx.ports.push_back(p);
        }
        ctx.link_up = [](uint16_t) { return true; };
        counters = std::make_unique<WorkerCounters>(ctx.ports.size());
        ctx.counters = {counters.get()};
        ctx.started = std::chrono::steady_clock::now();
        ctx.read_only = read_only;
    }

    json run(const std::string& name, const std::string& params = "") { return run_command(ctx, name, params); }
    const Snapshot& snap() const { return *publisher.current(); }
    const OwnerTarget& owner_of(L4Proto proto, uint16_t port) const {
        return snap().owners.at(snap().table->lookup(proto, port));
    }
};

std::string error_of(const json& answer) { return answer.contains("error") ? answer["error"].get<std::string>() : ""; }

uint32_t be32(const char* text) { return Ipv4Addr::parse(text)->as_be32(); }

}  // namespace

TEST_CASE("remotes: a configured remote's port leads the workers to its host and next hop", "[remote]") {
    RemoteSwitch sw;
    const OwnerTarget& target = sw.owner_of(L4Proto::kTcp, 5432);
    CHECK(target.kind == OwnerKind::kRemote);
    CHECK(target.remote_ip == be32("198.51.100.2"));
    CHECK(target.mac.to_string() == "02:00:00:00:0b:01");
    CHECK(target.port == kUplinkPortIndex);
    REQUIRE(sw.snap().vxlan != nullptr);
    CHECK(sw.snap().vxlan->vni == 4242);
    CHECK(sw.snap().vxlan->local_ip == be32("198.51.100.1"));
    // Peers: the configured one and the remote's host.
    CHECK(sw.snap().vxlan->is_peer(be32("198.51.100.9")));
    CHECK(sw.snap().vxlan->is_peer(be32("198.51.100.2")));
    CHECK_FALSE(sw.snap().vxlan->is_peer(be32("198.51.100.3")));
}

TEST_CASE("remotes: without vxlan the snapshot carries no tunnel and remote/add is refused", "[remote]") {
    json doc = example_config();
    doc.erase("vxlan");
    doc.erase("remotes");
    RemoteSwitch sw(doc);
    CHECK(sw.snap().vxlan == nullptr);
    CHECK_THAT(error_of(sw.run("/portmux/remote/add", "db-b,198.51.100.2,02:00:00:00:0b:01")), Catch::Contains("vxlan"));
    CHECK_FALSE(sw.run("/portmux/info").contains("vxlan_vni"));
}

TEST_CASE("remotes: /portmux/remotes lists each remote with its ranges and counters", "[remote]") {
    RemoteSwitch sw;
    sw.counters->add_remote(0, 100);
    sw.counters->add_remote(0, 60);
    json answer = sw.run("/portmux/remotes");
    INFO(answer.dump());
    REQUIRE(answer.contains("0"));
    CHECK(answer["0"]["name"] == "db-b");
    CHECK(answer["0"]["host"] == "198.51.100.2");
    CHECK(answer["0"]["mac"] == "02:00:00:00:0b:01");
    CHECK(answer["0"]["ranges"] == 1);
    CHECK(answer["0"]["tx_packets"] == 2);
    CHECK(answer["0"]["tx_bytes"] == 160);
    CHECK(answer["page_total"] == 1);
    CHECK_THAT(error_of(sw.run("/portmux/remotes", "nobody")), Catch::Contains("unknown remote"));
    json info = sw.run("/portmux/info");
    CHECK(info["vxlan_local_ip"] == "198.51.100.1");
    CHECK(info["vxlan_vni"] == 4242);
    CHECK(info["vxlan_port"] == 4789);
}

TEST_CASE("remotes: remote/add makes a name a range target; refusals change nothing", "[remote]") {
    RemoteSwitch sw;
    json added = sw.run("/portmux/remote/add", "cache-c,198.51.100.3,02:00:00:00:0c:01");
    INFO(added.dump());
    REQUIRE(error_of(added).empty());
    CHECK(sw.snap().vxlan->is_peer(be32("198.51.100.3")));
    REQUIRE(error_of(sw.run("/portmux/range/add", "cache-c,udp:11211")).empty());
    CHECK(sw.owner_of(L4Proto::kUdp, 11211).kind == OwnerKind::kRemote);
    CHECK(sw.owner_of(L4Proto::kUdp, 11211).remote_ip == be32("198.51.100.3"));
    json lookup = sw.run("/portmux/lookup", "udp:11211");
    CHECK(lookup["target"] == "cache-c");
    CHECK(lookup["delivery"] == "remote");
    json ranges = sw.run("/portmux/ranges", "cache-c");
    CHECK(ranges["ranges"] == json::array({"udp:11211"}));

    const uint64_t generation = sw.state->generation();
    CHECK_THAT(error_of(sw.run("/portmux/remote/add", "web,198.51.100.4,02:00:00:00:0d:01")), Catch::Contains("already used"));
    CHECK_THAT(error_of(sw.run("/portmux/remote/add", "host,198.51.100.4,02:00:00:00:0d:01")), Catch::Contains("already used"));
    CHECK_THAT(error_of(sw.run("/portmux/remote/add", "x,198.51.100.1,02:00:00:00:0d:01")), Catch::Contains("HOST"));
    CHECK_THAT(error_of(sw.run("/portmux/remote/add", "x,not-an-ip,02:00:00:00:0d:01")), Catch::Contains("HOST"));
    CHECK_THAT(error_of(sw.run("/portmux/remote/add", "x,198.51.100.4,01:00:5e:00:00:01")), Catch::Contains("MAC"));
    CHECK_THAT(error_of(sw.run("/portmux/remote/add", "bad name,198.51.100.4,02:00:00:00:0d:01")), Catch::Contains("NAME"));
    CHECK_THAT(error_of(sw.run("/portmux/remote/add", "x,198.51.100.4")), Catch::Contains("usage"));
    CHECK_THAT(error_of(sw.run("/portmux/vm/disable", "cache-c")), Catch::Contains("unknown VM"));
    CHECK_THAT(error_of(sw.run("/portmux/range/add", "cache-c,tcp:8080-8089->80-89")), Catch::Contains("local VMs"));
    CHECK(sw.state->generation() == generation);
}

TEST_CASE("remotes: remote/del is refused while the remote owns ranges, then frees the name and the peer", "[remote]") {
    RemoteSwitch sw;
    CHECK_THAT(error_of(sw.run("/portmux/remote/del", "db-b")), Catch::Contains("owns 1 range"));
    CHECK_THAT(error_of(sw.run("/portmux/remote/del", "web")), Catch::Contains("unknown remote"));
    REQUIRE(error_of(sw.run("/portmux/range/move", "tcp:5432,web")).empty());
    json removed = sw.run("/portmux/remote/del", "db-b");
    REQUIRE(error_of(removed).empty());
    CHECK_FALSE(sw.snap().vxlan->is_peer(be32("198.51.100.2")));
    CHECK(sw.snap().vxlan->is_peer(be32("198.51.100.9")));
    CHECK_THAT(error_of(sw.run("/portmux/range/add", "db-b,tcp:5433")), Catch::Contains("unknown target"));
    CHECK(sw.run("/portmux/remotes")["page_total"] == 0);
    // The slot is reused by the next remote.
    REQUIRE(error_of(sw.run("/portmux/remote/add", "db-c,198.51.100.5,02:00:00:00:0e:01")).empty());
    REQUIRE(error_of(sw.run("/portmux/range/add", "db-c,tcp:5433")).empty());
    CHECK(sw.owner_of(L4Proto::kTcp, 5433).remote_slot == 0);
    CHECK(sw.owner_of(L4Proto::kTcp, 5433).remote_ip == be32("198.51.100.5"));
}

TEST_CASE("remotes: range/move between a local VM and a remote switches the owner in the next snapshot", "[remote]") {
    RemoteSwitch sw;
    REQUIRE(error_of(sw.run("/portmux/range/move", "udp:7000,db-b")).empty());
    CHECK(sw.owner_of(L4Proto::kUdp, 7000).kind == OwnerKind::kRemote);
    REQUIRE(error_of(sw.run("/portmux/range/move", "udp:7000,web")).empty());
    CHECK(sw.owner_of(L4Proto::kUdp, 7000).kind == OwnerKind::kVm);
    REQUIRE(error_of(sw.run("/portmux/range/move", "tcp:5432,host")).empty());
    CHECK(sw.owner_of(L4Proto::kTcp, 5432).kind == OwnerKind::kHost);
}

TEST_CASE("remotes: config/save writes the tunnel and the remotes with their current ranges", "[remote]") {
    RemoteSwitch sw;
    REQUIRE(error_of(sw.run("/portmux/remote/add", "cache-c,198.51.100.3,02:00:00:00:0c:01")).empty());
    REQUIRE(error_of(sw.run("/portmux/range/move", "udp:7000,cache-c")).empty());
    json saved = config_to_json(sw.state->running_config());
    json vxlan = example_config()["vxlan"];
    vxlan["port"] = 4789;
    CHECK(saved["vxlan"] == vxlan);
    REQUIRE(saved["remotes"].size() == 2);
    CHECK(saved["remotes"][1]["name"] == "cache-c");
    CHECK(saved["remotes"][1]["ranges"] == json::array({"udp:7000"}));
    CHECK(saved["vms"][0]["ranges"] == json::array({"tcp:80"}));
    // What is saved loads again into the same state.
    CHECK(config_to_json(parse_config(saved)) == saved);
}

TEST_CASE("remotes: on the shared address the tunnel's UDP port cannot be given to an owner", "[remote]") {
    json doc = example_config();
    doc["vxlan"]["local_ip"] = "192.0.2.10";
    RemoteSwitch sw(doc);
    CHECK_THAT(error_of(sw.run("/portmux/range/add", "web,4700-4800")), Catch::Contains("VXLAN port"));
    CHECK(error_of(sw.run("/portmux/range/add", "web,tcp:4700-4800")).empty());
}

TEST_CASE("remotes: read-only mode refuses remote/add and remote/del but lists remotes", "[remote]") {
    json doc = example_config();
    doc["control"] = {{"read_only", true}};
    RemoteSwitch sw(doc, true);
    CHECK_THAT(error_of(sw.run("/portmux/remote/add", "cache-c,198.51.100.3,02:00:00:00:0c:01")),
               Catch::Contains("read-only"));
    CHECK_THAT(error_of(sw.run("/portmux/remote/del", "db-b")), Catch::Contains("read-only"));
    CHECK(error_of(sw.run("/portmux/remotes")).empty());
}
