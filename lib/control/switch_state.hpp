// The running configuration and the one place that changes it: every change is applied here, under one
// lock, and reaches the workers as one new immutable snapshot (see docs/concurrency.md).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "core/port_owners.hpp"
#include "core/result.hpp"
#include "tables/snapshot.hpp"

namespace portmux {

// The answer to "who receives this port now".
struct PortLookup {
    OwnerId owner = kNoOwner;
    std::optional<PortRange> range;  // the owning range, if any
    bool enabled = true;             // false: the owner is a disabled VM (its packets are dropped)
};

// A load-balanced group as it runs now (extension, docs/load-balancing.md).
struct GroupMemberStatus {
    std::string vm;
    uint8_t weight = 1;
    MemberState state = MemberState::kActive;
};

struct GroupStatus {
    std::string name;
    OwnerId id = kNoOwner;
    std::vector<GroupMemberStatus> members;
    std::vector<PortRange> ranges;
};

// What a successful change did, for the answer to the operator.
struct ChangeReport {
    uint64_t generation = 0;  // the snapshot generation now in force
    std::string previous;     // the former owner (moves, deletions) or state
};

// A remote VM as the control side lists it (docs/remote-vms.md).
struct RemoteInfo {
    std::string name;
    Ipv4Addr host;
    MacAddr mac;
    size_t slot = 0;  // index of its counters (WorkerCounters::read_remote_*)
    OwnerId owner = kNoOwner;
};

class SwitchState {
public:
    // `publisher` outlives this object. The VM with index i is reached through dense port 2 + i.
    SwitchState(Config config, SnapshotPublisher& publisher);

    // Builds the first snapshot (compiling the firewall) and publishes it. Throws StartupError.
    void publish_initial();

    // Owner names are "host" or a VM's name.
    std::optional<OwnerId> owner_by_name(const std::string& name) const;
    std::string owner_name(OwnerId owner) const;

    // Every change either fails with a message and changes nothing, or is published whole before it
    // returns. Any thread; changes are serialised.
    Result<ChangeReport> add_range(const std::string& target, const PortRange& range);
    Result<ChangeReport> remove_range(const PortRange& range);
    Result<ChangeReport> move_range(const PortRange& range, const std::string& target);
    Result<ChangeReport> set_vm_enabled(const std::string& vm, bool enabled);
    // Extension: VM `vm`'s backup becomes `backup` (empty: none); see set_link.
    Result<ChangeReport> set_backup(const std::string& vm, const std::string& backup);
    // Extension: another shared address with an empty range table / removal of one that owns no range.
    Result<ChangeReport> add_shared_address(const Ipv4Addr& address);
    Result<ChangeReport> remove_shared_address(const Ipv4Addr& address);
    Result<ChangeReport> add_firewall_rule(std::optional<size_t> index, const FirewallRule& rule);
    Result<ChangeReport> remove_firewall_rule(size_t index);
    Result<ChangeReport> set_firewall_default(FirewallAction action);
    // The link of VM `vm_index`'s port went up or down (a vhost-user guest attached or left). A VM with a
    // backup hands its ranges to the backup while it is down, and takes them back when it returns.
    // Returns true when the snapshot changed. Control side (the main lcore's link watcher).
    bool set_link(size_t vm_index, bool up);
    // The VM that receives VM `vm_index`'s traffic now: itself, or its backup while it is down.
    std::string served_by(size_t vm_index) const;
    // VMs added and removed at runtime (docs/control.md, /portmux/vm/add and /portmux/vm/del): vhost-user VMs
    // only, without ranges. add_vm validates `vm` as the loader would, takes the lowest free VM index, and runs
    // `attach(index)` (which registers the socket and answers an error message, empty when attached) before
    // the VM appears in a snapshot. remove_vm refuses a VM that still owns ranges, is another VM's backup or a
    // group member; the snapshot without it is published before `detach(index)` runs. Any thread.
    Result<ChangeReport> add_vm(const VmConfig& vm, const std::function<std::string(size_t)>& attach);
    Result<ChangeReport> remove_vm(const std::string& name, const std::function<void(size_t)>& detach);
    // The VMs that exist now, with their index (a removed VM leaves a free index behind).
    std::vector<std::pair<size_t, VmConfig>> vms() const;
    // Remote VMs (docs/remote-vms.md): names share the namespace of VM names. Adding needs `vxlan`; removing
    // is refused while the remote owns ranges. Any thread; changes are serialised.
    Result<ChangeReport> add_remote(const std::string& name, const Ipv4Addr& host, const MacAddr& mac);
    Result<ChangeReport> remove_remote(const std::string& name);
    std::vector<RemoteInfo> remotes() const;
    bool is_remote(OwnerId owner) const;
    // Load-balanced groups. A group's name shares the VMs' namespace; it owns ranges through the range
    // commands like a VM. Any thread; changes are serialised and published whole, like the others.
    Result<ChangeReport> add_group(const std::string& name, const std::vector<GroupMemberConfig>& members);
    Result<ChangeReport> remove_group(const std::string& name);  // refused while it owns ranges
    Result<ChangeReport> add_group_member(const std::string& group, const std::string& vm, uint8_t weight);
    Result<ChangeReport> remove_group_member(const std::string& group, const std::string& vm);
    Result<ChangeReport> set_member_weight(const std::string& group, const std::string& vm, uint8_t weight);
    Result<ChangeReport> set_member_drain(const std::string& group, const std::string& vm, bool drain);
    std::vector<GroupStatus> groups() const;
    bool is_group(OwnerId owner) const;
    // Writes the running configuration to `file` atomically (temporary file, fsync, rename).
    Result<ChangeReport> save(const std::string& file) const;

    // Reads: consistent with one generation.
    // `address`: a range's address as resolve_range_address() leaves it (all zero: the first shared address).
    PortLookup lookup(L4Proto proto, uint16_t port, const Ipv4Addr& address = {}) const;
    std::vector<OwnedRange> ranges(std::optional<OwnerId> owner) const;
    FirewallConfig firewall() const;
    // A copy of the running configuration (ranges, enabled flags and firewall as they are now).
    Config running_config() const;
    uint64_t generation() const;

private:
    // The port table of the next snapshot: the current one when no range changed, a patched copy when
    // `changed` ranges did, a full build the first time.
    // `address_index` selects the shared address (0: the first; i: config_.extra_shared_ips[i - 1]).
    std::shared_ptr<const PortOwnerTable> next_table_locked(const std::vector<PortRange>& changed,
                                                            size_t address_index) const;
    std::unique_ptr<Snapshot> build_snapshot_locked(const std::vector<PortRange>& changed_ranges);
    Result<ChangeReport> publish_locked(const std::vector<PortRange>& changed_ranges = {});
    Result<ChangeReport> rebuild_firewall_locked(FirewallConfig next);
    std::string describe_conflict_locked(const PortRange& range, const RangeConflict& conflict) const;
    std::string check_answer_ports_locked(OwnerId owner, const PortRange& range) const;
    Config running_config_locked() const;
    size_t serving_index_locked(size_t vm_index) const;
    // Remote VMs: stable slots (a removed remote's slot is reused), so owner ids in the registry stay valid.
    struct RemoteSlot {
        bool active = false;
        RemoteConfig config;  // ranges are kept in registry_
    };
    std::optional<size_t> remote_slot_of(OwnerId owner) const;
    std::string check_vxlan_port_locked(const PortRange& range) const;
    void rebuild_vxlan_locked();
    std::vector<RemoteSlot> remotes_;
    std::shared_ptr<const VxlanSettings> vxlan_;  // null unless `vxlan` is configured

    std::optional<size_t> group_index_locked(const std::string& name) const;
    std::optional<size_t> vm_index_locked(const std::string& name) const;
    MemberState member_state_locked(const GroupMemberConfig& member) const;
    std::shared_ptr<const std::vector<LbGroup>> group_tables_locked();
    bool vm_in_group_locked(size_t vm_index) const;
    std::string check_new_name_locked(const std::string& name) const;

    mutable std::mutex mutex_;
    // VMs and firewall as running; ranges are kept in registry_. config_.vms[i] is VM index i; a removed VM
    // leaves an entry with an empty name (a free index). Its capacity is reserved for kMaxVms at start, so
    // readers holding names_mutex_ alone never see it move.
    Config config_;
    RangeRegistry registry_;
    std::shared_ptr<const Firewall> firewall_;
    std::vector<bool> link_up_;  // by VM index; assumed up until the link watcher says otherwise
    bool vm_present_locked(size_t vm_index) const {
        return vm_index < config_.vms.size() && !config_.vms[vm_index].name.empty();
    }
    uint64_t generation_ = 0;
    uint64_t firewall_builds_ = 0;
    SnapshotPublisher& publisher_;
    // Groups: config_.groups[g] owns ranges as group_ids_[g] (stable while the group exists). The names and
    // ids of VMs, groups and remotes (remotes_) change under both mutex_ and names_mutex_; owner_by_name and
    // owner_name read them under names_mutex_ alone, because they are also called with mutex_ held.
    std::vector<OwnerId> group_ids_;
    mutable std::mutex names_mutex_;
    std::shared_ptr<const std::vector<LbGroup>> group_tables_;
    bool groups_dirty_ = true;  // group_tables_ must be rebuilt for the next snapshot
};

}  // namespace portmux
