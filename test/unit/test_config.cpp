// Configuration parsing: defaults, every validation error with its JSON path, file errors, JSON round trip.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "config/config.hpp"

using namespace portmux;
using json = nlohmann::json;

namespace {

// The example of the configuration reference (conf/example.json).
const char* const kExample = R"({
  "eal": ["-l", "0-1", "--file-prefix", "portmux"],
  "shared_ip": "192.0.2.10",
  "shared_ip6": "2001:db8::10",
  "uplink": { "device": "0000:3b:00.0", "mac": "02:00:00:00:0a:01" },
  "host":   { "device": "net_tap0,iface=pmx0", "ranges": ["tcp:22", "udp:53"] },
  "vms": [
    { "name": "web", "vhost": "/run/portmux/web.sock", "mac": "52:54:00:12:34:01",
      "ranges": ["0-21", "23-25", "udp:5353"] },
    { "name": "db",  "vhost": "/run/portmux/db.sock", "vhost_mode": "server",
      "mac": "52:54:00:12:34:02", "ranges": ["tcp:26-80", "udp:6000-6099"] },
    { "name": "vf1", "device": "0000:3b:02.0", "mac": "52:54:00:12:34:03",
      "ranges": ["tcp:9000-9999"] }
  ],
  "firewall": {
    "default": "accept",
    "rules": [
      { "action": "drop", "proto": "tcp", "src": "203.0.113.0/24", "dst_ports": "0-1023" },
      { "action": "drop", "proto": "udp", "dst_ports": "6050-6059" }
    ]
  },
  "unmatched": "host"
})";

json example() { return json::parse(kExample); }

json minimal() { return json{{"shared_ip", "192.0.2.10"}, {"uplink", {{"device", "net_null0"}}}}; }

json vm(const std::string& name, const std::string& mac, json ranges = json::array()) {
    return json{{"name", name}, {"vhost", "/run/" + name + ".sock"}, {"mac", mac}, {"ranges", ranges}};
}

struct Failure {
    std::string path;
    std::string what;
};

Failure failure_of(const json& doc) {
    try {
        parse_config(doc);
    } catch (const ConfigError& e) {
        return {e.path(), e.what()};
    }
    return {"<accepted>", ""};
}

#define CHECK_CONFIG_ERROR(doc, want_path, want_what) \
    do {                                              \
        const Failure f_ = failure_of(doc);           \
        CHECK(f_.path == (want_path));                \
        CHECK(f_.what == (want_what));                \
    } while (false)

// A file in /tmp removed when the test ends.
class TempFile {
public:
    explicit TempFile(const std::string& text) {
        char name[] = "/tmp/portmux-test-XXXXXX";
        const int fd = mkstemp(name);
        REQUIRE(fd >= 0);
        close(fd);
        path_ = name;
        std::ofstream(path_) << text;
    }
    ~TempFile() { std::remove(path_.c_str()); }
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

Failure file_failure(const std::string& file) {
    try {
        load_config_file(file);
    } catch (const ConfigError& e) {
        return {e.path(), e.what()};
    }
    return {"<accepted>", ""};
}

}  // namespace

TEST_CASE("config: the reference example parses with every field") {
    const Config c = parse_config(example());
    CHECK(c.eal == std::vector<std::string>{"-l", "0-1", "--file-prefix", "portmux"});
    CHECK(c.shared_ip.to_string() == "192.0.2.10");
    REQUIRE(c.shared_ip6);
    CHECK(c.shared_ip6->to_string() == "2001:db8::10");
    CHECK(c.uplink.device == "0000:3b:00.0");
    REQUIRE(c.uplink.mac);
    CHECK(c.uplink.mac->to_string() == "02:00:00:00:0a:01");
    CHECK(c.host.device == "net_tap0,iface=pmx0");
    REQUIRE(c.host.ranges.size() == 2);
    CHECK(c.host.ranges[0].to_string() == "tcp:22");
    REQUIRE(c.vms.size() == 3);
    CHECK(c.vms[0].name == "web");
    CHECK(c.vms[0].vhost == "/run/portmux/web.sock");
    CHECK(c.vms[0].vhost_mode == VhostMode::kClient);
    CHECK(c.vms[0].device.empty());
    CHECK(c.vms[0].ranges.size() == 3);
    CHECK(c.vms[1].vhost_mode == VhostMode::kServer);
    CHECK(c.vms[2].device == "0000:3b:02.0");
    CHECK(c.vms[2].vhost.empty());
    CHECK(c.vms[2].mac.to_string() == "52:54:00:12:34:03");
    CHECK(c.vms[2].enabled);
    CHECK(c.firewall.default_action == FirewallAction::kAccept);
    REQUIRE(c.firewall.rules.size() == 2);
    const FirewallRule& r0 = c.firewall.rules[0];
    CHECK(r0.action == FirewallAction::kDrop);
    CHECK(r0.proto == uint8_t{6});
    REQUIRE(r0.src);
    CHECK(r0.src->to_string() == "203.0.113.0/24");
    CHECK_FALSE(r0.dst);
    CHECK_FALSE(r0.src_ports);
    CHECK(r0.dst_ports == PortSpan{0, 1023});
    CHECK(c.firewall.rules[1].proto == uint8_t{17});
    CHECK(c.unmatched == UnmatchedPolicy::kHost);
}

TEST_CASE("config: the smallest configuration gets the documented defaults") {
    const Config c = parse_config(minimal());
    CHECK(c.eal.empty());
    CHECK_FALSE(c.shared_ip6);
    CHECK_FALSE(c.uplink.mac);
    CHECK(c.host.device == "net_tap0,iface=pmx0");
    CHECK(c.host.ranges.empty());
    CHECK(c.vms.empty());
    CHECK(c.firewall.default_action == FirewallAction::kAccept);
    CHECK(c.firewall.rules.empty());
    CHECK(c.unmatched == UnmatchedPolicy::kHost);
}

TEST_CASE("config: the document must be an object with known keys") {
    CHECK_CONFIG_ERROR(json::array(), "$", "expected a JSON object");
    CHECK_CONFIG_ERROR(json("x"), "$", "expected a JSON object");
    json doc = minimal();
    doc["shared_ipv6"] = "2001:db8::1";
    CHECK_CONFIG_ERROR(doc, "shared_ipv6",
                       "unknown key (expected one of: eal, shared_ip, shared_ip6, uplink, host, vms, firewall, unmatched, control, "
                       "vxlan, remotes, groups, connections)");
    doc = minimal();
    doc["odd key"] = 1;
    CHECK_CONFIG_ERROR(doc, "$[\"odd key\"]",
                       "unknown key (expected one of: eal, shared_ip, shared_ip6, uplink, host, vms, firewall, unmatched, control, "
                       "vxlan, remotes, groups, connections)");
}

TEST_CASE("config: shared_ip is a required unicast IPv4 address") {
    json doc = minimal();
    doc.erase("shared_ip");
    CHECK_CONFIG_ERROR(doc, "shared_ip", "required but missing");
    doc["shared_ip"] = 3232235521;
    CHECK_CONFIG_ERROR(doc, "shared_ip", "expected a string");
    doc["shared_ip"] = "192.0.2";
    CHECK_CONFIG_ERROR(doc, "shared_ip", "\"192.0.2\": not an IPv4 address (expected a dotted quad like 192.0.2.10)");
    for (const char* bad : {"0.0.0.0", "255.255.255.255", "224.0.0.1"}) {
        doc["shared_ip"] = bad;
        CHECK_CONFIG_ERROR(doc, "shared_ip", std::string("\"") + bad + "\": not a unicast address");
    }
}

TEST_CASE("config: shared_ip6 is an optional unicast IPv6 address") {
    json doc = minimal();
    doc["shared_ip6"] = "2001:db8::zz";
    CHECK_CONFIG_ERROR(doc, "shared_ip6", "\"2001:db8::zz\": not an IPv6 address (expected e.g. 2001:db8::10)");
    doc["shared_ip6"] = "ff02::1";
    CHECK_CONFIG_ERROR(doc, "shared_ip6", "\"ff02::1\": not a unicast address");
    doc["shared_ip6"] = "::";
    CHECK_CONFIG_ERROR(doc, "shared_ip6", "\"::\": not a unicast address");
    doc["shared_ip6"] = nullptr;
    CHECK_CONFIG_ERROR(doc, "shared_ip6", "expected a string");
}

TEST_CASE("config: eal is an array of strings") {
    json doc = minimal();
    doc["eal"] = "-l 0-1";
    CHECK_CONFIG_ERROR(doc, "eal", "expected an array");
    doc["eal"] = json{"-l", 1};
    CHECK_CONFIG_ERROR(doc, "eal[1]", "expected a string");
}

TEST_CASE("config: uplink needs a device; its MAC is optional, unicast and non-zero") {
    json doc = minimal();
    doc.erase("uplink");
    CHECK_CONFIG_ERROR(doc, "uplink", "required but missing");
    doc["uplink"] = "0000:3b:00.0";
    CHECK_CONFIG_ERROR(doc, "uplink", "expected an object");
    doc["uplink"] = json::object();
    CHECK_CONFIG_ERROR(doc, "uplink.device", "required but missing");
    doc["uplink"] = {{"device", ""}};
    CHECK_CONFIG_ERROR(doc, "uplink.device", "must not be empty");
    doc["uplink"] = {{"device", "x"}, {"mac", "01:00:5e:00:00:01"}};
    CHECK_CONFIG_ERROR(doc, "uplink.mac", "\"01:00:5e:00:00:01\": a multicast address cannot be a port's MAC");
    doc["uplink"] = {{"device", "x"}, {"mac", "00:00:00:00:00:00"}};
    CHECK_CONFIG_ERROR(doc, "uplink.mac", "\"00:00:00:00:00:00\": the all-zero MAC is not a valid address");
    doc["uplink"] = {{"device", "x"}, {"mac", "02:00:00:00:0a"}};
    CHECK_CONFIG_ERROR(doc, "uplink.mac",
                       "\"02:00:00:00:0a\": not a MAC address (expected six hex bytes like 52:54:00:12:34:01)");
    doc["uplink"] = {{"device", "x"}, {"speed", 10}};
    CHECK_CONFIG_ERROR(doc, "uplink.speed", "unknown key (expected one of: device, mac)");
}

TEST_CASE("config: host keys, types and device name clashes") {
    json doc = minimal();
    doc["host"] = {{"device", 5}};
    CHECK_CONFIG_ERROR(doc, "host.device", "expected a string");
    doc["host"] = {{"ranges", "tcp:22"}};
    CHECK_CONFIG_ERROR(doc, "host.ranges", "expected an array");
    doc["host"] = {{"ranges", {22}}};
    CHECK_CONFIG_ERROR(doc, "host.ranges[0]", "expected a string");
    doc["host"] = {{"iface", "pmx0"}};
    CHECK_CONFIG_ERROR(doc, "host.iface", "unknown key (expected one of: device, ranges, rate_limit_pps)");
    // DPDK names a device by the devargs before the first comma: two ports cannot share it.
    doc = minimal();
    doc["uplink"]["device"] = "net_tap0,iface=eth1";
    CHECK_CONFIG_ERROR(doc, "host.device",
                       "device \"net_tap0\" is already used by uplink.device (\"net_tap0,iface=pmx0\" is the default)");
    doc["host"] = {{"device", "net_tap1,iface=pmx0"}};
    CHECK_NOTHROW(parse_config(doc));
}

TEST_CASE("config: vms is an array of objects with known keys") {
    json doc = minimal();
    doc["vms"] = json::object();
    CHECK_CONFIG_ERROR(doc, "vms", "expected an array");
    doc["vms"] = json{"web"};
    CHECK_CONFIG_ERROR(doc, "vms[0]", "expected an object");
    doc["vms"] = json{vm("web", "52:54:00:00:00:01")};
    doc["vms"][0]["nmae"] = "x";
    CHECK_CONFIG_ERROR(doc, "vms[0].nmae",
                       "unknown key (expected one of: name, vhost, vhost_mode, device, mac, ranges, enabled, backup)");
}

TEST_CASE("config: up to kMaxVms (1,024) VMs, one more is refused with one line") {
    json doc = minimal();
    json vms = json::array();
    for (size_t i = 0; i < kMaxVms; ++i)
        vms.push_back(vm(fmt::format("vm{}", i), fmt::format("52:54:00:00:{:02x}:{:02x}", i / 256, i % 256),
                         json{fmt::format("tcp:{}", 10000 + i)}));
    doc["vms"] = vms;
    Config config = parse_config(doc);
    CHECK(config.vms.size() == kMaxVms);
    CHECK(config.vms.back().ranges.at(0).ports.first == 10000 + kMaxVms - 1);
    doc["vms"].push_back(vm("one-more", "52:54:00:00:ff:ff"));
    CHECK_CONFIG_ERROR(doc, "vms", "too many VMs (1025, at most 1024)");
}

TEST_CASE("config: VM names are valid, unique and not \"host\"") {
    json doc = minimal();
    doc["vms"] = json{vm("web", "52:54:00:00:00:01")};
    doc["vms"][0].erase("name");
    CHECK_CONFIG_ERROR(doc, "vms[0].name", "required but missing");
    for (const std::string& bad : std::vector<std::string>{"", "a b", "web/1", std::string(33, 'a'), "wéb"}) {
        doc["vms"] = json{vm(bad, "52:54:00:00:00:01")};
        CHECK_CONFIG_ERROR(doc, "vms[0].name",
                           "\"" + bad + "\": invalid name (expected 1 to 32 characters from A-Z a-z 0-9 _ . -)");
    }
    doc["vms"] = json{vm(std::string(32, 'a'), "52:54:00:00:00:01"), vm("A-Z_a.z-09", "52:54:00:00:00:02")};
    CHECK_NOTHROW(parse_config(doc));
    doc["vms"] = json{vm("host", "52:54:00:00:00:01")};
    CHECK_CONFIG_ERROR(doc, "vms[0].name", "\"host\" is reserved (it names the host as a range owner)");
    doc["vms"] = json{vm("web", "52:54:00:00:00:01"), vm("db", "52:54:00:00:00:02"), vm("web", "52:54:00:00:00:03")};
    CHECK_CONFIG_ERROR(doc, "vms[2].name", "\"web\" is already used by vms[0]");
}

TEST_CASE("config: a VM has exactly one of vhost and device") {
    json doc = minimal();
    doc["vms"] = json{vm("web", "52:54:00:00:00:01")};
    doc["vms"][0].erase("vhost");
    CHECK_CONFIG_ERROR(doc, "vms[0]", "needs exactly one of \"vhost\" or \"device\"");
    doc["vms"][0]["vhost"] = "/run/a.sock";
    doc["vms"][0]["device"] = "net_null1";
    CHECK_CONFIG_ERROR(doc, "vms[0].device", "\"vhost\" and \"device\" exclude each other (give exactly one)");
    doc["vms"][0].erase("vhost");
    CHECK_NOTHROW(parse_config(doc));
    doc["vms"][0]["device"] = "";
    CHECK_CONFIG_ERROR(doc, "vms[0].device", "must not be empty");
    doc["vms"][0]["device"] = "net_null0";
    CHECK_CONFIG_ERROR(doc, "vms[0].device", "device \"net_null0\" is already used by uplink.device");
}

TEST_CASE("config: vhost is an absolute socket path used once; vhost_mode is client or server") {
    json doc = minimal();
    doc["vms"] = json{vm("web", "52:54:00:00:00:01")};
    doc["vms"][0]["vhost"] = "";
    CHECK_CONFIG_ERROR(doc, "vms[0].vhost", "must not be empty");
    doc["vms"][0]["vhost"] = "run/web.sock";
    CHECK_CONFIG_ERROR(doc, "vms[0].vhost", "\"run/web.sock\": not an absolute path");
    doc["vms"][0]["vhost"] = "/" + std::string(107, 'a');
    CHECK_CONFIG_ERROR(doc, "vms[0].vhost",
                       "\"/" + std::string(107, 'a') + "\": longer than 107 bytes, the limit of a socket path");
    doc["vms"] = json{vm("web", "52:54:00:00:00:01"), vm("db", "52:54:00:00:00:02")};
    doc["vms"][1]["vhost"] = "/run/web.sock";
    CHECK_CONFIG_ERROR(doc, "vms[1].vhost", "\"/run/web.sock\" is already used by vms[0]");
    doc["vms"] = json{vm("web", "52:54:00:00:00:01")};
    doc["vms"][0]["vhost_mode"] = "listen";
    CHECK_CONFIG_ERROR(doc, "vms[0].vhost_mode", "\"listen\": expected \"client\" or \"server\"");
    doc["vms"][0]["vhost_mode"] = "server";
    CHECK(parse_config(doc).vms[0].vhost_mode == VhostMode::kServer);
    doc["vms"][0].erase("vhost");
    doc["vms"][0]["device"] = "net_null1";
    CHECK_CONFIG_ERROR(doc, "vms[0].vhost_mode", "only allowed with \"vhost\"");
}

TEST_CASE("config: VM MACs are required, unicast, non-zero and distinct") {
    json doc = minimal();
    doc["vms"] = json{vm("web", "52:54:00:00:00:01")};
    doc["vms"][0].erase("mac");
    CHECK_CONFIG_ERROR(doc, "vms[0].mac", "required but missing");
    doc["vms"] = json{vm("web", "33:33:00:00:00:01")};
    CHECK_CONFIG_ERROR(doc, "vms[0].mac", "\"33:33:00:00:00:01\": a multicast address cannot be a port's MAC");
    doc["vms"] = json{vm("web", "00:00:00:00:00:00")};
    CHECK_CONFIG_ERROR(doc, "vms[0].mac", "\"00:00:00:00:00:00\": the all-zero MAC is not a valid address");
    doc["vms"] = json{vm("web", "52:54:00:00:00:01"), vm("db", "52-54-00-00-00-01")};
    CHECK_CONFIG_ERROR(doc, "vms[1].mac", "\"52-54-00-00-00-01\" is already used by vms[0]");
}

TEST_CASE("config: enabled is an optional boolean, true by default") {
    json doc = minimal();
    doc["vms"] = json{vm("web", "52:54:00:00:00:01")};
    CHECK(parse_config(doc).vms[0].enabled);
    doc["vms"][0]["enabled"] = false;
    CHECK_FALSE(parse_config(doc).vms[0].enabled);
    doc["vms"][0]["enabled"] = "no";
    CHECK_CONFIG_ERROR(doc, "vms[0].enabled", "expected true or false");
}

TEST_CASE("config: backup names another VM of the list") {
    json doc = minimal();
    doc["vms"] = json{vm("web", "52:54:00:00:00:01"), vm("web2", "52:54:00:00:00:02")};
    CHECK(parse_config(doc).vms[0].backup.empty());
    doc["vms"][0]["backup"] = "web2";
    Config config = parse_config(doc);
    CHECK(config.vms[0].backup == "web2");
    CHECK(parse_config(config_to_json(config)).vms[0].backup == "web2");
    doc["vms"][0]["backup"] = "web";
    CHECK_CONFIG_ERROR(doc, "vms[0].backup", "\"web\": a VM cannot be its own backup");
    doc["vms"][0]["backup"] = "nobody";
    CHECK_CONFIG_ERROR(doc, "vms[0].backup", "\"nobody\": no VM has this name");
    doc["vms"][0]["backup"] = 3;
    CHECK_CONFIG_ERROR(doc, "vms[0].backup", "expected a string");
}

TEST_CASE("config: translated ranges belong to VMs whose answer ports stay unambiguous") {
    json doc = minimal();
    doc["vms"] = json{vm("web", "52:54:00:00:00:01", json{"tcp:8080-8089->80-89", "tcp:443"})};
    Config config = parse_config(doc);
    REQUIRE(config.vms[0].ranges[0].translated);
    CHECK(parse_config(config_to_json(config)).vms[0].ranges[0] == config.vms[0].ranges[0]);
    doc["vms"][0]["ranges"] = json{"tcp:80", "tcp:8080->80"};
    CHECK_CONFIG_ERROR(doc, "vms[0].ranges[1]", "\"tcp:8080->80\": the VM answers from ports 80 of \"tcp:80\" already");
    doc["vms"][0]["ranges"] = json::array();
    doc["host"] = {{"ranges", json{"tcp:2222->22"}}};
    CHECK_CONFIG_ERROR(doc, "host.ranges[0]",
                       "\"tcp:2222->22\": port translation is for VMs (the host's ports reach it unchanged)");
}

TEST_CASE("config: host.rate_limit_pps is frames per second, 0 for no limit, 100000 by default") {
    json doc = minimal();
    CHECK(parse_config(doc).host.rate_limit_pps == 100000);
    doc["host"] = {{"rate_limit_pps", 0}};
    CHECK(parse_config(doc).host.rate_limit_pps == 0);
    doc["host"]["rate_limit_pps"] = 5000;
    Config config = parse_config(doc);
    CHECK(parse_config(config_to_json(config)).host.rate_limit_pps == 5000);
    doc["host"]["rate_limit_pps"] = -1;
    CHECK_CONFIG_ERROR(doc, "host.rate_limit_pps", "expected a number of frames per second, 0 (no limit) to 100000000");
    doc["host"]["rate_limit_pps"] = "fast";
    CHECK_CONFIG_ERROR(doc, "host.rate_limit_pps", "expected a number of frames per second, 0 (no limit) to 100000000");
}

TEST_CASE("config: range syntax errors name the range's path") {
    json doc = minimal();
    doc["vms"] = json{vm("web", "52:54:00:00:00:01"), vm("db", "52:54:00:00:00:02", {"90-80"})};
    CHECK_CONFIG_ERROR(doc, "vms[1].ranges[0]", "\"90-80\": FROM is above TO");
    doc["vms"][1]["ranges"] = json{"tcp:70000"};
    CHECK_CONFIG_ERROR(doc, "vms[1].ranges[0]", "\"tcp:70000\": port above 65535");
    doc["vms"][1]["ranges"] = json{"1", "sctp:1"};
    CHECK_CONFIG_ERROR(doc, "vms[1].ranges[1]", "\"sctp:1\": unknown protocol \"sctp\" (expected tcp: or udp:)");
    doc["vms"][1]["ranges"] = json{80};
    CHECK_CONFIG_ERROR(doc, "vms[1].ranges[0]", "expected a string");
    doc["vms"][1]["ranges"] = "80";
    CHECK_CONFIG_ERROR(doc, "vms[1].ranges", "expected an array");
}

TEST_CASE("config: a port owned twice names the other range, its owner and where it was declared") {
    json doc = minimal();
    doc["vms"] = json{vm("web", "52:54:00:00:00:01", {"0-25"}), vm("db", "52:54:00:00:00:02", {"tcp:20-30"})};
    CHECK_CONFIG_ERROR(doc, "vms[1].ranges[0]", "\"tcp:20-30\" overlaps \"0-25\" of VM \"web\" (vms[0].ranges[0]) at tcp:20");
    doc["host"] = {{"ranges", {"tcp:22", "udp:53"}}};
    doc["vms"] = json{vm("web", "52:54:00:00:00:01", {"udp:1-100"})};
    CHECK_CONFIG_ERROR(doc, "vms[0].ranges[0]", "\"udp:1-100\" overlaps \"udp:53\" of the host (host.ranges[1]) at udp:53");
    // One owner's ranges may not overlap each other either.
    doc["vms"] = json{vm("web", "52:54:00:00:00:01", {"1000-2000", "udp:2000"})};
    CHECK_CONFIG_ERROR(doc, "vms[0].ranges[1]",
                       "\"udp:2000\" overlaps \"1000-2000\" of VM \"web\" (vms[0].ranges[0]) at udp:2000");
    doc["host"] = {{"ranges", {"tcp:22", "tcp:10-30"}}};
    doc["vms"] = json::array();
    CHECK_CONFIG_ERROR(doc, "host.ranges[1]", "\"tcp:10-30\" overlaps \"tcp:22\" of the host (host.ranges[0]) at tcp:22");
}

TEST_CASE("config: ranges that only touch, or differ in protocol, are accepted") {
    json doc = minimal();
    doc["host"] = {{"ranges", {"tcp:22"}}};
    doc["vms"] = json{vm("web", "52:54:00:00:00:01", {"0-21", "23-25", "udp:22"}),
                      vm("db", "52:54:00:00:00:02", {"tcp:26-80", "udp:26-65535"}),
                      vm("x", "52:54:00:00:00:03", {"tcp:81-65535"}), vm("empty", "52:54:00:00:00:04")};
    const Config c = parse_config(doc);
    CHECK(c.vms[1].ranges.size() == 2);
    CHECK(c.vms[3].ranges.empty());
}

TEST_CASE("config: firewall default and rule fields are checked") {
    json doc = minimal();
    doc["firewall"] = {{"default", "reject"}};
    CHECK_CONFIG_ERROR(doc, "firewall.default", "\"reject\": expected \"accept\" or \"drop\"");
    doc["firewall"] = {{"rules", json::object()}};
    CHECK_CONFIG_ERROR(doc, "firewall.rules", "expected an array");
    doc["firewall"] = {{"policy", "drop"}};
    CHECK_CONFIG_ERROR(doc, "firewall.policy", "unknown key (expected one of: default, rules)");
    doc["firewall"] = {{"rules", {{{"proto", "tcp"}}}}};
    CHECK_CONFIG_ERROR(doc, "firewall.rules[0].action", "required but missing");
    doc["firewall"] = {{"rules", {{{"action", "allow"}}}}};
    CHECK_CONFIG_ERROR(doc, "firewall.rules[0].action", "\"allow\": expected \"accept\" or \"drop\"");
    doc["firewall"] = {{"rules", {{{"action", "drop"}}, {{"action", "drop"}, {"port", 1}}}}};
    CHECK_CONFIG_ERROR(doc, "firewall.rules[1].port",
                       "unknown key (expected one of: action, proto, src, dst, src_ports, dst_ports)");
    doc["firewall"] = {{"default", "drop"}, {"rules", {{{"action", "accept"}}}}};
    const Config c = parse_config(doc);
    CHECK(c.firewall.default_action == FirewallAction::kDrop);
    CHECK_FALSE(c.firewall.rules[0].proto);
}

TEST_CASE("config: a rule's proto is a name, a number 0..255 or a decimal string") {
    json doc = minimal();
    auto proto_of = [&](json proto) {
        doc["firewall"] = {{"rules", {{{"action", "drop"}, {"proto", proto}}}}};
        return parse_config(doc).firewall.rules[0].proto;
    };
    CHECK(proto_of("tcp") == uint8_t{6});
    CHECK(proto_of("udp") == uint8_t{17});
    CHECK(proto_of("icmp") == uint8_t{1});
    CHECK(proto_of("icmpv6") == uint8_t{58});
    CHECK(proto_of(47) == uint8_t{47});
    CHECK(proto_of("47") == uint8_t{47});
    CHECK(proto_of(0) == uint8_t{0});
    CHECK(proto_of(255) == uint8_t{255});
    const std::string expected = "expected tcp, udp, icmp, icmpv6 or a protocol number 0..255";
    doc["firewall"] = {{"rules", {{{"action", "drop"}, {"proto", 256}}}}};
    CHECK_CONFIG_ERROR(doc, "firewall.rules[0].proto", "256: " + expected);
    doc["firewall"]["rules"][0]["proto"] = -1;
    CHECK_CONFIG_ERROR(doc, "firewall.rules[0].proto", "-1: " + expected);
    doc["firewall"]["rules"][0]["proto"] = "gre";
    CHECK_CONFIG_ERROR(doc, "firewall.rules[0].proto", "\"gre\": " + expected);
    doc["firewall"]["rules"][0]["proto"] = "TCP";
    CHECK_CONFIG_ERROR(doc, "firewall.rules[0].proto", "\"TCP\": " + expected);
    doc["firewall"]["rules"][0]["proto"] = "256";
    CHECK_CONFIG_ERROR(doc, "firewall.rules[0].proto", "\"256\": " + expected);
    doc["firewall"]["rules"][0]["proto"] = 6.5;
    CHECK_CONFIG_ERROR(doc, "firewall.rules[0].proto", "expected a string or a number: " + expected);
}

TEST_CASE("config: rule addresses are CIDR prefixes of one IP version") {
    json doc = minimal();
    doc["firewall"] = {{"rules", {{{"action", "drop"}, {"src", "192.0.2.1/24"}}}}};
    CHECK_CONFIG_ERROR(doc, "firewall.rules[0].src", "\"192.0.2.1/24\": host bits are set (did you mean 192.0.2.0/24?)");
    doc["firewall"]["rules"][0]["src"] = "10.0.0.0/8";
    doc["firewall"]["rules"][0]["dst"] = "2001:db8::/32";
    CHECK_CONFIG_ERROR(doc, "firewall.rules[0].dst", "\"2001:db8::/32\" is IPv6 but src \"10.0.0.0/8\" is IPv4");
    doc["firewall"]["rules"][0]["dst"] = "bogus";
    CHECK_CONFIG_ERROR(doc, "firewall.rules[0].dst",
                       "\"bogus\": not an IPv4 address or prefix (expected e.g. 203.0.113.0/24)");
    doc["firewall"]["rules"][0]["dst"] = "192.0.2.10";
    const Config c = parse_config(doc);
    CHECK(c.firewall.rules[0].dst->length == 32);
    // ICMP exists for IPv4 only and ICMPv6 for IPv6 only: such a rule could never match.
    doc["firewall"] = {{"rules", {{{"action", "drop"}, {"proto", "icmp"}, {"dst", "2001:db8::/32"}}}}};
    CHECK_CONFIG_ERROR(doc, "firewall.rules[0].proto", "\"icmp\" is IPv4 only but dst is IPv6 (use icmpv6)");
    doc["firewall"] = {{"rules", {{{"action", "drop"}, {"proto", 58}, {"src", "10.0.0.0/8"}}}}};
    CHECK_CONFIG_ERROR(doc, "firewall.rules[0].proto", "\"icmpv6\" is IPv6 only but src is IPv4 (use icmp)");
}

TEST_CASE("config: rule ports are FROM[-TO] and need proto tcp or udp") {
    json doc = minimal();
    doc["firewall"] = {{"rules", {{{"action", "drop"}, {"proto", "icmp"}, {"dst_ports", "80"}}}}};
    CHECK_CONFIG_ERROR(doc, "firewall.rules[0].dst_ports", "ports need proto tcp or udp");
    doc["firewall"]["rules"][0]["proto"] = 47;
    doc["firewall"]["rules"][0].erase("dst_ports");
    doc["firewall"]["rules"][0]["src_ports"] = "80";
    CHECK_CONFIG_ERROR(doc, "firewall.rules[0].src_ports", "ports need proto tcp or udp");
    doc["firewall"]["rules"][0]["proto"] = "17";
    CHECK(parse_config(doc).firewall.rules[0].src_ports == PortSpan{80, 80});
    doc["firewall"]["rules"][0].erase("proto");
    CHECK(parse_config(doc).firewall.rules[0].src_ports == PortSpan{80, 80});
    doc["firewall"]["rules"][0]["src_ports"] = "tcp:80";
    CHECK(failure_of(doc).path == "firewall.rules[0].src_ports");
    doc["firewall"]["rules"][0]["src_ports"] = "1024-80";
    CHECK_CONFIG_ERROR(doc, "firewall.rules[0].src_ports", "\"1024-80\": FROM is above TO");
    doc["firewall"]["rules"][0]["src_ports"] = 80;
    CHECK_CONFIG_ERROR(doc, "firewall.rules[0].src_ports", "expected a string");
}

TEST_CASE("config: unmatched is host, drop or reject") {
    json doc = minimal();
    doc["unmatched"] = "reject";
    CHECK(parse_config(doc).unmatched == UnmatchedPolicy::kReject);
    doc["unmatched"] = "drop";
    CHECK(parse_config(doc).unmatched == UnmatchedPolicy::kDrop);
    doc["unmatched"] = "vm";
    CHECK_CONFIG_ERROR(doc, "unmatched", "\"vm\": expected \"host\", \"drop\" or \"reject\"");
    doc["unmatched"] = true;
    CHECK_CONFIG_ERROR(doc, "unmatched", "expected a string");
}

TEST_CASE("config: control.read_only is an optional boolean, false by default, and round-trips") {
    json doc = minimal();
    CHECK_FALSE(parse_config(doc).control.read_only);
    doc["control"] = {{"read_only", true}};
    Config config = parse_config(doc);
    CHECK(config.control.read_only);
    CHECK(parse_config(config_to_json(config)).control.read_only);
    doc["control"] = {{"read_only", "yes"}};
    CHECK_CONFIG_ERROR(doc, "control.read_only", "expected true or false");
    doc["control"] = {{"readonly", true}};
    CHECK_CONFIG_ERROR(doc, "control.readonly", "unknown key (expected one of: read_only)");
}

TEST_CASE("config: parse_firewall_rule reads one rule with errors at the given path") {
    FirewallRule rule = parse_firewall_rule(json{{"action", "drop"}, {"proto", "udp"}, {"dst_ports", "53"}}, "rule");
    CHECK(rule.action == FirewallAction::kDrop);
    CHECK(rule.proto == std::optional<uint8_t>(17));
    REQUIRE(rule.dst_ports);
    CHECK(rule.dst_ports->first == 53);
    CHECK_THROWS_AS(parse_firewall_rule(json{{"proto", "udp"}}, "rule"), ConfigError);
}

TEST_CASE("config file: an unreadable file is reported with the system's reason") {
    CHECK(file_failure("/nonexistent/portmux.json").path == "$");
    CHECK(file_failure("/nonexistent/portmux.json").what == "cannot read: No such file or directory");
    CHECK(file_failure("/tmp").what == "cannot read: Is a directory");
}

TEST_CASE("config file: a JSON syntax error names its line and column") {
    TempFile file("{\n  \"shared_ip\": \"192.0.2.10\",\n  \"uplink\" {}\n}\n");
    const Failure f = file_failure(file.path());
    CHECK(f.path == "$");
    CHECK(f.what.rfind("invalid JSON at line 3, column 12: ", 0) == 0);
    TempFile empty("");
    CHECK(file_failure(empty.path()).what.rfind("invalid JSON at line 1, column 1: ", 0) == 0);
}

TEST_CASE("config file: a key given twice is an error at its path") {
    TempFile file(R"({"shared_ip": "192.0.2.10", "uplink": {"device": "a"},
                     "vms": [{"name": "a", "vhost": "/a", "mac": "02:00:00:00:00:01"},
                             {"name": "b", "vhost": "/b", "mac": "02:00:00:00:00:02", "ranges": [], "ranges": ["1"]}]})");
    const Failure f = file_failure(file.path());
    CHECK(f.path == "vms[1].ranges");
    CHECK(f.what == "duplicate key");
}

TEST_CASE("config file: a valid file is parsed and validated") {
    TempFile file(kExample);
    CHECK(load_config_file(file.path()).vms.size() == 3);
    TempFile bad(R"({"shared_ip": "192.0.2.10", "uplink": {"device": "a"}, "vms": [{"name": "a"}]})");
    CHECK(file_failure(bad.path()).path == "vms[0]");
}

TEST_CASE("config json: config_to_json round-trips through parse_config") {
    json doc = example();
    doc["vms"][2]["enabled"] = false;
    doc["host"] = {{"device", "net_tap1,iface=h"}};
    doc["unmatched"] = "reject";
    doc["firewall"]["default"] = "drop";
    doc["firewall"]["rules"].push_back(
        {{"action", "accept"}, {"proto", "47"}, {"src", "2001:db8::/32"}, {"dst", "2001:db8:1::1"}});
    doc["firewall"]["rules"].push_back({{"action", "accept"}, {"src_ports", "1024-65535"}, {"dst_ports", "0"}});
    doc["firewall"]["rules"].push_back({{"action", "drop"}, {"proto", 58}});
    doc["vms"][0]["mac"] = "52-54-00-AB-CD-EF";
    for (const json& input : {doc, example(), minimal()}) {
        const Config first = parse_config(input);
        const json written = config_to_json(first);
        const Config second = parse_config(written);
        CHECK(config_to_json(second) == written);
        CHECK(config_summary(second) == config_summary(first));
    }
    const json written = config_to_json(parse_config(doc));
    CHECK(written["vms"][0]["mac"] == "52:54:00:ab:cd:ef");
    CHECK(written["vms"][1]["vhost_mode"] == "server");
    CHECK_FALSE(written["vms"][0].contains("vhost_mode"));
    CHECK(written["vms"][2]["enabled"] == false);
    CHECK_FALSE(written["vms"][1].contains("enabled"));
    CHECK(written["firewall"]["rules"][2]["proto"] == 47);
    CHECK(written["firewall"]["rules"][2]["dst"] == "2001:db8:1::1/128");
    CHECK(written["firewall"]["rules"][4]["proto"] == "icmpv6");
    CHECK(written["host"] == json{{"device", "net_tap1,iface=h"}});
    const Config back = parse_config(written);
    CHECK(back.vms[2].enabled == false);
    CHECK(back.firewall.rules[2].dst->length == 128);
    CHECK(back.unmatched == UnmatchedPolicy::kReject);
    CHECK(back.vms[0].ranges == parse_config(doc).vms[0].ranges);
}

TEST_CASE("config summary: one screen naming addresses, ports, VMs, firewall and policy") {
    const std::string s = config_summary(parse_config(example()));
    CHECK(std::count(s.begin(), s.end(), '\n') <= 25);
    for (const char* part :
         {"192.0.2.10", "2001:db8::10", "0000:3b:00.0", "02:00:00:00:0a:01", "net_tap0,iface=pmx0", "tcp:22 udp:53",
          "web", "vhost client /run/portmux/web.sock", "vhost server /run/portmux/db.sock", "device 0000:3b:02.0",
          "52:54:00:12:34:03", "0-21 23-25 udp:5353", "tcp:9000-9999", "default accept, 2 rules", "unmatched"}) {
        INFO(part);
        CHECK(s.find(part) != std::string::npos);
    }
    json doc = example();
    doc["vms"][1]["enabled"] = false;
    CHECK(config_summary(parse_config(doc)).find("(disabled)") != std::string::npos);
}

TEST_CASE("config summary: many VMs are listed one per line and long range lists are cut") {
    json doc = minimal();
    json vms = json::array();
    for (int i = 0; i < 100; ++i) {
        json ranges = json::array();
        for (int j = 0; j < 20; ++j) ranges.push_back(std::to_string(i * 100 + j));
        vms.push_back(vm("vm" + std::to_string(i), fmt::format("52:54:00:00:{:02x}:{:02x}", i / 256, i % 256), ranges));
    }
    doc["vms"] = vms;
    const std::string s = config_summary(parse_config(doc));
    CHECK(std::count(s.begin(), s.end(), '\n') < 120);
    CHECK(s.find("(+12 more)") != std::string::npos);
    CHECK(s.find("tcp 2000 of 65536, udp 2000 of 65536") != std::string::npos);
}

TEST_CASE("config: shared_ip may be a list; ADDRESS/RANGE ranges belong to one of its addresses") {
    json doc = minimal();
    doc["shared_ip"] = json::array({"192.0.2.10", "192.0.2.20"});
    doc["host"] = {{"ranges", json::array({"tcp:22", "192.0.2.20/tcp:22", "192.0.2.10/tcp:23"})}};
    doc["vms"] = json::array({vm("web", "02:00:00:00:01:01", json::array({"tcp:80", "192.0.2.20/tcp:80"}))});
    Config config = parse_config(doc);
    CHECK(config.shared_ip.to_string() == "192.0.2.10");
    REQUIRE(config.extra_shared_ips.size() == 1);
    CHECK(config.extra_shared_ips[0].to_string() == "192.0.2.20");
    // The first address is the unwritten default: "192.0.2.10/tcp:23" is "tcp:23".
    CHECK(config.host.ranges[2] == *PortRange::parse("tcp:23"));
    CHECK(config.vms[0].ranges[1].to_string() == "192.0.2.20/tcp:80");

    Config again = parse_config(config_to_json(config));
    CHECK(again.extra_shared_ips == config.extra_shared_ips);
    CHECK(again.vms[0].ranges == config.vms[0].ranges);
    CHECK(again.host.ranges == config.host.ranges);

    json bad = doc;
    bad["vms"][0]["ranges"] = json::array({"192.0.2.30/tcp:80"});
    CHECK_CONFIG_ERROR(bad, "vms[0].ranges[0]",
                       "\"192.0.2.30/tcp:80\": 192.0.2.30 is not a shared address (see \"shared_ip\")");
    bad["vms"][0]["ranges"] = json::array({"192.0.2.20/tcp:8080->80"});
    CHECK_CONFIG_ERROR(bad, "vms[0].ranges[0]",
                       "\"192.0.2.20/tcp:8080->80\": port translation is available on the first shared address only");
    bad["vms"][0]["ranges"] = json::array({"192.0.2.20/20-30"});
    CHECK_CONFIG_ERROR(bad, "vms[0].ranges[0]",
                       "\"192.0.2.20/20-30\" overlaps \"192.0.2.20/tcp:22\" of the host (host.ranges[1]) at tcp:22");
    bad = doc;
    bad["shared_ip"] = json::array({"192.0.2.10", "192.0.2.10"});
    CHECK_CONFIG_ERROR(bad, "shared_ip[1]", "\"192.0.2.10\" is listed twice (also shared_ip[0])");
    bad["shared_ip"] = json::array();
    CHECK_CONFIG_ERROR(bad, "shared_ip", "expected at least one address");
    bad["shared_ip"] = json::array({"192.0.2.10", "224.0.0.1"});
    CHECK_CONFIG_ERROR(bad, "shared_ip[1]", "\"224.0.0.1\": not a unicast address");
    // Without the list, a range naming an address is refused the same way.
    bad = minimal();
    bad["host"] = {{"ranges", json::array({"192.0.2.20/tcp:22"})}};
    CHECK_CONFIG_ERROR(bad, "host.ranges[0]",
                       "\"192.0.2.20/tcp:22\": 192.0.2.20 is not a shared address (see \"shared_ip\")");
}
