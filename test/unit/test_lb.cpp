// Load-balanced groups: Maglev spread and stability, the connection table, delivery to a group, the egress
// check for members, and the configuration of groups.
#include <catch2/catch.hpp>

#include <map>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "config/config.hpp"
#include "config_failure.hpp"
#include "frame_builder.hpp"
#include "pipeline/connection_table.hpp"
#include "pipeline/ingress_decision.hpp"
#include "pipeline/parse.hpp"
#include "pipeline/vm_egress.hpp"
#include "tables/lb_group.hpp"

using namespace portmux;
using namespace portmux::test;
using nlohmann::json;

namespace {

std::map<OwnerId, size_t> shares(const std::vector<OwnerId>& table) {
    std::map<OwnerId, size_t> count;
    for (OwnerId id : table) ++count[id];
    return count;
}

std::vector<MaglevMember> members(size_t n, uint8_t weight = 1) {
    std::vector<MaglevMember> out;
    for (size_t i = 0; i < n; ++i) out.push_back(MaglevMember{"vm" + std::to_string(i), weight, vm_owner_id(i)});
    return out;
}

ParsedFrame parse(const Bytes& frame) {
    return parse_frame(frame.data(), static_cast<uint32_t>(frame.size()), static_cast<uint32_t>(frame.size()));
}

// TCP from a peer (its last address byte and source port vary) to the shared address, port 80.
ParsedFrame flow(uint16_t sport, uint8_t peer = 7, uint16_t dport = 80) {
    Ip4 ip = ip4_proto(6);
    ip.src[3] = peer;
    return parse(eth_ipv4(ip, tcp(sport, dport)));
}

}  // namespace

TEST_CASE("maglev: every slot holds a member and shares follow the weights") {
    std::vector<MaglevMember> m = {{"web1", 1, 2}, {"web2", 3, 3}};
    auto table = build_maglev(m);
    REQUIRE(table.size() == kMaglevSize);
    auto count = shares(table);
    CHECK(count.count(kNoOwner) == 0);
    CHECK(count[2] + count[3] == kMaglevSize);
    CHECK(std::abs(static_cast<double>(count[2]) / kMaglevSize - 0.25) < 0.01);
    CHECK(std::abs(static_cast<double>(count[3]) / kMaglevSize - 0.75) < 0.01);

    auto equal = shares(build_maglev(members(10)));
    for (const auto& [id, n] : equal) CHECK(std::abs(static_cast<double>(n) / kMaglevSize - 0.1) < 0.01);
}

TEST_CASE("maglev: no member (or no weight) gives an empty table, and the group drops") {
    CHECK(build_maglev({}).empty());
    LbGroup g;
    CHECK(g.pick(12345) == kNoOwner);
}

TEST_CASE("maglev: removing one member of N moves about that member's share only") {
    for (size_t n : {3, 5, 10}) {
        auto all = members(n);
        auto before = build_maglev(all);
        auto fewer = all;
        const OwnerId removed = fewer[1].vm;
        fewer.erase(fewer.begin() + 1);
        auto after = build_maglev(fewer);
        size_t moved_others = 0, removed_slots = 0;
        for (size_t s = 0; s < kMaglevSize; ++s) {
            if (before[s] == removed) {
                ++removed_slots;
                CHECK(after[s] != removed);
            } else if (before[s] != after[s]) {
                ++moved_others;
            }
        }
        INFO("members " << n << ", slots of others that moved " << moved_others);
        CHECK(std::abs(static_cast<double>(removed_slots) / kMaglevSize - 1.0 / n) < 0.01);
        // Maglev's promise is "minimal disruption", not zero: a few percent of the other slots at most.
        CHECK(static_cast<double>(moved_others) / kMaglevSize < 0.04);
    }
}

TEST_CASE("maglev: the table depends on member names, not their order") {
    auto m = members(4);
    auto a = build_maglev(m);
    std::swap(m[0], m[3]);
    CHECK(build_maglev(m) == a);
}

// Connection-table times are TSC values kept to 2^kTimeShift cycles: the tests count in those units.
constexpr uint64_t kU = uint64_t{1} << kTimeShift;

TEST_CASE("connection table: a flow is found until its timeout, then it is gone") {
    ConnectionTable t(64, 1000 * kU, 100 * kU);
    ConnKey tcp_key = make_conn_key(flow(1000), 50);
    ConnKey udp_key = tcp_key;
    udp_key.proto = kIpProtoUdp;
    CHECK(t.find(tcp_key, 10 * kU) == nullptr);
    CHECK_FALSE(t.insert(tcp_key, 2, 10 * kU));
    CHECK_FALSE(t.insert(udp_key, 3, 10 * kU));
    REQUIRE(t.find(tcp_key, 500 * kU) != nullptr);
    CHECK(t.find(tcp_key, 500 * kU)->member == 2);
    CHECK(t.find(udp_key, 110 * kU) != nullptr);
    CHECK(t.find(udp_key, 111 * kU) == nullptr);  // UDP timeout 100
    CHECK(t.find(tcp_key, 1010 * kU) != nullptr);
    CHECK(t.find(tcp_key, 1011 * kU) == nullptr);  // TCP timeout 1000
    CHECK(t.flows(50) == 2);
    CHECK(t.expire(2000 * kU, t.bucket_count()) == 2);
    CHECK(t.flows(50) == 0);
    CHECK(t.occupied() == 0);
}

TEST_CASE("connection table: timeouts hold across the wrap of the 32-bit time") {
    const uint64_t start = (uint64_t{0xffffffff} - 5) * kU;  // 5 units before the wrap
    ConnectionTable t(64, 100 * kU, 100 * kU);
    ConnKey key = make_conn_key(flow(1000), 50);
    t.insert(key, 2, start);
    CHECK(t.find(key, start + 50 * kU) != nullptr);
    CHECK(t.find(key, start + 101 * kU) == nullptr);
    CHECK(t.expire(start + 50 * kU, t.bucket_count()) == 0);
    CHECK(t.expire(start + 101 * kU, t.bucket_count()) == 1);
}

TEST_CASE("connection table: the same source in another group is another flow") {
    ConnectionTable t(64, 1000 * kU, 1000 * kU);
    t.insert(make_conn_key(flow(1000), 50), 2, kU);
    CHECK(t.find(make_conn_key(flow(1000), 51), 2 * kU) == nullptr);
    CHECK(t.find(make_conn_key(flow(1001), 50), 2 * kU) == nullptr);
    CHECK(t.find(make_conn_key(flow(1000, 8), 50), 2 * kU) == nullptr);
    CHECK(t.find(make_conn_key(flow(1000), 50), 2 * kU) != nullptr);
}

TEST_CASE("connection table: a full table evicts the oldest entry of a bucket, counted, and stays bounded") {
    ConnectionTable t(4, 1000000 * kU, 1000000 * kU);  // one bucket of four
    REQUIRE(t.capacity() == 4);
    for (uint16_t i = 0; i < 4; ++i) CHECK_FALSE(t.insert(make_conn_key(flow(1000 + i), 50), 2, (10 + i) * kU));
    // Flow 1000 is used again: 1001 is now the one idle longest.
    t.find(make_conn_key(flow(1000), 50), 20 * kU)->last_seen = conn_time(20 * kU);
    CHECK(t.insert(make_conn_key(flow(2000), 50), 3, 30 * kU));
    CHECK(t.occupied() == 4);
    CHECK(t.find(make_conn_key(flow(1001), 50), 31 * kU) == nullptr);
    CHECK(t.find(make_conn_key(flow(1000), 50), 31 * kU) != nullptr);
    CHECK(t.find(make_conn_key(flow(2000), 50), 31 * kU) != nullptr);
    size_t evicted = 0;
    for (uint16_t i = 0; i < 100; ++i) evicted += t.insert(make_conn_key(flow(3000 + i), 50), 2, (40 + i) * kU) ? 1 : 0;
    CHECK(evicted == 100);
    CHECK(t.occupied() == 4);
    CHECK(t.flows(50) == 4);
}

TEST_CASE("connection table: size 0 keeps nothing") {
    ConnectionTable t(0, 1, 1);
    CHECK_FALSE(t.insert(make_conn_key(flow(1), 50), 2, 1));
    CHECK(t.find(make_conn_key(flow(1), 50), 1) == nullptr);
    CHECK(t.capacity() == 0);
}

namespace {

// VMs 0..2 (owners 2..4); group owner 5 owns tcp:80 with members vm0 (weight 1) and vm1 (weight 3).
struct GroupSwitch {
    std::unique_ptr<PortOwnerTable> table = std::make_unique<PortOwnerTable>();
    std::vector<OwnerTarget> owners = std::vector<OwnerTarget>(6);
    std::vector<LbGroup> groups = std::vector<LbGroup>(1);
    ConnectionTable connections{65536, uint64_t{1} << 40, uint64_t{1} << 40};  // no test flow is evicted or expires
    static constexpr OwnerId kGroup = 5;

    GroupSwitch() {
        *table = PortOwnerTable{};
        table->owner[0][80] = kGroup;
        table->owner[0][2000] = vm_owner_id(2);
        for (size_t i = 0; i < 3; ++i) {
            owners[vm_owner_id(i)].kind = OwnerKind::kVm;
            owners[vm_owner_id(i)].port = static_cast<uint16_t>(3 + i);
        }
        owners[kGroup].kind = OwnerKind::kGroup;
        owners[kGroup].group = 0;
        set({MemberState::kActive, MemberState::kActive});
    }
    void set(std::vector<MemberState> states) {
        LbGroup& g = groups[0];
        g.id = kGroup;
        g.members = {{vm_owner_id(0), 1, states[0]}, {vm_owner_id(1), 3, states[1]}};
        std::vector<MaglevMember> active;
        for (size_t i = 0; i < 2; ++i)
            if (states[i] == MemberState::kActive)
                active.push_back({"vm" + std::to_string(i), g.members[i].weight, g.members[i].vm});
        g.maglev = build_maglev(active);
        index_members(g);
    }
    DeliveryDecision decide(const ParsedFrame& f, uint64_t now = 100) {
        LbContext lb{groups.data(), &connections, now};
        return decide_delivery(f, *table, owners.data(), UnmatchedPolicy::kHost, &lb);
    }
};

}  // namespace

TEST_CASE("group delivery: a flow's packets all go to one member, flows spread by weight") {
    GroupSwitch sw;
    std::map<OwnerId, size_t> per_member;
    for (uint16_t sport = 1; sport <= 4000; ++sport) {
        DeliveryDecision first = sw.decide(flow(sport));
        REQUIRE(first.delivery == Delivery::kVm);
        CHECK(first.lb_event == LbEvent::kNewFlow);
        DeliveryDecision again = sw.decide(flow(sport));
        CHECK(again.owner == first.owner);
        CHECK(again.lb_event == LbEvent::kHit);
        ++per_member[first.owner];
    }
    CHECK(per_member.size() == 2);
    CHECK(std::abs(per_member[vm_owner_id(1)] / 4000.0 - 0.75) < 0.04);
}

TEST_CASE("group delivery: a draining member keeps its flows and gets no new ones") {
    GroupSwitch sw;
    std::vector<uint16_t> on_vm0;
    for (uint16_t sport = 1; sport <= 400; ++sport)
        if (sw.decide(flow(sport)).owner == vm_owner_id(0)) on_vm0.push_back(sport);
    REQUIRE(!on_vm0.empty());
    sw.set({MemberState::kDraining, MemberState::kActive});
    for (uint16_t sport : on_vm0) {
        DeliveryDecision d = sw.decide(flow(sport));
        CHECK(d.owner == vm_owner_id(0));
        CHECK(d.lb_event == LbEvent::kHit);
    }
    for (uint16_t sport = 5000; sport < 5400; ++sport) CHECK(sw.decide(flow(sport)).owner == vm_owner_id(1));
}

TEST_CASE("group delivery: a down member's flows move to an active member at once") {
    GroupSwitch sw;
    std::vector<uint16_t> on_vm0;
    for (uint16_t sport = 1; sport <= 400; ++sport)
        if (sw.decide(flow(sport)).owner == vm_owner_id(0)) on_vm0.push_back(sport);
    REQUIRE(!on_vm0.empty());
    sw.set({MemberState::kDown, MemberState::kActive});
    for (uint16_t sport : on_vm0) {
        DeliveryDecision d = sw.decide(flow(sport));
        CHECK(d.owner == vm_owner_id(1));
        CHECK(d.lb_event == LbEvent::kNewFlow);
    }
    // And they stay there when vm0 returns: a flow does not move back and forth.
    sw.set({MemberState::kActive, MemberState::kActive});
    for (uint16_t sport : on_vm0) CHECK(sw.decide(flow(sport)).owner == vm_owner_id(1));
}

TEST_CASE("group delivery: no usable member drops, counted drop_group_empty, never to the host") {
    GroupSwitch sw;
    sw.set({MemberState::kDown, MemberState::kDraining});
    DeliveryDecision d = sw.decide(flow(1));
    CHECK(d.delivery == Delivery::kDrop);
    CHECK(d.drop_reason == SwitchCounter::drop_group_empty);
    // Without the group context (a caller that knows nothing of groups) the packet is dropped as well.
    DeliveryDecision bare = decide_delivery(flow(1), *sw.table, sw.owners.data(), UnmatchedPolicy::kHost);
    CHECK(bare.delivery == Delivery::kDrop);
    CHECK(bare.drop_reason == SwitchCounter::drop_group_empty);
}

TEST_CASE("group delivery: a full connection table reports the eviction") {
    GroupSwitch sw;
    ConnectionTable tiny(4, uint64_t{1} << 40, uint64_t{1} << 40);
    LbContext lb{sw.groups.data(), &tiny, 1};
    size_t evictions = 0;
    for (uint16_t sport = 1; sport <= 20; ++sport) {
        DeliveryDecision d = decide_delivery(flow(sport), *sw.table, sw.owners.data(), UnmatchedPolicy::kHost, &lb);
        evictions += d.lb_event == LbEvent::kNewFlowEvicted ? 1 : 0;
    }
    CHECK(evictions == 16);
}

TEST_CASE("group delivery: without a connection table the Maglev pick alone is stable") {
    GroupSwitch sw;
    LbContext lb{sw.groups.data(), nullptr, 1};
    for (uint16_t sport = 1; sport <= 100; ++sport) {
        auto a = decide_delivery(flow(sport), *sw.table, sw.owners.data(), UnmatchedPolicy::kHost, &lb);
        auto b = decide_delivery(flow(sport), *sw.table, sw.owners.data(), UnmatchedPolicy::kHost, &lb);
        CHECK(a.owner == b.owner);
        CHECK(a.delivery == Delivery::kVm);
    }
}

TEST_CASE("group egress: members answer from the group's ports, other VMs may not") {
    GroupSwitch sw;
    const SharedAddresses shared = shared_addresses();
    auto answer = [&](OwnerId self) {
        Ip4 ip = ip4_proto(6);
        ip.src = kSharedIp;
        ip.dst = kPeerIp;
        return check_vm_egress(parse(eth_ipv4(ip, tcp(80, 40000))), shared, *sw.table, self, sw.owners.data(),
                               sw.groups.data());
    };
    CHECK(answer(vm_owner_id(0)).forward);
    CHECK(answer(vm_owner_id(1)).forward);
    CHECK_FALSE(answer(vm_owner_id(2)).forward);
    CHECK(answer(vm_owner_id(2)).drop_reason == SwitchCounter::drop_spoof_port);
    sw.set({MemberState::kDraining, MemberState::kDown});  // still members: they finish their flows
    CHECK(answer(vm_owner_id(0)).forward);
    CHECK(answer(vm_owner_id(1)).forward);
    // Without the groups (a caller that passes none), the group's port is nobody's own.
    Ip4 ip = ip4_proto(6);
    ip.src = kSharedIp;
    ip.dst = kPeerIp;
    CHECK_FALSE(check_vm_egress(parse(eth_ipv4(ip, tcp(80, 40000))), shared, *sw.table, vm_owner_id(0),
                                sw.owners.data())
                    .forward);
}

TEST_CASE("group membership: VM indexes beyond 64 are found without the masks") {
    LbGroup g;
    g.members = {{vm_owner_id(3), 1, MemberState::kActive}, {vm_owner_id(70), 1, MemberState::kDown}};
    index_members(g);
    CHECK(g.is_member(vm_owner_id(3)));
    CHECK(g.is_usable(vm_owner_id(3)));
    CHECK(g.is_member(vm_owner_id(70)));
    CHECK_FALSE(g.is_usable(vm_owner_id(70)));
    CHECK_FALSE(g.is_member(vm_owner_id(71)));
    CHECK_FALSE(g.is_member(vm_owner_id(4)));
}

// ---- configuration ------------------------------------------------------------------------------------

namespace {

json group_doc() {
    return json::parse(R"({
      "shared_ip": "192.0.2.10", "uplink": {"device": "net_null0"},
      "vms": [ {"name": "web1", "device": "net_null1", "mac": "52:54:00:00:00:01", "ranges": ["tcp:8080"]},
               {"name": "web2", "device": "net_null2", "mac": "52:54:00:00:00:02"} ],
      "groups": [ {"name": "web", "members": [ {"vm": "web1", "weight": 1}, {"vm": "web2", "weight": 3} ],
                   "ranges": ["tcp:80", "tcp:443"]} ]
    })");
}

}  // namespace

TEST_CASE("group config: groups and connection limits are read, defaults applied") {
    Config c = parse_config(group_doc());
    REQUIRE(c.groups.size() == 1);
    CHECK(c.groups[0].name == "web");
    REQUIRE(c.groups[0].members.size() == 2);
    CHECK(c.groups[0].members[1].vm == "web2");
    CHECK(c.groups[0].members[1].weight == 3);
    CHECK(c.groups[0].ranges.size() == 2);
    CHECK(c.connections.max == 65536);
    CHECK(c.connections.tcp_timeout_s == 300);
    CHECK(c.connections.udp_timeout_s == 30);
    json doc = group_doc();
    doc["connections"] = {{"max", 1000}, {"udp_timeout_s", 5}};
    c = parse_config(doc);
    CHECK(c.connections.max == 1000);
    CHECK(c.connections.udp_timeout_s == 5);
    doc["groups"][0]["members"] = json::array();
    CHECK(parse_config(doc).groups[0].members.empty());  // allowed: its packets are dropped and counted
}

TEST_CASE("group config: errors name their JSON path") {
    json doc = group_doc();
    doc["groups"][0]["members"][1]["vm"] = "web9";
    CHECK(config_failure(doc) == std::make_pair(std::string("groups[0].members[1].vm"), std::string("\"web9\": no VM has this name")));
    doc = group_doc();
    doc["groups"][0]["members"][1]["vm"] = "web1";
    CHECK(config_failure(doc).first == "groups[0].members[1].vm");
    CHECK_THAT(config_failure(doc).second, Catch::Contains("already a member"));
    for (int bad : {0, 256, -1}) {
        doc = group_doc();
        doc["groups"][0]["members"][0]["weight"] = bad;
        CHECK(config_failure(doc).first == "groups[0].members[0].weight");
    }
    doc = group_doc();
    doc["groups"][0]["name"] = "web1";
    CHECK(config_failure(doc) == std::make_pair(std::string("groups[0].name"), std::string("\"web1\" is already used by vms[0]")));
    doc = group_doc();
    doc["groups"][0]["name"] = "host";
    CHECK(config_failure(doc).first == "groups[0].name");
    doc = group_doc();
    doc["groups"].push_back({{"name", "web"}, {"members", json::array()}});
    CHECK(config_failure(doc) == std::make_pair(std::string("groups[1].name"), std::string("\"web\" is already used by groups[0]")));
    doc = group_doc();
    doc["groups"][0]["ranges"].push_back("8080");
    CHECK(config_failure(doc).first == "groups[0].ranges[2]");
    CHECK_THAT(config_failure(doc).second, Catch::Contains("VM \"web1\""));
    doc = group_doc();
    doc["groups"].push_back({{"name", "api"}, {"members", json::array()}, {"ranges", {"tcp:443"}}});
    CHECK(config_failure(doc).first == "groups[1].ranges[0]");
    CHECK_THAT(config_failure(doc).second, Catch::Contains("group \"web\""));
    doc = group_doc();
    doc["groups"][0]["ranges"] = {"tcp:8000-8009->80-89"};
    CHECK(config_failure(doc).second == "\"tcp:8000-8009->80-89\": port translation is for VMs");
    doc = group_doc();
    doc["groups"][0]["members"][0]["color"] = "red";
    CHECK(config_failure(doc).first == "groups[0].members[0].color");
    doc = group_doc();
    doc["groups"][0].erase("members");
    CHECK(config_failure(doc) == std::make_pair(std::string("groups[0].members"), std::string("required but missing")));
    doc = group_doc();
    doc["connections"] = {{"tcp_timeout_s", 0}};
    CHECK(config_failure(doc).first == "connections.tcp_timeout_s");
}

TEST_CASE("group config: config_to_json round trip keeps groups, drains and connection limits") {
    json doc = group_doc();
    doc["groups"][0]["members"][0]["drain"] = true;
    doc["connections"] = {{"max", 1024}, {"tcp_timeout_s", 60}, {"udp_timeout_s", 10}};
    Config c = parse_config(doc);
    json written = config_to_json(c);
    Config again = parse_config(written);
    CHECK(config_to_json(again) == written);
    REQUIRE(again.groups.size() == 1);
    CHECK(again.groups[0].members[0].drain);
    CHECK_FALSE(again.groups[0].members[1].drain);
    CHECK(again.groups[0].members[1].weight == 3);
    CHECK(again.connections.max == 1024);
    CHECK(again.connections.tcp_timeout_s == 60);
    CHECK(again.groups[0].ranges.size() == 2);
    // Without groups nothing new is written.
    CHECK_FALSE(config_to_json(parse_config(json::parse(R"({"shared_ip": "192.0.2.10", "uplink": {"device": "x"}})")))
                    .contains("groups"));
}

TEST_CASE("group delivery: an ICMP error quoting a group's port goes to the host, not a member") {
    GroupSwitch sw;
    sw.owners[kHostOwner].kind = OwnerKind::kHost;
    Ip4 quoted;
    quoted.src = kSharedIp;
    quoted.dst = kPeerIp;
    Bytes quote = ipv4(quoted, tcp(80, 443));
    Bytes icmp = {3, 4, 0, 0, 0, 0, 0x05, 0xdc};
    icmp.insert(icmp.end(), quote.begin(), quote.begin() + 28);
    set16(icmp, 2, static_cast<uint16_t>(~fold(ones_sum(icmp.data(), icmp.size()))));
    ParsedFrame f = parse(ethernet(0x0800, ipv4(ip4_proto(1), icmp)));
    REQUIRE(f.has_quoted_ports);
    REQUIRE(f.quoted_src_port == 80);
    CHECK(sw.decide(f).delivery == Delivery::kHost);
}

TEST_CASE("group config: the --check summary lists groups with members and ranges") {
    json doc = group_doc();
    doc["groups"][0]["members"][0]["drain"] = true;
    const std::string s = config_summary(parse_config(doc));
    INFO(s);
    CHECK(s.find("groups          1") != std::string::npos);
    CHECK(s.find("web  members web1:1 (drain) web2:3  ranges tcp:80 tcp:443") != std::string::npos);
    CHECK(s.find("tcp 3 of 65536") != std::string::npos);  // tcp:8080 of web1 and the group's two ports
}
