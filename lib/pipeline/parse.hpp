// Parse stage: Ethernet, ARP, IPv4 (with options), IPv6 (walking extension headers), TCP/UDP ports.
#pragma once

#include <cstdint>

#include "pipeline/parsed_frame.hpp"

namespace portmux {

// Parses `frame_len` bytes of which the first `available` are readable at `data` (the worker passes the
// first segment, or a linearised copy of the first bytes of a chained mbuf). Never reads past `available`.
// A header that would extend past `available` or `frame_len`, IHL < 5, an IPv4/IPv6 length beyond the
// frame, a TCP data offset < 5, a UDP length below 8 or beyond the IP payload, or an extension header chain
// longer than the parser walks, all give kind == kMalformed when the packet is IP (ARP that is too short or
// not Ethernet/IPv4 gives kOther: it is the host's business).
// Thread safety: pure function.
ParsedFrame parse_frame(const uint8_t* data, uint32_t available, uint32_t frame_len);

}  // namespace portmux
