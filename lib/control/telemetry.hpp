// The /portmux/* commands on DPDK's telemetry socket.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "control/stats.hpp"
#include "control/switch_state.hpp"
#include "core/worker_counters.hpp"
#include "ports/port.hpp"
#include "ports/vhost_status.hpp"

struct rte_mempool;

namespace portmux {

class ConnectionTable;
class VmCapture;

// What the commands read; filled by the application before register_telemetry() and never changed after.
struct ControlContext {
    SwitchState* state = nullptr;
    std::vector<Port> ports;                 // by dense index, as at start (VMs added later are not in it)
    std::function<bool(uint16_t)> link_up;   // by dense index
    // vhost-user VMs (drivers/vhost_user.hpp): a VM's state from the vhost library, by VM index (null: none).
    std::function<VhostStatus(size_t vm_index, bool with_queue_stats)> vhost_status;
    // /portmux/vm/add and /portmux/vm/del: register or unregister a VM's socket (null: the commands refuse).
    std::function<std::string(size_t vm_index, const VmConfig& vm)> attach_vm;
    std::function<void(size_t vm_index)> detach_vm;
    // A VM index taken again starts its counters from zero (the workers' counters only grow).
    std::shared_ptr<PortCounterBaselines> baselines = std::make_shared<PortCounterBaselines>();
    std::vector<const WorkerCounters*> counters;
    std::vector<unsigned> worker_lcores;
    unsigned main_lcore = 0;
    std::string config_file;
    std::chrono::steady_clock::time_point started;
    bool read_only = false;  // mutating commands are not registered (and refused if reached)
    const rte_mempool* pool = nullptr;  // the packet mbuf pool, for its free count
    std::vector<const ConnectionTable*> connections;  // by worker, for /portmux/groups (flows in the tables)
    VmCapture* capture = nullptr;  // /portmux/capture/* (null: captures unavailable); synchronises itself
};

// Registers every command of command_table() (only the read-only ones when context->read_only).
// Telemetry runs callbacks on its own threads (up to one per connection), so every command only reads
// `context` or goes through SwitchState, which serialises changes. `context` lives until the process ends.
void register_telemetry(const ControlContext* context);
// Stops serving the commands (they answer an error from now on) and returns once none is running, so the
// objects the context points to can be destroyed. Control side, at shutdown.
void quiesce_telemetry();

}  // namespace portmux
