// Who owns each destination port: the range list (source of truth, control side) and the
// direct-indexed table built from it (read by the data path, one load per lookup).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "core/limits.hpp"
#include "core/net_types.hpp"
#include "core/port_range.hpp"

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

enum class OwnerKind : uint8_t { kNone, kHost, kVm, kRemote, kGroup };

// What the data path needs to deliver to an owner.
struct OwnerTarget {
    OwnerKind kind = OwnerKind::kNone;
    bool enabled = true;  // a disabled VM's packets are dropped and counted, never sent to the host
    uint16_t port = 0;    // dense port index (see drivers/port_set.hpp), valid for kVm
    MacAddr mac{};        // destination MAC written into frames for a VM; for kRemote the underlay next hop
    uint32_t remote_ip = 0;    // kRemote: the outer destination (network byte order)
    uint16_t remote_slot = 0;  // kRemote: index of its counters (WorkerCounters::add_remote)
    uint16_t group = 0;        // kGroup: index into the snapshot's groups (see tables/lb_group.hpp)
};

// The direct-indexed lookup: 2 x 65,536 entries of 2 bytes (256 KiB), independent of how many ranges exist.
struct PortOwnerTable {
    OwnerId owner[kL4ProtoCount][65536];

    OwnerId lookup(L4Proto proto, uint16_t port) const { return owner[static_cast<unsigned>(proto)][port]; }
};

// A range and its owner.
struct OwnedRange {
    PortRange range;
    OwnerId owner = kNoOwner;
};

// Why a range cannot be added: the first existing range it collides with.
struct RangeConflict {
    OwnedRange existing;
    L4Proto proto = L4Proto::kTcp;  // a protocol both cover
    uint16_t port = 0;              // the lowest port both cover
};

// The list of owned ranges, kept free of overlaps per shared address and protocol. Ranges are stored as given:
// "80" (TCP and UDP) is one entry, distinct from "tcp:80"; ranges of different shared addresses never overlap.
// Thread safety: not thread safe; the control side owns it.
class RangeRegistry {
public:
    // The first overlap `range` would create, if any.
    std::optional<RangeConflict> find_conflict(const PortRange& range) const;
    // Adds `range` for `owner`; returns the conflict instead (and changes nothing) when it overlaps.
    std::optional<RangeConflict> add(const PortRange& range, OwnerId owner);
    // Removes exactly `range` (same protocols and bounds); returns its former owner, or nothing.
    std::optional<OwnerId> remove(const PortRange& range);
    // Hands exactly `range` to `owner`; returns the former owner, or nothing when no such range exists.
    std::optional<OwnerId> reassign(const PortRange& range, OwnerId owner);
    // The owner of exactly `range`, if it is registered.
    std::optional<OwnerId> owner_of(const PortRange& range) const;
    // Removes every range of `owner`; returns how many.
    size_t remove_owner(OwnerId owner);

    // Slow reference lookup (control side and tests); the data path uses PortOwnerTable. `address` is a
    // range's address (all zero: the first shared address).
    OwnerId lookup(L4Proto proto, uint16_t port, const Ipv4Addr& address = {}) const;
    // All ranges sorted by first port, then TCP-only, UDP-only, both; optionally only one owner's.
    std::vector<OwnedRange> list() const;
    std::vector<OwnedRange> list(OwnerId owner) const;
    size_t size() const { return entries_.size(); }

    // Writes the direct table of shared address `address`: every port owned by nobody is kNoOwner.
    void fill(PortOwnerTable& table, const Ipv4Addr& address = {}) const;
    // Rewrites only the ports `window` covers (its address, protocols and span), from the ranges as they are now:
    // after adding, removing or reassigning a range, a copy of the previous table patched with this equals a
    // full fill() at a fraction of the cost.
    void fill(PortOwnerTable& table, const PortRange& window) const;

private:
    struct Key {
        uint32_t address;  // the range's address as a number (0: the first shared address), sorted first
        uint16_t first;
        uint8_t protos;  // bit 0 TCP, bit 1 UDP
        bool operator<(const Key& o) const {
            if (address != o.address) return address < o.address;
            return first != o.first ? first < o.first : protos < o.protos;
        }
    };
    struct Interval {
        uint16_t last;
        Key key;
    };
    std::map<Key, OwnedRange> entries_;
    // (address << 16 | first port) -> interval; no overlaps within one address.
    std::map<uint64_t, Interval> by_proto_[kL4ProtoCount];
};

}  // namespace portmux
