// Per-worker counter blocks: written by exactly one worker with relaxed stores, summed by readers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/counters.hpp"
#include "core/limits.hpp"

namespace portmux {

// Relaxed single-writer increment: a plain load and store (no lock prefix), yet readers on other threads
// never see a torn value. Only the owning worker may call it.
inline void counter_add(uint64_t& counter, uint64_t n) {
    __atomic_store_n(&counter, __atomic_load_n(&counter, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}
inline uint64_t counter_read(const uint64_t& counter) { return __atomic_load_n(&counter, __ATOMIC_RELAXED); }

// One worker's counters: the switch-wide ones, then kPortCounterCount per dense port index. Cache-line
// aligned so two workers never write the same line.
class alignas(64) WorkerCounters {
public:
    explicit WorkerCounters(size_t port_count) : port_count_(port_count), port_(port_count * kPortCounterCount) {}

    void add(SwitchCounter c, uint64_t n = 1) { counter_add(switch_[static_cast<size_t>(c)], n); }
    void add(size_t port, PortCounter c, uint64_t n = 1) {
        counter_add(port_[port * kPortCounterCount + static_cast<size_t>(c)], n);
    }
    uint64_t read(SwitchCounter c) const { return counter_read(switch_[static_cast<size_t>(c)]); }
    uint64_t read(size_t port, PortCounter c) const {
        return counter_read(port_[port * kPortCounterCount + static_cast<size_t>(c)]);
    }
    size_t port_count() const { return port_count_; }
    // Remote VMs (docs/remote-vms.md): frames and bytes sent to each, by its slot (< kRemoteSlots).
    static constexpr size_t kRemoteSlots = kMaxRemotes;
    void add_remote(size_t slot, uint64_t bytes) {
        counter_add(remote_[slot][0], 1);
        counter_add(remote_[slot][1], bytes);
    }
    uint64_t read_remote_packets(size_t slot) const { return counter_read(remote_[slot][0]); }
    uint64_t read_remote_bytes(size_t slot) const { return counter_read(remote_[slot][1]); }

private:
    uint64_t remote_[kRemoteSlots][2] = {};
    uint64_t switch_[kSwitchCounterCount] = {};
    size_t port_count_;
    std::vector<uint64_t> port_;  // sized once before the worker starts, never resized
};

}  // namespace portmux
