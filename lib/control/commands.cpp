// The /portmux/* command handlers: parameter parsing, the change through SwitchState, the answer.
#include "control/commands.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <map>

#include <fmt/format.h>
#include <rte_mempool.h>

#include "control/command_params.hpp"
#include "control/stats.hpp"
#include "control/vm_commands.hpp"

namespace portmux {
namespace {

using nlohmann::json;

using command_params::error;
using command_params::split_params;
using command_params::add_page;
using command_params::parse_index;
using command_params::parse_offset;
using command_params::trim;

// Checks the parameter count; fills `error_out` with a usage message otherwise.
bool expect_params(const std::vector<std::string>& params, size_t min, size_t max, const char* usage, json* error_out) {
    if (params.size() >= min && params.size() <= max) {
        for (const std::string& p : params)
            if (p.empty()) {
                *error_out = error(fmt::format("empty parameter; usage: {}", usage));
                return false;
            }
        return true;
    }
    *error_out = error(fmt::format("{} parameter{} given; usage: {}", params.size(), params.size() == 1 ? "" : "s", usage));
    return false;
}

json changed(const ChangeReport& report, json answer) {
    answer["generation"] = report.generation;
    return answer;
}

// ---- read-only commands ---------------------------------------------------------------------------------

json cmd_info(const ControlContext& ctx, const std::string& params) {
    if (!trim(params).empty()) return error("/portmux/info takes no parameters");
    Config config = ctx.state->running_config();
    json answer;
    answer["version"] = PORTMUX_VERSION;
    answer["shared_ip"] = config.shared_ip.to_string();
    if (config.shared_ip6) answer["shared_ip6"] = config.shared_ip6->to_string();
    if (!config.extra_shared_ips.empty()) {
        json more = json::array();
        for (const Ipv4Addr& addr : config.extra_shared_ips) more.push_back(addr.to_string());
        answer["more_shared_ips"] = more;
    }
    answer["main_lcore"] = ctx.main_lcore;
    answer["worker_lcores"] = ctx.worker_lcores;
    answer["uplink_port"] = ctx.ports[kUplinkPortIndex].eth_port;
    answer["host_port"] = ctx.ports[kHostPortIndex].eth_port;
    answer["ports"] = kFirstVmPortIndex + config.vms.size();  // the uplink, the host and every VM
    answer["vms"] = config.vms.size();
    answer["max_vms"] = kMaxVms;
    answer["generation"] = ctx.state->generation();
    answer["uptime_s"] =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - ctx.started).count();
    answer["config"] = ctx.config_file;
    answer["read_only"] = ctx.read_only ? 1 : 0;
    if (config.vxlan) {
        json peers = json::array();
        for (const Ipv4Addr& peer : config.vxlan->peers) peers.push_back(peer.to_string());
        // Flat keys: telemetry nests containers one level deep only.
        answer["vxlan_local_ip"] = config.vxlan->local_ip.to_string();
        answer["vxlan_port"] = config.vxlan->port;
        answer["vxlan_vni"] = config.vxlan->vni;
        answer["vxlan_peers"] = peers;
        answer["remotes"] = config.remotes.size();
    }
    if (ctx.pool != nullptr) {
        // Free mbufs (the pool and the per-lcore caches): steady under load, back to the start when idle.
        answer["mbufs_free"] = rte_mempool_avail_count(ctx.pool);
        answer["mbufs_total"] = ctx.pool->size;
    }
    return answer;
}

json cmd_stats(const ControlContext& ctx, const std::string& params) {
    if (!trim(params).empty()) return error("/portmux/stats takes no parameters");
    // Every port index the workers count, VMs added at runtime (and removed ones) included.
    CounterTotals t = sum_counters(ctx.counters, counted_ports(ctx.counters));
    uint64_t rx[3] = {}, tx[3] = {}, tx_dropped[3] = {};
    for (size_t index = 0; index < t.ports.size(); ++index) {
        auto kind = static_cast<size_t>(role_of_port(static_cast<uint16_t>(index)));
        rx[kind] += t.get(index, PortCounter::rx_packets);
        tx[kind] += t.get(index, PortCounter::tx_packets);
        tx_dropped[kind] += t.get(index, PortCounter::tx_dropped);
    }
    json answer;
    const char* kinds[3] = {"uplink", "host", "vms"};
    for (size_t k = 0; k < 3; ++k) {
        answer[fmt::format("rx_{}", kinds[k])] = rx[k];
        answer[fmt::format("tx_{}", kinds[k])] = tx[k];
        answer[fmt::format("tx_dropped_{}", kinds[k])] = tx_dropped[k];
    }
    for (size_t c = 0; c < kSwitchCounterCount; ++c)
        answer[counter_name(static_cast<SwitchCounter>(c))] = t.switch_counters[c];
    return answer;
}

json cmd_ranges(const ControlContext& ctx, const std::string& params) {
    std::vector<std::string> args = split_params(params);
    auto offset = parse_offset(args);
    if (!offset) return error(offset.error());
    if (args.size() > 1) return error("usage: /portmux/ranges[,TARGET][,offset=N]");
    std::optional<OwnerId> owner;
    if (!args.empty()) {
        owner = ctx.state->owner_by_name(args[0]);
        if (!owner) return error(fmt::format("unknown target \"{}\" (expected \"host\" or a VM name)", args[0]));
    }
    // Sorted by owner (the host, then VMs in configuration order), then by port; each entry "OWNER RANGE".
    std::vector<OwnedRange> all = ctx.state->ranges(owner);
    std::stable_sort(all.begin(), all.end(),
                     [](const OwnedRange& a, const OwnedRange& b) { return a.owner < b.owner; });
    json answer;
    if (owner) answer["target"] = ctx.state->owner_name(*owner);
    answer["ranges"] = json::array();
    size_t end = std::min(all.size(), *offset + kPageSize);
    for (size_t i = *offset; i < end; ++i)
        answer["ranges"].push_back(owner ? all[i].range.to_string()
                                         : ctx.state->owner_name(all[i].owner) + " " + all[i].range.to_string());
    add_page(answer, all.size(), *offset, end > *offset ? end - *offset : 0);
    return answer;
}

json cmd_lookup(const ControlContext& ctx, const std::string& params) {
    std::vector<std::string> args = split_params(params);
    json failure;
    if (!expect_params(args, 1, 1, "/portmux/lookup,[ADDRESS/]PROTO:PORT (e.g. tcp:8080)", &failure)) return failure;
    auto range = PortRange::parse(args[0]);
    if (!range) return error(range.error());
    if (range->tcp == range->udp || range->ports.first != range->ports.last || range->translated)
        return error(fmt::format("\"{}\": give one protocol and one port, e.g. tcp:8080", args[0]));
    Config config = ctx.state->running_config();
    if (std::string address_error = resolve_range_address(range.value(), config); !address_error.empty())
        return error(address_error);
    L4Proto proto = range->tcp ? L4Proto::kTcp : L4Proto::kUdp;
    PortLookup found = ctx.state->lookup(proto, range->ports.first, range->address);
    json answer;
    answer["proto"] = to_string(proto);
    answer["port"] = range->ports.first;
    answer["address"] = range->on_first_address() ? config.shared_ip.to_string() : range->address.to_string();
    if (found.owner == kNoOwner) {
        answer["target"] = config.unmatched == UnmatchedPolicy::kHost ? "host" : "none";
        answer["owner"] = "none";
        answer["delivery"] = to_string(config.unmatched);
        return answer;
    }
    if (ctx.state->is_group(found.owner)) {
        // A group: each flow goes to one of its members (see /portmux/groups,GROUP).
        answer["owner"] = answer["target"] = ctx.state->owner_name(found.owner);
        answer["range"] = found.range ? found.range->to_string() : "";
        answer["enabled"] = 1;
        answer["delivery"] = "group";
        return answer;
    }
    // The owner's traffic may be served by its backup while its port is down.
    answer["owner"] = ctx.state->owner_name(found.owner);
    const bool remote = ctx.state->is_remote(found.owner);
    answer["target"] = is_vm_owner(found.owner) ? ctx.state->served_by(vm_index_of(found.owner))
                                                : ctx.state->owner_name(found.owner);
    if (remote) {
        answer["range"] = found.range ? found.range->to_string() : "";
        answer["enabled"] = 1;
        answer["delivery"] = "remote";
        return answer;
    }
    answer["range"] = found.range ? found.range->to_string() : "";
    answer["enabled"] = found.enabled ? 1 : 0;
    answer["delivery"] = found.owner == kHostOwner ? "host" : found.enabled ? "vm" : "drop";
    return answer;
}

json cmd_firewall_list(const ControlContext& ctx, const std::string& params) {
    std::vector<std::string> args = split_params(params);
    auto offset = parse_offset(args);
    if (!offset) return error(offset.error());
    if (!args.empty()) return error("usage: /portmux/firewall/list[,offset=N]");
    FirewallConfig firewall = ctx.state->firewall();
    Config holder;
    holder.firewall = firewall;
    json rules = config_to_json(holder).value("firewall", json::object()).value("rules", json::array());
    json answer;
    answer["default"] = to_string(firewall.default_action);
    size_t end = std::min(firewall.rules.size(), *offset + kRulePageSize);
    for (size_t i = *offset; i < end; ++i) answer[std::to_string(i)] = rules[i];
    add_page(answer, firewall.rules.size(), *offset, end > *offset ? end - *offset : 0);
    return answer;
}

// Remote VMs (docs/remote-vms.md): one object per remote keyed by its position, counters summed over workers.
json cmd_remotes(const ControlContext& ctx, const std::string& params) {
    std::vector<std::string> args = split_params(params);
    auto offset = parse_offset(args);
    if (!offset) return error(offset.error());
    if (args.size() > 1) return error("usage: /portmux/remotes[,NAME][,offset=N]");
    std::vector<RemoteInfo> remotes = ctx.state->remotes();
    if (!args.empty()) {
        auto it = std::find_if(remotes.begin(), remotes.end(), [&](const RemoteInfo& r) { return r.name == args[0]; });
        if (it == remotes.end()) return error(fmt::format("unknown remote \"{}\"", args[0]));
        remotes = {*it};
    }
    json answer = json::object();
    size_t end = std::min(remotes.size(), *offset + kVmPageSize);
    for (size_t i = *offset; i < end; ++i) {
        const RemoteInfo& remote = remotes[i];
        uint64_t packets = 0, bytes = 0;
        for (const WorkerCounters* counters : ctx.counters) {
            packets += counters->read_remote_packets(remote.slot);
            bytes += counters->read_remote_bytes(remote.slot);
        }
        answer[std::to_string(i)] = {{"name", remote.name},
                                     {"host", remote.host.to_string()},
                                     {"mac", remote.mac.to_string()},
                                     {"ranges", ctx.state->ranges(remote.owner).size()},
                                     {"tx_packets", packets},
                                     {"tx_bytes", bytes}};
    }
    add_page(answer, remotes.size(), *offset, end > *offset ? end - *offset : 0);
    return answer;
}

json cmd_remote_add(const ControlContext& ctx, const std::string& params) {
    std::vector<std::string> args = split_params(params);
    json failure;
    if (!expect_params(args, 3, 3, "/portmux/remote/add,NAME,HOST,MAC", &failure)) return failure;
    auto host = Ipv4Addr::parse(args[1]);
    if (!host) return error(fmt::format("HOST: {}", host.error()));
    auto mac = MacAddr::parse(args[2]);
    if (!mac) return error(fmt::format("MAC: {}", mac.error()));
    auto report = ctx.state->add_remote(args[0], *host, *mac);
    if (!report) return error(report.error());
    return changed(*report, {{"remote", args[0]}, {"host", host->to_string()}, {"mac", mac->to_string()}});
}

json cmd_remote_del(const ControlContext& ctx, const std::string& params) {
    std::vector<std::string> args = split_params(params);
    json failure;
    if (!expect_params(args, 1, 1, "/portmux/remote/del,NAME", &failure)) return failure;
    auto report = ctx.state->remove_remote(args[0]);
    if (!report) return error(report.error());
    return changed(*report, {{"removed", args[0]}});
}

// ---- changes --------------------------------------------------------------------------------------------

json cmd_range_add(const ControlContext& ctx, const std::string& params) {
    std::vector<std::string> args = split_params(params);
    json failure;
    if (!expect_params(args, 2, 2, "/portmux/range/add,TARGET,RANGE", &failure)) return failure;
    auto range = PortRange::parse(args[1]);
    if (!range) return error(range.error());
    auto report = ctx.state->add_range(args[0], *range);
    if (!report) return error(report.error());
    return changed(*report, {{"added", range->to_string()}, {"target", args[0]}});
}

json cmd_range_del(const ControlContext& ctx, const std::string& params) {
    std::vector<std::string> args = split_params(params);
    json failure;
    if (!expect_params(args, 1, 1, "/portmux/range/del,RANGE", &failure)) return failure;
    auto range = PortRange::parse(args[0]);
    if (!range) return error(range.error());
    auto report = ctx.state->remove_range(*range);
    if (!report) return error(report.error());
    return changed(*report, {{"removed", range->to_string()}, {"from", report->previous}});
}

json cmd_range_move(const ControlContext& ctx, const std::string& params) {
    std::vector<std::string> args = split_params(params);
    json failure;
    if (!expect_params(args, 2, 2, "/portmux/range/move,RANGE,TARGET", &failure)) return failure;
    auto range = PortRange::parse(args[0]);
    if (!range) return error(range.error());
    auto report = ctx.state->move_range(*range, args[1]);
    if (!report) return error(report.error());
    return changed(*report, {{"moved", range->to_string()}, {"from", report->previous}, {"to", args[1]}});
}

json set_enabled(const ControlContext& ctx, const std::string& params, bool enabled) {
    std::vector<std::string> args = split_params(params);
    json failure;
    if (!expect_params(args, 1, 1, enabled ? "/portmux/vm/enable,VM" : "/portmux/vm/disable,VM", &failure))
        return failure;
    auto report = ctx.state->set_vm_enabled(args[0], enabled);
    if (!report) return error(report.error());
    return changed(*report, {{"vm", args[0]}, {"enabled", enabled ? 1 : 0}, {"was", report->previous}});
}

json cmd_vm_backup(const ControlContext& ctx, const std::string& params) {
    std::vector<std::string> args = split_params(params);
    json failure;
    if (!expect_params(args, 1, 2, "/portmux/vm/backup,VM[,BACKUP] (no BACKUP: none)", &failure)) return failure;
    const std::string backup = args.size() == 2 ? args[1] : "";
    auto report = ctx.state->set_backup(args[0], backup);
    if (!report) return error(report.error());
    return changed(*report, {{"vm", args[0]}, {"backup", backup.empty() ? "none" : backup},
                             {"was", report->previous.empty() ? "none" : report->previous},
                             {"served_by", ctx.state->served_by(vm_index_of(*ctx.state->owner_by_name(args[0])))}});
}

json cmd_vm_disable(const ControlContext& ctx, const std::string& params) { return set_enabled(ctx, params, false); }
json cmd_vm_enable(const ControlContext& ctx, const std::string& params) { return set_enabled(ctx, params, true); }

json change_shared_address(const ControlContext& ctx, const std::string& params, bool add) {
    std::vector<std::string> args = split_params(params);
    json failure;
    const char* usage = add ? "/portmux/address/add,IPV4" : "/portmux/address/del,IPV4";
    if (!expect_params(args, 1, 1, usage, &failure)) return failure;
    auto address = Ipv4Addr::parse(args[0]);
    if (!address) return error(address.error());
    auto report = add ? ctx.state->add_shared_address(*address) : ctx.state->remove_shared_address(*address);
    if (!report) return error(report.error());
    Config config = ctx.state->running_config();
    json all = json::array({config.shared_ip.to_string()});
    for (const Ipv4Addr& more : config.extra_shared_ips) all.push_back(more.to_string());
    return changed(*report, {{add ? "added" : "removed", address->to_string()}, {"shared_ips", all}});
}

json cmd_address_add(const ControlContext& ctx, const std::string& params) { return change_shared_address(ctx, params, true); }
json cmd_address_del(const ControlContext& ctx, const std::string& params) { return change_shared_address(ctx, params, false); }

json cmd_config_save(const ControlContext& ctx, const std::string& params) {
    if (!trim(params).empty()) return error("/portmux/config/save takes no parameters");
    if (ctx.config_file.empty()) return error("no configuration file to save to");
    auto report = ctx.state->save(ctx.config_file);
    if (!report) return error(report.error());
    return changed(*report, {{"saved", ctx.config_file}});
}

json cmd_firewall_add(const ControlContext& ctx, const std::string& params) {
    // "[INDEX,]RULE": the rule is a JSON object as in the configuration, and may itself contain commas.
    std::string text = trim(params);
    std::optional<size_t> index;
    if (!text.empty() && std::isdigit(static_cast<unsigned char>(text[0]))) {
        size_t comma = text.find(',');
        if (comma == std::string::npos) return error("usage: /portmux/firewall/add,[INDEX,]RULE-JSON");
        auto parsed = parse_index(trim(text.substr(0, comma)), "INDEX");
        if (!parsed) return error(parsed.error());
        index = *parsed;
        text = trim(text.substr(comma + 1));
    }
    if (text.empty()) return error("usage: /portmux/firewall/add,[INDEX,]RULE-JSON");
    FirewallRule rule;
    try {
        rule = parse_firewall_rule(json::parse(text), "rule");
    } catch (const json::parse_error& e) {
        return error(fmt::format("rule: invalid JSON at byte {} (expected an object like "
                                 "{{\"action\": \"drop\", \"proto\": \"tcp\"}})",
                                 e.byte));
    } catch (const json::exception& e) {
        return error("rule: invalid JSON");
    } catch (const ConfigError& e) {
        return error(fmt::format("{}: {}", e.path(), e.what()));
    }
    auto report = ctx.state->add_firewall_rule(index, rule);
    if (!report) return error(report.error());
    size_t count = ctx.state->firewall().rules.size();
    return changed(*report, {{"added", index.value_or(count - 1)}, {"rules", count}});
}

json cmd_firewall_del(const ControlContext& ctx, const std::string& params) {
    std::vector<std::string> args = split_params(params);
    json failure;
    if (!expect_params(args, 1, 1, "/portmux/firewall/del,INDEX", &failure)) return failure;
    auto index = parse_index(args[0], "INDEX");
    if (!index) return error(index.error());
    auto report = ctx.state->remove_firewall_rule(*index);
    if (!report) return error(report.error());
    return changed(*report, {{"removed", *index}, {"rules", ctx.state->firewall().rules.size()}});
}

json cmd_firewall_default(const ControlContext& ctx, const std::string& params) {
    std::vector<std::string> args = split_params(params);
    json failure;
    if (!expect_params(args, 1, 1, "/portmux/firewall/default,accept|drop", &failure)) return failure;
    if (args[0] != "accept" && args[0] != "drop")
        return error(fmt::format("\"{}\": expected accept or drop", args[0]));
    auto report =
        ctx.state->set_firewall_default(args[0] == "drop" ? FirewallAction::kDrop : FirewallAction::kAccept);
    if (!report) return error(report.error());
    return changed(*report, {{"default", args[0]}});
}

}  // namespace

const std::vector<CommandSpec>& command_table() {
    static const std::vector<CommandSpec> table = {
        {"/portmux/info", "Version, shared addresses, lcores, ports, uptime. No parameters.", false, cmd_info},
        {"/portmux/stats", "Counters: received/sent per port kind, deliveries and drops by reason. No parameters.",
         false, cmd_stats},
        {"/portmux/vms", "Every VM: port, MAC, enabled, link, counters. Parameters: [VM][,offset=N]", false, cmd_vms},
        {"/portmux/ranges", "Ranges per owner in config syntax. Parameters: [TARGET][,offset=N]", false, cmd_ranges},
        {"/portmux/lookup", "Who receives a port now. Parameter: [ADDRESS/]PROTO:PORT", false, cmd_lookup},
        {"/portmux/range/add", "Give a range to a VM or the host. Parameters: TARGET,RANGE", true, cmd_range_add},
        {"/portmux/range/del", "Remove exactly that range. Parameter: RANGE", true, cmd_range_del},
        {"/portmux/range/move", "Hand a range to another owner at once. Parameters: RANGE,TARGET", true,
         cmd_range_move},
        {"/portmux/vm/disable", "Close all of a VM's ranges (its traffic is dropped). Parameter: VM", true,
         cmd_vm_disable},
        {"/portmux/vm/enable", "Reopen a VM's ranges. Parameter: VM", true, cmd_vm_enable},
        {"/portmux/vm/backup", "Set or clear the VM that serves a VM's ranges while it is down. Parameters: VM[,BACKUP]",
         true, cmd_vm_backup},
        {"/portmux/vm/add", "Add a vhost-user VM (no ranges yet). Parameters: NAME,SOCKET,MAC[,client|server]", true,
         cmd_vm_add},
        {"/portmux/vm/del", "Remove a vhost-user VM that owns no range. Parameter: NAME", true, cmd_vm_del},
        {"/portmux/address/add", "Add a shared IPv4 address with an empty range table. Parameter: IPV4", true,
         cmd_address_add},
        {"/portmux/address/del", "Remove a shared address that owns no range. Parameter: IPV4", true,
         cmd_address_del},
        {"/portmux/config/save", "Write the running configuration to the --config file atomically.", true,
         cmd_config_save},
        {"/portmux/firewall/list", "Firewall default and rules in priority order. Parameters: [offset=N]", false,
         cmd_firewall_list},
        {"/portmux/firewall/add", "Insert a rule (JSON as in the config) at INDEX or last. Parameters: [INDEX,]RULE",
         true, cmd_firewall_add},
        {"/portmux/firewall/del", "Delete the rule at INDEX. Parameter: INDEX", true, cmd_firewall_del},
        {"/portmux/firewall/default", "Set the firewall default. Parameter: accept|drop", true, cmd_firewall_default},
        {"/portmux/remotes", "Remote VMs behind VXLAN: host, next-hop MAC, ranges, counters. Parameters: [NAME][,offset=N]",
         false, cmd_remotes},
        {"/portmux/remote/add", "Add a remote VM reached through VXLAN. Parameters: NAME,HOST,MAC", true, cmd_remote_add},
        {"/portmux/remote/del", "Remove a remote VM that owns no range. Parameter: NAME", true, cmd_remote_del},
    };
    static const std::vector<CommandSpec> with_extensions = [] {
        std::vector<CommandSpec> all = table;
        all.insert(all.end(), group_command_table().begin(), group_command_table().end());
        all.insert(all.end(), capture_command_table().begin(), capture_command_table().end());
        all.insert(all.end(), worker_command_table().begin(), worker_command_table().end());
        return all;
    }();
    return with_extensions;
}

json run_command(const ControlContext& context, const std::string& name, const std::string& params) {
    for (const CommandSpec& spec : command_table()) {
        if (name != spec.name) continue;
        if (spec.mutating && context.read_only) return error("portmux runs read-only: changes are disabled");
        try {
            return spec.handler(context, params);
        } catch (const std::exception& e) {
            return error(fmt::format("internal error: {}", e.what()));
        }
    }
    return error(fmt::format("unknown command \"{}\"", name));
}

}  // namespace portmux
