// vhost-user VM ports on the vhost library: registration, the device callbacks, status and statistics.
#include "vhost_user.hpp"

#include <cerrno>
#include <cstring>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <fmt/format.h>
#include <rte_rcu_qsbr.h>
#include <rte_vhost.h>

#include "core/log.hpp"
#include "core/startup_error.hpp"

namespace portmux {
namespace {

VhostUserPorts* g_ports = nullptr;

const rte_vhost_device_ops kDeviceOps = {
    .new_device = VhostUserPorts::on_new_device,
    .destroy_device = VhostUserPorts::on_destroy_device,
    .vring_state_changed = VhostUserPorts::on_vring_state_changed,
    .features_changed = nullptr,
    .new_connection = VhostUserPorts::on_new_connection,
    .destroy_connection = VhostUserPorts::on_destroy_connection,
    .guest_notified = nullptr,
    .reserved = {},
};

void make_directories(const std::string& dir, const std::string& what) {
    if (dir.empty() || dir == "/") return;
    struct stat st{};
    if (stat(dir.c_str(), &st) == 0) {
        if (!S_ISDIR(st.st_mode)) throw StartupError(fmt::format("{}: {} is not a directory", what, dir));
        return;
    }
    make_directories(dir.substr(0, dir.find_last_of('/')), what);
    if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
        throw StartupError(fmt::format("{}: cannot create directory {}: {}", what, dir, std::strerror(errno)));
}

bool socket_has_listener(const std::string& path) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) return false;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    bool listening = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    close(fd);
    return listening;
}

std::string ifname_of(int vid) {
    char buf[PATH_MAX];
    if (rte_vhost_get_ifname(vid, buf, sizeof(buf)) != 0) return {};
    return buf;
}

// Queue pairs enabled as a prefix: virtio enables them in order, and a worker picks queue w % count.
uint16_t prefix_count(uint64_t mask) {
    return static_cast<uint16_t>(~mask == 0 ? 64 : __builtin_ctzll(~mask));
}

constexpr uint64_t bit(unsigned feature) { return 1ULL << feature; }

// virtio-net feature bit numbers (virtio 1.1, 5.1.3). Spelled out here because <linux/virtio_net.h> does not
// compile as C++ and DPDK does not export them.
constexpr unsigned kFeatureCsum = 0;       // the guest may send partial checksums
constexpr unsigned kFeatureGuestTso4 = 7;  // the host may send TSO frames to the guest
constexpr unsigned kFeatureGuestTso6 = 8;
constexpr unsigned kFeatureGuestEcn = 9;
constexpr unsigned kFeatureGuestUfo = 10;
constexpr unsigned kFeatureHostTso4 = 11;  // the guest may send TSO frames
constexpr unsigned kFeatureHostTso6 = 12;
constexpr unsigned kFeatureHostEcn = 13;
constexpr unsigned kFeatureHostUfo = 14;

}  // namespace

uint64_t vhost_withheld_features() {
    return bit(kFeatureHostTso6) | bit(kFeatureHostEcn) | bit(kFeatureHostUfo) |
           bit(kFeatureGuestTso4) | bit(kFeatureGuestTso6) | bit(kFeatureGuestEcn) |
           bit(kFeatureGuestUfo);
}

VhostUserPorts::VhostUserPorts(VhostSlots& slots) : slots_(slots) {
    if (g_ports != nullptr) throw StartupError("internal: a second set of vhost-user ports");
    g_ports = this;
}

VhostUserPorts::~VhostUserPorts() {
    std::vector<size_t> vms;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        for (const auto& [vm, reg] : registered_) vms.push_back(vm);
    }
    for (size_t vm : vms) remove(vm);
    g_ports = nullptr;
}

void VhostUserPorts::add(size_t vm_index, const VmConfig& vm) {
    if (vm_index >= kMaxVms) throw StartupError(fmt::format("VM \"{}\": at most {} VMs", vm.name, kMaxVms));
    prepare_vhost_socket(vm);
    const bool server = vm.vhost_mode == VhostMode::kServer;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (by_path_.count(vm.vhost) != 0)
            throw StartupError(fmt::format("VM \"{}\": vhost socket {} is already used by another VM", vm.name, vm.vhost));
        registered_[vm_index] = Registered{vm.vhost, vm.name, server};
        by_path_[vm.vhost] = vm_index;
    }
    const std::string what = fmt::format("VM \"{}\": vhost socket {}", vm.name, vm.vhost);
    // Receive offload flags as the mbuf API defines them (the legacy ones claim transmit offloads), and
    // the library's per-vring statistics for /portmux/vms.
    uint64_t flags = RTE_VHOST_USER_NET_COMPLIANT_OL_FLAGS | RTE_VHOST_USER_NET_STATS_ENABLE;
    if (!server) flags |= RTE_VHOST_USER_CLIENT;  // reconnects by default
    auto undo = [&](const std::string& step, int rc) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            registered_.erase(vm_index);
            by_path_.erase(vm.vhost);
        }
        throw StartupError(fmt::format("{}: {} failed ({})", what, step, rc));
    };
    int rc = rte_vhost_driver_register(vm.vhost.c_str(), flags);
    if (rc != 0) undo(fmt::format("registration (the vhost library holds at most {} sockets)", kMaxVms), rc);
    auto unregister_and_undo = [&](const std::string& step, int code) {
        rte_vhost_driver_unregister(vm.vhost.c_str());
        undo(step, code);
    };
    if ((rc = rte_vhost_driver_disable_features(vm.vhost.c_str(), vhost_withheld_features())) != 0)
        unregister_and_undo("disabling features", rc);
    if ((rc = rte_vhost_driver_callback_register(vm.vhost.c_str(), &kDeviceOps)) != 0)
        unregister_and_undo("registering callbacks", rc);
    slots_.slot(vm_index).configured.store(true, std::memory_order_release);
    if ((rc = rte_vhost_driver_start(vm.vhost.c_str())) != 0) {
        slots_.slot(vm_index).configured.store(false, std::memory_order_release);
        unregister_and_undo(server ? "listening" : "starting", rc);
    }
    slots_.layout_changed();
}

void VhostUserPorts::remove(size_t vm_index) {
    std::string path;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        auto it = registered_.find(vm_index);
        if (it == registered_.end()) return;
        path = it->second.path;
    }
    // Detaches a connected guest first (destroy_device runs from here, and waits for the workers).
    int rc = rte_vhost_driver_unregister(path.c_str());
    if (rc != 0) PMX_LOG_WARN("vhost socket {}: unregister failed ({})", path, rc);
    VhostSlot& slot = slots_.slot(vm_index);
    slot.configured.store(false, std::memory_order_release);
    slot.vid.store(-1, std::memory_order_release);
    slot.tx_queues.store(0, std::memory_order_release);
    slot.rx_queue_mask.store(0, std::memory_order_release);
    slots_.layout_changed();
    wait_for_workers();
    std::lock_guard<std::mutex> lock(mutex_);
    registered_.erase(vm_index);
    by_path_.erase(path);
}

void VhostUserPorts::attach_workers(rte_rcu_qsbr* rcu) {
    std::lock_guard<std::mutex> lock(mutex_);
    rcu_ = rcu;
}

void VhostUserPorts::wait_for_workers() {
    rte_rcu_qsbr* rcu;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        rcu = rcu_;
    }
    // Workers report a quiescent state once per loop iteration, after which they hold no vid from before.
    if (rcu != nullptr) rte_rcu_qsbr_synchronize(rcu, RTE_QSBR_THRID_INVALID);
}

std::pair<size_t, VhostUserPorts::Registered*> VhostUserPorts::find_locked(int vid) {
    auto path = by_path_.find(ifname_of(vid));
    if (path == by_path_.end()) return {0, nullptr};
    return {path->second, &registered_.at(path->second)};
}

void VhostUserPorts::publish_queues_locked(size_t vm_index, const Registered& reg) {
    VhostSlot& slot = slots_.slot(vm_index);
    slot.tx_queues.store(std::min<uint16_t>(prefix_count(reg.enabled_rx), kMaxGuestQueuePairs),
                         std::memory_order_release);
    slots_.layout_changed();
}

size_t VhostUserPorts::registered() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return registered_.size();
}

size_t VhostUserPorts::server_sockets() const {
    std::lock_guard<std::mutex> lock(mutex_);
    size_t n = 0;
    for (const auto& [vm, reg] : registered_) n += reg.server ? 1 : 0;
    return n;
}

int VhostUserPorts::on_new_connection(int vid) {
    VhostUserPorts* self = g_ports;
    if (self == nullptr) return -1;
    std::lock_guard<std::mutex> lock(self->mutex_);
    auto [vm, reg] = self->find_locked(vid);
    if (reg == nullptr) return -1;  // a socket portmux did not register: refuse the connection
    reg->connected = true;
    reg->vid = vid;
    reg->enabled_rx = 0;
    self->slots_.slot(vm).rx_queue_mask.store(0, std::memory_order_release);
    self->slots_.slot(vm).tx_queues.store(0, std::memory_order_release);
    PMX_LOG_INFO("VM \"{}\": vhost-user connection on {}", reg->name, reg->path);
    return 0;
}

void VhostUserPorts::on_destroy_connection(int vid) {
    VhostUserPorts* self = g_ports;
    if (self == nullptr) return;
    std::lock_guard<std::mutex> lock(self->mutex_);
    auto [vm, reg] = self->find_locked(vid);
    if (reg == nullptr) return;
    reg->connected = false;
    reg->vid = -1;
    PMX_LOG_INFO("VM \"{}\": vhost-user connection closed", reg->name);
}

int VhostUserPorts::on_new_device(int vid) {
    VhostUserPorts* self = g_ports;
    if (self == nullptr) return -1;
    std::lock_guard<std::mutex> device_lock(self->device_mutex_);
    const uint16_t vrings = rte_vhost_get_vring_num(vid);
    // portmux polls: the guest need not kick (notify) the host for every frame it queues.
    for (uint16_t q = 0; q < vrings; ++q) rte_vhost_enable_guest_notification(vid, q, 0);
    uint64_t features = 0;
    rte_vhost_get_negotiated_features(vid, &features);
    const uint16_t pairs = static_cast<uint16_t>(vrings / 2);
    std::lock_guard<std::mutex> lock(self->mutex_);
    auto [vm, reg] = self->find_locked(vid);
    if (reg == nullptr) return -1;
    if (pairs > kMaxGuestQueuePairs)
        PMX_LOG_WARN("VM \"{}\": the guest has {} queue pairs, portmux uses the first {}", reg->name, pairs,
                     kMaxGuestQueuePairs);
    VhostSlot& slot = self->slots_.slot(vm);
    self->publish_queues_locked(vm, *reg);
    slot.vid.store(vid, std::memory_order_release);
    self->slots_.layout_changed();
    PMX_LOG_INFO("VM \"{}\": guest ready, {} queue pair(s), checksum offload {}, TSO {}", reg->name, pairs,
                 (features & bit(kFeatureCsum)) ? "on" : "off",
                 (features & bit(kFeatureHostTso4)) ? "on" : "off");
    return 0;
}

void VhostUserPorts::on_destroy_device(int vid) {
    VhostUserPorts* self = g_ports;
    if (self == nullptr) return;
    {
        std::lock_guard<std::mutex> device_lock(self->device_mutex_);
        std::lock_guard<std::mutex> lock(self->mutex_);
        auto [vm, reg] = self->find_locked(vid);
        if (reg == nullptr) return;
        VhostSlot& slot = self->slots_.slot(vm);
        slot.vid.store(-1, std::memory_order_release);
        slot.tx_queues.store(0, std::memory_order_release);
        self->slots_.layout_changed();
        PMX_LOG_INFO("VM \"{}\": guest gone", reg->name);
    }
    // The library frees the device's rings when this returns: no worker may still be inside a burst on it.
    self->wait_for_workers();
}

int VhostUserPorts::on_vring_state_changed(int vid, uint16_t queue_id, int enable) {
    VhostUserPorts* self = g_ports;
    if (self == nullptr) return 0;
    // Called with the library's queue locks held: record and return, never wait here.
    std::lock_guard<std::mutex> lock(self->mutex_);
    auto [vm, reg] = self->find_locked(vid);
    if (reg == nullptr) return 0;
    const unsigned pair = queue_id / 2;
    if (pair >= kMaxGuestQueuePairs) return 0;
    VhostSlot& slot = self->slots_.slot(vm);
    if (queue_id % 2 == 0) {
        reg->enabled_rx = enable ? (reg->enabled_rx | bit(pair)) : (reg->enabled_rx & ~bit(pair));
    } else {
        uint64_t mask = slot.rx_queue_mask.load(std::memory_order_relaxed);
        slot.rx_queue_mask.store(enable ? (mask | bit(pair)) : (mask & ~bit(pair)), std::memory_order_release);
    }
    self->publish_queues_locked(vm, *reg);
    return 0;
}

VhostStatus VhostUserPorts::status(size_t vm_index, bool with_queue_stats) const {
    VhostStatus status;
    std::lock_guard<std::mutex> device_lock(device_mutex_);
    {
        std::lock_guard<std::mutex> lock(mutex_);
        auto it = registered_.find(vm_index);
        if (it == registered_.end()) return status;
        status.registered = true;
        status.connected = it->second.connected;
    }
    const VhostSlot& slot = slots_.slot(vm_index);
    const int vid = slot.vid.load(std::memory_order_acquire);
    status.running = vid >= 0;
    status.tx_queues = slot.tx_queues.load(std::memory_order_acquire);
    status.rx_queue_mask = slot.rx_queue_mask.load(std::memory_order_acquire);
    if (!status.running) return status;
    // destroy_device takes device_mutex_ before the library frees the device: `vid` stays valid here.
    const unsigned vrings = rte_vhost_get_vring_num(vid);
    status.queue_pairs = static_cast<uint16_t>(vrings / 2);
    rte_vhost_get_negotiated_features(vid, &status.features);
    if (!with_queue_stats) return status;
    for (unsigned q = 0; q < std::min(vrings, 2u * kMaxGuestQueuePairs); ++q) {
        int n = rte_vhost_vring_stats_get_names(vid, static_cast<uint16_t>(q), nullptr, 0);
        if (n <= 0) continue;
        std::vector<rte_vhost_stat_name> names(static_cast<size_t>(n));
        std::vector<rte_vhost_stat> values(static_cast<size_t>(n));
        if (rte_vhost_vring_stats_get_names(vid, static_cast<uint16_t>(q), names.data(), n) != n) continue;
        int got = rte_vhost_vring_stats_get(vid, static_cast<uint16_t>(q), values.data(), n);
        if (got <= 0) continue;
        VhostQueueStats stats;
        stats.vring = static_cast<uint16_t>(q);
        for (int i = 0; i < got && i < n; ++i)
            if (values[i].id < static_cast<uint64_t>(n)) stats.values.emplace_back(names[values[i].id].name, values[i].value);
        status.queues.push_back(std::move(stats));
    }
    return status;
}

void prepare_vhost_socket(const VmConfig& vm) {
    std::string what = fmt::format("VM \"{}\": vhost socket {}", vm.name, vm.vhost);
    if (vm.vhost.size() >= sizeof(sockaddr_un{}.sun_path))
        throw StartupError(fmt::format("{}: path longer than {} bytes", what, sizeof(sockaddr_un{}.sun_path) - 1));
    if (vm.vhost_mode != VhostMode::kServer) return;
    std::string dir = vm.vhost.substr(0, vm.vhost.find_last_of('/'));
    make_directories(dir, what);
    if (access(dir.empty() ? "/" : dir.c_str(), W_OK) != 0)
        throw StartupError(fmt::format("{}: directory {} is not writable: {}", what, dir, std::strerror(errno)));
    struct stat st{};
    if (lstat(vm.vhost.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) throw StartupError(fmt::format("{}: exists and is not a socket", what));
        if (socket_has_listener(vm.vhost))
            throw StartupError(fmt::format("{}: another process is listening on it", what));
        unlink(vm.vhost.c_str());  // left by an earlier run that did not clean up
    }
}

}  // namespace portmux
