// Changes to the running configuration, each published as one new snapshot.
#include "control/switch_state.hpp"

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

Result<ChangeReport> fail(std::string message) { return Result<ChangeReport>::fail(std::move(message)); }

}  // namespace

SwitchState::SwitchState(Config config, SnapshotPublisher& publisher)
    : config_(std::move(config)), vm_count_(config_.vms.size()), link_up_(vm_count_, true), publisher_(publisher) {
    // The configuration was validated: no range overlaps another.
    for (const PortRange& range : config_.host.ranges) registry_.add(range, kHostOwner);
    for (size_t i = 0; i < config_.vms.size(); ++i)
        for (const PortRange& range : config_.vms[i].ranges) registry_.add(range, vm_owner_id(i));
    for (size_t g = 0; g < config_.groups.size(); ++g) {
        group_ids_.push_back(vm_owner_id(vm_count_ + g));
        for (const PortRange& range : config_.groups[g].ranges) registry_.add(range, group_ids_[g]);
    }
}

void SwitchState::publish_initial() {
    std::lock_guard<std::mutex> guard(mutex_);
    auto built = rebuild_firewall_locked(config_.firewall);
    if (!built) throw StartupError(fmt::format("firewall: {}", built.error()));
}

std::optional<OwnerId> SwitchState::owner_by_name(const std::string& name) const {
    if (name == "host") return kHostOwner;
    for (size_t i = 0; i < config_.vms.size(); ++i)
        if (config_.vms[i].name == name) return vm_owner_id(i);
    std::lock_guard<std::mutex> names(names_mutex_);
    for (size_t g = 0; g < config_.groups.size(); ++g)
        if (config_.groups[g].name == name) return group_ids_[g];
    return std::nullopt;
}

std::string SwitchState::owner_name(OwnerId owner) const {
    if (owner == kHostOwner) return "host";
    if (owner >= kFirstVmOwner && static_cast<size_t>(owner - kFirstVmOwner) < config_.vms.size())
        return config_.vms[owner - kFirstVmOwner].name;
    std::lock_guard<std::mutex> names(names_mutex_);
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

Result<ChangeReport> SwitchState::add_range(const std::string& target, const PortRange& range) {
    std::lock_guard<std::mutex> guard(mutex_);
    auto owner = owner_by_name(target);
    if (!owner) return fail(fmt::format("unknown target \"{}\" (expected \"host\" or a VM name)", target));
    if (auto conflict = registry_.find_conflict(range)) return fail(describe_conflict_locked(range, *conflict));
    std::string answer_ports = check_answer_ports_locked(*owner, range);
    if (!answer_ports.empty()) return fail(answer_ports);
    registry_.add(range, *owner);
    return publish_locked({range});
}

Result<ChangeReport> SwitchState::remove_range(const PortRange& range) {
    std::lock_guard<std::mutex> guard(mutex_);
    auto former = registry_.remove(range);
    if (former) {
        auto report = publish_locked({range});
        if (report) report.value().previous = owner_name(*former);
        return report;
    }
    {
        OwnerId at_first = registry_.lookup(range.tcp ? L4Proto::kTcp : L4Proto::kUdp, range.ports.first);
        if (at_first == kNoOwner) return fail(fmt::format("no range \"{}\"", range.to_string()));
        return fail(fmt::format("no range \"{}\" (port {} belongs to {} through another range; remove exactly that "
                                "range, see /portmux/ranges)",
                                range.to_string(), range.ports.first, owner_name(at_first)));
    }
}

Result<ChangeReport> SwitchState::move_range(const PortRange& range, const std::string& target) {
    std::lock_guard<std::mutex> guard(mutex_);
    auto owner = owner_by_name(target);
    if (!owner) return fail(fmt::format("unknown target \"{}\" (expected \"host\" or a VM name)", target));
    auto former = registry_.owner_of(range);
    if (!former) return fail(fmt::format("no range \"{}\" (move takes exactly a range that exists)", range.to_string()));
    // The range moves as registered (with its translation, if any).
    for (const OwnedRange& owned : registry_.list(*former))
        if (owned.range.ports == range.ports && owned.range.tcp == range.tcp && owned.range.udp == range.udp) {
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
    if (!owner || *owner == kHostOwner || is_group(*owner)) return fail(fmt::format("unknown VM \"{}\"", vm));
    groups_dirty_ = groups_dirty_ || vm_in_group_locked(*owner - kFirstVmOwner);
    VmConfig& config = config_.vms[*owner - kFirstVmOwner];
    bool was = config.enabled;
    config.enabled = enabled;
    auto report = publish_locked();
    if (report) report.value().previous = was ? "enabled" : "disabled";
    return report;
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
    publisher_.publish(build_snapshot_locked(changed_ranges));
    ChangeReport report;
    report.generation = generation_;
    return Result<ChangeReport>::ok(report);
}

std::shared_ptr<const PortOwnerTable> SwitchState::next_table_locked(const std::vector<PortRange>& changed) const {
    const Snapshot* current = publisher_.current();
    if (current != nullptr && current->table && changed.empty()) return current->table;
    auto table = std::make_shared<PortOwnerTable>();
    if (current != nullptr && current->table) {
        *table = *current->table;
        for (const PortRange& range : changed) registry_.fill(*table, range);
    } else {
        registry_.fill(*table);
    }
    return table;
}

std::unique_ptr<Snapshot> SwitchState::build_snapshot_locked(const std::vector<PortRange>& changed_ranges) {
    auto snap = std::make_unique<Snapshot>();
    snap->generation = ++generation_;
    snap->shared = shared_addresses(config_);
    snap->unmatched = config_.unmatched;
    snap->firewall = firewall_;
    snap->table = next_table_locked(changed_ranges);
    const Snapshot* current = publisher_.current();
    snap->translation = current != nullptr && changed_ranges.empty() && current->table
                            ? current->translation
                            : build_port_translation(registry_, kFirstVmOwner + config_.vms.size());
    snap->owners.resize(kFirstVmOwner + config_.vms.size());
    snap->owners[kHostOwner].kind = OwnerKind::kHost;
    snap->owners[kHostOwner].port = kHostPortIndex;
    for (size_t i = 0; i < config_.vms.size(); ++i) {
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
        if (config_.vms[b].name == vm.backup && link_up_[b] && config_.vms[b].enabled) return b;
    return vm_index;
}

bool SwitchState::set_link(size_t vm_index, bool up) {
    std::lock_guard<std::mutex> guard(mutex_);
    if (vm_index >= link_up_.size() || link_up_[vm_index] == up) return false;
    std::vector<size_t> before(vm_count_);
    for (size_t i = 0; i < vm_count_; ++i) before[i] = serving_index_locked(i);
    link_up_[vm_index] = up;
    bool changed = false;
    for (size_t i = 0; i < vm_count_; ++i) changed = changed || serving_index_locked(i) != before[i];
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
    return vm_index < vm_count_ ? config_.vms[serving_index_locked(vm_index)].name : "";
}

PortLookup SwitchState::lookup(L4Proto proto, uint16_t port) const {
    std::lock_guard<std::mutex> guard(mutex_);
    PortLookup answer;
    answer.owner = registry_.lookup(proto, port);
    if (answer.owner == kNoOwner) return answer;
    for (const OwnedRange& owned : registry_.list(answer.owner))
        if (owned.range.covers(proto) && owned.range.ports.contains(port)) answer.range = owned.range;
    if (answer.owner >= kFirstVmOwner && static_cast<size_t>(answer.owner - kFirstVmOwner) < vm_count_)
        answer.enabled = config_.vms[answer.owner - kFirstVmOwner].enabled;
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
        else if (owned.owner >= kFirstVmOwner && static_cast<size_t>(owned.owner - kFirstVmOwner) < config.vms.size())
            config.vms[owned.owner - kFirstVmOwner].ranges.push_back(owned.range);
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
