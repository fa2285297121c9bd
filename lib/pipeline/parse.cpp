// Parse stage: finds the L3/L4 headers of one frame and fills the ParsedFrame every later stage reads.
#include "pipeline/parse.hpp"

#include <cstring>

#include "core/port_range.hpp"
#include "packet/checksum.hpp"

namespace portmux {
namespace {

using wire::load16;

constexpr uint32_t kEthHeaderLen = 14;
constexpr uint16_t kEtherTypeIpv4 = 0x0800;
constexpr uint16_t kEtherTypeArp = 0x0806;
constexpr uint16_t kEtherTypeIpv6 = 0x86dd;
constexpr uint32_t kArpIpv4Len = 28;
constexpr uint32_t kIpv4MinHeaderLen = 20;
constexpr uint32_t kIpv6HeaderLen = 40;
constexpr uint32_t kTcpMinHeaderLen = 20;
constexpr uint32_t kUdpHeaderLen = 8;
constexpr uint32_t kNdpTargetEnd = 24;  // ICMPv6 header (4) + reserved/flags (4) + target (16)
constexpr unsigned kMaxIpv6ExtHeaders = 8;

constexpr uint8_t kIpv6HopByHop = 0;
constexpr uint8_t kIpv6Routing = 43;
constexpr uint8_t kIpv6Fragment = 44;
constexpr uint8_t kIpv6Auth = 51;
constexpr uint8_t kIpv6DestOpts = 60;

constexpr uint8_t kIcmp6NeighborSolicit = 135;
constexpr uint8_t kIcmp6NeighborAdvert = 136;

// A truncated or lying frame: nothing but the verdict survives, so no later stage can trust a stale field.
ParsedFrame malformed(uint16_t l3_offset) {
    ParsedFrame f;
    f.kind = FrameKind::kMalformed;
    f.l3_offset = l3_offset;
    return f;
}

// Only Ethernet/IPv4 ARP is ours to reason about; any other ARP stays kOther (the host's business).
void parse_arp(const uint8_t* data, uint32_t readable, ParsedFrame& f) {
    if (readable < kEthHeaderLen + kArpIpv4Len) return;
    const uint8_t* a = data + kEthHeaderLen;
    if (load16(a) != 1 || load16(a + 2) != kEtherTypeIpv4 || a[4] != 6 || a[5] != 4) return;
    f.kind = FrameKind::kArp;
    f.l3_offset = kEthHeaderLen;
    f.l3_length = kArpIpv4Len;
    f.arp_op = load16(a + 6);
    std::memcpy(&f.arp_sender_ip, a + 14, 4);
    std::memcpy(&f.arp_target_ip, a + 24, 4);
}

// The transport header at f.l4_offset, whose datagram ends at `l3_end` (from the IP header's length).
// Returns false when a TCP/UDP header does not conform. In a first fragment the UDP length describes the
// whole datagram, so only its lower bound can be checked here (reassembly checks the rest).
bool parse_l4(const uint8_t* data, uint32_t readable, uint32_t l3_end, ParsedFrame& f, uint16_t* key_ports) {
    const uint32_t l4 = f.l4_offset;
    const uint32_t l4_len = l3_end - l4;
    const uint8_t* p = data + l4;
    if (f.ip_proto == kIpProtoTcp) {
        if (l4_len < kTcpMinHeaderLen || readable - l4 < kTcpMinHeaderLen) return false;
        const uint32_t header_len = static_cast<uint32_t>(p[12] >> 4) * 4;
        if (header_len < kTcpMinHeaderLen || header_len > l4_len || header_len > readable - l4) return false;
    } else if (f.ip_proto == kIpProtoUdp) {
        if (l4_len < kUdpHeaderLen || readable - l4 < kUdpHeaderLen) return false;
        const uint32_t udp_len = load16(p + 4);
        if (udp_len < kUdpHeaderLen || (!f.is_fragment && udp_len > l4_len)) return false;
    } else {
        return true;
    }
    f.has_ports = true;
    f.src_port = load16(p);
    f.dst_port = load16(p + 2);
    std::memcpy(key_ports, p, 4);  // source then destination port, still in network byte order
    return true;
}

bool is_icmp_error(bool v6, uint8_t type) {
    // IPv4: destination unreachable, time exceeded, parameter problem. IPv6: destination unreachable,
    // packet too big, time exceeded, parameter problem.
    return v6 ? (type >= 1 && type <= 4) : (type == 3 || type == 11 || type == 12);
}

// The packet quoted by an ICMP error at f.l4_offset. Only the first 8 bytes of the quoted transport header
// are guaranteed (RFC 792), which is enough for its ports. IPv6 quotes are read when TCP/UDP follows the
// fixed header directly; a quote with extension headers is left to the host.
void parse_icmp_error(const uint8_t* data, uint32_t readable, uint32_t l3_end, bool v6, ParsedFrame& f) {
    const uint32_t end = l3_end < readable ? l3_end : readable;
    const uint32_t icmp = f.l4_offset;
    if (end - icmp < 8 || !is_icmp_error(v6, data[icmp])) return;
    const uint32_t inner = icmp + 8;
    uint32_t quoted_l4;
    uint8_t proto;
    if (!v6) {
        if (end - inner < kIpv4MinHeaderLen || (data[inner] >> 4) != 4) return;
        const uint32_t header_len = static_cast<uint32_t>(data[inner] & 0x0f) * 4;
        if (header_len < kIpv4MinHeaderLen || (load16(data + inner + 6) & 0x1fff) != 0) return;
        proto = data[inner + 9];
        std::memcpy(f.quoted_src, data + inner + 12, 4);
        quoted_l4 = inner + header_len;
    } else {
        if (end - inner < kIpv6HeaderLen || (data[inner] >> 4) != 6) return;
        proto = data[inner + 6];
        std::memcpy(f.quoted_src, data + inner + 8, 16);
        quoted_l4 = inner + kIpv6HeaderLen;
    }
    if ((proto != kIpProtoTcp && proto != kIpProtoUdp) || quoted_l4 > end || end - quoted_l4 < 4) return;
    f.has_quoted_ports = true;
    f.quoted_proto = proto;
    f.quoted_src_port = load16(data + quoted_l4);
}

ParsedFrame parse_ipv4(const uint8_t* data, uint32_t readable, uint32_t frame_len, Ipv4ChecksumState ip4_checksum) {
    ParsedFrame f;
    f.l3_offset = kEthHeaderLen;
    if (readable - kEthHeaderLen < kIpv4MinHeaderLen) return malformed(kEthHeaderLen);
    const uint8_t* ip = data + kEthHeaderLen;
    const uint32_t header_len = static_cast<uint32_t>(ip[0] & 0x0f) * 4;
    const uint32_t total_len = load16(ip + 2);
    if ((ip[0] >> 4) != 4 || header_len < kIpv4MinHeaderLen || header_len > readable - kEthHeaderLen ||
        total_len < header_len || total_len > frame_len - kEthHeaderLen) {
        return malformed(kEthHeaderLen);
    }
    // Once the header is known to be readable (options included), before any more of it is believed: a
    // corrupted header's fragment bits, protocol and addresses mean nothing.
    if (ip4_checksum == Ipv4ChecksumState::kBad ||
        (ip4_checksum == Ipv4ChecksumState::kUnchecked && !wire::ipv4_header_checksum_ok(ip, header_len)))
        return malformed(kEthHeaderLen);
    const uint16_t frag = load16(ip + 6);
    const bool more_fragments = (frag & 0x2000) != 0;
    const uint16_t frag_offset = frag & 0x1fff;

    f.kind = FrameKind::kIpv4;
    f.ip_proto = ip[9];
    f.is_fragment = more_fragments || frag_offset != 0;
    f.first_fragment = f.is_fragment && frag_offset == 0;
    f.l3_length = static_cast<uint16_t>(total_len);
    f.l4_offset = static_cast<uint16_t>(kEthHeaderLen + header_len);
    f.key.v4.proto = ip[9];
    std::memcpy(&f.key.v4.src, ip + 12, 4);
    std::memcpy(&f.key.v4.dst, ip + 16, 4);
    if (frag_offset != 0) return f;  // the transport header is in the first fragment, not here
    if (!parse_l4(data, readable, kEthHeaderLen + total_len, f, &f.key.v4.src_port)) return malformed(kEthHeaderLen);
    if (f.ip_proto == kIpProtoIcmp && !f.is_fragment) parse_icmp_error(data, readable, kEthHeaderLen + total_len, false, f);
    return f;
}

bool is_ipv6_ext_header(uint8_t next) {
    return next == kIpv6HopByHop || next == kIpv6Routing || next == kIpv6Fragment || next == kIpv6DestOpts ||
           next == kIpv6Auth;
}

ParsedFrame parse_ipv6(const uint8_t* data, uint32_t readable, uint32_t frame_len) {
    ParsedFrame f;
    f.l3_offset = kEthHeaderLen;
    if (readable - kEthHeaderLen < kIpv6HeaderLen) return malformed(kEthHeaderLen);
    const uint8_t* ip = data + kEthHeaderLen;
    const uint32_t l3_len = kIpv6HeaderLen + load16(ip + 4);
    // l3_length is 16 bits; a frame that large could only be a jumbogram, which Ethernet cannot carry.
    if ((ip[0] >> 4) != 6 || l3_len > frame_len - kEthHeaderLen || l3_len > 0xffff) return malformed(kEthHeaderLen);
    const uint32_t l3_end = kEthHeaderLen + l3_len;
    // Extension headers are read from the first `readable` bytes and must also lie inside the payload.
    const uint32_t walk_end = l3_end < readable ? l3_end : readable;

    f.kind = FrameKind::kIpv6;
    f.l3_length = static_cast<uint16_t>(l3_len);
    std::memcpy(f.key.v6.src, ip + 8, 16);
    std::memcpy(f.key.v6.dst, ip + 24, 16);

    uint8_t next = ip[6];
    uint32_t pos = kEthHeaderLen + kIpv6HeaderLen;
    unsigned walked = 0;
    bool non_first_fragment = false;
    while (is_ipv6_ext_header(next)) {
        if (walked == kMaxIpv6ExtHeaders || walk_end - pos < 8) return malformed(kEthHeaderLen);
        const uint8_t* h = data + pos;
        uint32_t len;
        if (next == kIpv6Fragment) {
            len = 8;
            const uint16_t frag_offset = load16(h + 2) >> 3;
            f.is_fragment = true;
            f.first_fragment = frag_offset == 0;
            non_first_fragment = frag_offset != 0;
        } else if (next == kIpv6Auth) {
            len = (static_cast<uint32_t>(h[1]) + 2) * 4;
        } else {
            len = (static_cast<uint32_t>(h[1]) + 1) * 8;
        }
        if (walk_end - pos < len) return malformed(kEthHeaderLen);
        next = h[0];
        pos += len;
        ++walked;
        if (non_first_fragment) break;  // what follows is the middle of a datagram, not a header
    }

    f.ip_proto = next;
    f.key.v6.proto = next;
    f.l4_offset = static_cast<uint16_t>(pos);
    if (non_first_fragment) return f;
    if (!parse_l4(data, readable, l3_end, f, &f.key.v6.src_port)) return malformed(kEthHeaderLen);

    if (next == kIpProtoIcmpv6 && !f.is_fragment && l3_end - pos >= 4 && readable - pos >= 4) {
        const uint8_t* icmp = data + pos;
        f.icmp6_type = icmp[0];
        if ((icmp[0] == kIcmp6NeighborSolicit || icmp[0] == kIcmp6NeighborAdvert) && l3_end - pos >= kNdpTargetEnd &&
            readable - pos >= kNdpTargetEnd) {
            f.has_ndp_target = true;
            std::memcpy(f.ndp_target, icmp + 8, 16);
        }
        parse_icmp_error(data, readable, l3_end, true, f);
    }
    return f;
}

}  // namespace

ParsedFrame parse_frame_full(const uint8_t* data, uint32_t available, uint32_t frame_len,
                             Ipv4ChecksumState ip4_checksum) {
    // Trust neither argument alone: a header must lie within both what is readable and the frame itself.
    const uint32_t readable = available < frame_len ? available : frame_len;
    // A runt frame carries no usable header at all: count it as malformed rather than hand it on.
    if (readable < kEthHeaderLen) return malformed(0);

    switch (load16(data + 12)) {
        case kEtherTypeIpv4:
            return parse_ipv4(data, readable, frame_len, ip4_checksum);
        case kEtherTypeIpv6:
            return parse_ipv6(data, readable, frame_len);
        case kEtherTypeArp: {
            ParsedFrame f;
            parse_arp(data, readable, f);
            return f;
        }
        default:
            // Everything else, including 802.1Q/802.1ad tagged frames (0x8100, 0x88a8): the switch does not
            // look inside VLAN tags, so tagged frames reach the host untouched as kOther.
            return ParsedFrame{};
    }
}

bool same_parse(const ParsedFrame& a, const ParsedFrame& b) {
    if (a.kind != b.kind || a.ip_proto != b.ip_proto || a.is_fragment != b.is_fragment ||
        a.first_fragment != b.first_fragment || a.has_ports != b.has_ports || a.l3_offset != b.l3_offset ||
        a.l4_offset != b.l4_offset || a.l3_length != b.l3_length || a.src_port != b.src_port ||
        a.dst_port != b.dst_port || a.arp_op != b.arp_op || a.arp_sender_ip != b.arp_sender_ip ||
        a.arp_target_ip != b.arp_target_ip || a.icmp6_type != b.icmp6_type || a.has_ndp_target != b.has_ndp_target ||
        a.has_quoted_ports != b.has_quoted_ports || a.quoted_proto != b.quoted_proto ||
        a.quoted_src_port != b.quoted_src_port) {
        return false;
    }
    if (a.has_ndp_target && std::memcmp(a.ndp_target, b.ndp_target, sizeof(a.ndp_target)) != 0) return false;
    if (a.has_quoted_ports && std::memcmp(a.quoted_src, b.quoted_src, sizeof(a.quoted_src)) != 0) return false;
    // The key is compared field by field for the family it holds: `key{}` zeroes only the union's first
    // member, so the bytes beyond it are not comparable as a whole.
    if (a.kind == FrameKind::kIpv4) {
        const FlowKey4& x = a.key.v4;
        const FlowKey4& y = b.key.v4;
        return x.proto == y.proto && x.src == y.src && x.dst == y.dst && x.src_port == y.src_port &&
               x.dst_port == y.dst_port;
    }
    if (a.kind == FrameKind::kIpv6) {
        const FlowKey6& x = a.key.v6;
        const FlowKey6& y = b.key.v6;
        return x.proto == y.proto && std::memcmp(x.src, y.src, 16) == 0 && std::memcmp(x.dst, y.dst, 16) == 0 &&
               x.src_port == y.src_port && x.dst_port == y.dst_port;
    }
    return true;
}

}  // namespace portmux
