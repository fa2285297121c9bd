// Who owns each destination port: the range list (source of truth, control side) and the
// direct-indexed table built from it (read by the data path, one load per lookup).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "core/net_types.hpp"
#include "core/owner_id.hpp"
#include "core/port_range.hpp"

namespace portmux {

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
