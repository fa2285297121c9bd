// How many of each kind of owner (and of shared address) one portmux process serves. Every per-VM and
// per-remote table is sized from these at start, so adding one at runtime never allocates on the data path.
#pragma once

#include <cstddef>

namespace portmux {

// VMs on this host: the vhost library's RTE_MAX_VHOST_DEVICE (1,024 devices per process).
inline constexpr size_t kMaxVms = 1024;
// Remote VMs reached over VXLAN (docs/remote-vms.md).
inline constexpr size_t kMaxRemotes = 256;
// Extension: up to this many IPv4 shared addresses besides the first, each with its own range table.
inline constexpr unsigned kMaxExtraSharedIps = 15;

}  // namespace portmux
