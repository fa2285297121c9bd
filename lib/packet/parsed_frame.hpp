// What the parse stage learns about one frame; every later stage reads only this (and the frame bytes).
#pragma once

#include <cstdint>

namespace portmux {

enum class FrameKind : uint8_t {
    kOther,      // a non-IP, non-ARP frame (or VLAN-tagged): belongs to the host
    kArp,        // well-formed Ethernet/IPv4 ARP
    kIpv4,
    kIpv6,
    kMalformed,  // headers truncated or lying about their lengths: never reaches a VM
};

// What is already known about a frame's IPv4 header checksum: the parse stage verifies it in software unless the
// NIC did (an uplink configured with RTE_ETH_RX_OFFLOAD_IPV4_CKSUM, or a header portmux itself rewrote).
enum class Ipv4ChecksumState : uint8_t {
    kUnchecked,  // verify in software
    kGood,       // trusted: not read again
    kBad,        // the NIC found it wrong: the frame is malformed
};

// The firewall's input, laid out for rte_acl: the first field is one byte, addresses and ports stay in
// network byte order exactly as on the wire. Ports are zero when the packet carries none (not TCP/UDP,
// or a non-first fragment).
struct FlowKey4 {
    uint8_t proto;
    uint8_t pad[3];
    uint32_t src;  // network byte order
    uint32_t dst;
    uint16_t src_port;  // network byte order
    uint16_t dst_port;
};

struct FlowKey6 {
    uint8_t proto;
    uint8_t pad[3];
    uint8_t src[16];
    uint8_t dst[16];
    uint16_t src_port;  // network byte order
    uint16_t dst_port;
};

struct ParsedFrame {
    FrameKind kind = FrameKind::kOther;
    uint8_t ip_proto = 0;        // transport protocol after IPv4 options / IPv6 extension headers
    bool is_fragment = false;    // any fragment of a fragmented datagram
    bool first_fragment = false; // offset 0 (the L4 header is here when the datagram has one)
    bool has_ports = false;      // TCP/UDP with a complete header: src_port/dst_port are valid
    uint16_t l3_offset = 0;      // from the start of the frame
    uint16_t l4_offset = 0;      // valid for IP frames that are not non-first fragments
    uint16_t l3_length = 0;      // IPv4 total length / IPv6 40 + payload length
    uint16_t src_port = 0;       // host byte order
    uint16_t dst_port = 0;       // host byte order

    // ARP (kind == kArp)
    uint16_t arp_op = 0;          // host byte order: 1 request, 2 reply
    uint32_t arp_sender_ip = 0;   // network byte order
    uint32_t arp_target_ip = 0;   // network byte order

    // ICMPv6 (kind == kIpv6, ip_proto == 58, not a fragment)
    uint8_t icmp6_type = 0;
    bool has_ndp_target = false;  // neighbour solicitation/advertisement with a complete target field
    uint8_t ndp_target[16];      // valid when has_ndp_target (left unset otherwise: not zeroed per packet)

    // ICMP/ICMPv6 errors (destination/port unreachable, fragmentation needed / packet too big, time
    // exceeded, parameter problem) quoting a TCP/UDP packet: the quoted packet's source, which for an error
    // about a packet portmux forwarded is the shared address and the port of the VM that sent it.
    bool has_quoted_ports = false;
    uint8_t quoted_proto = 0;       // 6 or 17
    uint16_t quoted_src_port = 0;   // host byte order
    uint8_t quoted_src[16];       // valid when has_quoted_ports; IPv4 uses the first 4 bytes (network order)

    union {
        FlowKey4 v4;
        FlowKey6 v6;
    } key{};  // kind == kIpv4 -> v4, kIpv6 -> v6
};

}  // namespace portmux
