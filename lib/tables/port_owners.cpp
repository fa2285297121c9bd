// The range registry: per-protocol interval maps kept free of overlaps, and the direct table built from them.
#include "tables/port_owners.hpp"

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

}  // namespace

std::optional<RangeConflict> RangeRegistry::find_conflict(const PortRange& range) const {
    std::optional<RangeConflict> best;
    const uint8_t protos = protos_of(range);
    for (unsigned p = 0; p < kL4ProtoCount; ++p) {
        if (!covers_bit(protos, p)) continue;
        const auto& intervals = by_proto_[p];
        // Intervals do not overlap, so the only candidates are the one starting at or before `first` and the
        // first one starting inside the range.
        const Interval* hit = nullptr;
        uint16_t port = 0;
        auto it = intervals.upper_bound(range.ports.first);
        if (it != intervals.begin()) {
            auto prev = std::prev(it);
            if (prev->second.last >= range.ports.first) {
                hit = &prev->second;
                port = range.ports.first;
            }
        }
        if (hit == nullptr && it != intervals.end() && it->first <= range.ports.last) {
            hit = &it->second;
            port = it->first;
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
    const Key key{range.ports.first, protos};
    entries_.emplace(key, OwnedRange{range, owner});
    for (unsigned p = 0; p < kL4ProtoCount; ++p)
        if (covers_bit(protos, p)) by_proto_[p].emplace(range.ports.first, Interval{range.ports.last, key});
    return std::nullopt;
}

std::optional<OwnerId> RangeRegistry::remove(const PortRange& range) {
    const Key key{range.ports.first, protos_of(range)};
    auto it = entries_.find(key);
    if (it == entries_.end() || it->second.range.ports.last != range.ports.last) return std::nullopt;
    const OwnerId owner = it->second.owner;
    for (unsigned p = 0; p < kL4ProtoCount; ++p)
        if (covers_bit(key.protos, p)) by_proto_[p].erase(range.ports.first);
    entries_.erase(it);
    return owner;
}

std::optional<OwnerId> RangeRegistry::reassign(const PortRange& range, OwnerId owner) {
    auto it = entries_.find(Key{range.ports.first, protos_of(range)});
    if (it == entries_.end() || it->second.range.ports.last != range.ports.last) return std::nullopt;
    const OwnerId former = it->second.owner;
    it->second.owner = owner;
    return former;
}

std::optional<OwnerId> RangeRegistry::owner_of(const PortRange& range) const {
    auto it = entries_.find(Key{range.ports.first, protos_of(range)});
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
            if (covers_bit(it->first.protos, p)) by_proto_[p].erase(it->first.first);
        it = entries_.erase(it);
        ++removed;
    }
    return removed;
}

OwnerId RangeRegistry::lookup(L4Proto proto, uint16_t port) const {
    const auto& intervals = by_proto_[static_cast<unsigned>(proto)];
    auto it = intervals.upper_bound(port);
    if (it == intervals.begin()) return kNoOwner;
    --it;
    if (it->second.last < port) return kNoOwner;
    return entries_.at(it->second.key).owner;
}

std::vector<OwnedRange> RangeRegistry::list() const {
    // Key order is first port, then the protocol bits 1 (TCP), 2 (UDP), 3 (both): the documented order.
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

void RangeRegistry::fill(PortOwnerTable& table) const {
    for (unsigned p = 0; p < kL4ProtoCount; ++p) {
        std::fill(std::begin(table.owner[p]), std::end(table.owner[p]), kNoOwner);
        for (const auto& [first, interval] : by_proto_[p]) {
            const OwnerId owner = entries_.at(interval.key).owner;
            std::fill(table.owner[p] + first, table.owner[p] + interval.last + 1, owner);
        }
    }
}

void RangeRegistry::fill(PortOwnerTable& table, const PortRange& window) const {
    const uint8_t protos = protos_of(window);
    const uint16_t first = window.ports.first, last = window.ports.last;
    for (unsigned p = 0; p < kL4ProtoCount; ++p) {
        if (!covers_bit(protos, p)) continue;
        std::fill(table.owner[p] + first, table.owner[p] + last + 1, kNoOwner);
        const auto& intervals = by_proto_[p];
        // The interval that may start before the window, then every one starting inside it.
        auto it = intervals.upper_bound(first);
        if (it != intervals.begin()) --it;
        for (; it != intervals.end() && it->first <= last; ++it) {
            if (it->second.last < first) continue;
            const uint16_t from = std::max(it->first, first);
            const uint16_t to = std::min(it->second.last, last);
            std::fill(table.owner[p] + from, table.owner[p] + to + 1, entries_.at(it->second.key).owner);
        }
    }
}

}  // namespace portmux
