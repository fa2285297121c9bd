// Port ranges in the configuration syntax "[tcp:|udp:]FROM[-TO]" and the transport protocols they name.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/net_types.hpp"
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

// A range of ports for TCP, UDP or both, optionally translated to other ports inside the VM.
struct PortRange {
    bool tcp = true;
    bool udp = true;
    PortSpan ports{};
    // Extension: "tcp:8080-8089->80-89" delivers port 8080 + i to the VM as port 80 + i (and rewrites the
    // VM's answers from 80 + i back to 8080 + i). The inner span has as many ports as the outer one.
    bool translated = false;
    uint16_t inner_first = 0;
    // Extension: "203.0.113.2/tcp:80" is a range of another shared address (each address has its own range
    // table). All zero: the first shared address, which ranges name by leaving the address out.
    Ipv4Addr address{};

    // "[ADDRESS/][tcp:|udp:]FROM[-TO][->FROM[-TO]]"; without a protocol prefix the range covers TCP and UDP.
    static Result<PortRange> parse(std::string_view text);
    // The same syntax, canonical ("tcp:80", "53", "udp:6000-6099", "tcp:8080->80", "203.0.113.2/tcp:80").
    std::string to_string() const;
    bool on_first_address() const { return address == Ipv4Addr{}; }
    PortSpan inner() const {
        return translated ? PortSpan{inner_first, static_cast<uint16_t>(inner_first + (ports.last - ports.first))}
                          : ports;
    }
    bool covers(L4Proto proto) const { return proto == L4Proto::kTcp ? tcp : udp; }
    // True when both ranges cover a common protocol and share a port.
    bool overlaps(const PortRange& o) const;
    bool operator==(const PortRange& o) const {
        return tcp == o.tcp && udp == o.udp && ports == o.ports && translated == o.translated &&
               (!translated || inner_first == o.inner_first) && address == o.address;
    }
    bool operator!=(const PortRange& o) const { return !(*this == o); }

private:
    static Result<PortRange> parse_unaddressed(std::string_view whole, std::string_view text);
    static Result<PortRange> parse_untranslated(std::string_view whole, std::string_view text);
};

// The ports a VM answers from are its ranges' inner ports (the outer ones when untranslated); two of one VM's
// ranges may not share one for a protocol, or an answer could not be mapped back. Returns the first range
// of `ranges` whose answer ports overlap `candidate`'s, or null.
const PortRange* answer_port_overlap(const std::vector<PortRange>& ranges, const PortRange& candidate);

}  // namespace portmux
