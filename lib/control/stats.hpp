// Reading the workers' counters: sums over every worker, taken with relaxed loads while they run.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

#include "core/worker_counters.hpp"

namespace portmux {

struct CounterTotals {
    std::array<uint64_t, kSwitchCounterCount> switch_counters{};
    std::vector<std::array<uint64_t, kPortCounterCount>> ports;  // by dense port index

    uint64_t get(SwitchCounter c) const { return switch_counters[static_cast<size_t>(c)]; }
    uint64_t get(size_t port, PortCounter c) const { return ports[port][static_cast<size_t>(c)]; }
};

// Any thread; values of one worker may be a few packets apart from another's, never torn.
CounterTotals sum_counters(const std::vector<const WorkerCounters*>& workers, size_t port_count);
// Every port index the workers count (the largest of their port counts).
size_t counted_ports(const std::vector<const WorkerCounters*>& workers);

// Per-port counters as they were when a port index was given to a new VM: the VM's own counters are the
// totals minus these. Any thread.
class PortCounterBaselines {
public:
    void set(size_t port, const std::array<uint64_t, kPortCounterCount>& values) {
        std::lock_guard<std::mutex> lock(mutex_);
        baselines_[port] = values;
    }
    // Subtracts the baselines from `totals` (a port's counters never go below its baseline).
    void apply(CounterTotals& totals) const {
        std::lock_guard<std::mutex> lock(mutex_);
        for (const auto& [port, base] : baselines_)
            if (port < totals.ports.size())
                for (size_t c = 0; c < kPortCounterCount; ++c)
                    totals.ports[port][c] = totals.ports[port][c] >= base[c] ? totals.ports[port][c] - base[c] : 0;
    }

private:
    mutable std::mutex mutex_;
    std::map<size_t, std::array<uint64_t, kPortCounterCount>> baselines_;
};

}  // namespace portmux
