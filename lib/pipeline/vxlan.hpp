// VXLAN (RFC 7348) toward remote VMs: the outer headers written in front of a frame, and the checks a
// received tunnel frame passes before its inner frame is switched. Pure functions on byte buffers.
#pragma once

#include <cstdint>

#include "core/counters.hpp"
#include "core/net_types.hpp"
#include "packet/parsed_frame.hpp"
#include "packet/vxlan_tunnel.hpp"

namespace portmux {

// Where the inner frame is, or why the tunnel frame is refused.
struct VxlanCheck {
    bool accept = false;
    SwitchCounter drop_reason = SwitchCounter::drop_vxlan;  // meaningful when !accept
    uint32_t inner_offset = 0;  // from the start of the outer frame
    uint32_t inner_length = 0;  // the inner Ethernet frame (outer padding excluded)
    bool resent = false;        // kVxlanFlagResent: the sender re-sent it; it must not travel further
};

// Checks a frame for which settings.is_tunnel_frame(outer) holds: from a peer, not fragmented, the I flag
// set, our VNI, and a whole inner Ethernet header inside the UDP payload. `readable` bytes of `data` are
// contiguous. Pure function.
VxlanCheck check_vxlan(const uint8_t* data, uint32_t readable, const ParsedFrame& outer, const VxlanSettings& settings);

// The UDP source port for the outer header: a hash of the inner flow (addresses, protocol, ports), so
// underlay routers spread tunnels over equal-cost paths while one flow stays on one path. Pure function.
uint16_t vxlan_source_port(const ParsedFrame& inner);

// Writes the kVxlanOverhead bytes that go in front of an inner frame of `inner_length` bytes: outer
// Ethernet from `src_mac` to `next_hop`, IPv4 local_ip -> `remote_ip` (DF, TTL 64, header checksum), UDP
// `source_port` -> settings.port (checksum 0, as RFC 7348 allows over IPv4), VXLAN with the I flag and VNI,
// and kVxlanFlagResent when `resent`.
void write_vxlan_headers(uint8_t* out, const MacAddr& src_mac, const MacAddr& next_hop, uint32_t remote_ip_be,
                         const VxlanSettings& settings, uint32_t inner_length, uint16_t source_port,
                         bool resent = false);

}  // namespace portmux
