// Changes to the running configuration, each published as one new snapshot.
#include "control/switch_state.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <rte_lcore.h>

#include "core/port_index.hpp"
#include "core/startup_error.hpp"
#include "core/worker_counters.hpp"

namespace portmux {
namespace {

SharedAddresses shared_addresses(const Config& config) {
    SharedAddresses shared;
    std::memcpy(&shared.ip4, config.shared_ip.bytes.data(), 4);
    if (config.shared_ip6) {
        shared.has_ip6 = true;
        std::memcpy(shared.ip6, config.shared_ip6->bytes.data(), 16);
    }
    for (const Ipv4Addr& addr : config.extra_shared_ips)
        std::memcpy(&shared.extra_ip4[shared.extra_ip4_count++], addr.bytes.data(), 4);
    return shared;
}

// A remote's slot indexes the workers' counter blocks.
static_assert(kMaxRemotes <= WorkerCounters::kRemoteSlots, "every remote slot needs its counters");

Result<ChangeReport> fail(std::string message) { return Result<ChangeReport>::fail(std::move(message)); }

}  // namespace

SwitchState::SwitchState(Config config, SnapshotPublisher& publisher)
    : config_(std::move(config)), link_up_(config_.vms.size(), true), publisher_(publisher) {
    config_.vms.reserve(kMaxVms);
    // The configuration was validated: no range overlaps another.
    for (const PortRange& range : config_.host.ranges) registry_.add(range, kHostOwner);
    for (size_t i = 0; i < config_.vms.size(); ++i)
        for (const PortRange& range : config_.vms[i].ranges) registry_.add(range, vm_owner_id(i));
    for (RemoteConfig& remote : config_.remotes) {
        for (const PortRange& range : remote.ranges) registry_.add(range, remote_owner_id(remotes_.size()));
        remote.ranges.clear();
        remotes_.push_back(RemoteSlot{true, std::move(remote)});
    }
    config_.remotes.clear();
    rebuild_vxlan_locked();
    for (size_t g = 0; g < config_.groups.size(); ++g) {
        group_ids_.push_back(group_owner_id(g));
        for (const PortRange& range : config_.groups[g].ranges) registry_.add(range, group_ids_[g]);
    }
}

// The tunnel's settings for the data path: peers are `vxlan.peers` and the host of every remote.
void SwitchState::rebuild_vxlan_locked() {
    if (!config_.vxlan) return;
    auto vxlan = std::make_shared<VxlanSettings>();
    vxlan->local_ip = config_.vxlan->local_ip.as_be32();
    vxlan->port = config_.vxlan->port;
    vxlan->vni = config_.vxlan->vni;
    for (const Ipv4Addr& peer : config_.vxlan->peers) vxlan->peers.push_back(peer.as_be32());
    for (const RemoteSlot& slot : remotes_)
        if (slot.active && !vxlan->is_peer(slot.config.host.as_be32())) vxlan->peers.push_back(slot.config.host.as_be32());
    vxlan_ = std::move(vxlan);
}

std::optional<size_t> SwitchState::remote_slot_of(OwnerId owner) const {
    if (owner < kFirstRemoteOwner || owner >= kFirstGroupOwner) return std::nullopt;
    const size_t slot = owner - kFirstRemoteOwner;
    if (slot >= remotes_.size() || !remotes_[slot].active) return std::nullopt;
    return slot;
}

bool SwitchState::is_remote(OwnerId owner) const {
    std::lock_guard<std::mutex> guard(mutex_);
    return remote_slot_of(owner).has_value();
}

// When the tunnel ends on the shared address, its UDP port belongs to the tunnel.
std::string SwitchState::check_vxlan_port_locked(const PortRange& range) const {
    if (!range_holds_vxlan_port(range, config_)) return "";
    return fmt::format("\"{}\" contains udp:{}, the VXLAN port on the shared address", range.to_string(),
                       config_.vxlan->port);
}

Result<ChangeReport> SwitchState::add_remote(const std::string& name, const Ipv4Addr& host, const MacAddr& mac) {
    std::lock_guard<std::mutex> guard(mutex_);
    if (!config_.vxlan) return fail("no \"vxlan\" in the configuration: remote VMs need the tunnel");
    if (name == "host" || owner_by_name(name))
        return fail(fmt::format("\"{}\" is already used (VMs, remotes and \"host\" share names)", name));
    Config probe = config_;
    probe.vms.clear();
    probe.groups.clear();  // they name VMs
    probe.host.ranges.clear();
    RemoteConfig remote{name, host, mac, {}};
    probe.remotes = {remote};
    try {
        // The loader's rules (name syntax, unicast addresses, not local_ip) for one remote.
        nlohmann::json doc = config_to_json(probe);
        doc.erase("vms");
        parse_config(doc);
    } catch (const ConfigError& e) {
        return fail(fmt::format("{}: {}", e.path() == "remotes[0].name" ? "NAME" : e.path() == "remotes[0].host" ? "HOST"
                                                                            : e.path() == "remotes[0].mac" ? "MAC"
                                                                                                           : e.path(),
                                e.what()));
    }
    size_t slot = 0;
    while (slot < remotes_.size() && remotes_[slot].active) ++slot;
    if (slot >= kMaxRemotes)
        return fail(fmt::format("too many remotes (at most {})", kMaxRemotes));
    {
        std::lock_guard<std::mutex> names(names_mutex_);
        if (slot == remotes_.size()) remotes_.emplace_back();
        remotes_[slot] = RemoteSlot{true, remote};
    }
    rebuild_vxlan_locked();
    return publish_locked();
}

Result<ChangeReport> SwitchState::remove_remote(const std::string& name) {
    std::lock_guard<std::mutex> guard(mutex_);
    auto owner = owner_by_name(name);
    auto slot = owner ? remote_slot_of(*owner) : std::nullopt;
    if (!slot) return fail(fmt::format("unknown remote \"{}\"", name));
    const size_t owned = registry_.list(*owner).size();
    if (owned != 0)
        return fail(fmt::format("remote \"{}\" still owns {} range{}: move or delete them first", name, owned,
                                owned == 1 ? "" : "s"));
    {
        std::lock_guard<std::mutex> names(names_mutex_);
        remotes_[*slot] = RemoteSlot{};
    }
    rebuild_vxlan_locked();
    auto report = publish_locked();
    if (report) report.value().previous = name;
    return report;
}

Result<ChangeReport> SwitchState::add_vm(const VmConfig& given, const std::function<std::string(size_t)>& attach) {
    std::lock_guard<std::mutex> guard(mutex_);
    if (given.vhost.empty()) return fail("only vhost-user VMs are added at runtime (a device VM needs a restart)");
    if (!given.ranges.empty()) return fail("a VM is added without ranges: give it ranges with /portmux/range/add");
    if (given.name == "host" || owner_by_name(given.name))
        return fail(fmt::format("\"{}\" is already used (VMs, remotes, groups and \"host\" share names)", given.name));
    // The loader's rules (name syntax, a unicast MAC, a usable socket path) for this one VM.
    Config probe = config_;
    probe.vms = {given};
    probe.remotes.clear();
    probe.groups.clear();
    probe.host.ranges.clear();
    try {
        parse_config(config_to_json(probe));
    } catch (const ConfigError& e) {
        const std::string& at = e.path();
        const char* field = at == "vms[0].name" ? "NAME" : at == "vms[0].vhost" ? "SOCKET" : at == "vms[0].mac" ? "MAC" : nullptr;
        return fail(field != nullptr ? fmt::format("{}: {}", field, e.what()) : fmt::format("{}: {}", at, e.what()));
    }
    size_t index = 0;
    for (; index < config_.vms.size(); ++index) {
        if (!vm_present_locked(index)) continue;
        const VmConfig& other = config_.vms[index];
        if (other.mac == given.mac) return fail(fmt::format("MAC {} is VM \"{}\"'s", given.mac.to_string(), other.name));
        if (other.vhost == given.vhost) return fail(fmt::format("socket {} is VM \"{}\"'s", given.vhost, other.name));
    }
    index = 0;
    while (index < config_.vms.size() && vm_present_locked(index)) ++index;
    if (index >= kMaxVms) return fail(fmt::format("too many VMs (at most {})", kMaxVms));
    std::string attached = attach(index);
    if (!attached.empty()) return fail(attached);
    {
        std::lock_guard<std::mutex> names(names_mutex_);
        if (index == config_.vms.size()) config_.vms.emplace_back();  // within the reserved capacity
        config_.vms[index] = given;
    }
    if (index >= link_up_.size()) link_up_.resize(index + 1, false);
    link_up_[index] = false;  // until the link watcher sees its guest
    auto report = publish_locked();
    if (report) report.value().previous = std::to_string(index);
    return report;
}

Result<ChangeReport> SwitchState::remove_vm(const std::string& name, const std::function<void(size_t)>& detach) {
    std::lock_guard<std::mutex> guard(mutex_);
    auto index = vm_index_locked(name);
    if (!index) return fail(fmt::format("unknown VM \"{}\"", name));
    const size_t owned = registry_.list(vm_owner_id(*index)).size();
    if (owned != 0)
        return fail(fmt::format("VM \"{}\" still owns {} range{}: move or delete them first", name, owned,
                                owned == 1 ? "" : "s"));
    for (size_t i = 0; i < config_.vms.size(); ++i)
        if (vm_present_locked(i) && config_.vms[i].backup == name)
            return fail(fmt::format("VM \"{}\" is the backup of \"{}\": change that first", name, config_.vms[i].name));
    for (const GroupConfig& group : config_.groups)
        for (const GroupMemberConfig& member : group.members)
            if (member.vm == name)
                return fail(fmt::format("VM \"{}\" is a member of group \"{}\": remove it there first", name, group.name));
    if (config_.vms[*index].vhost.empty())
        return fail(fmt::format("VM \"{}\" is a device VM: only vhost-user VMs are removed at runtime", name));
    {
        std::lock_guard<std::mutex> names(names_mutex_);
        config_.vms[*index] = VmConfig{};
    }
    link_up_[*index] = false;
    auto report = publish_locked();
    // No snapshot names the VM any more; the socket goes (a connected guest is detached and the workers are
    // waited for before its device is freed).
    detach(*index);
    if (report) report.value().previous = std::to_string(*index);
    return report;
}

std::vector<std::pair<size_t, VmConfig>> SwitchState::vms() const {
    std::lock_guard<std::mutex> guard(mutex_);
    std::vector<std::pair<size_t, VmConfig>> out;
    std::vector<size_t> position(config_.vms.size(), SIZE_MAX);
    for (size_t i = 0; i < config_.vms.size(); ++i)
        if (vm_present_locked(i)) {
            position[i] = out.size();
            out.emplace_back(i, config_.vms[i]);
            out.back().second.ranges.clear();  // the registry holds them as they are now
        }
    for (const OwnedRange& owned : registry_.list())
        if (is_vm_owner(owned.owner) && vm_index_of(owned.owner) < position.size() &&
            position[vm_index_of(owned.owner)] != SIZE_MAX)
            out[position[vm_index_of(owned.owner)]].second.ranges.push_back(owned.range);
    return out;
}

std::vector<RemoteInfo> SwitchState::remotes() const {
    std::lock_guard<std::mutex> guard(mutex_);
    std::vector<RemoteInfo> out;
    for (size_t slot = 0; slot < remotes_.size(); ++slot)
        if (remotes_[slot].active)
            out.push_back(RemoteInfo{remotes_[slot].config.name, remotes_[slot].config.host, remotes_[slot].config.mac,
                                     slot, remote_owner_id(slot)});
    return out;
}

void SwitchState::publish_initial() {
    std::lock_guard<std::mutex> guard(mutex_);
    auto built = rebuild_firewall_locked(config_.firewall);
    if (!built) throw StartupError(fmt::format("firewall: {}", built.error()));
}

std::optional<OwnerId> SwitchState::owner_by_name(const std::string& name) const {
    if (name == "host") return kHostOwner;
    if (name.empty()) return std::nullopt;  // a removed VM's free index has no name
    std::lock_guard<std::mutex> names(names_mutex_);
    for (size_t i = 0; i < config_.vms.size(); ++i)
        if (config_.vms[i].name == name) return vm_owner_id(i);
    for (size_t slot = 0; slot < remotes_.size(); ++slot)
        if (remotes_[slot].active && remotes_[slot].config.name == name) return remote_owner_id(slot);
    for (size_t g = 0; g < config_.groups.size(); ++g)
        if (config_.groups[g].name == name) return group_ids_[g];
    return std::nullopt;
}

std::string SwitchState::owner_name(OwnerId owner) const {
    if (owner == kHostOwner) return "host";
    std::lock_guard<std::mutex> names(names_mutex_);
    if (is_vm_owner(owner) && vm_present_locked(vm_index_of(owner))) return config_.vms[vm_index_of(owner)].name;
    if (auto slot = remote_slot_of(owner)) return remotes_[*slot].config.name;
    for (size_t g = 0; g < group_ids_.size(); ++g)
        if (group_ids_[g] == owner) return config_.groups[g].name;
    return "none";
}

std::string SwitchState::describe_conflict_locked(const PortRange& range, const RangeConflict& conflict) const {
    return fmt::format("\"{}\" overlaps \"{}\" of {} at {}:{}", range.to_string(), conflict.existing.range.to_string(),
                       owner_name(conflict.existing.owner), to_string(conflict.proto), conflict.port);
}

// A translated range goes to a VM only, and a VM's answer ports stay unambiguous (see answer_port_overlap).
std::string SwitchState::check_answer_ports_locked(OwnerId owner, const PortRange& range) const {
    if (is_group(owner))
        return range.translated ? fmt::format("\"{}\": port translation is for VMs", range.to_string()) : "";
    if (owner == kHostOwner)
        return range.translated ? fmt::format("\"{}\": port translation is for VMs", range.to_string()) : "";
    std::vector<PortRange> own;
    for (const OwnedRange& owned : registry_.list(owner)) own.push_back(owned.range);
    if (const PortRange* other = answer_port_overlap(own, range))
        return fmt::format("\"{}\": {} answers from ports {} of \"{}\" already", range.to_string(), owner_name(owner),
                           range.inner().to_string(), other->to_string());
    return "";
}

Result<ChangeReport> SwitchState::add_range(const std::string& target, const PortRange& given) {
    std::lock_guard<std::mutex> guard(mutex_);
    PortRange range = given;
    if (std::string error = resolve_range_address(range, config_); !error.empty()) return fail(error);
    auto owner = owner_by_name(target);
    if (!owner) return fail(fmt::format("unknown target \"{}\" (expected \"host\" or a VM name)", target));
    if (auto conflict = registry_.find_conflict(range)) return fail(describe_conflict_locked(range, *conflict));
    std::string tunnel_port = check_vxlan_port_locked(range);
    if (!tunnel_port.empty()) return fail(tunnel_port);
    if (range.translated && remote_slot_of(*owner))
        return fail(fmt::format("\"{}\": port translation is for local VMs", range.to_string()));
    std::string answer_ports = check_answer_ports_locked(*owner, range);
    if (!answer_ports.empty()) return fail(answer_ports);
    registry_.add(range, *owner);
    return publish_locked({range});
}

Result<ChangeReport> SwitchState::remove_range(const PortRange& given) {
    std::lock_guard<std::mutex> guard(mutex_);
    PortRange range = given;
    if (std::string error = resolve_range_address(range, config_); !error.empty()) return fail(error);
    auto former = registry_.remove(range);
    if (former) {
        auto report = publish_locked({range});
        if (report) report.value().previous = owner_name(*former);
        return report;
    }
    {
        OwnerId at_first =
            registry_.lookup(range.tcp ? L4Proto::kTcp : L4Proto::kUdp, range.ports.first, range.address);
        if (at_first == kNoOwner) return fail(fmt::format("no range \"{}\"", range.to_string()));
        return fail(fmt::format("no range \"{}\" (port {} belongs to {} through another range; remove exactly that "
                                "range, see /portmux/ranges)",
                                range.to_string(), range.ports.first, owner_name(at_first)));
    }
}

Result<ChangeReport> SwitchState::move_range(const PortRange& given, const std::string& target) {
    std::lock_guard<std::mutex> guard(mutex_);
    PortRange range = given;
    if (std::string error = resolve_range_address(range, config_); !error.empty()) return fail(error);
    auto owner = owner_by_name(target);
    if (!owner) return fail(fmt::format("unknown target \"{}\" (expected \"host\" or a VM name)", target));
    auto former = registry_.owner_of(range);
    if (!former) return fail(fmt::format("no range \"{}\" (move takes exactly a range that exists)", range.to_string()));
    // The range moves as registered (with its translation, if any).
    for (const OwnedRange& owned : registry_.list(*former))
        if (owned.range.ports == range.ports && owned.range.tcp == range.tcp && owned.range.udp == range.udp &&
            owned.range.address == range.address) {
            if (owned.range.translated && remote_slot_of(*owner))
                return fail(fmt::format("\"{}\": port translation is for local VMs", owned.range.to_string()));
            std::string answer_ports = *owner == *former ? "" : check_answer_ports_locked(*owner, owned.range);
            if (!answer_ports.empty()) return fail(answer_ports);
        }
    registry_.reassign(range, *owner);
    auto report = publish_locked({range});
    if (report) report.value().previous = owner_name(*former);
    return report;
}

Result<ChangeReport> SwitchState::set_vm_enabled(const std::string& vm, bool enabled) {
    std::lock_guard<std::mutex> guard(mutex_);
    auto owner = owner_by_name(vm);
    if (!owner || *owner == kHostOwner || remote_slot_of(*owner) || is_group(*owner))
        return fail(fmt::format("unknown VM \"{}\"", vm));
    groups_dirty_ = groups_dirty_ || vm_in_group_locked(vm_index_of(*owner));
    VmConfig& config = config_.vms[vm_index_of(*owner)];
    bool was = config.enabled;
    config.enabled = enabled;
    auto report = publish_locked();
    if (report) report.value().previous = was ? "enabled" : "disabled";
    return report;
}

Result<ChangeReport> SwitchState::set_backup(const std::string& vm, const std::string& backup) {
    std::lock_guard<std::mutex> guard(mutex_);
    auto owner = owner_by_name(vm);
    if (!owner || *owner == kHostOwner || remote_slot_of(*owner) || is_group(*owner))
        return fail(fmt::format("unknown VM \"{}\"", vm));
    if (!backup.empty()) {
        auto other = owner_by_name(backup);
        if (!other || *other == kHostOwner || remote_slot_of(*other) || is_group(*other))
            return fail(fmt::format("unknown VM \"{}\" (a backup is a VM of this host)", backup));
        if (backup == vm) return fail(fmt::format("\"{}\": a VM cannot be its own backup", vm));
    }
    VmConfig& config = config_.vms[vm_index_of(*owner)];
    const std::string was = config.backup;
    config.backup = backup;
    // While the VM is down its ranges move to the new backup (or back to the VM) with this snapshot.
    auto report = publish_locked();
    if (report) report.value().previous = was;
    return report;
}

Result<ChangeReport> SwitchState::add_shared_address(const Ipv4Addr& address) {
    std::lock_guard<std::mutex> guard(mutex_);
    const auto& b = address.bytes;
    if ((b[0] == 0 && b[1] == 0 && b[2] == 0 && b[3] == 0) || (b[0] == 255 && b[1] == 255 && b[2] == 255 && b[3] == 255) ||
        (b[0] & 0xf0) == 0xe0)
        return fail(fmt::format("{}: not a unicast address", address.to_string()));
    if (address == config_.shared_ip) return fail(fmt::format("{} is the first shared address", address.to_string()));
    for (const Ipv4Addr& known : config_.extra_shared_ips)
        if (known == address) return fail(fmt::format("{} is a shared address already", address.to_string()));
    if (config_.extra_shared_ips.size() >= kMaxExtraSharedIps)
        return fail(fmt::format("there are {} shared addresses already, the most supported", 1 + kMaxExtraSharedIps));
    config_.extra_shared_ips.push_back(address);
    return publish_locked();
}

Result<ChangeReport> SwitchState::remove_shared_address(const Ipv4Addr& address) {
    std::lock_guard<std::mutex> guard(mutex_);
    if (address == config_.shared_ip)
        return fail(fmt::format("{} is the first shared address; it cannot be removed", address.to_string()));
    auto it = std::find(config_.extra_shared_ips.begin(), config_.extra_shared_ips.end(), address);
    if (it == config_.extra_shared_ips.end()) return fail(fmt::format("{} is not a shared address", address.to_string()));
    for (const OwnedRange& owned : registry_.list())
        if (owned.range.address == address)
            return fail(fmt::format("{} still has ranges (\"{}\" of {}); remove or move them first", address.to_string(),
                                    owned.range.to_string(), owner_name(owned.owner)));
    config_.extra_shared_ips.erase(it);
    return publish_locked();
}

Result<ChangeReport> SwitchState::add_firewall_rule(std::optional<size_t> index, const FirewallRule& rule) {
    std::lock_guard<std::mutex> guard(mutex_);
    FirewallConfig next = config_.firewall;
    size_t at = index.value_or(next.rules.size());
    if (at > next.rules.size())
        return fail(fmt::format("index {} is beyond the end of the rule list ({} rules)", at, next.rules.size()));
    next.rules.insert(next.rules.begin() + static_cast<std::ptrdiff_t>(at), rule);
    return rebuild_firewall_locked(std::move(next));
}

Result<ChangeReport> SwitchState::remove_firewall_rule(size_t index) {
    std::lock_guard<std::mutex> guard(mutex_);
    FirewallConfig next = config_.firewall;
    if (index >= next.rules.size())
        return fail(fmt::format("no rule {} (there are {} rules, numbered from 0)", index, next.rules.size()));
    next.rules.erase(next.rules.begin() + static_cast<std::ptrdiff_t>(index));
    return rebuild_firewall_locked(std::move(next));
}

Result<ChangeReport> SwitchState::set_firewall_default(FirewallAction action) {
    std::lock_guard<std::mutex> guard(mutex_);
    FirewallConfig next = config_.firewall;
    next.default_action = action;
    auto report = rebuild_firewall_locked(std::move(next));
    return report;
}

// Compiles `next` into new rte_acl contexts (off the data path), then publishes a snapshot that uses them.
// On failure the running firewall stays as it is.
Result<ChangeReport> SwitchState::rebuild_firewall_locked(FirewallConfig next) {
    auto built = Firewall::build(next, fmt::format("pmx_fw{}", ++firewall_builds_), static_cast<int>(rte_socket_id()));
    if (!built) return fail(fmt::format("cannot build the firewall: {}", built.error()));
    firewall_ = built.value();
    config_.firewall = std::move(next);
    return publish_locked();
}

Result<ChangeReport> SwitchState::publish_locked(const std::vector<PortRange>& changed_ranges) {
    const uint64_t token = publisher_.install(build_snapshot_locked(changed_ranges));
    ChangeReport report;
    report.generation = generation_;
    // The change is in place; what is left is the wait until no worker can still see the old snapshot (the
    // change is not reported before that). It is made without the state lock, so that changes arriving
    // meanwhile are built, installed and waited for alongside instead of one grace period after another.
    // The caller's lock is held again on return; nothing of the state read before is relied on after.
    mutex_.unlock();
    publisher_.wait(token);
    mutex_.lock();
    return Result<ChangeReport>::ok(report);
}

std::shared_ptr<const PortOwnerTable> SwitchState::next_table_locked(const std::vector<PortRange>& changed,
                                                                     size_t address_index) const {
    const Snapshot* current = publisher_.current();
    const Ipv4Addr address = address_index == 0 ? Ipv4Addr{} : config_.extra_shared_ips[address_index - 1];
    // The same address's table in the current snapshot (addresses may have been added or removed since).
    std::shared_ptr<const PortOwnerTable> previous;
    if (current != nullptr && address_index == 0) previous = current->table;
    if (current != nullptr && address_index != 0) {
        uint32_t wanted;
        std::memcpy(&wanted, address.bytes.data(), 4);
        for (size_t j = 0; j < current->extra_tables.size() && j < current->shared.extra_ip4_count; ++j)
            if (current->shared.extra_ip4[j] == wanted) previous = current->extra_tables[j];
    }
    bool touched = false;
    for (const PortRange& range : changed) touched = touched || range.address == address;
    if (previous && !touched) return previous;
    // Not value-initialised (no 256 KiB memset): it is copied over or filled whole below.
    std::shared_ptr<PortOwnerTable> table(new PortOwnerTable);
    if (previous) {
        *table = *previous;
        for (const PortRange& range : changed)
            if (range.address == address) registry_.fill(*table, range);
    } else {
        registry_.fill(*table, address);
    }
    return table;
}

std::unique_ptr<Snapshot> SwitchState::build_snapshot_locked(const std::vector<PortRange>& changed_ranges) {
    auto snap = std::make_unique<Snapshot>();
    snap->generation = ++generation_;
    snap->shared = shared_addresses(config_);
    snap->unmatched = config_.unmatched;
    snap->firewall = firewall_;
    snap->table = next_table_locked(changed_ranges, 0);
    snap->table_at[0] = snap->table.get();
    for (size_t a = 1; a <= config_.extra_shared_ips.size(); ++a) {
        snap->extra_tables.push_back(next_table_locked(changed_ranges, a));
        snap->table_at[a] = snap->extra_tables.back().get();
    }
    const Snapshot* current = publisher_.current();
    snap->translation = current != nullptr && changed_ranges.empty() && current->table
                            ? current->translation
                            : build_port_translation(registry_, kFirstRemoteOwner + remotes_.size());
    snap->owners.resize(kFirstRemoteOwner + remotes_.size());
    snap->vxlan = vxlan_;
    for (size_t slot = 0; slot < remotes_.size(); ++slot) {
        if (!remotes_[slot].active) continue;
        OwnerTarget& target = snap->owners[remote_owner_id(slot)];
        target.kind = OwnerKind::kRemote;
        target.port = kUplinkPortIndex;
        target.mac = remotes_[slot].config.mac;
        target.remote_ip = remotes_[slot].config.host.as_be32();
        target.remote_slot = static_cast<uint16_t>(slot);
    }
    snap->owners[kHostOwner].kind = OwnerKind::kHost;
    snap->owners[kHostOwner].port = kHostPortIndex;
    for (size_t i = 0; i < config_.vms.size(); ++i) {
        if (!vm_present_locked(i)) continue;
        OwnerTarget& target = snap->owners[vm_owner_id(i)];
        const size_t serving = serving_index_locked(i);
        target.kind = OwnerKind::kVm;
        target.enabled = config_.vms[i].enabled;
        target.port = vm_port_index(serving);
        target.mac = config_.vms[serving].mac;
    }
    if (!group_ids_.empty()) {
        snap->groups = group_tables_locked();
        for (size_t g = 0; g < group_ids_.size(); ++g) {
            if (group_ids_[g] >= snap->owners.size()) snap->owners.resize(group_ids_[g] + 1);
            OwnerTarget& target = snap->owners[group_ids_[g]];
            target.kind = OwnerKind::kGroup;
            target.group = static_cast<uint16_t>(g);
        }
    }
    return snap;
}

// A VM whose port is down is served by its backup when the backup is up and enabled.
size_t SwitchState::serving_index_locked(size_t vm_index) const {
    const VmConfig& vm = config_.vms[vm_index];
    if (link_up_[vm_index] || vm.backup.empty()) return vm_index;
    for (size_t b = 0; b < config_.vms.size(); ++b)
        if (vm_present_locked(b) && config_.vms[b].name == vm.backup && link_up_[b] && config_.vms[b].enabled) return b;
    return vm_index;
}

bool SwitchState::set_link(size_t vm_index, bool up) {
    std::lock_guard<std::mutex> guard(mutex_);
    if (vm_index >= link_up_.size() || link_up_[vm_index] == up) return false;
    const size_t count = config_.vms.size();
    std::vector<size_t> before(count);
    for (size_t i = 0; i < count; ++i) before[i] = serving_index_locked(i);
    link_up_[vm_index] = up;
    bool changed = false;
    for (size_t i = 0; i < count; ++i) changed = changed || serving_index_locked(i) != before[i];
    if (vm_in_group_locked(vm_index)) {
        // A member's port went down or came back: it leaves or rejoins its groups' Maglev tables at once.
        groups_dirty_ = true;
        changed = true;
    }
    if (changed) publish_locked();
    return changed;
}

std::string SwitchState::served_by(size_t vm_index) const {
    std::lock_guard<std::mutex> guard(mutex_);
    return vm_present_locked(vm_index) ? config_.vms[serving_index_locked(vm_index)].name : "";
}

PortLookup SwitchState::lookup(L4Proto proto, uint16_t port, const Ipv4Addr& address) const {
    std::lock_guard<std::mutex> guard(mutex_);
    PortLookup answer;
    answer.owner = registry_.lookup(proto, port, address);
    if (answer.owner == kNoOwner) return answer;
    for (const OwnedRange& owned : registry_.list(answer.owner))
        if (owned.range.covers(proto) && owned.range.ports.contains(port) && owned.range.address == address)
            answer.range = owned.range;
    if (is_vm_owner(answer.owner) && vm_present_locked(vm_index_of(answer.owner)))
        answer.enabled = config_.vms[vm_index_of(answer.owner)].enabled;
    return answer;
}

std::vector<OwnedRange> SwitchState::ranges(std::optional<OwnerId> owner) const {
    std::lock_guard<std::mutex> guard(mutex_);
    return owner ? registry_.list(*owner) : registry_.list();
}

FirewallConfig SwitchState::firewall() const {
    std::lock_guard<std::mutex> guard(mutex_);
    return config_.firewall;
}

Config SwitchState::running_config() const {
    std::lock_guard<std::mutex> guard(mutex_);
    return running_config_locked();
}

Config SwitchState::running_config_locked() const {
    Config config = config_;
    config.host.ranges.clear();
    for (VmConfig& vm : config.vms) vm.ranges.clear();
    for (const OwnedRange& owned : registry_.list()) {
        if (owned.owner == kHostOwner)
            config.host.ranges.push_back(owned.range);
        else if (is_vm_owner(owned.owner) && vm_index_of(owned.owner) < config.vms.size())
            config.vms[vm_index_of(owned.owner)].ranges.push_back(owned.range);
    }
    // Removed VMs leave free indexes behind; the configuration lists the VMs that exist.
    config.vms.erase(std::remove_if(config.vms.begin(), config.vms.end(), [](const VmConfig& vm) { return vm.name.empty(); }),
                     config.vms.end());
    // Remotes in slot order, each with its ranges as they are now.
    for (size_t slot = 0; slot < remotes_.size(); ++slot) {
        if (!remotes_[slot].active) continue;
        RemoteConfig remote = remotes_[slot].config;
        for (const OwnedRange& owned : registry_.list(remote_owner_id(slot))) remote.ranges.push_back(owned.range);
        config.remotes.push_back(std::move(remote));
    }
    for (size_t g = 0; g < config.groups.size(); ++g) {
        config.groups[g].ranges.clear();
        for (const OwnedRange& owned : registry_.list(group_ids_[g])) config.groups[g].ranges.push_back(owned.range);
    }
    return config;
}

uint64_t SwitchState::generation() const {
    std::lock_guard<std::mutex> guard(mutex_);
    return generation_;
}

Result<ChangeReport> SwitchState::save(const std::string& file) const {
    std::string text;
    ChangeReport report;
    {
        std::lock_guard<std::mutex> guard(mutex_);
        text = config_to_json(running_config_locked()).dump(2) + "\n";
        report.generation = generation_;
    }
    // Write beside the target so rename() is atomic, flush it to disk, then replace the file.
    std::string temp = fmt::format("{}.tmp.{}", file, getpid());
    int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return fail(fmt::format("cannot create {}: {}", temp, std::strerror(errno)));
    size_t written = 0;
    while (written < text.size()) {
        ssize_t n = ::write(fd, text.data() + written, text.size() - written);
        if (n < 0) {
            if (errno == EINTR) continue;
            int error = errno;
            ::close(fd);
            ::unlink(temp.c_str());
            return fail(fmt::format("cannot write {}: {}", temp, std::strerror(error)));
        }
        written += static_cast<size_t>(n);
    }
    if (::fsync(fd) != 0 || ::close(fd) != 0) {
        int error = errno;
        ::unlink(temp.c_str());
        return fail(fmt::format("cannot flush {}: {}", temp, std::strerror(error)));
    }
    if (::rename(temp.c_str(), file.c_str()) != 0) {
        int error = errno;
        ::unlink(temp.c_str());
        return fail(fmt::format("cannot replace {}: {}", file, std::strerror(error)));
    }
    // Make the rename itself durable.
    std::string dir = file.find('/') == std::string::npos ? "." : file.substr(0, file.find_last_of('/'));
    int dir_fd = ::open(dir.empty() ? "/" : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd >= 0) {
        ::fsync(dir_fd);
        ::close(dir_fd);
    }
    report.previous = file;
    return Result<ChangeReport>::ok(report);
}

}  // namespace portmux
