// Rewriting a TCP/UDP port in place with an incremental checksum update (RFC 1624), for port translation.
#pragma once

#include <cstdint>

#include "packet/parsed_frame.hpp"

namespace portmux {

// Sets the source (`source` true) or destination port of the TCP/UDP header `parsed` describes to `port`,
// updating the checksum (a UDP/IPv4 checksum of 0, "none", stays 0). `frame` holds `length` contiguous
// bytes; nothing is written when the header does not lie within them. Pure function.
void rewrite_l4_port(uint8_t* frame, uint32_t length, const ParsedFrame& parsed, bool source, uint16_t port);

}  // namespace portmux
