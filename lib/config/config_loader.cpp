// JSON -> Config: every check of the configuration file, each error naming the JSON path of the bad value.
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <map>
#include <set>
#include <tuple>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "config/config.hpp"
#include "core/port_owners.hpp"

namespace portmux {
namespace {

using json = nlohmann::json;

constexpr const char* kRoot = "$";
constexpr size_t kMaxNameLength = 32;
// sockaddr_un::sun_path is 108 bytes including the terminating NUL.
constexpr size_t kMaxSocketPath = 107;

bool is_plain_key(const std::string& key) {
    if (key.empty()) return false;
    for (char c : key)
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return false;
    return true;
}

std::string child(const std::string& parent, const std::string& key) {
    // Keys that would make the path ambiguous ("a.b", "x y") are written in bracket form.
    const std::string part = is_plain_key(key) ? key : "[" + json(key).dump() + "]";
    if (parent.empty() || parent == kRoot) return is_plain_key(key) ? part : kRoot + part;
    return is_plain_key(key) ? parent + "." + part : parent + part;
}

std::string element(const std::string& parent, size_t index) { return fmt::format("{}[{}]", parent, index); }

std::string in_quotes(const std::string& text) { return "\"" + text + "\""; }

[[noreturn]] void fail(const std::string& path, const std::string& what) { throw ConfigError(path, what); }

void expect_object(const json& value, const std::string& path) {
    if (!value.is_object()) fail(path, "expected an object");
}

void expect_array(const json& value, const std::string& path) {
    if (!value.is_array()) fail(path, "expected an array");
}

const std::string& expect_string(const json& value, const std::string& path) {
    if (!value.is_string()) fail(path, "expected a string");
    return value.get_ref<const std::string&>();
}

const std::string& expect_nonempty_string(const json& value, const std::string& path) {
    const std::string& text = expect_string(value, path);
    if (text.empty()) fail(path, "must not be empty");
    return text;
}

void check_keys(const json& object, const std::string& path, std::initializer_list<const char*> allowed) {
    for (const auto& item : object.items()) {
        bool known = false;
        for (const char* key : allowed) known = known || item.key() == key;
        if (known) continue;
        std::string list;
        for (const char* key : allowed) list += (list.empty() ? "" : ", ") + std::string(key);
        fail(child(path, item.key()), "unknown key (expected one of: " + list + ")");
    }
}

const json* find(const json& object, const char* key) {
    auto it = object.find(key);
    return it == object.end() ? nullptr : &*it;
}

const json& require(const json& object, const std::string& path, const char* key) {
    const json* value = find(object, key);
    if (value == nullptr) fail(child(path, key), "required but missing");
    return *value;
}

// An enumeration written as one of a few strings; `names` pairs each spelling with its value.
template <class E>
E parse_choice(const json& value, const std::string& path, std::initializer_list<std::pair<const char*, E>> names) {
    const std::string& text = expect_string(value, path);
    std::string expected;
    size_t i = 0;
    for (const auto& [name, e] : names) {
        if (text == name) return e;
        expected += (i == 0 ? "" : (i + 1 == names.size() ? " or " : ", ")) + in_quotes(name);
        ++i;
    }
    fail(path, in_quotes(text) + ": expected " + expected);
}

MacAddr parse_unicast_mac(const json& value, const std::string& path) {
    const std::string& text = expect_string(value, path);
    auto mac = MacAddr::parse(text);
    if (!mac) fail(path, mac.error());
    if (mac->is_multicast()) fail(path, in_quotes(text) + ": a multicast address cannot be a port's MAC");
    if (mac->is_zero()) fail(path, in_quotes(text) + ": the all-zero MAC is not a valid address");
    return *mac;
}

Ipv4Addr parse_shared_ip(const json& value, const std::string& path) {
    const std::string& text = expect_string(value, path);
    auto addr = Ipv4Addr::parse(text);
    if (!addr) fail(path, addr.error());
    const auto& b = addr->bytes;
    const bool unspecified = b[0] == 0 && b[1] == 0 && b[2] == 0 && b[3] == 0;
    const bool broadcast = b[0] == 255 && b[1] == 255 && b[2] == 255 && b[3] == 255;
    if (unspecified || broadcast || (b[0] & 0xf0) == 0xe0)
        fail(path, in_quotes(text) + ": not a unicast address");
    return *addr;
}

// "shared_ip": one address, or (extension) a list whose first element is the first address.
void parse_shared_ips(const json& value, const std::string& path, Config& config) {
    if (!value.is_array()) {
        config.shared_ip = parse_shared_ip(value, path);
        return;
    }
    if (value.empty()) fail(path, "expected at least one address");
    if (value.size() > 1 + kMaxExtraSharedIps)
        fail(path, fmt::format("{} addresses; at most {} are supported", value.size(), 1 + kMaxExtraSharedIps));
    for (size_t i = 0; i < value.size(); ++i) {
        const std::string at = element(path, i);
        const Ipv4Addr addr = parse_shared_ip(value[i], at);
        for (size_t j = 0; j < i; ++j)
            if ((j == 0 ? config.shared_ip : config.extra_shared_ips[j - 1]) == addr)
                fail(at, fmt::format("{} is listed twice (also {})", in_quotes(addr.to_string()), element(path, j)));
        if (i == 0)
            config.shared_ip = addr;
        else
            config.extra_shared_ips.push_back(addr);
    }
}

Ipv6Addr parse_shared_ip6(const json& value, const std::string& path) {
    const std::string& text = expect_string(value, path);
    auto addr = Ipv6Addr::parse(text);
    if (!addr) fail(path, addr.error());
    if (*addr == Ipv6Addr{} || addr->bytes[0] == 0xff) fail(path, in_quotes(text) + ": not a unicast address");
    return *addr;
}

// DPDK refuses two devices with the same name: the part of the devargs before the first comma.
class DeviceNames {
public:
    void claim(const std::string& devargs, const std::string& path, const std::string& note = {}) {
        const std::string name = devargs.substr(0, devargs.find(','));
        auto [it, inserted] = used_.emplace(name, path);
        if (!inserted) fail(path, fmt::format("device {} is already used by {}{}", in_quotes(name), it->second, note));
    }

private:
    std::map<std::string, std::string> used_;
};

// Detects overlapping ranges with the same registry the control side uses, and remembers where each
// range was declared so a conflict names both sides.
class RangeChecker {
public:
    RangeChecker(const std::vector<std::string>& vm_names, const Config& config) : vm_names_(vm_names), config_(config) {}

    std::vector<PortRange> parse_list(const json& value, const std::string& path, OwnerId owner) {
        expect_array(value, path);
        std::vector<PortRange> ranges;
        for (size_t i = 0; i < value.size(); ++i) {
            const std::string at = element(path, i);
            const std::string& text = expect_string(value[i], at);
            auto range = PortRange::parse(text);
            if (!range) fail(at, range.error());
            const std::string address_error = resolve_range_address(range.value(), config_);
            if (!address_error.empty()) fail(at, address_error);
            if (auto conflict = registry_.add(*range, owner)) {
                const Declared& other = declared_.at(key_of(conflict->existing.range));
                fail(at, fmt::format("{} overlaps {} of {} ({}) at {}:{}", in_quotes(text), in_quotes(other.text),
                                     owner_name(conflict->existing.owner), other.path, to_string(conflict->proto),
                                     conflict->port));
            }
            declared_.emplace(key_of(*range), Declared{text, at});
            ranges.push_back(*range);
        }
        return ranges;
    }

private:
    struct Declared {
        std::string text;
        std::string path;
    };
    using Key = std::tuple<std::array<uint8_t, 4>, uint16_t, bool, bool>;
    static Key key_of(const PortRange& r) { return {r.address.bytes, r.ports.first, r.tcp, r.udp}; }

    std::string owner_name(OwnerId owner) const {
        if (owner == kHostOwner) return "the host";
        const size_t index = owner - kFirstVmOwner;
        if (index < vm_count_) return "VM " + in_quotes(vm_names_.at(index));
        if (index < vm_count_ + remote_count_) return "remote " + in_quotes(vm_names_.at(index));
        return "group " + in_quotes(vm_names_.at(index));
    }

public:
    // The shared list of names holds the VMs', then the remotes', then the groups' (one namespace).
    void set_remote_count(size_t count) { remote_count_ = count; }
    void set_vm_count(size_t count) { vm_count_ = count; }

private:
    size_t vm_count_ = SIZE_MAX;
    size_t remote_count_ = 0;

    const std::vector<std::string>& vm_names_;
    const Config& config_;  // its shared addresses are parsed before any range
    RangeRegistry registry_;
    std::map<Key, Declared> declared_;
};

bool valid_vm_name(const std::string& name) {
    if (name.empty() || name.size() > kMaxNameLength) return false;
    for (char c : name)
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
              c == '-'))
            return false;
    return true;
}

// The `name` of a VM, remote or group: one namespace of owner names, of which "host" is taken.
std::string parse_owner_name(const json& item, const std::string& at) {
    const std::string name_path = child(at, "name");
    std::string name = expect_string(require(item, at, "name"), name_path);
    if (!valid_vm_name(name))
        fail(name_path, in_quotes(name) + ": invalid name (expected 1 to 32 characters from A-Z a-z 0-9 _ . -)");
    if (name == "host") fail(name_path, "\"host\" is reserved (it names the host as a range owner)");
    return name;
}

std::vector<std::string> parse_eal(const json& value, const std::string& path) {
    expect_array(value, path);
    std::vector<std::string> args;
    for (size_t i = 0; i < value.size(); ++i) args.push_back(expect_string(value[i], element(path, i)));
    return args;
}

UplinkConfig parse_uplink(const json& value, const std::string& path, DeviceNames& devices) {
    expect_object(value, path);
    check_keys(value, path, {"device", "mac"});
    UplinkConfig uplink;
    uplink.device = expect_nonempty_string(require(value, path, "device"), child(path, "device"));
    devices.claim(uplink.device, child(path, "device"));
    if (const json* mac = find(value, "mac")) uplink.mac = parse_unicast_mac(*mac, child(path, "mac"));
    return uplink;
}

HostConfig parse_host(const json* value, const std::string& path, DeviceNames& devices, RangeChecker& ranges) {
    HostConfig host;
    if (value != nullptr) {
        expect_object(*value, path);
        check_keys(*value, path, {"device", "ranges", "rate_limit_pps"});
        if (const json* rate = find(*value, "rate_limit_pps")) {
            if (!rate->is_number_integer() || rate->get<int64_t>() < 0 || rate->get<int64_t>() > 100000000)
                fail(child(path, "rate_limit_pps"), "expected a number of frames per second, 0 (no limit) to 100000000");
            host.rate_limit_pps = static_cast<uint32_t>(rate->get<int64_t>());
        }
        if (const json* device = find(*value, "device"))
            host.device = expect_nonempty_string(*device, child(path, "device"));
    }
    const bool defaulted = value == nullptr || find(*value, "device") == nullptr;
    devices.claim(host.device, child(path, "device"),
                  defaulted ? fmt::format(" ({} is the default)", in_quotes(kDefaultHostDevice)) : std::string());
    if (value != nullptr)
        if (const json* list = find(*value, "ranges")) host.ranges = ranges.parse_list(*list, child(path, "ranges"), kHostOwner);
    for (size_t r = 0; r < host.ranges.size(); ++r)
        if (host.ranges[r].translated)
            fail(element(child(path, "ranges"), r),
                 fmt::format("{}: port translation is for VMs (the host's ports reach it unchanged)",
                             in_quotes(host.ranges[r].to_string())));
    return host;
}

std::vector<VmConfig> parse_vms(const json& value, const std::string& path, DeviceNames& devices,
                                std::vector<std::string>& names, RangeChecker& ranges) {
    expect_array(value, path);
    if (value.size() > kMaxVms) fail(path, fmt::format("too many VMs ({}, at most {})", value.size(), kMaxVms));
    std::vector<VmConfig> vms;
    std::map<std::string, std::string> vhost_paths;
    std::map<std::string, size_t> name_index;
    std::map<std::array<uint8_t, 6>, size_t> macs;
    for (size_t i = 0; i < value.size(); ++i) {
        const std::string at = element(path, i);
        const json& item = value[i];
        expect_object(item, at);
        check_keys(item, at, {"name", "vhost", "vhost_mode", "device", "mac", "ranges", "enabled", "backup"});
        VmConfig vm;

        const std::string name_path = child(at, "name");
        vm.name = parse_owner_name(item, at);
        if (auto [it, inserted] = name_index.emplace(vm.name, i); !inserted)
            fail(name_path, fmt::format("{} is already used by {}", in_quotes(vm.name), element(path, it->second)));
        names.push_back(vm.name);

        const json* vhost = find(item, "vhost");
        const json* device = find(item, "device");
        if (vhost == nullptr && device == nullptr) fail(at, "needs exactly one of \"vhost\" or \"device\"");
        if (vhost != nullptr && device != nullptr)
            fail(child(at, "device"), "\"vhost\" and \"device\" exclude each other (give exactly one)");
        if (vhost != nullptr) {
            const std::string vhost_path = child(at, "vhost");
            vm.vhost = expect_nonempty_string(*vhost, vhost_path);
            if (vm.vhost[0] != '/') fail(vhost_path, in_quotes(vm.vhost) + ": not an absolute path");
            if (vm.vhost.size() > kMaxSocketPath)
                fail(vhost_path, fmt::format("{}: longer than {} bytes, the limit of a socket path", in_quotes(vm.vhost),
                                             kMaxSocketPath));
            if (auto [it, inserted] = vhost_paths.emplace(vm.vhost, at); !inserted)
                fail(vhost_path, fmt::format("{} is already used by {}", in_quotes(vm.vhost), it->second));
            if (const json* mode = find(item, "vhost_mode"))
                vm.vhost_mode = parse_choice<VhostMode>(*mode, child(at, "vhost_mode"),
                                                        {{"client", VhostMode::kClient}, {"server", VhostMode::kServer}});
        } else {
            vm.device = expect_nonempty_string(*device, child(at, "device"));
            if (find(item, "vhost_mode") != nullptr) fail(child(at, "vhost_mode"), "only allowed with \"vhost\"");
            devices.claim(vm.device, child(at, "device"));
        }

        const std::string mac_path = child(at, "mac");
        vm.mac = parse_unicast_mac(require(item, at, "mac"), mac_path);
        if (auto [it, inserted] = macs.emplace(vm.mac.bytes, i); !inserted)
            fail(mac_path, fmt::format("{} is already used by {}", in_quotes(item["mac"].get<std::string>()),
                                       element(path, it->second)));

        if (const json* enabled = find(item, "enabled")) {
            if (!enabled->is_boolean()) fail(child(at, "enabled"), "expected true or false");
            vm.enabled = enabled->get<bool>();
        }
        if (const json* list = find(item, "ranges")) {
            vm.ranges = ranges.parse_list(*list, child(at, "ranges"), vm_owner_id(i));
            for (size_t r = 0; r < vm.ranges.size(); ++r) {
                const std::vector<PortRange> earlier(vm.ranges.begin(), vm.ranges.begin() + static_cast<std::ptrdiff_t>(r));
                if (const PortRange* other = answer_port_overlap(earlier, vm.ranges[r]))
                    fail(element(child(at, "ranges"), r),
                         fmt::format("{}: the VM answers from ports {} of {} already", in_quotes(vm.ranges[r].to_string()),
                                     vm.ranges[r].inner().to_string(), in_quotes(other->to_string())));
            }
        }
        if (const json* backup = find(item, "backup")) vm.backup = expect_nonempty_string(*backup, child(at, "backup"));
        vms.push_back(std::move(vm));
    }
    // A backup names another VM of the list (only one level: a backup's own backup is not followed).
    for (size_t i = 0; i < vms.size(); ++i) {
        if (vms[i].backup.empty()) continue;
        const std::string at = child(element(path, i), "backup");
        if (vms[i].backup == vms[i].name) fail(at, fmt::format("{}: a VM cannot be its own backup", in_quotes(vms[i].backup)));
        bool known = false;
        for (const VmConfig& other : vms) known = known || other.name == vms[i].backup;
        if (!known) fail(at, fmt::format("{}: no VM has this name", in_quotes(vms[i].backup)));
    }
    return vms;
}

uint8_t parse_ip_proto(const json& value, const std::string& path) {
    const char* expected = "expected tcp, udp, icmp, icmpv6 or a protocol number 0..255";
    if (value.is_number_unsigned() || value.is_number_integer()) {
        if (value.is_number_unsigned() ? value.get<uint64_t>() > 255 : value.get<int64_t>() < 0 || value.get<int64_t>() > 255)
            fail(path, fmt::format("{}: {}", value.dump(), expected));
        return static_cast<uint8_t>(value.get<int64_t>());
    }
    if (!value.is_string()) fail(path, std::string("expected a string or a number: ") + expected);
    const std::string& text = value.get_ref<const std::string&>();
    if (text == "tcp") return kIpProtoTcp;
    if (text == "udp") return kIpProtoUdp;
    if (text == "icmp") return kIpProtoIcmp;
    if (text == "icmpv6") return kIpProtoIcmpv6;
    bool digits = !text.empty() && text.size() <= 3;
    for (char c : text) digits = digits && c >= '0' && c <= '9';
    if (digits && std::stoi(text) <= 255) return static_cast<uint8_t>(std::stoi(text));
    fail(path, fmt::format("{}: {}", in_quotes(text), expected));
}

IpPrefix parse_prefix(const json& value, const std::string& path) {
    const std::string& text = expect_string(value, path);
    auto prefix = IpPrefix::parse(text);
    if (!prefix) fail(path, prefix.error());
    return *prefix;
}

PortSpan parse_span(const json& value, const std::string& path) {
    const std::string& text = expect_string(value, path);
    auto span = PortSpan::parse(text);
    if (!span) fail(path, span.error());
    return *span;
}

FirewallRule parse_rule(const json& item, const std::string& at) {
    expect_object(item, at);
    check_keys(item, at, {"action", "proto", "src", "dst", "src_ports", "dst_ports"});
    FirewallRule rule;
    rule.action = parse_choice<FirewallAction>(require(item, at, "action"), child(at, "action"),
                                               {{"accept", FirewallAction::kAccept}, {"drop", FirewallAction::kDrop}});
    if (const json* proto = find(item, "proto")) rule.proto = parse_ip_proto(*proto, child(at, "proto"));
    if (const json* src = find(item, "src")) rule.src = parse_prefix(*src, child(at, "src"));
    if (const json* dst = find(item, "dst")) rule.dst = parse_prefix(*dst, child(at, "dst"));
    if (rule.src && rule.dst && rule.src->is_v6 != rule.dst->is_v6)
        fail(child(at, "dst"), fmt::format("{} is {} but src {} is {}", in_quotes(item["dst"].get<std::string>()),
                                           rule.dst->is_v6 ? "IPv6" : "IPv4", in_quotes(item["src"].get<std::string>()),
                                           rule.src->is_v6 ? "IPv6" : "IPv4"));
    // ICMP and ICMPv6 each exist for one IP version only; a rule mixing them could never match.
    const std::optional<IpPrefix>& addr = rule.src ? rule.src : rule.dst;
    if (rule.proto && addr) {
        const char* field = rule.src ? "src" : "dst";
        if (*rule.proto == kIpProtoIcmp && addr->is_v6)
            fail(child(at, "proto"), fmt::format("\"icmp\" is IPv4 only but {} is IPv6 (use icmpv6)", field));
        if (*rule.proto == kIpProtoIcmpv6 && !addr->is_v6)
            fail(child(at, "proto"), fmt::format("\"icmpv6\" is IPv6 only but {} is IPv4 (use icmp)", field));
    }
    const bool ports_allowed = !rule.proto || *rule.proto == kIpProtoTcp || *rule.proto == kIpProtoUdp;
    for (const char* key : {"src_ports", "dst_ports"}) {
        const json* ports = find(item, key);
        if (ports == nullptr) continue;
        if (!ports_allowed) fail(child(at, key), "ports need proto tcp or udp");
        (std::string(key) == "src_ports" ? rule.src_ports : rule.dst_ports) = parse_span(*ports, child(at, key));
    }
    return rule;
}

FirewallConfig parse_firewall(const json& value, const std::string& path) {
    expect_object(value, path);
    check_keys(value, path, {"default", "rules"});
    FirewallConfig firewall;
    if (const json* def = find(value, "default"))
        firewall.default_action = parse_choice<FirewallAction>(
            *def, child(path, "default"), {{"accept", FirewallAction::kAccept}, {"drop", FirewallAction::kDrop}});
    if (const json* rules = find(value, "rules")) {
        const std::string rules_path = child(path, "rules");
        expect_array(*rules, rules_path);
        for (size_t i = 0; i < rules->size(); ++i) firewall.rules.push_back(parse_rule((*rules)[i], element(rules_path, i)));
    }
    return firewall;
}

// Extension: runtime control settings.
ControlConfig parse_control(const json& value, const std::string& path) {
    expect_object(value, path);
    check_keys(value, path, {"read_only"});
    ControlConfig control;
    if (const json* read_only = find(value, "read_only")) {
        if (!read_only->is_boolean()) fail(child(path, "read_only"), "expected true or false");
        control.read_only = read_only->get<bool>();
    }
    return control;
}

Ipv4Addr parse_unicast_ip4(const json& value, const std::string& path) { return parse_shared_ip(value, path); }

// Extension: the VXLAN tunnel to other portmux hosts (docs/remote-vms.md).
VxlanConfig parse_vxlan(const json& value, const std::string& path) {
    expect_object(value, path);
    check_keys(value, path, {"local_ip", "port", "vni", "peers"});
    VxlanConfig vxlan;
    vxlan.local_ip = parse_unicast_ip4(require(value, path, "local_ip"), child(path, "local_ip"));
    if (const json* port = find(value, "port")) {
        if (!port->is_number_integer() || port->get<int64_t>() < 1 || port->get<int64_t>() > 65535)
            fail(child(path, "port"), "expected a UDP port 1..65535");
        vxlan.port = static_cast<uint16_t>(port->get<int64_t>());
    }
    const json& vni = require(value, path, "vni");
    if (!vni.is_number_integer() || vni.get<int64_t>() < 0 || vni.get<int64_t>() > static_cast<int64_t>(kMaxVni))
        fail(child(path, "vni"), fmt::format("expected a VXLAN network identifier 0..{}", kMaxVni));
    vxlan.vni = static_cast<uint32_t>(vni.get<int64_t>());
    if (const json* peers = find(value, "peers")) {
        const std::string peers_path = child(path, "peers");
        expect_array(*peers, peers_path);
        for (size_t i = 0; i < peers->size(); ++i) {
            const std::string at = element(peers_path, i);
            Ipv4Addr peer = parse_unicast_ip4((*peers)[i], at);
            if (peer == vxlan.local_ip) fail(at, in_quotes(peer.to_string()) + ": this is local_ip itself");
            for (const Ipv4Addr& earlier : vxlan.peers)
                if (earlier == peer) fail(at, in_quotes(peer.to_string()) + ": listed twice");
            vxlan.peers.push_back(peer);
        }
    }
    return vxlan;
}

// The ranges of an owner that cannot translate ports (remotes, groups): `refusal` explains why.
std::vector<PortRange> parse_untranslated_ranges(const json& list, const std::string& path, OwnerId owner,
                                                 RangeChecker& ranges, const char* refusal) {
    std::vector<PortRange> parsed = ranges.parse_list(list, path, owner);
    for (size_t r = 0; r < parsed.size(); ++r)
        if (parsed[r].translated) fail(element(path, r), fmt::format("{}: {}", in_quotes(parsed[r].to_string()), refusal));
    return parsed;
}

std::vector<RemoteConfig> parse_remotes(const json& value, const std::string& path, const Config& config,
                                        std::vector<std::string>& names, RangeChecker& ranges) {
    expect_array(value, path);
    if (value.size() > kMaxRemotes) fail(path, fmt::format("too many remotes ({}, at most {})", value.size(), kMaxRemotes));
    if (!value.empty() && !config.vxlan) fail(path, "remote VMs need \"vxlan\" (the tunnel that reaches them)");
    std::vector<RemoteConfig> remotes;
    for (size_t i = 0; i < value.size(); ++i) {
        const std::string at = element(path, i);
        const json& item = value[i];
        expect_object(item, at);
        check_keys(item, at, {"name", "host", "mac", "ranges"});
        RemoteConfig remote;
        const std::string name_path = child(at, "name");
        remote.name = parse_owner_name(item, at);
        for (size_t v = 0; v < config.vms.size(); ++v)
            if (config.vms[v].name == remote.name)
                fail(name_path, fmt::format("{} is already used by vms[{}] (VMs and remotes share names)",
                                            in_quotes(remote.name), v));
        for (size_t r = 0; r < remotes.size(); ++r)
            if (remotes[r].name == remote.name)
                fail(name_path, fmt::format("{} is already used by {}", in_quotes(remote.name), element(path, r)));
        names.push_back(remote.name);
        remote.host = parse_unicast_ip4(require(item, at, "host"), child(at, "host"));
        if (remote.host == config.vxlan->local_ip)
            fail(child(at, "host"), in_quotes(remote.host.to_string()) + ": this is vxlan.local_ip, this host itself");
        remote.mac = parse_unicast_mac(require(item, at, "mac"), child(at, "mac"));
        if (const json* list = find(item, "ranges"))
            remote.ranges = parse_untranslated_ranges(*list, child(at, "ranges"), vm_owner_id(config.vms.size() + i),
                                                      ranges, "port translation is for local VMs");
        remotes.push_back(std::move(remote));
    }
    return remotes;
}

// When the tunnel ends on a shared address, its UDP port there is the tunnel's: no owner may claim it.
void check_vxlan_port_unowned(const Config& config) {
    if (!config.vxlan) return;
    const uint16_t port = config.vxlan->port;
    auto check = [&](const std::vector<PortRange>& list, const std::string& path) {
        for (size_t r = 0; r < list.size(); ++r)
            if (list[r].udp && list[r].ports.contains(port) && range_holds_vxlan_port(list[r], config))
                fail(element(path, r), fmt::format("{} contains udp:{}, the VXLAN port on vxlan.local_ip (the shared "
                                                   "address)",
                                                   in_quotes(list[r].to_string()), port));
    };
    check(config.host.ranges, "host.ranges");
    for (size_t v = 0; v < config.vms.size(); ++v) check(config.vms[v].ranges, fmt::format("vms[{}].ranges", v));
    for (size_t v = 0; v < config.remotes.size(); ++v)
        check(config.remotes[v].ranges, fmt::format("remotes[{}].ranges", v));
    for (size_t g = 0; g < config.groups.size(); ++g)
        check(config.groups[g].ranges, fmt::format("groups[{}].ranges", g));
}

// Extension: load-balanced groups. `names` holds the VMs' names, then the remotes', on entry; group g owns
// ranges as owner kFirstVmOwner + names.size() + g here (the loader's own numbering), and its name shares
// that namespace.
uint8_t parse_weight(const json& value, const std::string& path) {
    if (!value.is_number_integer()) fail(path, "expected an integer 1..255");
    const auto weight = value.get<int64_t>();
    if (weight < 1 || weight > kMaxMemberWeight) fail(path, fmt::format("{}: expected 1..255", weight));
    return static_cast<uint8_t>(weight);
}

std::vector<GroupConfig> parse_groups(const json& value, const std::string& path, size_t vm_count,
                                      std::vector<std::string>& names, RangeChecker& ranges) {
    expect_array(value, path);
    const size_t first = names.size();  // the loader's own owner numbering: VMs, remotes, then groups
    if (value.size() > kMaxOwners - kFirstGroupOwner)
        fail(path, fmt::format("too many groups ({}, at most {})", value.size(), kMaxOwners - kFirstGroupOwner));
    std::vector<GroupConfig> groups;
    for (size_t g = 0; g < value.size(); ++g) {
        const std::string at = element(path, g);
        const json& item = value[g];
        expect_object(item, at);
        check_keys(item, at, {"name", "members", "ranges"});
        GroupConfig group;
        const std::string name_path = child(at, "name");
        group.name = parse_owner_name(item, at);
        for (size_t n = 0; n < names.size(); ++n)
            if (names[n] == group.name)
                fail(name_path, fmt::format("{} is already used by {}", in_quotes(group.name),
                                            n < vm_count ? element("vms", n)
                                            : n < first  ? element("remotes", n - vm_count)
                                                         : element(path, n - first)));
        names.push_back(group.name);

        const std::string members_path = child(at, "members");
        const json& members = require(item, at, "members");
        expect_array(members, members_path);
        for (size_t m = 0; m < members.size(); ++m) {
            const std::string mat = element(members_path, m);
            expect_object(members[m], mat);
            check_keys(members[m], mat, {"vm", "weight", "drain"});
            GroupMemberConfig member;
            member.vm = expect_string(require(members[m], mat, "vm"), child(mat, "vm"));
            bool known = false;
            for (size_t n = 0; n < vm_count; ++n) known = known || names[n] == member.vm;
            if (!known) fail(child(mat, "vm"), fmt::format("{}: no VM has this name", in_quotes(member.vm)));
            for (size_t e = 0; e < group.members.size(); ++e)
                if (group.members[e].vm == member.vm)
                    fail(child(mat, "vm"), fmt::format("{} is already a member ({})", in_quotes(member.vm),
                                                       element(members_path, e)));
            if (const json* weight = find(members[m], "weight")) member.weight = parse_weight(*weight, child(mat, "weight"));
            if (const json* drain = find(members[m], "drain")) {
                if (!drain->is_boolean()) fail(child(mat, "drain"), "expected true or false");
                member.drain = drain->get<bool>();
            }
            group.members.push_back(member);
        }
        if (const json* list = find(item, "ranges"))
            group.ranges = parse_untranslated_ranges(*list, child(at, "ranges"), vm_owner_id(first + g), ranges,
                                                     "port translation is for VMs");
        groups.push_back(std::move(group));
    }
    return groups;
}

ConnectionsConfig parse_connections(const json& value, const std::string& path) {
    expect_object(value, path);
    check_keys(value, path, {"max", "tcp_timeout_s", "udp_timeout_s"});
    ConnectionsConfig connections;
    auto number = [&](const char* key, uint32_t low, uint32_t high, uint32_t& out) {
        const json* v = find(value, key);
        if (v == nullptr) return;
        if (!v->is_number_integer() || v->get<int64_t>() < low || v->get<int64_t>() > high)
            fail(child(path, key), fmt::format("expected an integer {}..{}", low, high));
        out = static_cast<uint32_t>(v->get<int64_t>());
    };
    number("max", 0, 16777216, connections.max);
    number("tcp_timeout_s", 1, 86400 * 7, connections.tcp_timeout_s);
    number("udp_timeout_s", 1, 86400 * 7, connections.udp_timeout_s);
    return connections;
}

// Position of nlohmann's "last read byte" (1-based offset) as a 1-based line and column.
std::pair<size_t, size_t> line_column(const std::string& text, size_t byte) {
    const size_t pos = std::min(byte == 0 ? 0 : byte - 1, text.size());
    size_t line = 1;
    size_t line_start = 0;
    for (size_t i = 0; i < pos; ++i)
        if (text[i] == '\n') {
            ++line;
            line_start = i + 1;
        }
    return {line, pos - line_start + 1};
}

// nlohmann's message is "[json.exception.parse_error.101] parse error at line 1, column 2: <reason>".
std::string parse_error_reason(const std::string& message) {
    const size_t bracket = message.find(']');
    const size_t colon = message.find(": ", bracket == std::string::npos ? 0 : bracket);
    return colon == std::string::npos ? message : message.substr(colon + 2);
}

// Parses JSON text, refusing duplicate keys: a JSON library keeps only one of them silently.
json parse_json_text(const std::string& text) {
    struct Frame {
        bool is_array;
        size_t index;
        std::string path;
        std::set<std::string> keys;
        std::string last_key;
    };
    std::vector<Frame> stack;
    auto value_path = [&]() -> std::string {
        if (stack.empty()) return kRoot;
        const Frame& f = stack.back();
        return f.is_array ? element(f.path, f.index) : child(f.path, f.last_key);
    };
    auto value_done = [&] {
        if (!stack.empty() && stack.back().is_array) ++stack.back().index;
    };
    json::parser_callback_t callback = [&](int, json::parse_event_t event, json& parsed) {
        switch (event) {
        case json::parse_event_t::object_start:
        case json::parse_event_t::array_start:
            stack.push_back(Frame{event == json::parse_event_t::array_start, 0, value_path(), {}, {}});
            break;
        case json::parse_event_t::key: {
            Frame& f = stack.back();
            f.last_key = parsed.get<std::string>();
            if (!f.keys.insert(f.last_key).second) fail(child(f.path, f.last_key), "duplicate key");
            break;
        }
        case json::parse_event_t::object_end:
        case json::parse_event_t::array_end:
            stack.pop_back();
            value_done();
            break;
        case json::parse_event_t::value:
            value_done();
            break;
        }
        return true;
    };
    try {
        return json::parse(text, callback);
    } catch (const json::parse_error& e) {
        const auto [line, column] = line_column(text, e.byte);
        fail(kRoot, fmt::format("invalid JSON at line {}, column {}: {}", line, column, parse_error_reason(e.what())));
    }
}

}  // namespace

Config parse_config(const json& document) {
    if (!document.is_object()) fail(kRoot, "expected a JSON object");
    check_keys(document, kRoot,
               {"eal", "shared_ip", "shared_ip6", "uplink", "host", "vms", "firewall", "unmatched", "control", "vxlan",
                "remotes", "groups", "connections"});
    Config config;
    DeviceNames devices;
    std::vector<std::string> vm_names;
    RangeChecker ranges(vm_names, config);

    if (const json* eal = find(document, "eal")) config.eal = parse_eal(*eal, "eal");
    parse_shared_ips(require(document, kRoot, "shared_ip"), "shared_ip", config);
    if (const json* ip6 = find(document, "shared_ip6")) config.shared_ip6 = parse_shared_ip6(*ip6, "shared_ip6");
    config.uplink = parse_uplink(require(document, kRoot, "uplink"), "uplink", devices);
    config.host = parse_host(find(document, "host"), "host", devices, ranges);
    if (const json* vms = find(document, "vms")) config.vms = parse_vms(*vms, "vms", devices, vm_names, ranges);
    if (const json* firewall = find(document, "firewall")) config.firewall = parse_firewall(*firewall, "firewall");
    if (const json* unmatched = find(document, "unmatched"))
        config.unmatched = parse_choice<UnmatchedPolicy>(
            *unmatched, "unmatched",
            {{"host", UnmatchedPolicy::kHost}, {"drop", UnmatchedPolicy::kDrop}, {"reject", UnmatchedPolicy::kReject}});
    if (const json* control = find(document, "control")) config.control = parse_control(*control, "control");
    ranges.set_vm_count(config.vms.size());
    ranges.set_remote_count(0);
    if (const json* vxlan = find(document, "vxlan")) config.vxlan = parse_vxlan(*vxlan, "vxlan");
    if (const json* remotes = find(document, "remotes"))
        config.remotes = parse_remotes(*remotes, "remotes", config, vm_names, ranges);
    ranges.set_remote_count(config.remotes.size());
    if (const json* groups = find(document, "groups"))
        config.groups = parse_groups(*groups, "groups", config.vms.size(), vm_names, ranges);
    check_vxlan_port_unowned(config);
    if (const json* connections = find(document, "connections"))
        config.connections = parse_connections(*connections, "connections");
    return config;
}

FirewallRule parse_firewall_rule(const json& rule, const std::string& path) { return parse_rule(rule, path); }

bool range_holds_vxlan_port(const PortRange& range, const Config& config) {
    if (!config.vxlan || !range.udp || !range.ports.contains(config.vxlan->port)) return false;
    // Ranges are resolved: the first address is written as none.
    return config.vxlan->local_ip == config.shared_ip ? range.on_first_address()
                                                      : range.address == config.vxlan->local_ip;
}

std::string resolve_range_address(PortRange& range, const Config& config) {
    if (range.on_first_address()) return "";
    if (range.address == config.shared_ip) {
        range.address = Ipv4Addr{};
        return "";
    }
    bool shared = false;
    for (const Ipv4Addr& addr : config.extra_shared_ips) shared = shared || addr == range.address;
    if (!shared)
        return fmt::format("{}: {} is not a shared address (see \"shared_ip\")", in_quotes(range.to_string()),
                           range.address.to_string());
    if (range.translated)
        return fmt::format("{}: port translation is available on the first shared address only",
                           in_quotes(range.to_string()));
    return "";
}
bool is_valid_owner_name(const std::string& name) { return valid_vm_name(name) && name != "host"; }

Config load_config_file(const std::string& file) {
    std::FILE* f = std::fopen(file.c_str(), "rb");
    if (f == nullptr) fail(kRoot, std::string("cannot read: ") + std::strerror(errno));
    std::string text;
    char buf[65536];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
    const int read_errno = std::ferror(f) ? errno : 0;
    std::fclose(f);
    if (read_errno != 0) fail(kRoot, std::string("cannot read: ") + std::strerror(read_errno));
    return parse_config(parse_json_text(text));
}

const char* to_string(UnmatchedPolicy policy) {
    switch (policy) {
    case UnmatchedPolicy::kHost: return "host";
    case UnmatchedPolicy::kDrop: return "drop";
    case UnmatchedPolicy::kReject: return "reject";
    }
    return "?";
}

const char* to_string(FirewallAction action) { return action == FirewallAction::kDrop ? "drop" : "accept"; }

const char* to_string(VhostMode mode) { return mode == VhostMode::kServer ? "server" : "client"; }

std::string ip_proto_to_string(uint8_t proto) {
    switch (proto) {
    case kIpProtoTcp: return "tcp";
    case kIpProtoUdp: return "udp";
    case kIpProtoIcmp: return "icmp";
    case kIpProtoIcmpv6: return "icmpv6";
    default: return std::to_string(proto);
    }
}

}  // namespace portmux
