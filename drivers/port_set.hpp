// All of portmux's ports: probed, configured and started from the configuration, and the plan of which
// worker polls and transmits on which queue.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "pipeline/worker.hpp"
#include "ports/port.hpp"
#include "ports/vhost_slots.hpp"
#include "vhost_user.hpp"

struct rte_mempool;
struct rte_ring;

namespace portmux {

class PortSet {
public:
    // Probes the uplink, the host port and every `device` VM, registers every vhost-user VM's socket with
    // the vhost library, creates the mbuf pools sized for them and starts the ethdevs with queues for
    // `workers` workers. Throws StartupError with one clear line on failure
    // (ports opened so far are closed again). Control side, once.
    PortSet(const Config& config, unsigned workers);
    ~PortSet();
    PortSet(const PortSet&) = delete;
    PortSet& operator=(const PortSet&) = delete;

    // Every port by dense index, as now (a copy: VMs come and go at runtime). A removed VM's index is a Port
    // with an empty name until a VM takes it again. Any thread.
    std::vector<Port> ports() const;
    const Port& uplink() const { return ports_[kUplinkPortIndex]; }  // never changes after start
    // A vhost-user VM added at runtime as VM `vm_index`: its socket is checked, registered and started.
    // Answers an error message (empty: added); nothing is left registered on failure. Control side.
    std::string add_vhost_vm(size_t vm_index, const VmConfig& vm);
    // Unregisters VM `vm_index`'s socket (its guest is detached first) and frees the index. Control side.
    void remove_vhost_vm(size_t vm_index);
    rte_mempool* pool() const { return pool_; }
    rte_mempool* indirect_pool() const { return indirect_pool_; }
    VhostSlots& vhost_slots() { return *vhost_slots_; }
    const VhostUserPorts& vhost_ports() const { return *vhost_ports_; }
    VhostUserPorts& vhost_ports() { return *vhost_ports_; }

    // Which worker polls which ethdev rx queue and how each worker reaches each port's tx queues. The
    // uplink's rx queues (RSS) go one per worker; every other ethdev's single rx queue goes round-robin. An
    // ethdev with fewer tx queues than workers is transmitted by the worker that polls it; the others hand
    // it packets through single-producer/single-consumer rings created here. vhost-user VMs are not in the
    // plan: the workers poll them from VhostSlots (every VM slot's route defaults to vhost).
    std::vector<WorkerSetup> plan_workers();

    // Current link state of a port (vhost-user: a guest is connected and ready). Control side.
    bool link_up(uint16_t index) const;

    // Stops and closes every port (pcap files are flushed). Idempotent; the destructor calls it.
    void close();

private:
    void open_port(Port& port);

    unsigned workers_;
    // Guards ports_ once the constructor returned: VM entries change at runtime (the uplink and host
    // entries, and device VMs, never do).
    mutable std::mutex ports_mutex_;
    std::vector<Port> ports_;
    std::unique_ptr<VhostSlots> vhost_slots_;
    std::unique_ptr<VhostUserPorts> vhost_ports_;

    std::vector<rte_ring*> rings_;
    rte_mempool* pool_ = nullptr;
    rte_mempool* indirect_pool_ = nullptr;
    bool closed_ = false;
};

}  // namespace portmux
