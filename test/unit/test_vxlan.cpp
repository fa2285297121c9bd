// Remote VMs over VXLAN: the outer headers written, the tunnel frames accepted or refused, the delivery
// decision for a remote owner, and the configuration of the tunnel and the remotes.
#include <catch2/catch.hpp>

#include <set>

#include <nlohmann/json.hpp>

#include "config/config.hpp"
#include "config_failure.hpp"
#include "frame_builder.hpp"
#include "pipeline/ingress_decision.hpp"
#include "pipeline/parse.hpp"
#include "pipeline/vxlan.hpp"

using namespace portmux;
using namespace portmux::test;
using json = nlohmann::json;

namespace {

const V4 kLocalIp = {198, 51, 100, 1};
const V4 kRemoteHost = {198, 51, 100, 2};
const V4 kStranger = {198, 51, 100, 66};
const Mac kNextHop = {0x02, 0, 0, 0, 0x0b, 0x01};

VxlanSettings settings() {
    VxlanSettings s;
    s.local_ip = be32_of(kLocalIp);
    s.port = 4789;
    s.vni = 4242;
    s.peers = {be32_of(kRemoteHost)};
    return s;
}

MacAddr mac_of(const Mac& m) {
    MacAddr a;
    std::copy(m.begin(), m.end(), a.bytes.begin());
    return a;
}

// A frame to the shared address, TCP to port 5432.
Bytes inner_frame(uint16_t sport = 40000, uint16_t dport = 5432) { return eth_ipv4(ip4_proto(6), tcp(sport, dport)); }

// A VXLAN frame built independently of write_vxlan_headers: header fields given one by one.
Bytes tunnel_frame(const Bytes& inner, const V4& src = kRemoteHost, uint32_t vni = 4242, uint8_t flags = 0x08,
                   uint16_t dport = 4789, uint16_t frag = 0) {
    Bytes payload = {flags, 0, 0, 0, static_cast<uint8_t>(vni >> 16), static_cast<uint8_t>(vni >> 8),
                     static_cast<uint8_t>(vni), 0};
    put(payload, inner);
    Bytes u;
    put16(u, 50000);
    put16(u, dport);
    put16(u, static_cast<uint16_t>(8 + payload.size()));
    put16(u, 0);
    put(u, payload);
    Ip4 ip = ip4_proto(17);
    ip.src = src;
    ip.dst = kLocalIp;
    ip.frag = frag;
    return eth_ipv4(ip, u);
}

VxlanCheck check(const Bytes& frame, const VxlanSettings& s = settings()) {
    ParsedFrame outer = parse_frame(frame.data(), static_cast<uint32_t>(frame.size()), static_cast<uint32_t>(frame.size()));
    REQUIRE(s.is_tunnel_frame(outer));
    return check_vxlan(frame.data(), static_cast<uint32_t>(frame.size()), outer, s);
}

}  // namespace

TEST_CASE("vxlan: encapsulation writes Ethernet, IPv4 with DF and checksum, UDP without checksum, I flag and VNI") {
    const Bytes inner = inner_frame();
    const ParsedFrame parsed = parse_frame(inner.data(), static_cast<uint32_t>(inner.size()), static_cast<uint32_t>(inner.size()));
    Bytes out(kVxlanOverhead);
    const uint16_t sport = vxlan_source_port(parsed);
    write_vxlan_headers(out.data(), mac_of(kUplinkMac), mac_of(kNextHop), be32_of(kRemoteHost), settings(),
                        static_cast<uint32_t>(inner.size()), sport);
    // Ethernet: to the next hop, from the uplink, IPv4.
    CHECK(Mac{out[0], out[1], out[2], out[3], out[4], out[5]} == kNextHop);
    CHECK(Mac{out[6], out[7], out[8], out[9], out[10], out[11]} == kUplinkMac);
    CHECK(get16(&out[12]) == 0x0800);
    const uint8_t* ip = &out[14];
    CHECK(ip[0] == 0x45);
    CHECK(get16(ip + 2) == 20 + 8 + 8 + inner.size());
    CHECK(get16(ip + 6) == 0x4000);  // DF, offset 0
    CHECK(ip[8] == 64);
    CHECK(ip[9] == 17);
    CHECK(V4{ip[12], ip[13], ip[14], ip[15]} == kLocalIp);
    CHECK(V4{ip[16], ip[17], ip[18], ip[19]} == kRemoteHost);
    CHECK(fold(ones_sum(ip, 20)) == 0xffff);  // the header checksum verifies
    const uint8_t* u = ip + 20;
    CHECK(get16(u) == sport);
    CHECK(sport >= 49152);
    CHECK(get16(u + 2) == 4789);
    CHECK(get16(u + 4) == 8 + 8 + inner.size());
    CHECK(get16(u + 6) == 0);
    const uint8_t* vx = u + 8;
    CHECK(vx[0] == 0x08);
    CHECK((vx[1] | vx[2] | vx[3] | vx[7]) == 0);
    CHECK(((vx[4] << 16) | (vx[5] << 8) | vx[6]) == 4242);

    // What the receiving end sees: the frame is the tunnel's and its inner frame comes out whole.
    Bytes whole = out;
    put(whole, inner);
    VxlanSettings far = settings();
    far.local_ip = be32_of(kRemoteHost);
    far.peers = {be32_of(kLocalIp)};
    VxlanCheck c = check(whole, far);
    REQUIRE(c.accept);
    CHECK(c.inner_offset == kVxlanOverhead);
    CHECK(c.inner_length == inner.size());
}

TEST_CASE("vxlan: a re-sent frame carries the re-sent flag, which the receiving end reads back") {
    const Bytes inner = inner_frame();
    const ParsedFrame parsed = parse_frame(inner.data(), static_cast<uint32_t>(inner.size()), static_cast<uint32_t>(inner.size()));
    VxlanSettings far = settings();
    far.local_ip = be32_of(kRemoteHost);
    far.peers = {be32_of(kLocalIp)};
    for (bool resent : {false, true}) {
        Bytes out(kVxlanOverhead);
        write_vxlan_headers(out.data(), mac_of(kUplinkMac), mac_of(kNextHop), be32_of(kRemoteHost), settings(),
                            static_cast<uint32_t>(inner.size()), vxlan_source_port(parsed), resent);
        CHECK(out[14 + 20 + 8] == (resent ? 0x88 : 0x08));  // I flag, and the reserved top bit when re-sent
        put(out, inner);
        VxlanCheck c = check(out, far);
        REQUIRE(c.accept);
        CHECK(c.resent == resent);
    }
    // From the wire: only that bit counts, the other reserved bits are ignored.
    CHECK(check(tunnel_frame(inner, kRemoteHost, 4242, 0x88)).resent);
    CHECK_FALSE(check(tunnel_frame(inner, kRemoteHost, 4242, 0x7f)).resent);
}

TEST_CASE("vxlan: the outer source port follows the inner flow, the same for a flow and spread over flows") {
    std::set<uint16_t> ports;
    for (uint16_t sport = 40000; sport < 40064; ++sport) {
        const Bytes inner = inner_frame(sport);
        const ParsedFrame a = parse_frame(inner.data(), static_cast<uint32_t>(inner.size()), static_cast<uint32_t>(inner.size()));
        const ParsedFrame b = parse_frame(inner.data(), static_cast<uint32_t>(inner.size()), static_cast<uint32_t>(inner.size()));
        CHECK(vxlan_source_port(a) == vxlan_source_port(b));
        CHECK(vxlan_source_port(a) >= kVxlanSourcePortBase);
        ports.insert(vxlan_source_port(a));
    }
    CHECK(ports.size() > 48);  // 64 flows: nearly all distinct
}

TEST_CASE("vxlan: a tunnel frame from a peer with our VNI and the I flag is accepted") {
    const Bytes inner = inner_frame();
    VxlanCheck c = check(tunnel_frame(inner));
    REQUIRE(c.accept);
    CHECK(c.inner_offset == 14 + 20 + 8 + 8);
    CHECK(c.inner_length == inner.size());
    // Reserved flag bits are ignored on receipt (RFC 7348).
    CHECK(check(tunnel_frame(inner, kRemoteHost, 4242, 0xff)).accept);
}

TEST_CASE("vxlan: a tunnel frame is refused from a non-peer, with another VNI, without the I flag, truncated or "
          "fragmented") {
    const Bytes inner = inner_frame();
    CHECK_FALSE(check(tunnel_frame(inner, kStranger)).accept);
    CHECK_FALSE(check(tunnel_frame(inner, kRemoteHost, 4243)).accept);
    CHECK_FALSE(check(tunnel_frame(inner, kRemoteHost, 4242, 0x00)).accept);
    CHECK_FALSE(check(tunnel_frame(inner, kRemoteHost, 4242, 0x80)).accept);
    // Shorter than an inner Ethernet header.
    CHECK_FALSE(check(tunnel_frame(Bytes(13, 0))).accept);
    CHECK(check(tunnel_frame(Bytes(14, 0))).accept);
    // VXLAN header cut short: 4 bytes of it only.
    {
        Bytes u;
        put16(u, 50000);
        put16(u, 4789);
        put16(u, 12);
        put16(u, 0);
        put(u, Bytes{0x08, 0, 0, 0});
        Ip4 ip = ip4_proto(17);
        ip.src = kRemoteHost;
        ip.dst = kLocalIp;
        CHECK_FALSE(check(eth_ipv4(ip, u)).accept);
    }
    // A first fragment (MF set): the underlay was told DF.
    CHECK_FALSE(check(tunnel_frame(inner, kRemoteHost, 4242, 0x08, 4789, 0x2000)).accept);
    CHECK(check(tunnel_frame(inner, kStranger)).drop_reason == SwitchCounter::drop_vxlan);
}

TEST_CASE("vxlan: only UDP to local_ip on the tunnel port is a tunnel frame") {
    const VxlanSettings s = settings();
    auto parsed = [](const Bytes& f) {
        return parse_frame(f.data(), static_cast<uint32_t>(f.size()), static_cast<uint32_t>(f.size()));
    };
    CHECK(s.is_tunnel_frame(parsed(tunnel_frame(inner_frame()))));
    CHECK_FALSE(s.is_tunnel_frame(parsed(tunnel_frame(inner_frame(), kRemoteHost, 4242, 0x08, 4790))));
    Ip4 to_shared = ip4_proto(17);
    to_shared.src = kRemoteHost;
    CHECK_FALSE(s.is_tunnel_frame(parsed(eth_ipv4(to_shared, udp(5000, 4789, 30)))));
    Ip4 tcp_ip = ip4_proto(6);
    tcp_ip.dst = kLocalIp;
    CHECK_FALSE(s.is_tunnel_frame(parsed(eth_ipv4(tcp_ip, tcp(5000, 4789)))));
}

TEST_CASE("delivery: a port owned by a remote VM is sent to the remote, whatever `unmatched` says") {
    static PortOwnerTable table{};
    const OwnerId remote = 5;
    table.owner[static_cast<unsigned>(L4Proto::kTcp)][5432] = remote;
    OwnerTarget owners[6];
    owners[remote].kind = OwnerKind::kRemote;
    const Bytes frame = inner_frame();
    const ParsedFrame parsed = parse_frame(frame.data(), static_cast<uint32_t>(frame.size()), static_cast<uint32_t>(frame.size()));
    for (UnmatchedPolicy policy : {UnmatchedPolicy::kHost, UnmatchedPolicy::kDrop, UnmatchedPolicy::kReject}) {
        DeliveryDecision d = decide_delivery(parsed, table, owners, policy);
        CHECK(d.delivery == Delivery::kRemote);
        CHECK(d.owner == remote);
    }
    table.owner[static_cast<unsigned>(L4Proto::kTcp)][5432] = kNoOwner;
}

// ---- configuration ----------------------------------------------------------------------------------------

namespace {

json with_remotes() {
    json doc = {{"shared_ip", "192.0.2.10"},
                {"uplink", {{"device", "net_null0"}}},
                {"vms", json::array({{{"name", "web"}, {"device", "net_null1"}, {"mac", "52:54:00:12:34:01"},
                                      {"ranges", {"tcp:80"}}}})},
                {"vxlan", {{"local_ip", "198.51.100.1"}, {"port", 4789}, {"vni", 4242}, {"peers", {"198.51.100.3"}}}},
                {"remotes", json::array({{{"name", "db-b"}, {"host", "198.51.100.2"}, {"mac", "02:00:00:00:0b:01"},
                                          {"ranges", {"tcp:5432"}}}})}};
    return doc;
}

}  // namespace

TEST_CASE("config vxlan: the tunnel and the remotes are read and written back unchanged") {
    Config c = parse_config(with_remotes());
    REQUIRE(c.vxlan);
    CHECK(c.vxlan->local_ip.to_string() == "198.51.100.1");
    CHECK(c.vxlan->port == 4789);
    CHECK(c.vxlan->vni == 4242);
    REQUIRE(c.vxlan->peers.size() == 1);
    REQUIRE(c.remotes.size() == 1);
    CHECK(c.remotes[0].name == "db-b");
    CHECK(c.remotes[0].host.to_string() == "198.51.100.2");
    CHECK(c.remotes[0].mac.to_string() == "02:00:00:00:0b:01");
    REQUIRE(c.remotes[0].ranges.size() == 1);
    json again = config_to_json(c);
    CHECK(again["vxlan"] == with_remotes()["vxlan"]);
    CHECK(again["remotes"] == with_remotes()["remotes"]);
    CHECK(config_to_json(parse_config(again)) == again);
    CHECK_THAT(config_summary(c), Catch::Contains("vni 4242") && Catch::Contains("db-b"));
    // The port defaults to 4789, peers to none.
    json doc = with_remotes();
    doc["vxlan"].erase("port");
    doc["vxlan"].erase("peers");
    Config d = parse_config(doc);
    CHECK(d.vxlan->port == 4789);
    CHECK(d.vxlan->peers.empty());
}

TEST_CASE("config vxlan: every error names its path") {
    json doc = with_remotes();
    doc["vxlan"]["vni"] = 16777216;
    CHECK(config_failure(doc).first == "vxlan.vni");
    doc = with_remotes();
    doc["vxlan"].erase("vni");
    CHECK(config_failure(doc) == std::make_pair(std::string("vxlan.vni"), std::string("required but missing")));
    doc = with_remotes();
    doc["vxlan"]["port"] = 0;
    CHECK(config_failure(doc).first == "vxlan.port");
    doc = with_remotes();
    doc["vxlan"]["local_ip"] = "224.0.0.1";
    CHECK(config_failure(doc).first == "vxlan.local_ip");
    doc = with_remotes();
    doc["vxlan"]["peers"] = {"198.51.100.3", "198.51.100.3"};
    CHECK(config_failure(doc).first == "vxlan.peers[1]");
    doc = with_remotes();
    doc["vxlan"]["vnid"] = 1;
    CHECK(config_failure(doc).first == "vxlan.vnid");
    doc = with_remotes();
    doc.erase("vxlan");
    CHECK(config_failure(doc).first == "remotes");
    doc = with_remotes();
    doc["remotes"][0]["name"] = "web";
    CHECK(config_failure(doc).first == "remotes[0].name");
    CHECK_THAT(config_failure(doc).second, Catch::Contains("vms[0]"));
    doc = with_remotes();
    doc["remotes"][0]["name"] = "host";
    CHECK(config_failure(doc).first == "remotes[0].name");
    doc = with_remotes();
    doc["remotes"].push_back(doc["remotes"][0]);
    doc["remotes"][1]["ranges"] = json::array();
    CHECK(config_failure(doc).first == "remotes[1].name");
    doc = with_remotes();
    doc["remotes"][0]["host"] = "198.51.100.1";
    CHECK(config_failure(doc).first == "remotes[0].host");
    doc = with_remotes();
    doc["remotes"][0]["mac"] = "01:00:5e:00:00:01";
    CHECK(config_failure(doc).first == "remotes[0].mac");
    doc = with_remotes();
    doc["remotes"][0]["ranges"] = {"tcp:80"};
    CHECK(config_failure(doc).first == "remotes[0].ranges[0]");
    CHECK_THAT(config_failure(doc).second, Catch::Contains("VM \"web\""));
    doc = with_remotes();
    doc["vms"][0]["ranges"] = {"tcp:5432"};
    CHECK(config_failure(doc).first == "remotes[0].ranges[0]");
    CHECK_THAT(config_failure(doc).second, Catch::Contains("VM \"web\""));
    doc = with_remotes();
    doc["remotes"][0]["ranges"] = {"tcp:8080-8089->80-89"};
    CHECK(config_failure(doc).first == "remotes[0].ranges[0]");
    doc = with_remotes();
    doc["remotes"][0]["port"] = 1;
    CHECK(config_failure(doc).first == "remotes[0].port");
}

TEST_CASE("config vxlan: on the shared address the tunnel's UDP port belongs to no range") {
    json doc = with_remotes();
    doc["vxlan"]["local_ip"] = "192.0.2.10";
    CHECK(config_failure(doc).first == "<accepted>");
    doc["vms"][0]["ranges"] = {"tcp:80", "4000-5000"};
    CHECK(config_failure(doc).first == "vms[0].ranges[1]");
    CHECK_THAT(config_failure(doc).second, Catch::Contains("udp:4789"));
    doc["vms"][0]["ranges"] = {"tcp:80", "tcp:4000-5000"};  // TCP does not collide
    CHECK(config_failure(doc).first == "<accepted>");
    doc["remotes"][0]["ranges"] = {"udp:4789"};
    CHECK(config_failure(doc).first == "remotes[0].ranges[0]");
    // Elsewhere than on the shared address, the port is free for owners.
    doc["vxlan"]["local_ip"] = "198.51.100.1";
    CHECK(config_failure(doc).first == "<accepted>");
}

TEST_CASE("config vxlan: with several shared addresses only the tunnel's own address loses its UDP port") {
    json doc = with_remotes();
    doc["shared_ip"] = {"192.0.2.10", "192.0.2.20"};
    doc["vxlan"]["local_ip"] = "192.0.2.20";
    doc["vms"][0]["ranges"] = {"tcp:80", "udp:4789"};  // the first address: not the tunnel's
    CHECK(config_failure(doc).first == "<accepted>");
    doc["vms"][0]["ranges"] = {"tcp:80", "192.0.2.20/udp:4780-4790"};
    CHECK(config_failure(doc).first == "vms[0].ranges[1]");
    CHECK_THAT(config_failure(doc).second, Catch::Contains("udp:4789"));
    doc["vxlan"]["local_ip"] = "192.0.2.10";
    CHECK(config_failure(doc).first == "<accepted>");
    doc["vms"][0]["ranges"] = {"tcp:80", "192.0.2.10/udp:4789"};  // the first address, written out
    CHECK(config_failure(doc).first == "vms[0].ranges[1]");
}
