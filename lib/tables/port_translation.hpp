// Port translation tables (extension): a VM can own "tcp:8080-8089->80-89", receiving port 8080 + i as
// 80 + i and answering from 80 + i as 8080 + i. Built on the control side; absent when no range translates,
// so the data path pays one null check.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/port_owners.hpp"
#include "core/port_range.hpp"

namespace portmux {

struct TranslatedSpan {
    uint16_t inner_first = 0;
    uint16_t inner_last = 0;
    uint16_t outer_first = 0;
};

struct PortTranslation {
    // Inbound: the port the owning VM sees, for every outer port (the port itself where nothing translates).
    uint16_t inner[kL4ProtoCount][65536];
    // Outbound: each owner's translated spans per protocol, sorted by inner port (indexed by OwnerId).
    std::vector<std::array<std::vector<TranslatedSpan>, kL4ProtoCount>> answers;

    uint16_t inbound(L4Proto proto, uint16_t outer_port) const { return inner[static_cast<unsigned>(proto)][outer_port]; }
    // The outer port for a VM's answer from `inner_port` (the port itself when no span of `owner` covers it).
    uint16_t outbound(OwnerId owner, L4Proto proto, uint16_t inner_port) const;
};

// Null when no range of `registry` translates. `owner_count` bounds the owner ids. Control side.
std::shared_ptr<const PortTranslation> build_port_translation(const RangeRegistry& registry, size_t owner_count);

}  // namespace portmux
