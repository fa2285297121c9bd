// vhost-user ports through DPDK's net_vhost driver: every VM port stays an ordinary ethdev.
#pragma once

#include <string>

#include "config/config.hpp"

namespace portmux {

// The net_vhost devargs for `vm`: "net_vhost_<name>,iface=<socket>,queues=1[,client=1]". In client mode
// (the default) the driver connects to QEMU's socket and reconnects whenever either side restarts.
std::string vhost_devargs(const VmConfig& vm);

// Server mode creates the socket: make sure its directory exists (creating it, mode 0755, if missing)
// and remove a stale socket left by an earlier run. Throws StartupError when the path cannot be used.
void prepare_vhost_socket(const VmConfig& vm);

}  // namespace portmux
