// The /portmux/group* commands and SwitchState's groups: answers, refusals that change nothing, and the
// snapshot (owner kinds, member states, Maglev tables) the workers see after each change.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <memory>
#include <set>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "config/config.hpp"
#include "control/commands.hpp"
#include "control/switch_state.hpp"
#include "control/telemetry.hpp"
#include "core/port_index.hpp"
#include "pipeline/connection_table.hpp"
#include "tables/snapshot.hpp"

using namespace portmux;
using nlohmann::json;

namespace {

PortRange range(const char* text) {
    auto r = PortRange::parse(text);
    REQUIRE(r);
    return *r;
}

// VMs web1, web2, web3 (dense owners 2, 3, 4); group "pool" (owner 5): web1 weight 1, web2 weight 3, tcp:80.
Config group_config() {
    Config c;
    c.shared_ip = *Ipv4Addr::parse("192.0.2.10");
    c.uplink.device = "net_null0";
    for (int i = 1; i <= 3; ++i) {
        VmConfig v;
        v.name = fmt::format("web{}", i);
        v.device = fmt::format("net_null{}", i);
        v.mac = *MacAddr::parse(fmt::format("52:54:00:00:00:0{}", i));
        c.vms.push_back(v);
    }
    c.vms[2].ranges = {range("tcp:8080")};
    GroupConfig pool;
    pool.name = "pool";
    pool.members = {{"web1", 1, false}, {"web2", 3, false}};
    pool.ranges = {range("tcp:80")};
    c.groups = {pool};
    return c;
}

struct GroupSwitch {
    SnapshotPublisher publisher{1};
    std::unique_ptr<SwitchState> state;
    std::unique_ptr<ConnectionTable> conns = std::make_unique<ConnectionTable>(1024, uint64_t{1} << 40, uint64_t{1} << 40);
    ControlContext ctx;

    explicit GroupSwitch(const Config& config = group_config(), bool read_only = false) {
        parse_config(config_to_json(config));  // the loader accepts it
        state = std::make_unique<SwitchState>(config, publisher);
        state->publish_initial();
        ctx.state = state.get();
        ctx.connections = {conns.get()};
        ctx.read_only = read_only;
        ctx.link_up = [](uint16_t) { return true; };
        ctx.started = std::chrono::steady_clock::now();
    }
    json run(const std::string& name, const std::string& params = "") { return run_command(ctx, name, params); }
    const Snapshot& snap() const { return *publisher.current(); }
    std::string fingerprint() const {
        return fmt::format("{} gen={} snap={}", config_to_json(state->running_config()).dump(), state->generation(),
                           static_cast<const void*>(publisher.current()));
    }
    const LbGroup& group(const std::string& name) const {
        OwnerId id = *state->owner_by_name(name);
        return (*snap().groups)[snap().owners[id].group];
    }
    MemberState state_of(const std::string& group_name, const std::string& vm) const {
        OwnerId member = *state->owner_by_name(vm);
        for (const LbMember& m : group(group_name).members)
            if (m.vm == member) return m.state;
        FAIL("not a member");
        return MemberState::kDown;
    }
};

std::string error_of(const json& answer) { return answer.contains("error") ? answer["error"].get<std::string>() : ""; }

json expect_change(GroupSwitch& sw, const std::string& name, const std::string& params) {
    INFO(name << "," << params);
    const uint64_t generation = sw.state->generation();
    json answer = sw.run(name, params);
    INFO("answer: " << answer.dump());
    REQUIRE(error_of(answer).empty());
    CHECK(answer.value("generation", uint64_t{0}) == generation + 1);
    CHECK(sw.snap().generation == generation + 1);
    return answer;
}

void expect_refused(GroupSwitch& sw, const std::string& name, const std::string& params,
                    std::initializer_list<const char*> words) {
    INFO(name << "," << params);
    const std::string before = sw.fingerprint();
    json answer = sw.run(name, params);
    INFO("answer: " << answer.dump());
    const std::string message = error_of(answer);
    REQUIRE_FALSE(message.empty());
    for (const char* w : words) CHECK_THAT(message, Catch::Contains(w));
    CHECK(message.size() <= kMaxMessage);
    CHECK(sw.fingerprint() == before);
}

size_t active_slots(const LbGroup& g, OwnerId member) {
    size_t n = 0;
    for (OwnerId id : g.maglev) n += id == member ? 1 : 0;
    return n;
}

}  // namespace

TEST_CASE("group snapshot: a group's ports point at a kGroup owner with its Maglev table", "[groups]") {
    GroupSwitch sw;
    const OwnerId pool = *sw.state->owner_by_name("pool");
    CHECK(pool == kFirstGroupOwner);  // group ids follow the blocks of VM and remote slots
    CHECK(sw.state->owner_name(pool) == "pool");
    CHECK(sw.snap().table->lookup(L4Proto::kTcp, 80) == pool);
    REQUIRE(sw.snap().owners.size() > pool);
    CHECK(sw.snap().owners[pool].kind == OwnerKind::kGroup);
    const LbGroup& g = sw.group("pool");
    CHECK(g.maglev.size() == kMaglevSize);
    CHECK(std::abs(active_slots(g, vm_owner_id(1)) / double(kMaglevSize) - 0.75) < 0.01);
    CHECK(g.is_member(vm_owner_id(0)));
    CHECK_FALSE(g.is_member(vm_owner_id(2)));
}

TEST_CASE("control groups: every group with members, states, ranges and flows in the tables", "[groups]") {
    GroupSwitch sw;
    const OwnerId pool = *sw.state->owner_by_name("pool");
    for (uint16_t p = 0; p < 3; ++p) {
        ConnKey key{};
        key.src_port = p;
        key.group = pool;
        key.proto = kIpProtoTcp;
        sw.conns->insert(key, vm_owner_id(0), 1);
    }
    json all = sw.run("/portmux/groups");
    INFO(all.dump());
    REQUIRE(error_of(all).empty());
    CHECK(all["page_total"] == 1);
    CHECK(all["0"]["name"] == "pool");
    CHECK(all["0"]["members"] == "web1:1:active web2:3:active");
    CHECK(all["0"]["ranges"] == "tcp:80");
    CHECK(all["0"]["flows"] == 3);
    json one = sw.run("/portmux/groups", "pool");
    INFO(one.dump());
    CHECK(one["members"] == json::array({"web1 weight=1 active", "web2 weight=3 active"}));
    CHECK(one["ranges"] == json::array({"tcp:80"}));
    CHECK(one["flows"] == 3);
    expect_refused(sw, "/portmux/groups", "nothere", {"unknown group", "nothere"});
    expect_refused(sw, "/portmux/groups", "a,b", {"usage"});
}

TEST_CASE("control lookup and ranges: a group is a target like a VM", "[groups]") {
    GroupSwitch sw;
    json a = sw.run("/portmux/lookup", "tcp:80");
    CHECK(a["target"] == "pool");
    CHECK(a["delivery"] == "group");
    expect_change(sw, "/portmux/range/add", "pool,tcp:443");
    CHECK(sw.run("/portmux/ranges", "pool")["ranges"] == json::array({"tcp:80", "tcp:443"}));
    expect_change(sw, "/portmux/range/move", "tcp:8080,pool");
    CHECK(sw.snap().table->lookup(L4Proto::kTcp, 8080) == *sw.state->owner_by_name("pool"));
    expect_refused(sw, "/portmux/range/add", "pool,tcp:9000-9001->90-91", {"port translation is for VMs"});
    expect_refused(sw, "/portmux/range/add", "pool,tcp:80", {"overlaps"});
    expect_refused(sw, "/portmux/vm/disable", "pool", {"unknown VM"});
}

TEST_CASE("control group/add and group/del: create, refuse while owning ranges, delete", "[groups]") {
    GroupSwitch sw;
    json a = expect_change(sw, "/portmux/group/add", "api,web2:2,web3");
    CHECK(a["members"] == 2);
    const LbGroup& api = sw.group("api");
    CHECK(api.members.size() == 2);
    CHECK(std::abs(active_slots(api, vm_owner_id(1)) / double(kMaglevSize) - 2.0 / 3) < 0.01);
    expect_change(sw, "/portmux/group/add", "empty");
    CHECK(sw.group("empty").maglev.empty());

    expect_refused(sw, "/portmux/group/add", "web1", {"already a VM"});
    expect_refused(sw, "/portmux/group/add", "api", {"exists already"});
    expect_refused(sw, "/portmux/group/add", "host", {"invalid group name"});
    expect_refused(sw, "/portmux/group/add", "bad/name", {"invalid group name"});
    expect_refused(sw, "/portmux/group/add", "x,web9", {"unknown VM", "web9"});
    expect_refused(sw, "/portmux/group/add", "x,web1,web1", {"twice"});
    expect_refused(sw, "/portmux/group/add", "x,web1:0", {"weight", "1..255"});
    expect_refused(sw, "/portmux/group/add", "x,web1:256", {"weight"});
    expect_refused(sw, "/portmux/group/add", "", {"usage"});

    expect_change(sw, "/portmux/range/add", "api,udp:53");
    expect_refused(sw, "/portmux/group/del", "api", {"owns 1 range"});
    expect_change(sw, "/portmux/range/del", "udp:53");
    expect_change(sw, "/portmux/group/del", "api");
    CHECK_FALSE(sw.state->owner_by_name("api"));
    expect_refused(sw, "/portmux/group/del", "api", {"unknown group"});
    // A new group takes a free identifier; the remaining groups keep theirs.
    const OwnerId empty = *sw.state->owner_by_name("empty");
    expect_change(sw, "/portmux/group/add", "again,web1");
    CHECK(*sw.state->owner_by_name("empty") == empty);
    CHECK(sw.snap().owners[*sw.state->owner_by_name("again")].kind == OwnerKind::kGroup);
}

TEST_CASE("control group/member: add, weight, drain and remove reach the Maglev table at once", "[groups]") {
    GroupSwitch sw;
    expect_change(sw, "/portmux/group/member/add", "pool,web3,4");
    CHECK(std::abs(active_slots(sw.group("pool"), vm_owner_id(2)) / double(kMaglevSize) - 0.5) < 0.01);
    json w = expect_change(sw, "/portmux/group/member/weight", "pool,web3,1");
    CHECK(w["was"] == "4");
    CHECK(std::abs(active_slots(sw.group("pool"), vm_owner_id(2)) / double(kMaglevSize) - 0.2) < 0.01);

    json d = expect_change(sw, "/portmux/group/member/drain", "pool,web1");
    CHECK(d["was"] == "active");
    CHECK(sw.state_of("pool", "web1") == MemberState::kDraining);
    CHECK(active_slots(sw.group("pool"), vm_owner_id(0)) == 0);
    CHECK(sw.group("pool").is_usable(vm_owner_id(0)));
    expect_change(sw, "/portmux/group/member/drain", "pool,web1,off");
    CHECK(sw.state_of("pool", "web1") == MemberState::kActive);
    CHECK(active_slots(sw.group("pool"), vm_owner_id(0)) > 0);

    expect_change(sw, "/portmux/group/member/del", "pool,web3");
    CHECK_FALSE(sw.group("pool").is_member(vm_owner_id(2)));

    expect_refused(sw, "/portmux/group/member/add", "pool,web1", {"already a member"});
    expect_refused(sw, "/portmux/group/member/add", "pool,web9", {"unknown VM"});
    expect_refused(sw, "/portmux/group/member/add", "nope,web1", {"unknown group"});
    expect_refused(sw, "/portmux/group/member/add", "pool,web3,0", {"weight"});
    expect_refused(sw, "/portmux/group/member/del", "pool,web3", {"not a member"});
    expect_refused(sw, "/portmux/group/member/weight", "pool,web1", {"usage"});
    expect_refused(sw, "/portmux/group/member/weight", "pool,web1,300", {"weight"});
    expect_refused(sw, "/portmux/group/member/weight", "pool,web3,2", {"not a member"});
    expect_refused(sw, "/portmux/group/member/drain", "pool,web1,maybe", {"on or off"});
    expect_refused(sw, "/portmux/group/member/drain", "pool,web3", {"not a member"});
}

TEST_CASE("group members: a port down or a disabled VM is down at once and leaves the Maglev table", "[groups]") {
    GroupSwitch sw;
    const uint64_t generation = sw.state->generation();
    CHECK(sw.state->set_link(0, false));
    CHECK(sw.snap().generation == generation + 1);
    CHECK(sw.state_of("pool", "web1") == MemberState::kDown);
    CHECK(active_slots(sw.group("pool"), vm_owner_id(0)) == 0);
    CHECK_FALSE(sw.group("pool").is_usable(vm_owner_id(0)));
    CHECK(sw.state->set_link(0, true));
    CHECK(sw.state_of("pool", "web1") == MemberState::kActive);
    // A VM in no group and without backup changes nothing.
    CHECK_FALSE(sw.state->set_link(2, false));

    expect_change(sw, "/portmux/vm/disable", "web2");
    CHECK(sw.state_of("pool", "web2") == MemberState::kDown);
    CHECK(sw.group("pool").maglev.size() == kMaglevSize);
    CHECK(active_slots(sw.group("pool"), vm_owner_id(0)) == kMaglevSize);
    // Draining a down member keeps it down: it can keep no flow.
    expect_change(sw, "/portmux/group/member/drain", "pool,web2,on");
    CHECK(sw.state_of("pool", "web2") == MemberState::kDown);
    expect_change(sw, "/portmux/vm/enable", "web2");
    CHECK(sw.state_of("pool", "web2") == MemberState::kDraining);
}

TEST_CASE("control config/save: groups, members, drains and ranges are written back", "[groups]") {
    GroupSwitch sw;
    char pattern[] = "/tmp/pmx-groups-XXXXXX";
    REQUIRE(mkdtemp(pattern) != nullptr);
    const std::string file = std::string(pattern) + "/portmux.json";
    sw.ctx.config_file = file;
    expect_change(sw, "/portmux/group/add", "api,web3:7");
    expect_change(sw, "/portmux/range/add", "api,udp:5000-5010");
    expect_change(sw, "/portmux/group/member/drain", "pool,web2");
    REQUIRE(error_of(sw.run("/portmux/config/save")).empty());
    Config loaded = load_config_file(file);
    CHECK(config_to_json(loaded) == config_to_json(sw.state->running_config()));
    REQUIRE(loaded.groups.size() == 2);
    CHECK(loaded.groups[0].members[1].drain);
    CHECK(loaded.groups[1].name == "api");
    CHECK(loaded.groups[1].members[0].weight == 7);
    REQUIRE(loaded.groups[1].ranges.size() == 1);
    CHECK(loaded.groups[1].ranges[0].to_string() == "udp:5000-5010");
    // The saved file starts the same switch: the group keeps its ranges.
    GroupSwitch again(loaded);
    CHECK(again.snap().table->lookup(L4Proto::kUdp, 5005) == *again.state->owner_by_name("api"));
    std::system(fmt::format("rm -rf '{}'", pattern).c_str());
}

TEST_CASE("owners: groups, remote VMs and several shared addresses live side by side with distinct ids",
          "[groups]") {
    Config c = group_config();
    c.extra_shared_ips = {*Ipv4Addr::parse("192.0.2.20")};
    VxlanConfig vxlan;
    vxlan.local_ip = *Ipv4Addr::parse("198.51.100.1");
    vxlan.vni = 4242;
    c.vxlan = vxlan;
    RemoteConfig far{"far", *Ipv4Addr::parse("198.51.100.2"), *MacAddr::parse("02:00:00:00:0b:01"),
                     {range("tcp:5432")}};
    c.remotes = {far};
    c.groups[0].ranges.push_back(range("192.0.2.20/tcp:443"));
    GroupSwitch sw(c);

    const OwnerId pool = *sw.state->owner_by_name("pool");
    const OwnerId remote = *sw.state->owner_by_name("far");
    CHECK(pool != remote);
    CHECK(sw.snap().owners[remote].kind == OwnerKind::kRemote);
    CHECK(sw.snap().owners[pool].kind == OwnerKind::kGroup);
    CHECK(sw.snap().table->lookup(L4Proto::kTcp, 5432) == remote);
    CHECK(sw.snap().table_at[1]->lookup(L4Proto::kTcp, 443) == pool);
    CHECK(sw.snap().table->lookup(L4Proto::kTcp, 443) == kNoOwner);

    // A remote added at runtime takes a free slot and never an id a group holds; a group added later neither.
    expect_change(sw, "/portmux/remote/add", "far2,198.51.100.3,02:00:00:00:0b:02");
    expect_change(sw, "/portmux/group/add", "pool2,web3");
    const OwnerId remote2 = *sw.state->owner_by_name("far2");
    const OwnerId pool2 = *sw.state->owner_by_name("pool2");
    CHECK(std::set<OwnerId>{pool, pool2, remote, remote2}.size() == 4);
    expect_change(sw, "/portmux/range/add", "far2,192.0.2.20/udp:53");
    expect_change(sw, "/portmux/range/move", "tcp:5432,pool2");
    CHECK(sw.snap().owners[sw.snap().table->lookup(L4Proto::kTcp, 5432)].kind == OwnerKind::kGroup);
    CHECK(sw.snap().owners[sw.snap().table_at[1]->lookup(L4Proto::kUdp, 53)].kind == OwnerKind::kRemote);

    // The running configuration saves all of it, and the loader takes it back.
    Config saved = parse_config(config_to_json(sw.state->running_config()));
    CHECK(saved.remotes.size() == 2);
    CHECK(saved.groups.size() == 2);
    CHECK(saved.groups[1].ranges == std::vector<PortRange>{range("tcp:5432")});
    CHECK(saved.remotes[1].ranges == std::vector<PortRange>{range("192.0.2.20/udp:53")});
}
