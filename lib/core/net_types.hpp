// Addresses as they appear on the wire (network byte order), with text parsing for the control side.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace portmux {

struct MacAddr {
    std::array<uint8_t, 6> bytes{};

    // "52:54:00:12:34:01" (also accepts '-' separators); case-insensitive.
    static Result<MacAddr> parse(std::string_view text);
    std::string to_string() const;  // lower-case, ':' separated
    bool is_zero() const;
    bool is_multicast() const { return (bytes[0] & 0x01) != 0; }
    bool operator==(const MacAddr& o) const { return bytes == o.bytes; }
    bool operator!=(const MacAddr& o) const { return !(*this == o); }
};

struct Ipv4Addr {
    std::array<uint8_t, 4> bytes{};  // network byte order

    static Result<Ipv4Addr> parse(std::string_view text);  // dotted quad only
    std::string to_string() const;
    uint32_t as_be32() const;  // the four bytes as a uint32_t in memory order (network order)
    bool operator==(const Ipv4Addr& o) const { return bytes == o.bytes; }
    bool operator!=(const Ipv4Addr& o) const { return !(*this == o); }
};

struct Ipv6Addr {
    std::array<uint8_t, 16> bytes{};  // network byte order

    static Result<Ipv6Addr> parse(std::string_view text);  // RFC 4291 text forms, via inet_pton
    std::string to_string() const;                         // RFC 5952 canonical form
    bool operator==(const Ipv6Addr& o) const { return bytes == o.bytes; }
    bool operator!=(const Ipv6Addr& o) const { return !(*this == o); }
};

// An IPv4 or IPv6 prefix, "203.0.113.0/24", "2001:db8::/32"; a bare address means a host prefix.
struct IpPrefix {
    bool is_v6 = false;
    Ipv4Addr v4{};
    Ipv6Addr v6{};
    uint8_t length = 0;  // 0..32 or 0..128

    // Host bits must be zero ("192.0.2.1/24" is refused: the operator likely meant something else).
    static Result<IpPrefix> parse(std::string_view text);
    std::string to_string() const;
    bool operator==(const IpPrefix& o) const;
};

}  // namespace portmux
