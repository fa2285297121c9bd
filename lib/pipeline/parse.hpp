// Parse stage: Ethernet, ARP, IPv4 (with options), IPv6 (walking extension headers), TCP/UDP ports.
#pragma once

#include <cstdint>
#include <cstring>
#include <new>

#include "core/port_range.hpp"
#include "packet/checksum.hpp"
#include "packet/parsed_frame.hpp"

namespace portmux {

// The full parser: every frame, every header it knows. parse_frame() below gives exactly its result.
// Parses `frame_len` bytes of which the first `available` are readable at `data` (the worker passes the
// first segment, or a linearised copy of the first bytes of a chained mbuf). Never reads past `available`.
// A header that would extend past `available` or `frame_len`, IHL < 5, an IPv4/IPv6 length beyond the
// frame, a TCP data offset < 5, a UDP length below 8 or beyond the IP payload, or an extension header chain
// longer than the parser walks, or an IPv4 header whose checksum is wrong (`ip4_checksum` says whether to
// verify it), all give kind == kMalformed when the packet is IP (ARP that is too short or not Ethernet/IPv4
// gives kOther: it is the host's business).
// Thread safety: pure function.
ParsedFrame parse_frame_full(const uint8_t* data, uint32_t available, uint32_t frame_len,
                             Ipv4ChecksumState ip4_checksum = Ipv4ChecksumState::kUnchecked);

// The common case in one straight path: untagged IPv4 without options and not a fragment, or IPv6 without
// extension headers, carrying TCP or UDP whose header is complete and consistent. Fills `f` (which must hold
// a default-constructed ParsedFrame) and returns true only when the result is what parse_frame_full()
// gives; anything else returns false with `f` untouched, for the full parser. Pure function.
inline bool parse_frame_fast(const uint8_t* data, uint32_t available, uint32_t frame_len, ParsedFrame& f,
                             Ipv4ChecksumState ip4_checksum = Ipv4ChecksumState::kUnchecked) {
    constexpr uint32_t kL3 = 14;
    const uint32_t readable = available < frame_len ? available : frame_len;
    // The shortest frame this path takes: IPv4 and UDP (14 + 20 + 8). Each header is checked against
    // `readable` before it is read; anything shorter is the full parser's (which calls it malformed).
    if (readable < kL3 + 20 + 8) return false;
    const uint8_t* ip = data + kL3;
    const uint16_t ether_type = wire::load16(data + 12);
    uint32_t l3_len;
    uint32_t l4;
    uint8_t proto;
    if (ether_type == 0x0800) {
        // Version 4, IHL 5; MF clear and offset 0 (DF may be set).
        if (ip[0] != 0x45 || (wire::load16(ip + 6) & 0x3fff) != 0) return false;
        l3_len = wire::load16(ip + 2);
        if (l3_len < 20) return false;
        // A wrong checksum is the full parser's to call malformed; 20 bytes are readable here.
        if (ip4_checksum != Ipv4ChecksumState::kGood &&
            (ip4_checksum == Ipv4ChecksumState::kBad || !wire::ipv4_header_checksum_ok(ip, 20)))
            return false;
        l4 = kL3 + 20;
        proto = ip[9];
    } else if (ether_type == 0x86dd) {
        if (readable < kL3 + 40 + 8 || (ip[0] >> 4) != 6) return false;
        l3_len = 40u + wire::load16(ip + 4);
        if (l3_len > 0xffff) return false;
        l4 = kL3 + 40;
        proto = ip[6];  // an extension header is neither TCP nor UDP: the full parser walks it
    } else {
        return false;
    }
    if (l3_len > frame_len - kL3) return false;
    const uint32_t l4_len = l3_len - (l4 - kL3);  // what the IP header says follows it
    const uint32_t room = readable - l4;           // what may be read of it, at least 8 here
    const uint8_t* p = data + l4;
    if (proto == kIpProtoTcp) {
        if (room < 20) return false;
        const uint32_t header_len = static_cast<uint32_t>(p[12] >> 4) * 4;
        if (header_len < 20 || header_len > l4_len || header_len > room) return false;
    } else if (proto == kIpProtoUdp) {
        const uint32_t udp_len = wire::load16(p + 4);
        if (l4_len < 8 || udp_len < 8 || udp_len > l4_len) return false;
    } else {
        return false;
    }
    f.ip_proto = proto;
    f.has_ports = true;
    f.l3_offset = kL3;
    f.l4_offset = static_cast<uint16_t>(l4);
    f.l3_length = static_cast<uint16_t>(l3_len);
    f.src_port = wire::load16(p);
    f.dst_port = wire::load16(p + 2);
    if (l4 == kL3 + 20) {
        f.kind = FrameKind::kIpv4;
        f.key.v4.proto = proto;
        std::memcpy(&f.key.v4.src, ip + 12, 4);
        std::memcpy(&f.key.v4.dst, ip + 16, 4);
        std::memcpy(&f.key.v4.src_port, p, 4);  // source then destination port, still in network byte order
    } else {
        f.kind = FrameKind::kIpv6;
        f.key.v6.proto = proto;
        std::memcpy(f.key.v6.src, ip + 8, 16);
        std::memcpy(f.key.v6.dst, ip + 24, 16);
        std::memcpy(&f.key.v6.src_port, p, 4);
    }
    return true;
}

// Parses one frame: parse_frame_fast() when it applies, parse_frame_full() otherwise; the result is
// parse_frame_full()'s in every case (the fuzz target checks that on every input). Pure function.
inline ParsedFrame parse_frame(const uint8_t* data, uint32_t available, uint32_t frame_len,
                               Ipv4ChecksumState ip4_checksum = Ipv4ChecksumState::kUnchecked) {
    ParsedFrame f;
    if (!parse_frame_fast(data, available, frame_len, f, ip4_checksum))
        f = parse_frame_full(data, available, frame_len, ip4_checksum);
    return f;
}

// parse_frame() into raw storage `out` (constructed here), saying whether the straight path took the frame:
// then it is untagged IPv4/IPv6 TCP/UDP, not a fragment, and plan_common_frame() applies. Pure function.
inline bool parse_frame_into(const uint8_t* data, uint32_t available, uint32_t frame_len,
                             Ipv4ChecksumState ip4_checksum, ParsedFrame* out) {
    new (out) ParsedFrame;
    if (parse_frame_fast(data, available, frame_len, *out, ip4_checksum)) return true;
    *out = parse_frame_full(data, available, frame_len, ip4_checksum);
    return false;
}

// Two results are the same parse: every field equal, the optional arrays (ndp_target, quoted_src) only
// where their flag says they are valid, and the flow key's fields for the address family (what rte_acl reads).
bool same_parse(const ParsedFrame& a, const ParsedFrame& b);

}  // namespace portmux
