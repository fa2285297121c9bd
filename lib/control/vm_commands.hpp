// The per-VM commands that need more than SwitchState: /portmux/vms (the vhost library's view of each VM
// beside the counters) and /portmux/vm/add, /portmux/vm/del (a VM's socket comes and goes with it).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "control/telemetry.hpp"

namespace portmux {

// VMs per /portmux/vms page: each object carries ~30 keys (~450 bytes), and telemetry answers at most 16 KiB.
inline constexpr size_t kVmPageSize = 20;
// Queue pairs whose library statistics /portmux/vms,VM reports (two vrings each, two values per vring):
// telemetry holds at most 256 entries in one object.
inline constexpr size_t kMaxReportedQueuePairs = 16;

nlohmann::json cmd_vms(const ControlContext& ctx, const std::string& params);
nlohmann::json cmd_vm_add(const ControlContext& ctx, const std::string& params);
nlohmann::json cmd_vm_del(const ControlContext& ctx, const std::string& params);

}  // namespace portmux
