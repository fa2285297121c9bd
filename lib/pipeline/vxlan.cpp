// VXLAN encapsulation and the acceptance checks for received tunnel frames.
#include "pipeline/vxlan.hpp"

#include <cstring>

#include "packet/checksum.hpp"

namespace portmux {
namespace {

constexpr uint32_t kEthLen = 14;
constexpr uint32_t kIpv4Len = 20;
constexpr uint32_t kUdpLen = 8;
constexpr uint8_t kTtl = 64;

uint32_t mix(uint32_t h, uint32_t v) {
    h ^= v;
    h *= 0x9e3779b1u;
    return h ^ (h >> 15);
}

}  // namespace

VxlanCheck check_vxlan(const uint8_t* data, uint32_t readable, const ParsedFrame& outer, const VxlanSettings& settings) {
    VxlanCheck check;
    // The underlay sends with DF: a fragment was either forged or fragmented against our advice.
    if (!settings.is_peer(outer.key.v4.src) || outer.is_fragment) return check;
    const uint32_t l4 = outer.l4_offset;
    const uint32_t vxlan = l4 + kUdpLen;
    if (readable < vxlan + kVxlanHeaderLen) return check;
    // parse_frame checked the UDP length against the IP length for an unfragmented datagram.
    const uint32_t udp_length = wire::load16(data + l4 + 4);
    if (udp_length < kUdpLen + kVxlanHeaderLen + kEthLen) return check;
    const uint8_t* header = data + vxlan;
    if ((header[0] & kVxlanFlagVni) == 0) return check;
    const uint32_t vni = (static_cast<uint32_t>(header[4]) << 16) | (static_cast<uint32_t>(header[5]) << 8) | header[6];
    if (vni != settings.vni) return check;
    check.accept = true;
    check.inner_offset = vxlan + kVxlanHeaderLen;
    check.inner_length = udp_length - kUdpLen - kVxlanHeaderLen;
    check.resent = (header[0] & kVxlanFlagResent) != 0;
    return check;
}

uint16_t vxlan_source_port(const ParsedFrame& inner) {
    uint32_t h = 0x811c9dc5u;
    if (inner.kind == FrameKind::kIpv4) {
        h = mix(h, inner.key.v4.src);
        h = mix(h, inner.key.v4.dst);
    } else if (inner.kind == FrameKind::kIpv6) {
        uint32_t words[8];
        std::memcpy(words, inner.key.v6.src, 16);
        std::memcpy(words + 4, inner.key.v6.dst, 16);
        for (uint32_t w : words) h = mix(h, w);
    }
    h = mix(h, inner.ip_proto);
    h = mix(h, (static_cast<uint32_t>(inner.src_port) << 16) | inner.dst_port);
    return static_cast<uint16_t>(kVxlanSourcePortBase + (h % (65536u - kVxlanSourcePortBase)));
}

void write_vxlan_headers(uint8_t* out, const MacAddr& src_mac, const MacAddr& next_hop, uint32_t remote_ip_be,
                         const VxlanSettings& settings, uint32_t inner_length, uint16_t source_port,
                         bool resent) {
    // Ethernet
    std::memcpy(out, next_hop.bytes.data(), 6);
    std::memcpy(out + 6, src_mac.bytes.data(), 6);
    out[12] = 0x08;
    out[13] = 0x00;
    // IPv4: no options, DF (the underlay must carry inner MTU + 50; see docs/remote-vms.md), identification 0
    // as RFC 6864 allows for atomic datagrams.
    uint8_t* ip = out + kEthLen;
    ip[0] = 0x45;
    ip[1] = 0;
    wire::store16(ip + 2, static_cast<uint16_t>(kIpv4Len + kUdpLen + kVxlanHeaderLen + inner_length));
    wire::store16(ip + 4, 0);
    wire::store16(ip + 6, 0x4000);
    ip[8] = kTtl;
    ip[9] = kIpProtoUdp;
    wire::store16(ip + 10, 0);
    std::memcpy(ip + 12, &settings.local_ip, 4);
    std::memcpy(ip + 16, &remote_ip_be, 4);
    wire::store16(ip + 10, wire::csum_finish(wire::csum_add(0, ip, kIpv4Len)));
    // UDP
    uint8_t* udp = ip + kIpv4Len;
    wire::store16(udp, source_port);
    wire::store16(udp + 2, settings.port);
    wire::store16(udp + 4, static_cast<uint16_t>(kUdpLen + kVxlanHeaderLen + inner_length));
    wire::store16(udp + 6, 0);
    // VXLAN
    uint8_t* vx = udp + kUdpLen;
    vx[0] = static_cast<uint8_t>(kVxlanFlagVni | (resent ? kVxlanFlagResent : 0));
    vx[1] = vx[2] = vx[3] = 0;
    vx[4] = static_cast<uint8_t>(settings.vni >> 16);
    vx[5] = static_cast<uint8_t>(settings.vni >> 8);
    vx[6] = static_cast<uint8_t>(settings.vni);
    vx[7] = 0;
}

}  // namespace portmux
