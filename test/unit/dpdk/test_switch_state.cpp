// SwitchState: a VM with a backup hands its ranges over while its port is down and takes them back.
#include <catch2/catch.hpp>

#include "control/switch_state.hpp"
#include "core/port_index.hpp"
#include "pipeline/vm_egress.hpp"
#include "tables/snapshot.hpp"

using namespace portmux;

namespace {

PortRange range(const char* text) { return *PortRange::parse(text); }

MacAddr mac(const char* text) { return *MacAddr::parse(text); }

// web (tcp:80, backup web2), web2 (tcp:8080), db (tcp:5432, no backup).
Config config_with_backup() {
    Config config;
    config.shared_ip = *Ipv4Addr::parse("192.0.2.10");
    config.uplink.device = "net_null0";
    VmConfig web;
    web.name = "web";
    web.device = "net_null1";
    web.mac = mac("52:54:00:00:00:01");
    web.ranges = {range("tcp:80")};
    web.backup = "web2";
    VmConfig web2 = web;
    web2.name = "web2";
    web2.device = "net_null2";
    web2.mac = mac("52:54:00:00:00:02");
    web2.ranges = {range("tcp:8080")};
    web2.backup.clear();
    VmConfig db = web2;
    db.name = "db";
    db.device = "net_null3";
    db.mac = mac("52:54:00:00:00:03");
    db.ranges = {range("tcp:5432")};
    config.vms = {web, web2, db};
    return config;
}

struct Fixture {
    SnapshotPublisher publisher{1};  // one reader that never registers: publish never waits
    SwitchState state{config_with_backup(), publisher};
    Fixture() { state.publish_initial(); }
    const OwnerTarget& target(size_t vm) const { return publisher.current()->owners[vm_owner_id(vm)]; }
};

}  // namespace

TEST_CASE("backup: while a VM's port is down its ranges go to the backup's port and MAC", "[backup]") {
    Fixture f;
    CHECK(f.target(0).port == vm_port_index(0));
    uint64_t generation = f.state.generation();

    CHECK(f.state.set_link(0, false));
    CHECK(f.state.generation() == generation + 1);
    CHECK(f.target(0).port == vm_port_index(1));
    CHECK(f.target(0).mac == mac("52:54:00:00:00:02"));
    CHECK(f.state.served_by(0) == "web2");
    CHECK(f.target(1).port == vm_port_index(1));  // the backup keeps its own ranges

    CHECK(f.state.set_link(0, true));
    CHECK(f.target(0).port == vm_port_index(0));
    CHECK(f.target(0).mac == mac("52:54:00:00:00:01"));
    CHECK(f.state.served_by(0) == "web");
}

TEST_CASE("backup: no hand-over to a backup that is itself down or disabled, and none without a backup",
          "[backup]") {
    Fixture f;
    CHECK_FALSE(f.state.set_link(2, false));  // db has no backup: nothing to publish
    CHECK(f.target(2).port == vm_port_index(2));

    CHECK_FALSE(f.state.set_link(1, false));  // the backup goes down first: web is still up, nothing changes
    CHECK_FALSE(f.state.set_link(0, false));  // web goes down too: no live backup, it keeps its own port
    CHECK(f.target(0).port == vm_port_index(0));
    CHECK(f.state.set_link(1, true));  // the backup returns: web's ranges move to it
    CHECK(f.target(0).port == vm_port_index(1));

    REQUIRE(f.state.set_vm_enabled("web2", false));
    CHECK(f.target(0).port == vm_port_index(0));  // a disabled backup serves nobody
    CHECK_FALSE(f.state.set_link(0, false));      // repeating a state changes nothing
}

TEST_CASE("backup: the backup may answer from the ports it stands in for, and only while it does", "[backup]") {
    Fixture f;
    ParsedFrame frame;
    frame.kind = FrameKind::kIpv4;
    frame.ip_proto = kIpProtoTcp;
    frame.has_ports = true;
    frame.src_port = 80;  // web's port, sent by web2
    SharedAddresses shared;
    shared.ip4 = f.publisher.current()->shared.ip4;
    frame.key.v4.src = shared.ip4;
    auto check = [&] {
        const Snapshot* snap = f.publisher.current();
        return check_vm_egress(frame, snap->shared, *snap->table, vm_owner_id(1), snap->owners.data());
    };
    CHECK_FALSE(check().forward);
    CHECK(check().drop_reason == SwitchCounter::drop_spoof_port);
    f.state.set_link(0, false);
    CHECK(check().forward);
    f.state.set_link(0, true);
    CHECK_FALSE(check().forward);
}

TEST_CASE("backup: set at runtime, a down VM's ranges follow the new backup at once; cleared, they stay",
          "[backup]") {
    Fixture f;
    CHECK_FALSE(f.state.set_link(2, false));  // db is down, without a backup: nothing to hand over
    CHECK(f.target(2).port == vm_port_index(2));

    auto set = f.state.set_backup("db", "web");
    REQUIRE(set);
    CHECK(set->previous.empty());
    CHECK(f.target(2).port == vm_port_index(0));  // served by web from this snapshot on
    CHECK(f.state.served_by(2) == "web");
    CHECK(f.state.running_config().vms[2].backup == "web");

    auto cleared = f.state.set_backup("db", "");
    REQUIRE(cleared);
    CHECK(cleared->previous == "web");
    CHECK(f.target(2).port == vm_port_index(2));

    const uint64_t generation = f.state.generation();
    CHECK_FALSE(f.state.set_backup("db", "db"));
    CHECK_FALSE(f.state.set_backup("db", "nobody"));
    CHECK_FALSE(f.state.set_backup("db", "host"));
    CHECK_FALSE(f.state.set_backup("nobody", "web"));
    CHECK(f.state.generation() == generation);
}
