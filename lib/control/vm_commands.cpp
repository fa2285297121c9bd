// /portmux/vms, /portmux/vm/add and /portmux/vm/del (docs/control.md).
#include "control/vm_commands.hpp"

#include <algorithm>
#include <bitset>
#include <cstring>

#include <fmt/format.h>

#include "control/command_params.hpp"
#include "control/commands.hpp"

namespace portmux {
namespace {

using nlohmann::json;
using command_params::add_page;
using command_params::error;
using command_params::parse_offset;
using command_params::split_params;

// virtio-net feature bits worth showing an operator (virtio 1.1, 5.1.3).
constexpr unsigned kFeatureCsum = 0;        // the guest sends partial checksums
constexpr unsigned kFeatureGuestCsum = 1;   // the guest accepts partial checksums
constexpr unsigned kFeatureHostTso4 = 11;   // the guest sends TSO frames (IPv4)
constexpr unsigned kFeatureMrgRxbuf = 15;   // mergeable receive buffers
constexpr unsigned kFeatureVersion1 = 32;   // a modern (virtio 1.x) driver

int feature(uint64_t features, unsigned bit) { return (features >> bit) & 1 ? 1 : 0; }

// The vhost library's view of one VM: connection, queues, negotiated offloads and, for one VM asked by name,
// each vring's packets and bytes. Keys are flat: telemetry nests one level only.
void add_vhost_status(json& entry, const VhostStatus& status, bool with_queues) {
    entry["connected"] = status.connected ? 1 : 0;
    entry["queue_pairs"] = status.queue_pairs;
    entry["tx_queues"] = status.tx_queues;
    entry["rx_queues"] = std::bitset<64>(status.rx_queue_mask).count();
    if (status.running) {
        entry["features"] = fmt::format("{:#x}", status.features);
        entry["offload_csum"] = feature(status.features, kFeatureCsum);
        entry["offload_tso4"] = feature(status.features, kFeatureHostTso4);
        entry["guest_csum"] = feature(status.features, kFeatureGuestCsum);
        entry["mergeable_buffers"] = feature(status.features, kFeatureMrgRxbuf);
        entry["virtio_1"] = feature(status.features, kFeatureVersion1);
    }
    if (!with_queues) return;
    for (const VhostQueueStats& queue : status.queues) {
        if (queue.vring >= 2 * kMaxReportedQueuePairs) break;
        // Even vrings carry portmux's transmit to the guest, odd ones the guest's transmit to portmux.
        const std::string prefix = fmt::format("q{}_{}", queue.vring / 2, queue.vring % 2 == 0 ? "to_vm" : "from_vm");
        // The library names them "<rx|tx>_q<N>_<statistic>".
        auto ends_with = [](const std::string& text, const char* tail) {
            const size_t n = std::strlen(tail);
            return text.size() >= n && text.compare(text.size() - n, n, tail) == 0;
        };
        for (const auto& [name, value] : queue.values) {
            if (ends_with(name, "_good_packets")) entry[prefix + "_packets"] = value;
            if (ends_with(name, "_good_bytes")) entry[prefix + "_bytes"] = value;
        }
    }
}

json vm_entry(const ControlContext& ctx, size_t index, const VmConfig& vm, const CounterTotals& totals, bool detailed) {
    const uint16_t port_index = vm_port_index(index);
    json entry;
    entry["name"] = vm.name;
    // A device VM's DPDK port id; a vhost-user VM has no ethdev and shows its portmux port index instead.
    const bool device = !vm.device.empty();
    entry["port"] = device && port_index < ctx.ports.size() ? ctx.ports[port_index].eth_port : port_index;
    entry["port_index"] = port_index;
    entry["mac"] = vm.mac.to_string();
    entry["enabled"] = vm.enabled ? 1 : 0;
    entry["link"] = ctx.link_up && ctx.link_up(port_index) ? "up" : "down";
    if (device) {
        entry["device"] = vm.device;
    } else {
        entry["vhost"] = vm.vhost;
        entry["vhost_mode"] = to_string(vm.vhost_mode);
        if (ctx.vhost_status) add_vhost_status(entry, ctx.vhost_status(index, detailed), detailed);
    }
    entry["ranges"] = vm.ranges.size();
    if (!vm.backup.empty()) entry["backup"] = vm.backup;
    entry["served_by"] = ctx.state->served_by(index);
    for (size_t c = 0; c < kPortCounterCount; ++c)
        entry[counter_name(static_cast<PortCounter>(c))] =
            port_index < totals.ports.size() ? totals.ports[port_index][c] : 0;
    return entry;
}

CounterTotals vm_counters(const ControlContext& ctx) {
    CounterTotals totals = sum_counters(ctx.counters, counted_ports(ctx.counters));
    ctx.baselines->apply(totals);
    return totals;
}

Result<VhostMode> parse_vhost_mode(const std::string& text) {
    if (text == "client") return Result<VhostMode>::ok(VhostMode::kClient);
    if (text == "server") return Result<VhostMode>::ok(VhostMode::kServer);
    return Result<VhostMode>::fail(fmt::format("mode \"{}\": expected client or server", text));
}

}  // namespace

// One object per VM keyed by its VM index ("0", "1", ...; a removed VM leaves its index free): names are
// values (see add_page). Pages of kVmPageSize VMs; one VM by name adds its per-queue statistics.
json cmd_vms(const ControlContext& ctx, const std::string& params) {
    std::vector<std::string> args = split_params(params);
    auto offset = parse_offset(args);
    if (!offset) return error(offset.error());
    if (args.size() > 1) return error("usage: /portmux/vms[,VM][,offset=N]");
    const std::string only = args.empty() ? "" : args[0];
    std::vector<std::pair<size_t, VmConfig>> vms = ctx.state->vms();
    if (!only.empty()) {
        vms.erase(std::remove_if(vms.begin(), vms.end(), [&](const auto& vm) { return vm.second.name != only; }),
                  vms.end());
        if (vms.empty()) return error(fmt::format("unknown VM \"{}\"", only));
    }
    const CounterTotals totals = vm_counters(ctx);
    json answer = json::object();
    const size_t end = std::min(vms.size(), *offset + kVmPageSize);
    for (size_t i = *offset; i < end; ++i)
        answer[std::to_string(vms[i].first)] = vm_entry(ctx, vms[i].first, vms[i].second, totals, !only.empty());
    add_page(answer, vms.size(), *offset, end > *offset ? end - *offset : 0);
    return answer;
}

json cmd_vm_add(const ControlContext& ctx, const std::string& params) {
    const char* usage = "/portmux/vm/add,NAME,SOCKET,MAC[,client|server]";
    std::vector<std::string> args = split_params(params);
    if (args.size() < 3 || args.size() > 4 || std::any_of(args.begin(), args.end(), [](auto& a) { return a.empty(); }))
        return error(fmt::format("usage: {}", usage));
    if (!ctx.attach_vm) return error("this portmux cannot add VMs at runtime");
    VmConfig vm;
    vm.name = args[0];
    vm.vhost = args[1];
    if (vm.vhost.front() != '/') return error(fmt::format("SOCKET \"{}\": an absolute path is needed", vm.vhost));
    auto mac = MacAddr::parse(args[2]);
    if (!mac) return error(fmt::format("MAC: {}", mac.error()));
    vm.mac = *mac;
    if (args.size() == 4) {
        auto mode = parse_vhost_mode(args[3]);
        if (!mode) return error(mode.error());
        vm.vhost_mode = *mode;
    }
    // The socket is registered while the change is serialised, before any snapshot names the VM; a VM index
    // taken again counts from zero from then on.
    size_t taken = 0;
    auto report = ctx.state->add_vm(vm, [&](size_t index) {
        taken = index;
        const size_t port_index = vm_port_index(index);
        const CounterTotals totals = sum_counters(ctx.counters, counted_ports(ctx.counters));
        if (port_index < totals.ports.size()) ctx.baselines->set(port_index, totals.ports[port_index]);
        return ctx.attach_vm(index, vm);
    });
    if (!report) return error(report.error());
    json answer = {{"vm", vm.name}, {"index", taken}, {"vhost", vm.vhost}, {"vhost_mode", to_string(vm.vhost_mode)},
                   {"mac", vm.mac.to_string()}, {"generation", report->generation}};
    return answer;
}

json cmd_vm_del(const ControlContext& ctx, const std::string& params) {
    std::vector<std::string> args = split_params(params);
    if (args.size() != 1 || args[0].empty()) return error("usage: /portmux/vm/del,NAME");
    if (!ctx.detach_vm) return error("this portmux cannot remove VMs at runtime");
    auto report = ctx.state->remove_vm(args[0], [&](size_t index) { ctx.detach_vm(index); });
    if (!report) return error(report.error());
    return {{"removed", args[0]}, {"index", std::stoul(report->previous)}, {"generation", report->generation}};
}

}  // namespace portmux
