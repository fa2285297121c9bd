// Reading the workers' counters: sums over every worker, taken with relaxed loads while they run.
#pragma once

#include <array>
#include <cstdint>
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

}  // namespace portmux
