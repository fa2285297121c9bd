// Config -> JSON (for config/save, the inverse of parse_config) and the one-screen summary of --check.
#include <algorithm>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "config/config.hpp"

namespace portmux {
namespace {

using json = nlohmann::json;

// Long range lists are cut in the summary so one VM stays one line.
constexpr size_t kSummaryRangesShown = 8;

json ranges_to_json(const std::vector<PortRange>& ranges) {
    json out = json::array();
    for (const auto& r : ranges) out.push_back(r.to_string());
    return out;
}

json proto_to_json(uint8_t proto) {
    const std::string name = ip_proto_to_string(proto);
    if (name.empty() || name[0] < '0' || name[0] > '9') return name;
    return proto;  // numbers without a name stay numbers
}

std::string ranges_text(const std::vector<PortRange>& ranges) {
    if (ranges.empty()) return "none";
    std::string out;
    for (size_t i = 0; i < ranges.size() && i < kSummaryRangesShown; ++i) out += (i ? " " : "") + ranges[i].to_string();
    if (ranges.size() > kSummaryRangesShown) out += fmt::format(" (+{} more)", ranges.size() - kSummaryRangesShown);
    return out;
}

std::string vm_port_text(const VmConfig& vm) {
    if (!vm.device.empty()) return "device " + vm.device;
    return fmt::format("vhost {} {}", to_string(vm.vhost_mode), vm.vhost);
}

}  // namespace

json config_to_json(const Config& config) {
    json doc = json::object();
    if (!config.eal.empty()) doc["eal"] = config.eal;
    if (config.extra_shared_ips.empty()) {
        doc["shared_ip"] = config.shared_ip.to_string();
    } else {
        json list = json::array({config.shared_ip.to_string()});
        for (const Ipv4Addr& addr : config.extra_shared_ips) list.push_back(addr.to_string());
        doc["shared_ip"] = list;
    }
    if (config.shared_ip6) doc["shared_ip6"] = config.shared_ip6->to_string();

    json uplink = {{"device", config.uplink.device}};
    if (config.uplink.mac) uplink["mac"] = config.uplink.mac->to_string();
    doc["uplink"] = uplink;

    json host = json::object();
    if (config.host.device != kDefaultHostDevice) host["device"] = config.host.device;
    if (!config.host.ranges.empty()) host["ranges"] = ranges_to_json(config.host.ranges);
    if (config.host.rate_limit_pps != kDefaultHostRateLimitPps) host["rate_limit_pps"] = config.host.rate_limit_pps;
    if (!host.empty()) doc["host"] = host;

    json vms = json::array();
    for (const auto& vm : config.vms) {
        json item = {{"name", vm.name}};
        if (!vm.device.empty()) {
            item["device"] = vm.device;
        } else {
            item["vhost"] = vm.vhost;
            if (vm.vhost_mode != VhostMode::kClient) item["vhost_mode"] = to_string(vm.vhost_mode);
        }
        item["mac"] = vm.mac.to_string();
        item["ranges"] = ranges_to_json(vm.ranges);
        if (!vm.enabled) item["enabled"] = false;
        if (!vm.backup.empty()) item["backup"] = vm.backup;
        vms.push_back(item);
    }
    doc["vms"] = vms;

    json rules = json::array();
    for (const auto& rule : config.firewall.rules) {
        json item = {{"action", to_string(rule.action)}};
        if (rule.proto) item["proto"] = proto_to_json(*rule.proto);
        if (rule.src) item["src"] = rule.src->to_string();
        if (rule.dst) item["dst"] = rule.dst->to_string();
        if (rule.src_ports) item["src_ports"] = rule.src_ports->to_string();
        if (rule.dst_ports) item["dst_ports"] = rule.dst_ports->to_string();
        rules.push_back(item);
    }
    // The policies are always written out: a saved file should state them, even when they are the defaults.
    doc["firewall"] = {{"default", to_string(config.firewall.default_action)}, {"rules", rules}};
    doc["unmatched"] = to_string(config.unmatched);
    if (config.control.read_only) doc["control"] = {{"read_only", true}};
    if (config.vxlan) {
        json peers = json::array();
        for (const auto& peer : config.vxlan->peers) peers.push_back(peer.to_string());
        doc["vxlan"] = {{"local_ip", config.vxlan->local_ip.to_string()},
                        {"port", config.vxlan->port},
                        {"vni", config.vxlan->vni},
                        {"peers", peers}};
    }
    if (!config.remotes.empty()) {
        json remotes = json::array();
        for (const auto& remote : config.remotes)
            remotes.push_back({{"name", remote.name},
                               {"host", remote.host.to_string()},
                               {"mac", remote.mac.to_string()},
                               {"ranges", ranges_to_json(remote.ranges)}});
        doc["remotes"] = remotes;
    }
    if (!config.groups.empty()) {
        json groups = json::array();
        for (const auto& group : config.groups) {
            json members = json::array();
            for (const auto& member : group.members) {
                json m = {{"vm", member.vm}, {"weight", member.weight}};
                if (member.drain) m["drain"] = true;
                members.push_back(m);
            }
            groups.push_back({{"name", group.name}, {"members", members}, {"ranges", ranges_to_json(group.ranges)}});
        }
        doc["groups"] = groups;
    }
    const ConnectionsConfig defaults;
    if (config.connections.max != defaults.max || config.connections.tcp_timeout_s != defaults.tcp_timeout_s ||
        config.connections.udp_timeout_s != defaults.udp_timeout_s)
        doc["connections"] = {{"max", config.connections.max},
                              {"tcp_timeout_s", config.connections.tcp_timeout_s},
                              {"udp_timeout_s", config.connections.udp_timeout_s}};
    return doc;
}

std::string config_summary(const Config& config) {
    std::string out;
    auto line = [&](const char* label, const std::string& value) { out += fmt::format("{:<16}{}\n", label, value); };

    line("shared address", config.shared_ip.to_string() +
                               (config.shared_ip6 ? ", " + config.shared_ip6->to_string() : std::string()));
    for (const Ipv4Addr& addr : config.extra_shared_ips) line("shared address", addr.to_string());
    line("uplink", config.uplink.device +
                       (config.uplink.mac ? ", mac " + config.uplink.mac->to_string() : ", mac of the device"));
    line("host", fmt::format("{}, ranges {}", config.host.device, ranges_text(config.host.ranges)));

    size_t name_width = 4;
    size_t port_width = 4;
    size_t disabled = 0;
    for (const auto& vm : config.vms) {
        name_width = std::max(name_width, vm.name.size());
        port_width = std::max(port_width, vm_port_text(vm).size());
        disabled += vm.enabled ? 0 : 1;
    }
    line("vms", disabled == 0 ? fmt::format("{}", config.vms.size())
                              : fmt::format("{} ({} disabled)", config.vms.size(), disabled));
    for (const auto& vm : config.vms)
        out += fmt::format("  {:<{}}  {:<{}}  mac {}  ranges {}{}\n", vm.name, name_width, vm_port_text(vm), port_width,
                           vm.mac.to_string(), ranges_text(vm.ranges), vm.enabled ? "" : "  (disabled)");

    // Ranges never overlap after validation, so the owned ports are the sum of the span lengths.
    unsigned long owned[kL4ProtoCount] = {0, 0};
    auto count = [&](const std::vector<PortRange>& ranges) {
        for (const auto& r : ranges) {
            const unsigned long n = static_cast<unsigned long>(r.ports.last) - r.ports.first + 1;
            if (r.tcp) owned[0] += n;
            if (r.udp) owned[1] += n;
        }
    };
    count(config.host.ranges);
    for (const auto& vm : config.vms) count(vm.ranges);
    for (const auto& remote : config.remotes) count(remote.ranges);
    if (config.vxlan)
        line("vxlan", fmt::format("local {} udp:{} vni {}, {} peer{}", config.vxlan->local_ip.to_string(),
                                  config.vxlan->port, config.vxlan->vni, config.vxlan->peers.size(),
                                  config.vxlan->peers.size() == 1 ? "" : "s"));
    if (!config.remotes.empty()) line("remotes", fmt::format("{}", config.remotes.size()));
    for (const auto& remote : config.remotes)
        out += fmt::format("  {:<{}}  host {}  next hop {}  ranges {}\n", remote.name, name_width,
                           remote.host.to_string(), remote.mac.to_string(), ranges_text(remote.ranges));
    for (const auto& group : config.groups) count(group.ranges);
    line("ports owned", fmt::format("tcp {} of 65536, udp {} of 65536", owned[0], owned[1]));

    if (!config.groups.empty()) {
        line("groups", fmt::format("{}", config.groups.size()));
        for (const auto& group : config.groups) {
            std::string members;
            for (const auto& m : group.members)
                members += fmt::format("{}{}:{}{}", members.empty() ? "" : " ", m.vm, m.weight, m.drain ? " (drain)" : "");
            out += fmt::format("  {}  members {}  ranges {}\n", group.name, members.empty() ? "none" : members,
                               ranges_text(group.ranges));
        }
    }
    line("firewall", fmt::format("default {}, {} rule{}", to_string(config.firewall.default_action),
                                 config.firewall.rules.size(), config.firewall.rules.size() == 1 ? "" : "s"));
    line("unmatched", to_string(config.unmatched));
    if (!config.eal.empty()) {
        std::string eal;
        for (const auto& arg : config.eal) eal += (eal.empty() ? "" : " ") + arg;
        line("eal", eal);
    }
    return out;
}

}  // namespace portmux
