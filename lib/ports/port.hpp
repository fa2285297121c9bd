// A switch port as the rest of portmux sees it: an ethdev with a role, a dense index and its queues.
#pragma once

#include <cstdint>
#include <string>

#include "config/config.hpp"
#include "core/net_types.hpp"
#include "core/owner_id.hpp"
#include "core/port_index.hpp"

namespace portmux {

struct Port {
    std::string name;     // "uplink", "host" or the VM's name
    std::string devargs;  // what was probed
    PortRole role = PortRole::kVm;
    uint16_t index = 0;     // dense index
    uint16_t eth_port = 0;  // DPDK port id
    uint16_t rx_queues = 1;
    uint16_t tx_queues = 1;
    OwnerId owner = kNoOwner;  // the VM's or the host's owner id
    MacAddr mac{};             // uplink/host: the MAC in use; VM: the VM's own MAC
    bool probed = false;  // eth_port is valid
    bool is_vhost = false;
    bool rx_checks_ip4_checksum = false;  // uplink: RTE_ETH_RX_OFFLOAD_IPV4_CKSUM is enabled
    std::string vhost_path;  // for vhost-user ports
    VhostMode vhost_mode = VhostMode::kClient;
};

}  // namespace portmux
