// Port ranges in the configuration syntax "[tcp:|udp:]FROM[-TO]" and the transport protocols they name.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace portmux {

// The transport protocols that carry ports portmux switches on; values index per-protocol tables.
enum class L4Proto : uint8_t { kTcp = 0, kUdp = 1 };
inline constexpr unsigned kL4ProtoCount = 2;
inline constexpr uint8_t kIpProtoTcp = 6;
inline constexpr uint8_t kIpProtoUdp = 17;
inline constexpr uint8_t kIpProtoIcmp = 1;
inline constexpr uint8_t kIpProtoIcmpv6 = 58;

const char* to_string(L4Proto proto);  // "tcp" / "udp"

// A contiguous port interval; FROM <= TO.
struct PortSpan {
    uint16_t first = 0;
    uint16_t last = 0;

    // "FROM[-TO]", decimal, 0..65535. Errors read e.g. "\"90-80\": FROM is above TO".
    static Result<PortSpan> parse(std::string_view text);
    std::string to_string() const;  // "80" or "80-90"
    bool contains(uint16_t port) const { return first <= port && port <= last; }
    bool overlaps(const PortSpan& o) const { return first <= o.last && o.first <= last; }
    bool operator==(const PortSpan& o) const { return first == o.first && last == o.last; }
    bool operator!=(const PortSpan& o) const { return !(*this == o); }
};

// A range of ports for TCP, UDP or both.
struct PortRange {
    bool tcp = true;
    bool udp = true;
    PortSpan ports{};

    // "[tcp:|udp:]FROM[-TO]"; without a protocol prefix the range covers TCP and UDP.
    static Result<PortRange> parse(std::string_view text);
    std::string to_string() const;  // the same syntax, canonical ("tcp:80", "53", "udp:6000-6099")
    bool covers(L4Proto proto) const { return proto == L4Proto::kTcp ? tcp : udp; }
    // True when both ranges cover a common protocol and share a port.
    bool overlaps(const PortRange& o) const;
    bool operator==(const PortRange& o) const { return tcp == o.tcp && udp == o.udp && ports == o.ports; }
    bool operator!=(const PortRange& o) const { return !(*this == o); }
};

}  // namespace portmux
