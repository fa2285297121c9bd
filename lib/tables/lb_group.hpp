// Load-balanced groups as the data path sees them: members with their state and a Maglev lookup table,
// built on the control side and carried, immutable, by the snapshot (see docs/load-balancing.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/owner_id.hpp"
#include "packet/parsed_frame.hpp"

namespace portmux {

// A prime, so every skip in 1..M-1 walks the whole table. 4,093 entries of 2 bytes (8 KiB) stay in the
// first-level caches and keep the weighted shares within about 1% for groups of up to ~40 members (Maglev
// wants M well above 100 x members); 65,537 would cost 128 KiB per group for precision few groups need.
inline constexpr size_t kMaglevSize = 4093;

enum class MemberState : uint8_t {
    kActive,    // receives new flows (in the Maglev table) and keeps its existing ones
    kDraining,  // keeps its existing flows, receives no new ones
    kDown,      // port down or VM disabled: skipped at once, its flows move to other members
};

const char* to_string(MemberState state);

struct LbMember {
    OwnerId vm = kNoOwner;
    uint8_t weight = 1;
    MemberState state = MemberState::kActive;
};

// One group in a snapshot. `maglev` holds the OwnerId of an active member per slot, or is empty when no
// member is active (new flows are then dropped and counted drop_group_empty).
struct LbGroup {
    OwnerId id = kNoOwner;
    std::vector<LbMember> members;
    std::vector<OwnerId> maglev;
    uint64_t member_mask = 0;  // bit i: VM index i (< 64) is a member in any state
    uint64_t usable_mask = 0;  // bit i: VM index i (< 64) is active or draining
    bool large = false;        // some member has a VM index >= 64: the masks do not cover it, scan members

    bool is_member(OwnerId vm) const {
        const size_t index = static_cast<size_t>(vm - kFirstVmOwner);
        if (!large) return index < 64 && (member_mask >> index) & 1;
        for (const LbMember& m : members)
            if (m.vm == vm) return true;
        return false;
    }
    // Active or draining: may keep the flows it has.
    bool is_usable(OwnerId vm) const {
        const size_t index = static_cast<size_t>(vm - kFirstVmOwner);
        if (!large) return index < 64 && (usable_mask >> index) & 1;
        for (const LbMember& m : members)
            if (m.vm == vm) return m.state != MemberState::kDown;
        return false;
    }
    OwnerId pick(uint64_t flow_hash) const { return maglev.empty() ? kNoOwner : maglev[flow_hash % maglev.size()]; }
};

// A member for build_maglev: its name seeds its permutation, so a member keeps its slots whatever its
// position in the list or the other members.
struct MaglevMember {
    std::string name;
    uint8_t weight = 1;
    OwnerId vm = kNoOwner;
};

// Maglev (Eisenbud et al., NSDI 2016) with weights: each member walks its own permutation of the slots and
// claims the next free one whenever its credit allows, so shares follow weights and adding or removing a
// member moves little more than that member's share. Empty when `members` is empty or all weights are 0.
// Control side; deterministic.
std::vector<OwnerId> build_maglev(const std::vector<MaglevMember>& members, size_t size = kMaglevSize);

// Fills masks and the `large` flag from `members`. Control side.
void index_members(LbGroup& group);

// The hash of a packet's flow for the Maglev table: source address, both ports, protocol and family (the
// destination is always the shared address). Pure, no allocation.
uint64_t flow_hash(const ParsedFrame& frame);

}  // namespace portmux
