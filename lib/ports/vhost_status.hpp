// A vhost-user VM port's state as the control side reports it (/portmux/vms): filled by the driver
// (drivers/vhost_user.cpp) from the vhost library, read by the commands.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace portmux {

// One VM's vhost state as the control side reports it.
struct VhostQueueStats {
    uint16_t vring = 0;     // even: host to guest (portmux transmits), odd: guest to host
    std::vector<std::pair<std::string, uint64_t>> values;  // the library's per-vring statistics
};
struct VhostStatus {
    bool registered = false;  // the VM has a vhost-user socket
    bool connected = false;   // a vhost-user connection exists (the guest may not be ready yet)
    bool running = false;     // the device is ready: the link is up
    uint16_t queue_pairs = 0; // the guest's vrings / 2
    uint16_t tx_queues = 0;   // enabled host-to-guest queues
    uint64_t rx_queue_mask = 0;
    uint64_t features = 0;    // negotiated virtio features
    std::vector<VhostQueueStats> queues;
};

}  // namespace portmux
