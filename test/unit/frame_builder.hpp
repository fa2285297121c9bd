// Test-only frame builder: Ethernet/ARP/IPv4/IPv6/TCP/UDP/ICMPv6 frames assembled byte by byte, plus an
// independent checksum oracle to verify what the pipeline writes.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "packet/shared_addresses.hpp"

namespace portmux::test {

using Bytes = std::vector<uint8_t>;
using Mac = std::array<uint8_t, 6>;
using V4 = std::array<uint8_t, 4>;
using V6 = std::array<uint8_t, 16>;

inline const Mac kUplinkMac = {0x02, 0x00, 0x00, 0x00, 0x0a, 0x01};
inline const Mac kPeerMac = {0x02, 0x11, 0x22, 0x33, 0x44, 0x55};
inline const Mac kVmMac = {0x52, 0x54, 0x00, 0x12, 0x34, 0x01};
inline const Mac kBroadcastMac = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
inline const V4 kSharedIp = {192, 0, 2, 10};
inline const V4 kPeerIp = {198, 51, 100, 7};
inline const V6 kSharedIp6 = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10};
inline const V6 kPeerIp6 = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x99};
inline const V6 kAllNodes = {0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01};

inline uint32_t be32_of(const V4& a) {
    uint32_t v;
    std::memcpy(&v, a.data(), 4);
    return v;
}

inline SharedAddresses shared_addresses(bool with_ip6 = true) {
    SharedAddresses s;
    s.ip4 = be32_of(kSharedIp);
    s.has_ip6 = with_ip6;
    if (with_ip6) std::memcpy(s.ip6, kSharedIp6.data(), 16);
    return s;
}

inline void put8(Bytes& b, uint8_t v) { b.push_back(v); }
inline void put16(Bytes& b, uint16_t v) {
    b.push_back(static_cast<uint8_t>(v >> 8));
    b.push_back(static_cast<uint8_t>(v));
}
inline void put32(Bytes& b, uint32_t v) {
    put16(b, static_cast<uint16_t>(v >> 16));
    put16(b, static_cast<uint16_t>(v));
}
template <typename Seq>
inline void put(Bytes& b, const Seq& s) {
    b.insert(b.end(), s.begin(), s.end());
}
inline void set16(Bytes& b, size_t off, uint16_t v) {
    b[off] = static_cast<uint8_t>(v >> 8);
    b[off + 1] = static_cast<uint8_t>(v);
}
inline uint16_t get16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
inline uint32_t get32(const uint8_t* p) { return (uint32_t{get16(p)} << 16) | get16(p + 2); }

// The oracle: a plain RFC 1071 sum, written apart from the library's helper.
inline uint32_t ones_sum(const uint8_t* p, size_t n, uint32_t sum = 0) {
    for (size_t i = 0; i < n; ++i) sum += (i % 2 == 0) ? uint32_t{p[i]} << 8 : p[i];
    return sum;
}
inline uint16_t fold(uint32_t sum) {
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return static_cast<uint16_t>(sum);
}
inline uint32_t pseudo_sum(const uint8_t* src, const uint8_t* dst, size_t addr_len, uint8_t proto, uint32_t len) {
    uint32_t sum = ones_sum(src, addr_len);
    sum = ones_sum(dst, addr_len, sum);
    return sum + proto + (len >> 16) + (len & 0xffff);
}
// True when a transport checksum (pseudo-header included when `pseudo`) verifies.
inline bool l4_checksum_ok(const uint8_t* src, const uint8_t* dst, size_t addr_len, uint8_t proto, const uint8_t* l4,
                           size_t len, bool pseudo = true) {
    const uint32_t base = pseudo ? pseudo_sum(src, dst, addr_len, proto, static_cast<uint32_t>(len)) : 0;
    return fold(ones_sum(l4, len, base)) == 0xffff;
}

inline Bytes ethernet(uint16_t type, const Bytes& payload, const Mac& dst = kUplinkMac, const Mac& src = kPeerMac) {
    Bytes b;
    put(b, dst);
    put(b, src);
    put16(b, type);
    put(b, payload);
    return b;
}

inline Bytes arp(uint16_t op, const V4& sender_ip, const V4& target_ip, const Mac& sender_mac = kPeerMac) {
    Bytes b;
    put16(b, 1);
    put16(b, 0x0800);
    put8(b, 6);
    put8(b, 4);
    put16(b, op);
    put(b, sender_mac);
    put(b, sender_ip);
    put(b, Mac{});
    put(b, target_ip);
    return b;
}

inline Bytes tcp(uint16_t sport, uint16_t dport, uint8_t flags = 0x02, uint32_t seq = 1000, uint32_t ack = 0,
                 size_t payload_len = 0, uint8_t data_offset = 5) {
    Bytes b;
    put16(b, sport);
    put16(b, dport);
    put32(b, seq);
    put32(b, ack);
    put8(b, static_cast<uint8_t>(data_offset << 4));
    put8(b, flags);
    put16(b, 65535);
    put16(b, 0);  // checksum
    put16(b, 0);
    for (unsigned i = 20; i < data_offset * 4u; ++i) put8(b, 1);  // NOP options
    for (size_t i = 0; i < payload_len; ++i) put8(b, static_cast<uint8_t>('a' + i % 26));
    return b;
}

// `length` overrides the UDP length field (-1: the real length).
inline Bytes udp(uint16_t sport, uint16_t dport, size_t payload_len = 0, int length = -1) {
    Bytes b;
    put16(b, sport);
    put16(b, dport);
    put16(b, static_cast<uint16_t>(length >= 0 ? length : static_cast<int>(8 + payload_len)));
    put16(b, 0);
    for (size_t i = 0; i < payload_len; ++i) put8(b, static_cast<uint8_t>(i));
    return b;
}

inline Bytes icmpv6(uint8_t type, uint8_t code, const Bytes& body) {
    Bytes b = {type, code, 0, 0};
    put(b, body);
    return b;
}

// Neighbour solicitation/advertisement body: reserved/flags, target, then the given options.
inline Bytes ndp(uint8_t type, const V6& target, const Bytes& options = {}) {
    Bytes body = {type == 136 ? uint8_t{0x60} : uint8_t{0}, 0, 0, 0};
    put(body, target);
    put(body, options);
    return icmpv6(type, 0, body);
}
inline Bytes lladdr_option(uint8_t type, const Mac& mac) {
    Bytes b = {type, 1};
    put(b, mac);
    return b;
}

struct Ip4 {
    V4 src = kPeerIp;
    V4 dst = kSharedIp;
    uint8_t proto = 6;
    Bytes options;         // a multiple of 4 bytes
    uint16_t frag = 0;     // flags (0x2000 MF) and offset in 8-byte units
    int ihl = -1;          // overrides, to make headers lie
    int total_len = -1;
    uint8_t version = 4;
};

// Default addresses (peer to shared) with protocol `proto`.
inline Ip4 ip4_proto(uint8_t proto) {
    Ip4 ip;
    ip.proto = proto;
    return ip;
}

// An IPv4 packet; TCP/UDP checksums are filled in for unfragmented packets.
inline Bytes ipv4(const Ip4& ip, Bytes payload) {
    const size_t header_len = 20 + ip.options.size();
    Bytes b;
    put8(b, static_cast<uint8_t>((ip.version << 4) | (ip.ihl >= 0 ? ip.ihl : static_cast<int>(header_len / 4))));
    put8(b, 0);
    put16(b, static_cast<uint16_t>(ip.total_len >= 0 ? ip.total_len : static_cast<int>(header_len + payload.size())));
    put16(b, 0x1234);
    put16(b, ip.frag);
    put8(b, 64);
    put8(b, ip.proto);
    put16(b, 0);
    put(b, ip.src);
    put(b, ip.dst);
    put(b, ip.options);
    set16(b, 10, static_cast<uint16_t>(~fold(ones_sum(b.data(), header_len))));
    const size_t csum_at = ip.proto == 6 ? 16 : ip.proto == 17 ? 6 : 0;
    if (ip.frag == 0 && csum_at != 0 && payload.size() >= csum_at + 2) {
        const uint32_t sum = pseudo_sum(ip.src.data(), ip.dst.data(), 4, ip.proto, static_cast<uint32_t>(payload.size()));
        set16(payload, csum_at, static_cast<uint16_t>(~fold(ones_sum(payload.data(), payload.size(), sum))));
    }
    put(b, payload);
    return b;
}

// One IPv6 extension header; its next-header byte is filled in by ipv6().
struct Ext {
    uint8_t type;
    Bytes bytes;
};
// Hop-by-hop (0), routing (43) or destination options (60): (units + 1) * 8 bytes.
inline Ext ext_options(uint8_t type, uint8_t units = 0) {
    Bytes b((units + 1u) * 8u, 0);
    b[1] = units;
    if (type != 43) {
        b[2] = 1;  // PadN filling the rest
        b[3] = static_cast<uint8_t>(b.size() - 4);
    }
    return Ext{type, b};
}
inline Ext ext_fragment(uint16_t offset_units, bool more) {
    Bytes b(8, 0);
    set16(b, 2, static_cast<uint16_t>((offset_units << 3) | (more ? 1 : 0)));
    b[7] = 0x42;  // identification
    return Ext{44, b};
}
// Authentication header: (units + 2) * 4 bytes.
inline Ext ext_auth(uint8_t units = 4) {
    Bytes b((units + 2u) * 4u, 0);
    b[1] = units;
    return Ext{51, b};
}

struct Ip6 {
    V6 src = kPeerIp6;
    V6 dst = kSharedIp6;
    uint8_t proto = 6;  // after the extension headers
    std::vector<Ext> ext;
    int payload_len = -1;  // override
};

inline Ip6 ip6_proto(uint8_t proto) {
    Ip6 ip;
    ip.proto = proto;
    return ip;
}

// An IPv6 packet; the ICMPv6/TCP/UDP checksum is filled in when the packet is not a fragment.
inline Bytes ipv6(const Ip6& ip, Bytes l4) {
    Bytes chain;
    bool fragment = false;
    for (size_t i = 0; i < ip.ext.size(); ++i) {
        Bytes h = ip.ext[i].bytes;
        h[0] = i + 1 < ip.ext.size() ? ip.ext[i + 1].type : ip.proto;
        fragment = fragment || ip.ext[i].type == 44;
        put(chain, h);
    }
    const size_t csum_at = ip.proto == 58 ? 2 : ip.proto == 6 ? 16 : ip.proto == 17 ? 6 : 0;
    if (!fragment && (ip.proto == 58 || csum_at != 0) && l4.size() >= csum_at + 2) {
        const uint32_t sum = pseudo_sum(ip.src.data(), ip.dst.data(), 16, ip.proto, static_cast<uint32_t>(l4.size()));
        set16(l4, csum_at, static_cast<uint16_t>(~fold(ones_sum(l4.data(), l4.size(), sum))));
    }
    Bytes b = {0x60, 0, 0, 0};
    put16(b, static_cast<uint16_t>(ip.payload_len >= 0 ? ip.payload_len
                                                       : static_cast<int>(chain.size() + l4.size())));
    put8(b, ip.ext.empty() ? ip.proto : ip.ext[0].type);
    put8(b, 64);
    put(b, ip.src);
    put(b, ip.dst);
    put(b, chain);
    put(b, l4);
    return b;
}

inline Bytes eth_ipv4(const Ip4& ip, const Bytes& l4) { return ethernet(0x0800, ipv4(ip, l4)); }
inline Bytes eth_ipv6(const Ip6& ip, const Bytes& l4) { return ethernet(0x86dd, ipv6(ip, l4)); }

}  // namespace portmux::test
