// Building the port translation tables from the range registry.
#include "tables/port_translation.hpp"

#include <algorithm>

namespace portmux {

uint16_t PortTranslation::outbound(OwnerId owner, L4Proto proto, uint16_t inner_port) const {
    if (owner >= answers.size()) return inner_port;
    const std::vector<TranslatedSpan>& spans = answers[owner][static_cast<unsigned>(proto)];
    // Few spans per VM: a binary search over them.
    auto it = std::upper_bound(spans.begin(), spans.end(), inner_port,
                               [](uint16_t port, const TranslatedSpan& s) { return port < s.inner_first; });
    if (it == spans.begin()) return inner_port;
    --it;
    if (inner_port > it->inner_last) return inner_port;
    return static_cast<uint16_t>(it->outer_first + (inner_port - it->inner_first));
}

std::shared_ptr<const PortTranslation> build_port_translation(const RangeRegistry& registry, size_t owner_count) {
    std::vector<OwnedRange> ranges = registry.list();
    if (std::none_of(ranges.begin(), ranges.end(), [](const OwnedRange& r) { return r.range.translated; }))
        return nullptr;
    auto table = std::make_shared<PortTranslation>();
    for (unsigned p = 0; p < kL4ProtoCount; ++p)
        for (uint32_t port = 0; port < 65536; ++port) table->inner[p][port] = static_cast<uint16_t>(port);
    table->answers.resize(owner_count);
    for (const OwnedRange& owned : ranges) {
        if (!owned.range.translated || owned.owner >= owner_count) continue;
        const PortSpan outer = owned.range.ports;
        const PortSpan inner = owned.range.inner();
        for (unsigned p = 0; p < kL4ProtoCount; ++p) {
            if (!owned.range.covers(static_cast<L4Proto>(p))) continue;
            for (uint32_t port = outer.first; port <= outer.last; ++port)
                table->inner[p][port] = static_cast<uint16_t>(inner.first + (port - outer.first));
            table->answers[owned.owner][p].push_back(TranslatedSpan{inner.first, inner.last, outer.first});
        }
    }
    for (auto& per_owner : table->answers)
        for (auto& spans : per_owner)
            std::sort(spans.begin(), spans.end(),
                      [](const TranslatedSpan& a, const TranslatedSpan& b) { return a.inner_first < b.inner_first; });
    return table;
}

}  // namespace portmux
