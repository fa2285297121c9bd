// Summing the per-worker counters.
#include "control/stats.hpp"

#include <algorithm>

namespace portmux {

CounterTotals sum_counters(const std::vector<const WorkerCounters*>& workers, size_t port_count) {
    CounterTotals totals;
    totals.ports.resize(port_count);
    for (const WorkerCounters* w : workers) {
        for (size_t c = 0; c < kSwitchCounterCount; ++c)
            totals.switch_counters[c] += w->read(static_cast<SwitchCounter>(c));
        for (size_t p = 0; p < port_count && p < w->port_count(); ++p)
            for (size_t c = 0; c < kPortCounterCount; ++c) totals.ports[p][c] += w->read(p, static_cast<PortCounter>(c));
    }
    return totals;
}

size_t counted_ports(const std::vector<const WorkerCounters*>& workers) {
    size_t ports = 0;
    for (const WorkerCounters* w : workers) ports = std::max(ports, w->port_count());
    return ports;
}

}  // namespace portmux
