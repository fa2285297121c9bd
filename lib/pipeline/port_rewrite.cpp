// In-place port rewrite with an incremental checksum update.
#include "pipeline/port_rewrite.hpp"

#include "core/port_range.hpp"
#include "packet/checksum.hpp"

namespace portmux {

void rewrite_l4_port(uint8_t* frame, uint32_t length, const ParsedFrame& parsed, bool source, uint16_t port) {
    if (!parsed.has_ports) return;
    const bool tcp = parsed.ip_proto == kIpProtoTcp;
    if (!tcp && parsed.ip_proto != kIpProtoUdp) return;
    const uint32_t l4 = parsed.l4_offset;
    const uint32_t checksum_at = l4 + (tcp ? 16u : 6u);
    if (length < checksum_at + 2) return;
    uint8_t* field = frame + l4 + (source ? 0 : 2);
    const uint16_t old_port = wire::load16(field);
    wire::store16(field, port);
    uint16_t checksum = wire::load16(frame + checksum_at);
    if (!tcp && checksum == 0) return;  // UDP over IPv4 without a checksum
    checksum = wire::csum_replace16(checksum, old_port, port);
    if (!tcp && checksum == 0) checksum = 0xffff;  // UDP sends a computed zero as all ones
    wire::store16(frame + checksum_at, checksum);
}

}  // namespace portmux
