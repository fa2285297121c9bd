// The read-only /portmux/* commands: info, stats and vms.
#include "control/telemetry.hpp"

#include <atomic>

#include <fmt/format.h>
#include <rte_telemetry.h>

#include "control/stats.hpp"

namespace portmux {
namespace {

// rte_telemetry callbacks carry no user pointer.
std::atomic<const ControlContext*> g_context{nullptr};

int answer_error(rte_tel_data* d, const std::string& message) {
    rte_tel_data_start_dict(d);
    rte_tel_data_add_dict_string(d, "error", message.c_str());
    return 0;
}

CounterTotals totals(const ControlContext& ctx) { return sum_counters(ctx.counters, ctx.ports.size()); }

int cmd_info(const char*, const char* params, rte_tel_data* d) {
    const ControlContext* ctx = g_context.load();
    if (params != nullptr && *params != '\0') return answer_error(d, "/portmux/info takes no parameters");
    Config config = ctx->state->running_config();
    rte_tel_data_start_dict(d);
    rte_tel_data_add_dict_string(d, "version", PORTMUX_VERSION);
    rte_tel_data_add_dict_string(d, "shared_ip", config.shared_ip.to_string().c_str());
    if (config.shared_ip6) rte_tel_data_add_dict_string(d, "shared_ip6", config.shared_ip6->to_string().c_str());
    rte_tel_data_add_dict_int(d, "main_lcore", static_cast<int>(ctx->main_lcore));
    rte_tel_data* lcores = rte_tel_data_alloc();
    rte_tel_data_start_array(lcores, RTE_TEL_INT_VAL);
    for (unsigned lcore : ctx->worker_lcores) rte_tel_data_add_array_int(lcores, static_cast<int>(lcore));
    rte_tel_data_add_dict_container(d, "worker_lcores", lcores, 0);
    rte_tel_data* ports = rte_tel_data_alloc();
    rte_tel_data_start_dict(ports);
    for (const Port& port : ctx->ports) rte_tel_data_add_dict_int(ports, port.name.c_str(), port.eth_port);
    rte_tel_data_add_dict_container(d, "ports", ports, 0);
    rte_tel_data_add_dict_int(d, "vms", static_cast<int>(config.vms.size()));
    rte_tel_data_add_dict_u64(d, "generation", ctx->state->generation());
    auto uptime = std::chrono::steady_clock::now() - ctx->started;
    rte_tel_data_add_dict_u64(d, "uptime_s",
                              static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(uptime).count()));
    rte_tel_data_add_dict_string(d, "config", ctx->config_file.c_str());
    return 0;
}

int cmd_stats(const char*, const char* params, rte_tel_data* d) {
    const ControlContext* ctx = g_context.load();
    if (params != nullptr && *params != '\0') return answer_error(d, "/portmux/stats takes no parameters");
    CounterTotals t = totals(*ctx);
    uint64_t rx[3] = {}, tx[3] = {}, tx_dropped[3] = {};
    for (const Port& port : ctx->ports) {
        int kind = static_cast<int>(port.role);
        rx[kind] += t.get(port.index, PortCounter::rx_packets);
        tx[kind] += t.get(port.index, PortCounter::tx_packets);
        tx_dropped[kind] += t.get(port.index, PortCounter::tx_dropped);
    }
    rte_tel_data_start_dict(d);
    const char* kinds[3] = {"uplink", "host", "vms"};
    for (int k = 0; k < 3; ++k) {
        rte_tel_data_add_dict_u64(d, fmt::format("rx_{}", kinds[k]).c_str(), rx[k]);
        rte_tel_data_add_dict_u64(d, fmt::format("tx_{}", kinds[k]).c_str(), tx[k]);
        rte_tel_data_add_dict_u64(d, fmt::format("tx_dropped_{}", kinds[k]).c_str(), tx_dropped[k]);
    }
    for (size_t c = 0; c < kSwitchCounterCount; ++c)
        rte_tel_data_add_dict_u64(d, counter_name(static_cast<SwitchCounter>(c)), t.switch_counters[c]);
    return 0;
}

int cmd_vms(const char*, const char* params, rte_tel_data* d) {
    const ControlContext* ctx = g_context.load();
    if (params != nullptr && *params != '\0') return answer_error(d, "/portmux/vms takes no parameters");
    Config config = ctx->state->running_config();
    CounterTotals t = totals(*ctx);
    rte_tel_data_start_dict(d);
    for (const Port& port : ctx->ports) {
        if (port.role != PortRole::kVm) continue;
        const VmConfig& vm = config.vms[port.index - kFirstVmPortIndex];
        rte_tel_data* entry = rte_tel_data_alloc();
        rte_tel_data_start_dict(entry);
        rte_tel_data_add_dict_int(entry, "port", port.eth_port);
        rte_tel_data_add_dict_string(entry, "mac", vm.mac.to_string().c_str());
        rte_tel_data_add_dict_int(entry, "enabled", vm.enabled ? 1 : 0);
        rte_tel_data_add_dict_string(entry, "link", ctx->link_up(port.index) ? "up" : "down");
        if (port.is_vhost) {
            rte_tel_data_add_dict_string(entry, "vhost", port.vhost_path.c_str());
            rte_tel_data_add_dict_string(entry, "vhost_mode", to_string(port.vhost_mode));
        } else {
            rte_tel_data_add_dict_string(entry, "device", port.devargs.c_str());
        }
        for (size_t c = 0; c < kPortCounterCount; ++c)
            rte_tel_data_add_dict_u64(entry, counter_name(static_cast<PortCounter>(c)), t.ports[port.index][c]);
        rte_tel_data_add_dict_container(d, port.name.c_str(), entry, 0);
    }
    return 0;
}

}  // namespace

void register_telemetry(const ControlContext* context) {
    g_context.store(context);
    rte_telemetry_register_cmd("/portmux/info", cmd_info,
                               "Version, shared addresses, lcores, ports and uptime. Takes no parameters.");
    rte_telemetry_register_cmd("/portmux/stats", cmd_stats,
                               "Switch counters: received/sent per port kind, deliveries and drops by reason.");
    rte_telemetry_register_cmd("/portmux/vms", cmd_vms,
                               "Every VM: port, MAC, enabled, link state, vhost socket and counters.");
}

}  // namespace portmux
