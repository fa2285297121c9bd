// Building snapshots from the running configuration.
#include "control/switch_state.hpp"

#include <cstring>

#include <fmt/format.h>
#include <rte_lcore.h>

#include "core/port_index.hpp"
#include "core/startup_error.hpp"

namespace portmux {
namespace {

SharedAddresses shared_addresses(const Config& config) {
    SharedAddresses shared;
    std::memcpy(&shared.ip4, config.shared_ip.bytes.data(), 4);
    if (config.shared_ip6) {
        shared.has_ip6 = true;
        std::memcpy(shared.ip6, config.shared_ip6->bytes.data(), 16);
    }
    return shared;
}

}  // namespace

SwitchState::SwitchState(Config config, SnapshotPublisher& publisher)
    : config_(std::move(config)), vm_count_(config_.vms.size()), publisher_(publisher) {
    // The configuration was validated: no range overlaps another.
    for (const PortRange& range : config_.host.ranges) registry_.add(range, kHostOwner);
    for (size_t i = 0; i < config_.vms.size(); ++i)
        for (const PortRange& range : config_.vms[i].ranges) registry_.add(range, vm_owner_id(i));
}

void SwitchState::publish_initial() {
    std::lock_guard<std::mutex> guard(mutex_);
    auto firewall = Firewall::build(config_.firewall, fmt::format("pmx_fw_g{}", generation_ + 1),
                                    static_cast<int>(rte_socket_id()));
    if (!firewall) throw StartupError(fmt::format("firewall: {}", firewall.error()));
    firewall_ = firewall.value();
    publisher_.publish(build_snapshot_locked());
}

std::unique_ptr<Snapshot> SwitchState::build_snapshot_locked() {
    auto snap = std::make_unique<Snapshot>();
    snap->generation = ++generation_;
    snap->shared = shared_addresses(config_);
    snap->unmatched = config_.unmatched;
    snap->firewall = firewall_;
    snap->table = std::make_unique<PortOwnerTable>();
    registry_.fill(*snap->table);
    snap->owners.resize(kFirstVmOwner + config_.vms.size());
    snap->owners[kHostOwner].kind = OwnerKind::kHost;
    snap->owners[kHostOwner].port = kHostPortIndex;
    for (size_t i = 0; i < config_.vms.size(); ++i) {
        OwnerTarget& target = snap->owners[vm_owner_id(i)];
        target.kind = OwnerKind::kVm;
        target.enabled = config_.vms[i].enabled;
        target.port = vm_port_index(i);
        target.mac = config_.vms[i].mac;
    }
    return snap;
}

Config SwitchState::running_config() const {
    std::lock_guard<std::mutex> guard(mutex_);
    Config config = config_;
    config.host.ranges.clear();
    for (VmConfig& vm : config.vms) vm.ranges.clear();
    for (const OwnedRange& owned : registry_.list()) {
        if (owned.owner == kHostOwner)
            config.host.ranges.push_back(owned.range);
        else if (owned.owner >= kFirstVmOwner && static_cast<size_t>(owned.owner - kFirstVmOwner) < config.vms.size())
            config.vms[owned.owner - kFirstVmOwner].ranges.push_back(owned.range);
    }
    return config;
}

uint64_t SwitchState::generation() const {
    std::lock_guard<std::mutex> guard(mutex_);
    return generation_;
}

}  // namespace portmux
