// Answers for packets to ports nobody owns under `unmatched: reject`: TCP RST, ICMP/ICMPv6 port unreachable.
#include "pipeline/reject.hpp"

#include <cstring>

#include "core/port_range.hpp"
#include "packet/checksum.hpp"

namespace portmux {
namespace {

using wire::csum_add;
using wire::csum_add16;
using wire::csum_finish;
using wire::load16;
using wire::load32;
using wire::store16;
using wire::store32;

constexpr uint32_t kEthLen = 14;
constexpr uint32_t kIpv4Len = 20;
constexpr uint32_t kIpv6Len = 40;
constexpr uint32_t kTcpLen = 20;
constexpr uint32_t kUdpLen = 8;
constexpr uint32_t kIcmpHeaderLen = 8;
constexpr uint32_t kIpv6MinMtu = 1280;
constexpr uint8_t kTtl = 64;

constexpr uint8_t kTcpFin = 0x01;
constexpr uint8_t kTcpSyn = 0x02;
constexpr uint8_t kTcpRst = 0x04;
constexpr uint8_t kTcpAck = 0x10;

// The answer's addresses: the offending packet's, swapped.
struct Reply {
    bool v6;
    const uint8_t* src;  // the offending packet's destination
    const uint8_t* dst;  // the offending packet's source
};

// RFC 1122 3.2.2 / RFC 4443 2.4 (e): no error for a packet that came from, or to, a group of hosts.
bool answerable(const uint8_t* frame, const ParsedFrame& parsed) {
    if ((frame[0] & 0x01) != 0 || (frame[6] & 0x01) != 0) return false;
    if (parsed.kind == FrameKind::kIpv4) {
        const uint8_t* src = frame + parsed.l3_offset + 12;
        const uint32_t addr = load32(src);
        return addr != 0 && addr != 0xffffffffu && (src[0] & 0xf0) != 0xe0;
    }
    const uint8_t* src = frame + parsed.l3_offset + 8;
    static const uint8_t kUnspecified[16] = {};
    return src[0] != 0xff && std::memcmp(src, kUnspecified, 16) != 0;
}

void write_ethernet(uint8_t* out, const uint8_t* frame, const MacAddr& uplink_mac, bool v6) {
    std::memcpy(out, frame + 6, 6);
    std::memcpy(out + 6, uplink_mac.bytes.data(), 6);
    store16(out + 12, v6 ? 0x86dd : 0x0800);
}

// Writes the IP header for `payload_len` bytes of protocol `proto`; returns its length.
uint32_t write_ip(uint8_t* out, const Reply& r, uint8_t proto, uint32_t payload_len) {
    if (r.v6) {
        std::memset(out, 0, kIpv6Len);
        out[0] = 0x60;
        store16(out + 4, static_cast<uint16_t>(payload_len));
        out[6] = proto;
        out[7] = kTtl;
        std::memcpy(out + 8, r.src, 16);
        std::memcpy(out + 24, r.dst, 16);
        return kIpv6Len;
    }
    std::memset(out, 0, kIpv4Len);
    out[0] = 0x45;
    store16(out + 2, static_cast<uint16_t>(kIpv4Len + payload_len));
    store16(out + 6, 0x4000);  // DF: the answer is small, never worth fragmenting
    out[8] = kTtl;
    out[9] = proto;
    std::memcpy(out + 12, r.src, 4);
    std::memcpy(out + 16, r.dst, 4);
    store16(out + 10, csum_finish(csum_add(0, out, kIpv4Len)));
    return kIpv4Len;
}

// The transport checksum's pseudo-header sum (RFC 793 / RFC 8200 8.1).
uint32_t pseudo_header_sum(const Reply& r, uint8_t proto, uint32_t l4_len) {
    const uint32_t addr_len = r.v6 ? 16 : 4;
    uint32_t sum = csum_add(0, r.src, addr_len);
    sum = csum_add(sum, r.dst, addr_len);
    sum = csum_add16(sum, proto);
    sum = csum_add16(sum, static_cast<uint16_t>(l4_len >> 16));
    return csum_add16(sum, static_cast<uint16_t>(l4_len));
}

uint32_t build_rst(const uint8_t* frame, uint32_t length, const ParsedFrame& parsed, const Reply& r,
                   const MacAddr& uplink_mac, uint8_t* out, uint32_t out_capacity) {
    const uint8_t* tcp = frame + parsed.l4_offset;
    if (length - parsed.l4_offset < kTcpLen) return 0;
    const uint8_t flags = tcp[13];
    if ((flags & kTcpRst) != 0) return 0;  // never answer a reset (RFC 9293 3.10.7.1)
    const uint32_t ip_len = r.v6 ? kIpv6Len : kIpv4Len;
    const uint32_t total = kEthLen + ip_len + kTcpLen;
    if (out_capacity < total) return 0;

    uint32_t seq = 0;
    uint32_t ack = 0;
    uint8_t out_flags = kTcpRst;
    if ((flags & kTcpAck) != 0) {
        seq = load32(tcp + 8);
    } else {
        const uint32_t l3_end = static_cast<uint32_t>(parsed.l3_offset) + parsed.l3_length;
        const uint32_t header_len = static_cast<uint32_t>(tcp[12] >> 4) * 4;
        const uint32_t data_len = l3_end - parsed.l4_offset - header_len;
        ack = load32(tcp + 4) + data_len + ((flags & kTcpSyn) != 0 ? 1 : 0) + ((flags & kTcpFin) != 0 ? 1 : 0);
        out_flags = kTcpRst | kTcpAck;
    }

    write_ethernet(out, frame, uplink_mac, r.v6);
    write_ip(out + kEthLen, r, kIpProtoTcp, kTcpLen);
    uint8_t* t = out + kEthLen + ip_len;
    std::memset(t, 0, kTcpLen);
    std::memcpy(t, tcp + 2, 2);  // source port: the one the packet was sent to
    std::memcpy(t + 2, tcp, 2);
    store32(t + 4, seq);
    store32(t + 8, ack);
    t[12] = static_cast<uint8_t>((kTcpLen / 4) << 4);
    t[13] = out_flags;
    store16(t + 16, csum_finish(csum_add(pseudo_header_sum(r, kIpProtoTcp, kTcpLen), t, kTcpLen)));
    return total;
}

uint32_t build_unreachable(const uint8_t* frame, uint32_t length, const ParsedFrame& parsed, const Reply& r,
                           const MacAddr& uplink_mac, uint8_t* out, uint32_t out_capacity) {
    const uint32_t l3 = parsed.l3_offset;
    uint32_t quote = length - l3;
    if (quote > parsed.l3_length) quote = parsed.l3_length;
    uint32_t ip_len;
    if (r.v6) {
        // RFC 4443 2.4 (c): as much of the packet as fits without the error exceeding the minimum MTU.
        ip_len = kIpv6Len;
        if (quote > kIpv6MinMtu - kIpv6Len - kIcmpHeaderLen) quote = kIpv6MinMtu - kIpv6Len - kIcmpHeaderLen;
    } else {
        // RFC 792: the internet header plus the first 64 bits of the datagram's data.
        ip_len = kIpv4Len;
        const uint32_t wanted = static_cast<uint32_t>(parsed.l4_offset - l3) + kUdpLen;
        if (quote > wanted) quote = wanted;
    }
    const uint32_t icmp_len = kIcmpHeaderLen + quote;
    const uint32_t total = kEthLen + ip_len + icmp_len;
    if (out_capacity < total) return 0;

    const uint8_t proto = r.v6 ? kIpProtoIcmpv6 : kIpProtoIcmp;
    write_ethernet(out, frame, uplink_mac, r.v6);
    write_ip(out + kEthLen, r, proto, icmp_len);
    uint8_t* icmp = out + kEthLen + ip_len;
    std::memset(icmp, 0, kIcmpHeaderLen);
    icmp[0] = r.v6 ? 1 : 3;  // destination unreachable
    icmp[1] = r.v6 ? 4 : 3;  // port unreachable
    std::memcpy(icmp + kIcmpHeaderLen, frame + l3, quote);
    // ICMPv4 has no pseudo-header; ICMPv6 does.
    const uint32_t sum = r.v6 ? pseudo_header_sum(r, proto, icmp_len) : 0;
    store16(icmp + 2, csum_finish(csum_add(sum, icmp, icmp_len)));
    return total;
}

}  // namespace

uint32_t build_reject(const uint8_t* frame, uint32_t length, const ParsedFrame& parsed, const MacAddr& uplink_mac,
                      uint8_t* out, uint32_t out_capacity) {
    const bool v6 = parsed.kind == FrameKind::kIpv6;
    if ((parsed.kind != FrameKind::kIpv4 && !v6) || !parsed.has_ports || parsed.is_fragment) return 0;
    const uint32_t ip_len = v6 ? kIpv6Len : kIpv4Len;
    // The parse stage checked these against its own view; `length` may be shorter, so check again.
    if (length < kEthLen || parsed.l3_offset < kEthLen || length - parsed.l3_offset < ip_len ||
        parsed.l4_offset < parsed.l3_offset + ip_len || parsed.l4_offset > length ||
        static_cast<uint32_t>(parsed.l4_offset) > static_cast<uint32_t>(parsed.l3_offset) + parsed.l3_length ||
        length - parsed.l4_offset < kUdpLen) {
        return 0;
    }
    if (!answerable(frame, parsed)) return 0;

    const uint8_t* ip = frame + parsed.l3_offset;
    const Reply r{v6, v6 ? ip + 24 : ip + 16, v6 ? ip + 8 : ip + 12};
    if (parsed.ip_proto == kIpProtoTcp) return build_rst(frame, length, parsed, r, uplink_mac, out, out_capacity);
    if (parsed.ip_proto == kIpProtoUdp) return build_unreachable(frame, length, parsed, r, uplink_mac, out, out_capacity);
    return 0;
}

}  // namespace portmux
