// Maglev table construction and the flow hash for load-balanced groups.
#include "tables/lb_group.hpp"

#include <algorithm>
#include <cstring>

namespace portmux {
namespace {

uint64_t fnv1a(const std::string& text, uint64_t seed) {
    uint64_t h = 1469598103934665603ULL ^ seed;
    for (unsigned char c : text) {
        h ^= c;
        h *= 1099511628211ULL;
    }
    return h;
}

// splitmix64's finaliser: every input bit affects every output bit.
inline uint64_t mix(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

}  // namespace

const char* to_string(MemberState state) {
    switch (state) {
        case MemberState::kActive: return "active";
        case MemberState::kDraining: return "draining";
        case MemberState::kDown: return "down";
    }
    return "down";
}

std::vector<OwnerId> build_maglev(const std::vector<MaglevMember>& unordered, size_t size) {
    // Slots are claimed in turn, so the order matters on ties: by name, the table depends only on the set.
    std::vector<MaglevMember> members = unordered;
    std::sort(members.begin(), members.end(), [](const MaglevMember& a, const MaglevMember& b) { return a.name < b.name; });
    std::vector<OwnerId> table;
    uint32_t max_weight = 0;
    for (const MaglevMember& m : members) max_weight = m.weight > max_weight ? m.weight : max_weight;
    if (members.empty() || max_weight == 0 || size < 2) return table;

    const size_t n = members.size();
    std::vector<uint64_t> offset(n), skip(n), next(n, 0);
    std::vector<uint32_t> credit(n, 0);
    for (size_t i = 0; i < n; ++i) {
        offset[i] = mix(fnv1a(members[i].name, 0x6d61676c)) % size;
        skip[i] = mix(fnv1a(members[i].name, 0x65763132)) % (size - 1) + 1;
    }
    table.assign(size, kNoOwner);
    size_t filled = 0;
    // One round gives each member `weight` credit; a slot costs max_weight. Shares are weight / sum(weights).
    while (filled < size) {
        for (size_t i = 0; i < n && filled < size; ++i) {
            credit[i] += members[i].weight;
            while (credit[i] >= max_weight && filled < size) {
                credit[i] -= max_weight;
                size_t slot;
                do {
                    slot = (offset[i] + next[i] * skip[i]) % size;
                    ++next[i];
                } while (table[slot] != kNoOwner);
                table[slot] = members[i].vm;
                ++filled;
            }
        }
    }
    return table;
}

void index_members(LbGroup& group) {
    group.member_mask = 0;
    group.usable_mask = 0;
    group.large = false;
    for (const LbMember& m : group.members) {
        const size_t index = static_cast<size_t>(m.vm - kFirstVmOwner);
        if (index >= 64) {
            group.large = true;
            continue;
        }
        group.member_mask |= uint64_t{1} << index;
        if (m.state != MemberState::kDown) group.usable_mask |= uint64_t{1} << index;
    }
}

uint64_t flow_hash(const ParsedFrame& frame) {
    uint64_t h = (static_cast<uint64_t>(frame.src_port) << 32) | (static_cast<uint64_t>(frame.dst_port) << 16) |
                 (static_cast<uint64_t>(frame.ip_proto) << 8) | (frame.kind == FrameKind::kIpv6 ? 6 : 4);
    if (frame.kind == FrameKind::kIpv6) {
        uint64_t a, b;
        std::memcpy(&a, frame.key.v6.src, 8);
        std::memcpy(&b, frame.key.v6.src + 8, 8);
        return mix(h ^ mix(a ^ mix(b)));
    }
    return mix(h ^ (static_cast<uint64_t>(frame.key.v4.src) << 1));
}

}  // namespace portmux
