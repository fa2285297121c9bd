// SwitchState's load-balanced groups: membership changes, member states and the Maglev tables the next
// snapshot carries (see docs/load-balancing.md).
#include <algorithm>

#include <fmt/format.h>

#include "control/switch_state.hpp"

namespace portmux {
namespace {

Result<ChangeReport> fail(std::string message) { return Result<ChangeReport>::fail(std::move(message)); }

std::string weight_error(unsigned weight) { return fmt::format("weight {}: expected 1..255", weight); }

}  // namespace

bool SwitchState::is_group(OwnerId owner) const {
    std::lock_guard<std::mutex> names(names_mutex_);
    return std::find(group_ids_.begin(), group_ids_.end(), owner) != group_ids_.end();
}

std::optional<size_t> SwitchState::group_index_locked(const std::string& name) const {
    for (size_t g = 0; g < config_.groups.size(); ++g)
        if (config_.groups[g].name == name) return g;
    return std::nullopt;
}

std::optional<size_t> SwitchState::vm_index_locked(const std::string& name) const {
    if (name.empty()) return std::nullopt;  // a removed VM's free index has no name
    for (size_t i = 0; i < config_.vms.size(); ++i)
        if (config_.vms[i].name == name) return i;
    return std::nullopt;
}

// Down (port down or VM disabled) wins over draining: a down member can keep no flow.
MemberState SwitchState::member_state_locked(const GroupMemberConfig& member) const {
    auto index = vm_index_locked(member.vm);
    if (!index || !config_.vms[*index].enabled || !link_up_[*index]) return MemberState::kDown;
    return member.drain ? MemberState::kDraining : MemberState::kActive;
}

bool SwitchState::vm_in_group_locked(size_t vm_index) const {
    if (vm_index >= config_.vms.size()) return false;
    for (const GroupConfig& group : config_.groups)
        for (const GroupMemberConfig& member : group.members)
            if (member.vm == config_.vms[vm_index].name) return true;
    return false;
}

std::shared_ptr<const std::vector<LbGroup>> SwitchState::group_tables_locked() {
    if (!groups_dirty_ && group_tables_) return group_tables_;
    auto tables = std::make_shared<std::vector<LbGroup>>(config_.groups.size());
    for (size_t g = 0; g < config_.groups.size(); ++g) {
        LbGroup& out = (*tables)[g];
        out.id = group_ids_[g];
        std::vector<MaglevMember> active;
        for (const GroupMemberConfig& member : config_.groups[g].members) {
            LbMember m;
            m.vm = vm_owner_id(*vm_index_locked(member.vm));
            m.weight = member.weight;
            m.state = member_state_locked(member);
            out.members.push_back(m);
            if (m.state == MemberState::kActive) active.push_back(MaglevMember{member.vm, member.weight, m.vm});
        }
        out.maglev = build_maglev(active);
        index_members(out);
    }
    group_tables_ = tables;
    groups_dirty_ = false;
    return group_tables_;
}

std::string SwitchState::check_new_name_locked(const std::string& name) const {
    if (!is_valid_owner_name(name))
        return fmt::format("\"{}\": invalid group name (1 to 32 characters from A-Z a-z 0-9 _ . -, not host)", name);
    if (vm_index_locked(name)) return fmt::format("\"{}\" is already a VM", name);
    if (group_index_locked(name)) return fmt::format("group \"{}\" exists already", name);
    return "";
}

Result<ChangeReport> SwitchState::add_group(const std::string& name, const std::vector<GroupMemberConfig>& members) {
    std::lock_guard<std::mutex> guard(mutex_);
    std::string bad = check_new_name_locked(name);
    if (!bad.empty()) return fail(bad);
    for (size_t i = 0; i < members.size(); ++i) {
        if (!vm_index_locked(members[i].vm)) return fail(fmt::format("unknown VM \"{}\"", members[i].vm));
        if (members[i].weight == 0) return fail(weight_error(0));
        for (size_t j = 0; j < i; ++j)
            if (members[j].vm == members[i].vm) return fail(fmt::format("\"{}\" is listed twice", members[i].vm));
    }
    // The lowest identifier of the groups' block that no group holds: ranges are registered under it.
    OwnerId id = kFirstGroupOwner;
    while (std::find(group_ids_.begin(), group_ids_.end(), id) != group_ids_.end()) ++id;
    if (id >= kMaxOwners) return fail(fmt::format("too many owners (at most {})", kMaxOwners));
    GroupConfig group;
    group.name = name;
    group.members = members;
    {
        std::lock_guard<std::mutex> names(names_mutex_);
        config_.groups.push_back(group);
        group_ids_.push_back(id);
    }
    groups_dirty_ = true;
    return publish_locked();
}

Result<ChangeReport> SwitchState::remove_group(const std::string& name) {
    std::lock_guard<std::mutex> guard(mutex_);
    auto g = group_index_locked(name);
    if (!g) return fail(fmt::format("unknown group \"{}\"", name));
    const size_t owned = registry_.list(group_ids_[*g]).size();
    if (owned != 0)
        return fail(fmt::format("group \"{}\" owns {} range{}: delete or move them first", name, owned,
                                owned == 1 ? "" : "s"));
    {
        std::lock_guard<std::mutex> names(names_mutex_);
        config_.groups.erase(config_.groups.begin() + static_cast<std::ptrdiff_t>(*g));
        group_ids_.erase(group_ids_.begin() + static_cast<std::ptrdiff_t>(*g));
    }
    groups_dirty_ = true;
    return publish_locked();
}

Result<ChangeReport> SwitchState::add_group_member(const std::string& group, const std::string& vm, uint8_t weight) {
    std::lock_guard<std::mutex> guard(mutex_);
    auto g = group_index_locked(group);
    if (!g) return fail(fmt::format("unknown group \"{}\"", group));
    if (!vm_index_locked(vm)) return fail(fmt::format("unknown VM \"{}\"", vm));
    if (weight == 0) return fail(weight_error(0));
    for (const GroupMemberConfig& m : config_.groups[*g].members)
        if (m.vm == vm) return fail(fmt::format("\"{}\" is already a member of \"{}\"", vm, group));
    config_.groups[*g].members.push_back(GroupMemberConfig{vm, weight, false});
    groups_dirty_ = true;
    return publish_locked();
}

Result<ChangeReport> SwitchState::remove_group_member(const std::string& group, const std::string& vm) {
    std::lock_guard<std::mutex> guard(mutex_);
    auto g = group_index_locked(group);
    if (!g) return fail(fmt::format("unknown group \"{}\"", group));
    auto& members = config_.groups[*g].members;
    auto it = std::find_if(members.begin(), members.end(), [&](const GroupMemberConfig& m) { return m.vm == vm; });
    if (it == members.end()) return fail(fmt::format("\"{}\" is not a member of \"{}\"", vm, group));
    members.erase(it);
    groups_dirty_ = true;
    return publish_locked();
}

Result<ChangeReport> SwitchState::set_member_weight(const std::string& group, const std::string& vm, uint8_t weight) {
    std::lock_guard<std::mutex> guard(mutex_);
    auto g = group_index_locked(group);
    if (!g) return fail(fmt::format("unknown group \"{}\"", group));
    if (weight == 0) return fail(weight_error(0));
    for (GroupMemberConfig& m : config_.groups[*g].members) {
        if (m.vm != vm) continue;
        const unsigned was = m.weight;
        m.weight = weight;
        groups_dirty_ = true;
        auto report = publish_locked();
        if (report) report.value().previous = std::to_string(was);
        return report;
    }
    return fail(fmt::format("\"{}\" is not a member of \"{}\"", vm, group));
}

Result<ChangeReport> SwitchState::set_member_drain(const std::string& group, const std::string& vm, bool drain) {
    std::lock_guard<std::mutex> guard(mutex_);
    auto g = group_index_locked(group);
    if (!g) return fail(fmt::format("unknown group \"{}\"", group));
    for (GroupMemberConfig& m : config_.groups[*g].members) {
        if (m.vm != vm) continue;
        const std::string was = to_string(member_state_locked(m));
        m.drain = drain;
        groups_dirty_ = true;
        auto report = publish_locked();
        if (report) report.value().previous = was;
        return report;
    }
    return fail(fmt::format("\"{}\" is not a member of \"{}\"", vm, group));
}

std::vector<GroupStatus> SwitchState::groups() const {
    std::lock_guard<std::mutex> guard(mutex_);
    std::vector<GroupStatus> out;
    for (size_t g = 0; g < config_.groups.size(); ++g) {
        GroupStatus status;
        status.name = config_.groups[g].name;
        status.id = group_ids_[g];
        for (const GroupMemberConfig& m : config_.groups[g].members)
            status.members.push_back(GroupMemberStatus{m.vm, m.weight, member_state_locked(m)});
        for (const OwnedRange& owned : registry_.list(group_ids_[g])) status.ranges.push_back(owned.range);
        out.push_back(std::move(status));
    }
    return out;
}

}  // namespace portmux
