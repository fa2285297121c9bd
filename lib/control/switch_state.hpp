// The running configuration and the one place that changes it: every change is applied here, under one
// lock, and reaches the workers as a new immutable snapshot.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "config/config.hpp"
#include "tables/port_owners.hpp"
#include "tables/snapshot.hpp"

namespace portmux {

class SwitchState {
public:
    // `publisher` outlives this object. The VM with index i is reached through dense port 2 + i.
    SwitchState(Config config, SnapshotPublisher& publisher);

    // Builds the first snapshot (compiling the firewall) and publishes it. Throws StartupError.
    void publish_initial();

    // A copy of the running configuration (ranges and enabled flags as they are now).
    Config running_config() const;
    uint64_t generation() const;
    size_t vm_count() const { return vm_count_; }

private:
    std::unique_ptr<Snapshot> build_snapshot_locked();

    mutable std::mutex mutex_;
    Config config_;  // VMs and firewall as running; ranges are kept in registry_
    RangeRegistry registry_;
    size_t vm_count_;
    std::shared_ptr<const Firewall> firewall_;
    uint64_t generation_ = 0;
    SnapshotPublisher& publisher_;
};

}  // namespace portmux
