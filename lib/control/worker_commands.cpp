// /portmux/workers: each worker's own share of the traffic, which /portmux/stats sums away. An uneven split
// (one worker with most of the frames) shows here and nowhere else.
#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "control/command_params.hpp"
#include "control/commands.hpp"
#include "control/stats.hpp"

namespace portmux {
namespace {

using nlohmann::json;

using command_params::add_page;
using command_params::error;
using command_params::parse_offset;
using command_params::split_params;

// One entry is 8 integers (about 270 bytes): 32 of them stay well inside telemetry's 16 KiB.
inline constexpr size_t kWorkerPageSize = 32;

bool is_drop(SwitchCounter c) { return std::strncmp(counter_name(c), "drop_", 5) == 0; }

json worker_entry(size_t worker, unsigned lcore, const WorkerCounters& counters) {
    // The worker's counters over every port it has counted, VMs removed since the start included (as in
    // /portmux/stats, and unlike /portmux/vms, which starts a reused VM index from zero).
    CounterTotals t = sum_counters({&counters}, counters.port_count());
    uint64_t sums[kPortCounterCount] = {};
    for (size_t port = 0; port < t.ports.size(); ++port)
        for (size_t c = 0; c < kPortCounterCount; ++c) sums[c] += t.ports[port][c];
    uint64_t drops = 0;
    for (size_t c = 0; c < kSwitchCounterCount; ++c)
        if (is_drop(static_cast<SwitchCounter>(c))) drops += t.switch_counters[c];
    auto sum = [&](PortCounter c) { return sums[static_cast<size_t>(c)]; };
    return json{{"worker", worker},
                {"lcore", lcore},
                {"rx_packets", sum(PortCounter::rx_packets)},
                {"rx_bytes", sum(PortCounter::rx_bytes)},
                {"tx_packets", sum(PortCounter::tx_packets)},
                {"tx_bytes", sum(PortCounter::tx_bytes)},
                {"tx_dropped", sum(PortCounter::tx_dropped)},
                {"drops", drops}};
}

json cmd_workers(const ControlContext& ctx, const std::string& params) {
    std::vector<std::string> args = split_params(params);
    auto offset = parse_offset(args);
    if (!offset) return error(offset.error());
    if (!args.empty()) return error("usage: /portmux/workers[,offset=N]");
    const size_t total = ctx.counters.size();
    const size_t end = std::min(total, *offset + kWorkerPageSize);
    json answer = json::object();
    for (size_t i = *offset; i < end; ++i) {
        const unsigned lcore = i < ctx.worker_lcores.size() ? ctx.worker_lcores[i] : 0;
        if (ctx.counters[i] != nullptr) answer[std::to_string(i)] = worker_entry(i, lcore, *ctx.counters[i]);
    }
    add_page(answer, total, *offset, end > *offset ? end - *offset : 0);
    return answer;
}

}  // namespace

const std::vector<CommandSpec>& worker_command_table() {
    static const std::vector<CommandSpec> table = {
        {"/portmux/workers",
         "Each worker's lcore and its frames, bytes and drops over all ports. Parameters: [offset=N]", false,
         cmd_workers},
    };
    return table;
}

}  // namespace portmux
