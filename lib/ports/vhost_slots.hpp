// What the workers see of the vhost-user VM ports: one slot per VM index, written by the vhost library's
// callbacks (drivers/vhost_user.cpp) and read by the workers without locks.
//
// A slot says which vhost device (vid) currently serves the VM and which of its queues the guest has
// enabled. The workers rebuild their list of queues to poll when `layout()` changes; they read `vid` at
// every burst. A device going away is cleared here first and then the driver waits for a grace period of
// the workers' RCU (rte_rcu_qsbr), so no worker touches a vid the library is about to free.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/limits.hpp"

namespace portmux {

// Queue pairs of one guest that portmux uses (bits of the masks below). A guest may negotiate more
// (QEMU's queues=N); the extra ones are never enabled by portmux's workers and the driver says so.
inline constexpr uint16_t kMaxGuestQueuePairs = 64;

struct alignas(64) VhostSlot {
    // The running vhost device, -1 when none (no guest connected, or its rings are not ready).
    std::atomic<int> vid{-1};
    // Host-to-guest queues usable for transmit: the guest's enabled receive vrings 0, 2, 4... counted as
    // a prefix (virtio enables queue pairs in order). Worker w transmits on queue w % tx_queues.
    std::atomic<uint16_t> tx_queues{0};
    // Guest-to-host vrings (1, 3, 5...) enabled by the guest, bit q for queue pair q.
    std::atomic<uint64_t> rx_queue_mask{0};
    // True while the VM is configured with a vhost socket (false: free slot or an ethdev VM).
    std::atomic<bool> configured{false};
};

class VhostSlots {
public:
    VhostSlots() : slots_(std::make_unique<VhostSlot[]>(kMaxVms)) {}

    VhostSlot& slot(size_t vm_index) { return slots_[vm_index]; }
    const VhostSlot& slot(size_t vm_index) const { return slots_[vm_index]; }

    // Changes whenever the set of queues to poll may have changed (a device came or went, a vring was
    // enabled or disabled, a VM was added or removed).
    uint64_t layout() const { return layout_.load(std::memory_order_acquire); }
    void layout_changed() { layout_.fetch_add(1, std::memory_order_acq_rel); }

private:
    std::unique_ptr<VhostSlot[]> slots_;
    std::atomic<uint64_t> layout_{1};
};

}  // namespace portmux
