// Answers for TCP/UDP to ports nobody owns when `unmatched` is "reject".
#pragma once

#include <cstdint>

#include "core/net_types.hpp"
#include "packet/parsed_frame.hpp"

namespace portmux {

// Writes into `out` a complete Ethernet frame answering `frame` (which `parsed` describes, `length` contiguous
// bytes): a TCP RST (RFC 9293 rules for seq/ack) for TCP, an ICMP port unreachable (type 3 code 3) or ICMPv6
// port unreachable (type 1 code 4) quoting the offending packet for UDP. The answer comes from the frame's
// destination address to its source, Ethernet source `uplink_mac`, destination the frame's source MAC,
// with valid checksums. Returns its length, or 0 when no answer is due (a RST is never answered, nor a
// packet from a broadcast/multicast source, nor a fragment) or `out_capacity` is too small.
// Pure function.
uint32_t build_reject(const uint8_t* frame, uint32_t length, const ParsedFrame& parsed, const MacAddr& uplink_mac,
                      uint8_t* out, uint32_t out_capacity);

}  // namespace portmux
