// vhost-user VM ports on DPDK's vhost library: one socket per VM, registered with rte_vhost_driver_*, its
// devices tracked from the library's callbacks into VhostSlots, which the workers poll and transmit to
// with rte_vhost_dequeue_burst / rte_vhost_enqueue_burst. No ethdev per VM, so one process serves up to
// kMaxVms VMs (docs/vms.md, docs/architecture.md).
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "config/config.hpp"
#include "ports/vhost_slots.hpp"
#include "ports/vhost_status.hpp"

struct rte_rcu_qsbr;

namespace portmux {

// What portmux offers a guest, decided on purpose (docs/vms.md "Offloads"):
//   offered: partial checksums from the guest (VIRTIO_NET_F_CSUM, finished in software), TSO for IPv4 from
//   the guest (HOST_TSO4, segmented with rte_gso to the uplink MTU), GUEST_CSUM (portmux never hands a
//   guest a partial checksum, so the guest may skip nothing it should not), mergeable buffers, multi-queue.
//   withheld: HOST_TSO6 (rte_gso cannot segment TCP over IPv6), HOST_ECN, HOST_UFO, and every receive-side
//   GSO feature (GUEST_TSO4/6, GUEST_ECN, GUEST_UFO: portmux never sends a guest a frame above the MTU).
uint64_t vhost_withheld_features();

class VhostUserPorts {
public:
    // One per process (the library's callbacks carry only a device id). `slots` outlives it.
    explicit VhostUserPorts(VhostSlots& slots);
    ~VhostUserPorts();
    VhostUserPorts(const VhostUserPorts&) = delete;
    VhostUserPorts& operator=(const VhostUserPorts&) = delete;

    // Registers VM `vm_index`'s socket in its mode (client: portmux connects and reconnects; server:
    // portmux creates the socket), with the feature set above and the statistics on, and starts it.
    // Throws StartupError with one clear line (nothing is left registered then). Control side.
    void add(size_t vm_index, const VmConfig& vm);
    // Unregisters the socket (a connected guest is detached first). Control side.
    void remove(size_t vm_index);
    // From now on a device that goes away waits for a grace period of the workers (`rcu`) before the
    // library may free it. Before this call no worker runs.
    void attach_workers(rte_rcu_qsbr* rcu);

    bool link_up(size_t vm_index) const { return slots_.slot(vm_index).vid.load(std::memory_order_acquire) >= 0; }
    VhostStatus status(size_t vm_index, bool with_queue_stats) const;
    // Number of VMs registered (both modes) and of those in server mode (each holds a listening socket in
    // the library's poll set of 1,024 descriptors, beside one per connection).
    size_t registered() const;
    size_t server_sockets() const;

    // The library's callbacks (static: C function pointers); they find this object through a global.
    static int on_new_device(int vid);
    static void on_destroy_device(int vid);
    static int on_vring_state_changed(int vid, uint16_t queue_id, int enable);
    static int on_new_connection(int vid);
    static void on_destroy_connection(int vid);

private:
    struct Registered {
        std::string path;
        std::string name;
        bool server = false;
        bool connected = false;
        int vid = -1;             // the connection's device id while connected
        uint64_t enabled_rx = 0;  // host-to-guest vrings enabled (bit q: vring 2q)
    };
    // Requires mutex_. The VM whose socket the device `vid` belongs to, or nullptr.
    std::pair<size_t, Registered*> find_locked(int vid);
    void wait_for_workers();
    void publish_queues_locked(size_t vm_index, const Registered& reg);

    VhostSlots& slots_;
    // Two locks, so no order can deadlock with the library's own queue locks: `mutex_` guards the maps
    // below and is a leaf (nothing is called into the library while it is held; vring_state_changed takes
    // it with the library's queue locks held); `device_mutex_` is held around every library call made
    // with a device id from the control side, and by destroy_device, so the id stays valid meanwhile.
    mutable std::mutex device_mutex_;
    mutable std::mutex mutex_;
    std::map<size_t, Registered> registered_;  // by VM index
    std::map<std::string, size_t> by_path_;
    rte_rcu_qsbr* rcu_ = nullptr;
};

// Server mode creates the socket: make sure its directory exists (creating it, mode 0755, if missing)
// and remove a stale socket left by an earlier run. Throws StartupError when the path cannot be used.
void prepare_vhost_socket(const VmConfig& vm);

}  // namespace portmux
