// Owner ids: who a packet belongs to (nobody, the host, a VM, a remote VM, a group) as one small number,
// shared by the configuration, the tables and the data path.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/limits.hpp"

namespace portmux {

// Dense owner identifiers in fixed blocks, so an id never changes while its owner exists and VMs or remotes
// added at runtime never renumber anyone: 0 is "nobody", 1 the host, then kMaxVms VM slots (VM i is 2 + i),
// then kMaxRemotes remote slots, then load-balanced groups (SwitchState assigns them); the data path only
// ever indexes the snapshot's owner targets with them.
using OwnerId = uint16_t;
inline constexpr OwnerId kNoOwner = 0;
inline constexpr OwnerId kHostOwner = 1;
inline constexpr OwnerId kFirstVmOwner = 2;
inline constexpr size_t kMaxOwners = 4096;
inline constexpr OwnerId kFirstRemoteOwner = kFirstVmOwner + kMaxVms;
inline constexpr OwnerId kFirstGroupOwner = kFirstRemoteOwner + kMaxRemotes;
inline constexpr OwnerId vm_owner_id(size_t vm_index) { return static_cast<OwnerId>(kFirstVmOwner + vm_index); }
inline constexpr OwnerId remote_owner_id(size_t slot) { return static_cast<OwnerId>(kFirstRemoteOwner + slot); }
inline constexpr OwnerId group_owner_id(size_t g) { return static_cast<OwnerId>(kFirstGroupOwner + g); }
inline constexpr bool is_vm_owner(OwnerId owner) { return owner >= kFirstVmOwner && owner < kFirstRemoteOwner; }
inline constexpr size_t vm_index_of(OwnerId owner) { return owner - kFirstVmOwner; }
static_assert(kFirstGroupOwner < kMaxOwners, "room for groups after the VMs and remotes");

}  // namespace portmux
