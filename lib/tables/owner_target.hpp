// The kinds of owner and, for each owner id, where the data path delivers its packets (Snapshot::owners).
#pragma once

#include <cstdint>

#include "core/net_types.hpp"
#include "core/owner_id.hpp"

namespace portmux {

enum class OwnerKind : uint8_t { kNone, kHost, kVm, kRemote, kGroup };

// What the data path needs to deliver to an owner.
struct OwnerTarget {
    OwnerKind kind = OwnerKind::kNone;
    bool enabled = true;  // a disabled VM's packets are dropped and counted, never sent to the host
    uint16_t port = 0;    // dense port index (see drivers/port_set.hpp), valid for kVm
    MacAddr mac{};        // destination MAC written into frames for a VM; for kRemote the underlay next hop
    uint32_t remote_ip = 0;    // kRemote: the outer destination (network byte order)
    uint16_t remote_slot = 0;  // kRemote: index of its counters (WorkerCounters::add_remote)
    uint16_t group = 0;        // kGroup: index into the snapshot's groups (see tables/lb_group.hpp)
};

}  // namespace portmux
