// The range registry: per-protocol interval maps kept free of overlaps, and the direct table built from them.
#include "core/port_owners.hpp"

#include <algorithm>
#include <iterator>

namespace portmux {
namespace {

constexpr uint8_t kTcpBit = 1;
constexpr uint8_t kUdpBit = 2;

uint8_t protos_of(const PortRange& range) {
    return static_cast<uint8_t>((range.tcp ? kTcpBit : 0) | (range.udp ? kUdpBit : 0));
}

bool covers_bit(uint8_t protos, unsigned proto_index) { return (protos & (1u << proto_index)) != 0; }

uint32_t address_number(const Ipv4Addr& address) {
    const auto& b = address.bytes;
    return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | b[3];
}

// Interval keys: one address's intervals are contiguous and sorted by first port.
uint64_t interval_key(uint32_t address, uint16_t port) { return (uint64_t{address} << 16) | port; }
uint16_t port_of(uint64_t key) { return static_cast<uint16_t>(key & 0xffff); }

}  // namespace

std::optional<RangeConflict> RangeRegistry::find_conflict(const PortRange& range) const {
    std::optional<RangeConflict> best;
    const uint8_t protos = protos_of(range);
    const uint32_t address = address_number(range.address);
    for (unsigned p = 0; p < kL4ProtoCount; ++p) {
        if (!covers_bit(protos, p)) continue;
        const auto& intervals = by_proto_[p];
        // Intervals do not overlap, so the only candidates are the one starting at or before `first` and the
        // first one starting inside the range (both of the same address).
        const Interval* hit = nullptr;
        uint16_t port = 0;
        auto it = intervals.upper_bound(interval_key(address, range.ports.first));
        if (it != intervals.begin()) {
            auto prev = std::prev(it);
            if (prev->first >> 16 == address && prev->second.last >= range.ports.first) {
                hit = &prev->second;
                port = range.ports.first;
            }
        }
        if (hit == nullptr && it != intervals.end() && it->first <= interval_key(address, range.ports.last)) {
            hit = &it->second;
            port = port_of(it->first);
        }
        if (hit == nullptr) continue;
        // TCP is examined first, so on equal ports TCP is reported.
        if (!best || port < best->port) {
            RangeConflict conflict;
            conflict.existing = entries_.at(hit->key);
            conflict.proto = static_cast<L4Proto>(p);
            conflict.port = port;
            best = conflict;
        }
    }
    return best;
}

std::optional<RangeConflict> RangeRegistry::add(const PortRange& range, OwnerId owner) {
    if (auto conflict = find_conflict(range)) return conflict;
    const uint8_t protos = protos_of(range);
    if (protos == 0) return std::nullopt;  // covers nothing; parse() never produces it
    const Key key{address_number(range.address), range.ports.first, protos};
    entries_.emplace(key, OwnedRange{range, owner});
    for (unsigned p = 0; p < kL4ProtoCount; ++p)
        if (covers_bit(protos, p))
            by_proto_[p].emplace(interval_key(key.address, range.ports.first), Interval{range.ports.last, key});
    return std::nullopt;
}

std::optional<OwnerId> RangeRegistry::remove(const PortRange& range) {
    const Key key{address_number(range.address), range.ports.first, protos_of(range)};
    auto it = entries_.find(key);
    if (it == entries_.end() || it->second.range.ports.last != range.ports.last) return std::nullopt;
    const OwnerId owner = it->second.owner;
    for (unsigned p = 0; p < kL4ProtoCount; ++p)
        if (covers_bit(key.protos, p)) by_proto_[p].erase(interval_key(key.address, range.ports.first));
    entries_.erase(it);
    return owner;
}

std::optional<OwnerId> RangeRegistry::reassign(const PortRange& range, OwnerId owner) {
    auto it = entries_.find(Key{address_number(range.address), range.ports.first, protos_of(range)});
    if (it == entries_.end() || it->second.range.ports.last != range.ports.last) return std::nullopt;
    const OwnerId former = it->second.owner;
    it->second.owner = owner;
    return former;
}

std::optional<OwnerId> RangeRegistry::owner_of(const PortRange& range) const {
    auto it = entries_.find(Key{address_number(range.address), range.ports.first, protos_of(range)});
    if (it == entries_.end() || it->second.range.ports.last != range.ports.last) return std::nullopt;
    return it->second.owner;
}

size_t RangeRegistry::remove_owner(OwnerId owner) {
    size_t removed = 0;
    for (auto it = entries_.begin(); it != entries_.end();) {
        if (it->second.owner != owner) {
            ++it;
            continue;
        }
        for (unsigned p = 0; p < kL4ProtoCount; ++p)
            if (covers_bit(it->first.protos, p)) by_proto_[p].erase(interval_key(it->first.address, it->first.first));
        it = entries_.erase(it);
        ++removed;
    }
    return removed;
}

OwnerId RangeRegistry::lookup(L4Proto proto, uint16_t port, const Ipv4Addr& address) const {
    const auto& intervals = by_proto_[static_cast<unsigned>(proto)];
    const uint32_t number = address_number(address);
    auto it = intervals.upper_bound(interval_key(number, port));
    if (it == intervals.begin()) return kNoOwner;
    --it;
    if (it->first >> 16 != number || it->second.last < port) return kNoOwner;
    return entries_.at(it->second.key).owner;
}

std::vector<OwnedRange> RangeRegistry::list() const {
    // Key order is address (the first shared address first), first port, then the protocol bits 1 (TCP),
    // 2 (UDP), 3 (both): the documented order.
    std::vector<OwnedRange> out;
    out.reserve(entries_.size());
    for (const auto& entry : entries_) out.push_back(entry.second);
    return out;
}

std::vector<OwnedRange> RangeRegistry::list(OwnerId owner) const {
    std::vector<OwnedRange> out;
    for (const auto& entry : entries_)
        if (entry.second.owner == owner) out.push_back(entry.second);
    return out;
}

void RangeRegistry::fill(PortOwnerTable& table, const Ipv4Addr& address) const {
    const uint32_t number = address_number(address);
    for (unsigned p = 0; p < kL4ProtoCount; ++p) {
        std::fill(std::begin(table.owner[p]), std::end(table.owner[p]), kNoOwner);
        const auto& intervals = by_proto_[p];
        for (auto it = intervals.lower_bound(interval_key(number, 0));
             it != intervals.end() && it->first <= interval_key(number, 65535); ++it) {
            const OwnerId owner = entries_.at(it->second.key).owner;
            std::fill(table.owner[p] + port_of(it->first), table.owner[p] + it->second.last + 1, owner);
        }
    }
}

void RangeRegistry::fill(PortOwnerTable& table, const PortRange& window) const {
    const uint8_t protos = protos_of(window);
    const uint32_t number = address_number(window.address);
    const uint16_t first = window.ports.first, last = window.ports.last;
    for (unsigned p = 0; p < kL4ProtoCount; ++p) {
        if (!covers_bit(protos, p)) continue;
        std::fill(table.owner[p] + first, table.owner[p] + last + 1, kNoOwner);
        const auto& intervals = by_proto_[p];
        // The interval that may start before the window, then every one starting inside it (same address).
        auto it = intervals.upper_bound(interval_key(number, first));
        if (it != intervals.begin() && std::prev(it)->first >> 16 == number) --it;
        for (; it != intervals.end() && it->first <= interval_key(number, last); ++it) {
            if (it->second.last < first) continue;
            const uint16_t from = std::max(port_of(it->first), first);
            const uint16_t to = std::min(it->second.last, last);
            std::fill(table.owner[p] + from, table.owner[p] + to + 1, entries_.at(it->second.key).owner);
        }
    }
}

}  // namespace portmux
