// Opening every port from the configuration, sizing the mbuf pools, and planning the workers' queues.
#include "port_set.hpp"

#include <algorithm>

#include <fmt/format.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include "core/log.hpp"
#include "core/startup_error.hpp"
#include "ethdev.hpp"
#include "vhost_user.hpp"

namespace portmux {
namespace {

constexpr unsigned kDescriptorsPerQueue = 1024;
constexpr unsigned kMempoolCache = 256;
constexpr unsigned kHandoffRingSize = 1024;
// Fragments held for reassembly per worker, plus copies and answers in flight.
constexpr unsigned kPerWorkerSpare = 4096 * 2 + 4 * kBurstSize;
// vhost-user VMs hold no descriptors of portmux's pool (the library copies into the guests' buffers);
// per worker, a dequeued burst, a guest's TSO frame (64 KiB in 2 KiB mbufs) and its segments' headers
// are in flight at once.
constexpr unsigned kPerWorkerVhost = 4 * kBurstSize + 2 * 33 + 2 * kMaxGuestSegments;

std::string port_label(const Port& port) {
    return port.role == PortRole::kVm ? fmt::format("VM \"{}\"", port.name) : port.name;
}

}  // namespace

PortSet::PortSet(const Config& config, unsigned workers)
    : workers_(std::max(1u, workers)), vhost_slots_(std::make_unique<VhostSlots>()) {
    vhost_ports_ = std::make_unique<VhostUserPorts>(*vhost_slots_);
    // Room for every VM index up front: uplink() hands out a reference that must survive VMs added later.
    ports_.reserve(kFirstVmPortIndex + kMaxVms);
    Port uplink;
    uplink.name = "uplink";
    uplink.role = PortRole::kUplink;
    uplink.devargs = config.uplink.device;
    ports_.push_back(uplink);

    Port host;
    host.name = "host";
    host.role = PortRole::kHost;
    host.devargs = config.host.device;
    host.owner = kHostOwner;
    ports_.push_back(host);

    for (size_t i = 0; i < config.vms.size(); ++i) {
        const VmConfig& vm = config.vms[i];
        Port port;
        port.name = vm.name;
        port.role = PortRole::kVm;
        port.owner = vm_owner_id(i);
        port.mac = vm.mac;
        port.is_vhost = !vm.vhost.empty();
        port.vhost_path = vm.vhost;
        port.vhost_mode = vm.vhost_mode;
        if (!port.is_vhost) port.devargs = vm.device;
        ports_.push_back(port);
    }
    for (size_t i = 0; i < ports_.size(); ++i) ports_[i].index = static_cast<uint16_t>(i);
    if (config.vms.size() > kMaxVms)
        throw StartupError(fmt::format("{} VMs configured, at most {}", config.vms.size(), kMaxVms));
    // `device` VMs are ethdevs, and DPDK is built with a fixed number of them (32 in Debian's build): say
    // so plainly instead of letting a probe fail with "Cannot allocate memory". vhost-user VMs are not.
    const size_t ethdevs = static_cast<size_t>(std::count_if(ports_.begin(), ports_.end(),
                                                             [](const Port& p) { return !p.is_vhost; }));
    if (ethdevs > RTE_MAX_ETHPORTS)
        throw StartupError(fmt::format("{} VMs with a \"device\", but this DPDK build has room for {} ethdev ports: "
                                       "the uplink, the host and at most {} device VMs (RTE_MAX_ETHPORTS); "
                                       "vhost-user VMs do not count",
                                       ethdevs - 2, RTE_MAX_ETHPORTS, RTE_MAX_ETHPORTS - 2));

    // A vhost socket that cannot be made is a configuration mistake: say so before any device starts.
    for (const VmConfig& vm : config.vms)
        if (!vm.vhost.empty()) prepare_vhost_socket(vm);

    try {
        // Probe every ethdev first: queue counts depend on what each device supports, and the pool size on
        // the queue counts.
        for (Port& port : ports_) {
            if (port.is_vhost) continue;
            try {
                port.eth_port = probe_ethdev(port.devargs);
            } catch (const StartupError& e) {
                throw StartupError(fmt::format("{}: {}", port_label(port), e.what()));
            }
            for (const Port& other : ports_)
                if (other.probed && !other.is_vhost && other.eth_port == port.eth_port)
                    throw StartupError(fmt::format("{}: device \"{}\" is already used by {}", port_label(port),
                                                   port.devargs, port_label(other)));
            port.probed = true;
            EthdevLimits limits = query_ethdev(port.eth_port);
            bool rss = port.role == PortRole::kUplink && workers_ > 1 && limits.max_rx_queues >= workers_;
            port.rx_queues = static_cast<uint16_t>(rss ? workers_ : 1);
            // A tx queue per worker when the device has enough.
            bool per_worker_tx = limits.max_tx_queues >= workers_;
            port.tx_queues = static_cast<uint16_t>(per_worker_tx ? workers_ : 1);
        }

        unsigned mbufs = 0;
        for (const Port& port : ports_) {
            if (port.is_vhost) continue;
            mbufs += (port.rx_queues + port.tx_queues) * kDescriptorsPerQueue;
            if (port.tx_queues < workers_) mbufs += (workers_ - 1) * kHandoffRingSize;
        }
        // Each worker may buffer a burst per ethdev it wrote to in one iteration. Frames buffered for VMs came
        // from rx queues counted above; flooded copies to VMs are sent at once (Worker::flood), so neither
        // grows with the number of VMs.
        mbufs += workers_ * (kPerWorkerSpare + kPerWorkerVhost + static_cast<unsigned>(ethdevs) * kBurstSize);
        mbufs += rte_lcore_count() * kMempoolCache * 2;
        int socket = static_cast<int>(rte_socket_id());
        pool_ = rte_pktmbuf_pool_create("pmx_mbufs", mbufs, kMempoolCache, 0, RTE_MBUF_DEFAULT_BUF_SIZE, socket);
        if (pool_ == nullptr)
            throw StartupError(fmt::format("cannot allocate {} mbufs: {} (reserve more hugepages, or give the EAL "
                                           "more memory with -m)",
                                           mbufs, rte_strerror(rte_errno)));
        indirect_pool_ = rte_pktmbuf_pool_create("pmx_indirect", 8192, kMempoolCache, 0, 0, socket);
        if (indirect_pool_ == nullptr)
            throw StartupError(fmt::format("cannot allocate indirect mbufs: {}", rte_strerror(rte_errno)));
        PMX_LOG_INFO("mbuf pool: {} mbufs of {} bytes", mbufs, RTE_MBUF_DEFAULT_BUF_SIZE);

        // The uplink keeps its own MAC unless the configuration sets one; the host port always carries the
        // uplink's MAC, so the host's own frames and its ARP answers leave the uplink unchanged.
        Port& up = ports_[kUplinkPortIndex];
        if (config.uplink.mac) {
            rte_ether_addr mac;
            std::copy(config.uplink.mac->bytes.begin(), config.uplink.mac->bytes.end(), mac.addr_bytes);
            int rc = rte_eth_dev_default_mac_addr_set(up.eth_port, &mac);
            // A device that cannot change its MAC (a capture file, some virtual devices) still works: portmux
            // writes the configured MAC into every frame it sends, and the peer learns it from them.
            if (rc == -ENOTSUP)
                PMX_LOG_WARN("uplink: the device cannot change its MAC; frames are sent from {} anyway",
                             config.uplink.mac->to_string());
            else if (rc != 0)
                throw StartupError(fmt::format("uplink: cannot set MAC {}: {}", config.uplink.mac->to_string(),
                                               rte_strerror(-rc)));
            up.mac = *config.uplink.mac;
        } else {
            rte_ether_addr device_mac;
            rte_eth_macaddr_get(up.eth_port, &device_mac);
            std::copy(std::begin(device_mac.addr_bytes), std::end(device_mac.addr_bytes), up.mac.bytes.begin());
        }
        rte_ether_addr up_mac;
        std::copy(up.mac.bytes.begin(), up.mac.bytes.end(), up_mac.addr_bytes);
        Port& host_port = ports_[kHostPortIndex];
        int rc = rte_eth_dev_default_mac_addr_set(host_port.eth_port, &up_mac);
        if (rc != 0 && rc != -ENOTSUP)
            PMX_LOG_WARN("host port: cannot give it the uplink MAC {}: {}", up.mac.to_string(), rte_strerror(-rc));
        host_port.mac = up.mac;

        for (Port& port : ports_)
            if (!port.is_vhost) open_port(port);
        for (size_t i = 0; i < config.vms.size(); ++i)
            if (!config.vms[i].vhost.empty()) vhost_ports_->add(i, config.vms[i]);
        const size_t vhost_vms = vhost_ports_->registered();
        if (vhost_vms != 0) {
            // The library polls its sockets with one set of 1,024 descriptors: a listening socket per
            // server-mode VM and one per connection. Beyond that a guest cannot connect; say so at start.
            const size_t worst = vhost_ports_->server_sockets() + vhost_vms + 1;
            if (worst > kMaxVms)
                PMX_LOG_WARN("{} vhost-user VMs ({} in server mode): at most {} of them can be connected at once "
                             "(the vhost library polls 1,024 descriptors; server mode uses one more per VM)",
                             vhost_vms, vhost_ports_->server_sockets(), kMaxVms - 1 - vhost_ports_->server_sockets());
            PMX_LOG_INFO("{} vhost-user VM port(s) registered", vhost_vms);
        }
        // The uplink must see broadcast and multicast (ARP, neighbour discovery).
        rte_eth_allmulticast_enable(up.eth_port);
    } catch (...) {
        close();
        throw;
    }
}

PortSet::~PortSet() {
    close();
    vhost_ports_.reset();
    for (rte_ring* ring : rings_) rte_ring_free(ring);
    rte_mempool_free(indirect_pool_);
    rte_mempool_free(pool_);
}

void PortSet::open_port(Port& port) {
    // Only the uplink's IPv4 headers are verified on arrival (the host's frames are forwarded unread).
    port.rx_checks_ip4_checksum = configure_and_start_ethdev(port.eth_port, port_label(port), port.rx_queues,
                                                             port.tx_queues, pool_, port.role == PortRole::kUplink);
    PMX_LOG_INFO("{}: port {} ({}), {} rx / {} tx queues{}", port_label(port), port.eth_port, port.devargs,
                 port.rx_queues, port.tx_queues,
                 port.rx_checks_ip4_checksum ? ", IPv4 header checksums checked by the NIC" : "");
}

std::vector<WorkerSetup> PortSet::plan_workers() {
    std::vector<WorkerSetup> setups(workers_);
    for (unsigned w = 0; w < workers_; ++w) {
        setups[w].worker_id = w;
        // Every VM slot has a route, so a VM added at runtime needs no new plan; slots default to vhost.
        setups[w].tx.resize(kFirstVmPortIndex + kMaxVms);
    }
    unsigned next_worker = 0;
    for (const Port& port : ports_) {
        if (port.is_vhost) continue;
        unsigned rx_owner = next_worker;
        if (port.rx_queues == workers_ && workers_ > 1) {
            for (unsigned q = 0; q < port.rx_queues; ++q)
                setups[q].rx.push_back({port.index, port.eth_port, static_cast<uint16_t>(q)});
            rx_owner = 0;
        } else {
            setups[rx_owner].rx.push_back({port.index, port.eth_port, 0});
            next_worker = (next_worker + 1) % workers_;
        }
        for (unsigned w = 0; w < workers_; ++w) {
            TxRoute& route = setups[w].tx[port.index];
            route.eth_port = port.eth_port;
            route.kind = TxKind::kEthdev;
            if (port.tx_queues == workers_) {
                route.queue = static_cast<uint16_t>(w);
            } else if (w == rx_owner) {
                route.queue = 0;
            } else {
                std::string name = fmt::format("pmx_h{}_{}", w, port.index);
                rte_ring* ring = rte_ring_create(name.c_str(), kHandoffRingSize, static_cast<int>(rte_socket_id()),
                                                 RING_F_SP_ENQ | RING_F_SC_DEQ);
                if (ring == nullptr)
                    throw StartupError(fmt::format("cannot create handoff ring {}: {}", name, rte_strerror(rte_errno)));
                rings_.push_back(ring);
                route.kind = TxKind::kHandoff;
                route.handoff = ring;
                setups[rx_owner].handoff_in.push_back({ring, port.index});
            }
        }
    }
    return setups;
}

namespace {

Port vhost_vm_port(size_t vm_index, const VmConfig& vm) {
    Port port;
    port.name = vm.name;
    port.role = PortRole::kVm;
    port.index = vm_port_index(vm_index);
    port.owner = vm_owner_id(vm_index);
    port.mac = vm.mac;
    port.is_vhost = true;
    port.vhost_path = vm.vhost;
    port.vhost_mode = vm.vhost_mode;
    return port;
}

}  // namespace

std::vector<Port> PortSet::ports() const {
    std::lock_guard<std::mutex> lock(ports_mutex_);
    return ports_;
}

std::string PortSet::add_vhost_vm(size_t vm_index, const VmConfig& vm) {
    if (vm_index >= kMaxVms) return fmt::format("too many VMs (at most {})", kMaxVms);
    try {
        prepare_vhost_socket(vm);
        vhost_ports_->add(vm_index, vm);
    } catch (const StartupError& e) {
        return e.what();
    }
    std::lock_guard<std::mutex> lock(ports_mutex_);
    const size_t index = vm_port_index(vm_index);
    if (ports_.size() <= index) {
        ports_.resize(index + 1);
        for (size_t i = 0; i < ports_.size(); ++i) ports_[i].index = static_cast<uint16_t>(i);
    }
    ports_[index] = vhost_vm_port(vm_index, vm);
    return "";
}

void PortSet::remove_vhost_vm(size_t vm_index) {
    vhost_ports_->remove(vm_index);
    std::lock_guard<std::mutex> lock(ports_mutex_);
    const size_t index = vm_port_index(vm_index);
    if (index < ports_.size()) {
        ports_[index] = Port{};
        ports_[index].index = static_cast<uint16_t>(index);
    }
}

bool PortSet::link_up(uint16_t index) const {
    Port port;
    {
        std::lock_guard<std::mutex> lock(ports_mutex_);
        if (index >= ports_.size() || ports_[index].name.empty()) return false;
        port = ports_[index];
    }
    if (port.is_vhost) return vhost_ports_->link_up(index - kFirstVmPortIndex);
    rte_eth_link link{};
    if (rte_eth_link_get_nowait(port.eth_port, &link) != 0) return false;
    return link.link_status == RTE_ETH_LINK_UP;
}

void PortSet::close() {
    if (closed_) return;
    closed_ = true;
    // vhost-user sockets first: their guests are detached before the pool they were served from goes.
    if (vhost_ports_)
        for (const Port& port : ports())
            if (port.is_vhost) vhost_ports_->remove(port.index - kFirstVmPortIndex);
    for (const Port& port : ports_)
        if (port.probed) stop_and_close_ethdev(port.eth_port);
}

}  // namespace portmux
