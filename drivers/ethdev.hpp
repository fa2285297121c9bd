// Probing and configuring DPDK ethdevs, whatever their driver (PCI NIC, VF, net_vhost, net_tap, net_pcap...).
#pragma once

#include <cstdint>
#include <string>

struct rte_mempool;

namespace portmux {

struct EthdevLimits {
    uint16_t max_rx_queues = 1;
    uint16_t max_tx_queues = 1;
    uint64_t rss_offloads = 0;
};

// Probes `devargs` (a PCI address or a vdev string) and returns the port id it created; a device that
// is already probed is found instead. Throws StartupError with the reason.
uint16_t probe_ethdev(const std::string& devargs);
EthdevLimits query_ethdev(uint16_t eth_port);
// Configures `rx_queues`/`tx_queues` (RSS over IP/TCP/UDP when rx_queues > 1), sets up the queues with
// mbufs from `pool` and starts the port. With `want_ip4_checksum`, asks for RTE_ETH_RX_OFFLOAD_IPV4_CKSUM
// when the device offers it; returns whether it was enabled (the mbufs' RX_IP_CKSUM flags then mean
// something). Throws StartupError naming `what` on failure.
bool configure_and_start_ethdev(uint16_t eth_port, const std::string& what, uint16_t rx_queues, uint16_t tx_queues,
                                rte_mempool* pool, bool want_ip4_checksum = false);
// Stops and closes the port; a pcap port flushes its files here. Never throws.
void stop_and_close_ethdev(uint16_t eth_port);

}  // namespace portmux
