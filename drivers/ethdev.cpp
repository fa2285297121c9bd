// Probing and configuring DPDK ethdevs.
#include "ethdev.hpp"

#include <fmt/format.h>
#include <rte_bus.h>
#include <rte_dev.h>
#include <rte_errno.h>
#include <rte_ethdev.h>

#include "core/log.hpp"
#include "core/startup_error.hpp"

namespace portmux {
namespace {

constexpr uint16_t kRxDescriptors = 1024;
constexpr uint16_t kTxDescriptors = 1024;

bool find_port(const std::string& devargs, uint16_t* port) {
    // rte_eth_iterator matches a port by the same devargs string it was probed with.
    rte_dev_iterator iterator{};
    if (rte_eth_iterator_init(&iterator, devargs.c_str()) != 0) return false;
    uint16_t id = rte_eth_iterator_next(&iterator);
    if (id == RTE_MAX_ETHPORTS) return false;
    rte_eth_iterator_cleanup(&iterator);
    *port = id;
    return true;
}

}  // namespace

uint16_t probe_ethdev(const std::string& devargs) {
    uint16_t port = 0;
    if (find_port(devargs, &port)) return port;
    int rc = rte_dev_probe(devargs.c_str());
    if (rc != 0) throw StartupError(fmt::format("cannot probe device \"{}\": {}", devargs, rte_strerror(-rc)));
    if (!find_port(devargs, &port))
        throw StartupError(fmt::format("device \"{}\" probed but is not an ethernet port", devargs));
    return port;
}

EthdevLimits query_ethdev(uint16_t eth_port) {
    rte_eth_dev_info info{};
    EthdevLimits limits;
    if (rte_eth_dev_info_get(eth_port, &info) != 0) return limits;
    limits.max_rx_queues = info.max_rx_queues;
    limits.max_tx_queues = info.max_tx_queues;
    limits.rss_offloads = info.flow_type_rss_offloads;
    return limits;
}

bool configure_and_start_ethdev(uint16_t eth_port, const std::string& what, uint16_t rx_queues, uint16_t tx_queues,
                                rte_mempool* pool, bool want_ip4_checksum) {
    rte_eth_conf conf{};
    bool ip4_checksum = false;
    if (want_ip4_checksum) {
        rte_eth_dev_info info{};
        ip4_checksum = rte_eth_dev_info_get(eth_port, &info) == 0 &&
                       (info.rx_offload_capa & RTE_ETH_RX_OFFLOAD_IPV4_CKSUM) != 0;
        if (ip4_checksum) conf.rxmode.offloads |= RTE_ETH_RX_OFFLOAD_IPV4_CKSUM;
    }
    if (rx_queues > 1) {
        EthdevLimits limits = query_ethdev(eth_port);
        conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
        // Fragments hash on addresses only in NICs' default RSS, so every fragment of a datagram reaches
        // the same queue (and worker), which reassembly needs.
        conf.rx_adv_conf.rss_conf.rss_hf =
            (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP) & limits.rss_offloads;
    }
    int rc = rte_eth_dev_configure(eth_port, rx_queues, tx_queues, &conf);
    if (rc != 0)
        throw StartupError(fmt::format("{}: cannot configure {} rx / {} tx queues: {}", what, rx_queues, tx_queues,
                                       rte_strerror(-rc)));
    uint16_t rx_desc = kRxDescriptors, tx_desc = kTxDescriptors;
    rte_eth_dev_adjust_nb_rx_tx_desc(eth_port, &rx_desc, &tx_desc);
    int socket = rte_eth_dev_socket_id(eth_port);
    if (socket < 0) socket = 0;
    for (uint16_t q = 0; q < rx_queues; ++q) {
        rc = rte_eth_rx_queue_setup(eth_port, q, rx_desc, socket, nullptr, pool);
        if (rc != 0) throw StartupError(fmt::format("{}: cannot set up rx queue {}: {}", what, q, rte_strerror(-rc)));
    }
    for (uint16_t q = 0; q < tx_queues; ++q) {
        rc = rte_eth_tx_queue_setup(eth_port, q, tx_desc, socket, nullptr);
        if (rc != 0) throw StartupError(fmt::format("{}: cannot set up tx queue {}: {}", what, q, rte_strerror(-rc)));
    }
    rc = rte_eth_dev_start(eth_port);
    if (rc != 0) throw StartupError(fmt::format("{}: cannot start the port: {}", what, rte_strerror(-rc)));
    return ip4_checksum;
}

void stop_and_close_ethdev(uint16_t eth_port) {
    if (rte_eth_dev_stop(eth_port) != 0) PMX_LOG_WARN("port {}: stop failed", eth_port);
    rte_eth_dev_close(eth_port);
}

}  // namespace portmux
