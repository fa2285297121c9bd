// Text parsing and formatting of MAC, IPv4, IPv6 addresses and IP prefixes (control side only).
#include "core/net_types.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

namespace portmux {
namespace {

std::string quoted(std::string_view text) { return fmt::format("\"{}\"", text); }

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Decimal digits only, at most `max_digits`, value at most `max`; nothing else (no sign, no spaces).
bool parse_small_decimal(std::string_view text, size_t max_digits, unsigned max, unsigned& out) {
    if (text.empty() || text.size() > max_digits) return false;
    unsigned value = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return false;
        value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value > max) return false;
    out = value;
    return true;
}

}  // namespace

Result<MacAddr> MacAddr::parse(std::string_view text) {
    auto bad = [&] {
        return Result<MacAddr>::fail(quoted(text) + ": not a MAC address (expected six hex bytes like 52:54:00:12:34:01)");
    };
    if (text.size() != 17) return bad();
    const char sep = text[2];
    if (sep != ':' && sep != '-') return bad();
    MacAddr mac;
    for (size_t i = 0; i < 6; ++i) {
        const size_t at = i * 3;
        const int hi = hex_value(text[at]);
        const int lo = hex_value(text[at + 1]);
        if (hi < 0 || lo < 0) return bad();
        // Mixed separators ("52:54-00...") are refused: they are more likely a typo than intent.
        if (i < 5 && text[at + 2] != sep) return bad();
        mac.bytes[i] = static_cast<uint8_t>(hi * 16 + lo);
    }
    return Result<MacAddr>::ok(mac);
}

std::string MacAddr::to_string() const {
    return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", bytes[0], bytes[1], bytes[2], bytes[3], bytes[4],
                       bytes[5]);
}

bool MacAddr::is_zero() const {
    for (uint8_t b : bytes)
        if (b != 0) return false;
    return true;
}

Result<Ipv4Addr> Ipv4Addr::parse(std::string_view text) {
    auto bad = [&] {
        return Result<Ipv4Addr>::fail(quoted(text) + ": not an IPv4 address (expected a dotted quad like 192.0.2.10)");
    };
    Ipv4Addr addr;
    std::string_view rest = text;
    for (size_t i = 0; i < 4; ++i) {
        const size_t dot = rest.find('.');
        const std::string_view part = i < 3 ? rest.substr(0, dot) : rest;
        if (i < 3 && dot == std::string_view::npos) return bad();
        unsigned value = 0;
        if (!parse_small_decimal(part, 3, 255, value)) return bad();
        // "010" means 8 to inet_aton and 10 to most readers: refuse the ambiguity.
        if (part.size() > 1 && part[0] == '0') return bad();
        addr.bytes[i] = static_cast<uint8_t>(value);
        if (i < 3) rest = rest.substr(dot + 1);
    }
    return Result<Ipv4Addr>::ok(addr);
}

std::string Ipv4Addr::to_string() const { return fmt::format("{}.{}.{}.{}", bytes[0], bytes[1], bytes[2], bytes[3]); }

uint32_t Ipv4Addr::as_be32() const {
    uint32_t value;
    std::memcpy(&value, bytes.data(), sizeof value);
    return value;
}

Result<Ipv6Addr> Ipv6Addr::parse(std::string_view text) {
    Ipv6Addr addr;
    // inet_pton needs a terminated string; INET6_ADDRSTRLEN bounds every valid form.
    char buf[INET6_ADDRSTRLEN + 1];
    bool ok = !text.empty() && text.size() < sizeof buf;
    if (ok) {
        std::memcpy(buf, text.data(), text.size());
        buf[text.size()] = '\0';
        ok = inet_pton(AF_INET6, buf, addr.bytes.data()) == 1;
    }
    if (!ok) return Result<Ipv6Addr>::fail(quoted(text) + ": not an IPv6 address (expected e.g. 2001:db8::10)");
    return Result<Ipv6Addr>::ok(addr);
}

std::string Ipv6Addr::to_string() const {
    char buf[INET6_ADDRSTRLEN];
    if (inet_ntop(AF_INET6, bytes.data(), buf, sizeof buf) == nullptr) return "?";
    return buf;
}

Result<IpPrefix> IpPrefix::parse(std::string_view text) {
    IpPrefix prefix;
    const size_t slash = text.find('/');
    const std::string_view addr_text = text.substr(0, slash);
    prefix.is_v6 = addr_text.find(':') != std::string_view::npos;
    const unsigned max_length = prefix.is_v6 ? 128 : 32;
    if (prefix.is_v6) {
        auto addr = Ipv6Addr::parse(addr_text);
        if (!addr) return Result<IpPrefix>::fail(quoted(text) + ": not an IPv6 address or prefix (expected e.g. 2001:db8::/32)");
        prefix.v6 = *addr;
    } else {
        auto addr = Ipv4Addr::parse(addr_text);
        if (!addr) return Result<IpPrefix>::fail(quoted(text) + ": not an IPv4 address or prefix (expected e.g. 203.0.113.0/24)");
        prefix.v4 = *addr;
    }
    prefix.length = static_cast<uint8_t>(max_length);
    if (slash != std::string_view::npos) {
        unsigned length = 0;
        if (!parse_small_decimal(text.substr(slash + 1), 3, max_length, length))
            return Result<IpPrefix>::fail(fmt::format("{}: prefix length must be a number 0..{}", quoted(text), max_length));
        prefix.length = static_cast<uint8_t>(length);
    }
    uint8_t* bytes = prefix.is_v6 ? prefix.v6.bytes.data() : prefix.v4.bytes.data();
    IpPrefix network = prefix;
    uint8_t* net_bytes = network.is_v6 ? network.v6.bytes.data() : network.v4.bytes.data();
    for (unsigned i = 0; i < max_length / 8; ++i) {
        const unsigned keep = prefix.length > i * 8 ? std::min(8u, prefix.length - i * 8) : 0;
        net_bytes[i] = static_cast<uint8_t>(bytes[i] & static_cast<uint8_t>(0xff00u >> keep));
    }
    if (!(network == prefix))
        return Result<IpPrefix>::fail(fmt::format("{}: host bits are set (did you mean {}?)", quoted(text), network.to_string()));
    return Result<IpPrefix>::ok(prefix);
}

std::string IpPrefix::to_string() const {
    return fmt::format("{}/{}", is_v6 ? v6.to_string() : v4.to_string(), length);
}

bool IpPrefix::operator==(const IpPrefix& o) const {
    if (is_v6 != o.is_v6 || length != o.length) return false;
    return is_v6 ? v6 == o.v6 : v4 == o.v4;
}

}  // namespace portmux
