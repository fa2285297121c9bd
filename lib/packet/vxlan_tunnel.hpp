// VXLAN (RFC 7348) as the tables describe it: the size and fields of the outer headers, and the tunnel's
// settings carried by the snapshot. The encapsulation and the checks of received tunnel frames are
// pipeline/vxlan.hpp.
#pragma once

#include <cstdint>
#include <vector>

#include "core/port_range.hpp"
#include "packet/parsed_frame.hpp"

namespace portmux {

// Outer Ethernet (14) + IPv4 without options (20) + UDP (8) + VXLAN (8).
inline constexpr uint32_t kVxlanOverhead = 50;
inline constexpr uint32_t kVxlanHeaderLen = 8;
inline constexpr uint8_t kVxlanFlagVni = 0x08;  // the I flag: the VNI field is valid
// A reserved flag bit (RFC 7348: set to zero, ignored on receipt; free in VXLAN-GPE too) that portmux sets on
// a frame it re-sends because the range it came for has moved on: the next host delivers it or drops it,
// never sends it on again, so a stale location costs at most one extra hop and can never loop.
inline constexpr uint8_t kVxlanFlagResent = 0x80;
// RFC 7348 sec. 5 recommends the dynamic/private range for the entropy-carrying source port.
inline constexpr uint16_t kVxlanSourcePortBase = 49152;

// The tunnel as the data path sees it; in the snapshot only when `vxlan` is configured.
struct VxlanSettings {
    uint32_t local_ip = 0;  // network byte order
    uint16_t port = 0;      // host byte order
    uint32_t vni = 0;
    std::vector<uint32_t> peers;  // network byte order: `vxlan.peers` and every remote's host

    // A linear scan: peers are a handful of hosts, and a hash would cost more at that size.
    bool is_peer(uint32_t ip_be) const {
        for (uint32_t peer : peers)
            if (peer == ip_be) return true;
        return false;
    }
    // An IPv4 UDP datagram to local_ip:port (also its first fragment): it is the tunnel's, whatever it holds.
    bool is_tunnel_frame(const ParsedFrame& f) const {
        return f.kind == FrameKind::kIpv4 && f.ip_proto == kIpProtoUdp && f.has_ports && f.dst_port == port &&
               f.key.v4.dst == local_ip;
    }
};

}  // namespace portmux
