// Parsing and formatting of the range syntax "[tcp:|udp:]FROM[-TO]" (control side only).
#include "core/port_range.hpp"

#include <algorithm>

#include <fmt/format.h>

namespace portmux {
namespace {

std::string quoted(std::string_view text) { return fmt::format("\"{}\"", text); }

// One port number: decimal digits only. `whole` is the text the operator wrote, quoted in errors.
Result<uint16_t> parse_port(std::string_view whole, std::string_view digits, const char* which) {
    if (digits.empty()) return Result<uint16_t>::fail(fmt::format("{}: {} is missing", quoted(whole), which));
    uint32_t value = 0;
    for (char c : digits) {
        if (c < '0' || c > '9')
            return Result<uint16_t>::fail(
                fmt::format("{}: {} is not a decimal port number (expected FROM or FROM-TO, e.g. 80 or 6000-6099)",
                            quoted(whole), which));
        // Saturate instead of overflowing so "99999999999" still reads as "above 65535".
        value = std::min<uint32_t>(value * 10 + static_cast<uint32_t>(c - '0'), 65536);
    }
    if (value > 65535) return Result<uint16_t>::fail(quoted(whole) + ": port above 65535");
    return Result<uint16_t>::ok(static_cast<uint16_t>(value));
}

Result<PortSpan> parse_span(std::string_view whole, std::string_view body) {
    if (body.empty()) return Result<PortSpan>::fail(quoted(whole) + ": empty (expected FROM or FROM-TO, e.g. 80 or 6000-6099)");
    const size_t dash = body.find('-');
    PortSpan span;
    auto first = parse_port(whole, body.substr(0, dash), "FROM");
    if (!first) return Result<PortSpan>::fail(first.error());
    span.first = span.last = *first;
    if (dash != std::string_view::npos) {
        auto last = parse_port(whole, body.substr(dash + 1), "TO");
        if (!last) return Result<PortSpan>::fail(last.error());
        span.last = *last;
        if (span.first > span.last) return Result<PortSpan>::fail(quoted(whole) + ": FROM is above TO");
    }
    return Result<PortSpan>::ok(span);
}

}  // namespace

const char* to_string(L4Proto proto) { return proto == L4Proto::kTcp ? "tcp" : "udp"; }

Result<PortSpan> PortSpan::parse(std::string_view text) { return parse_span(text, text); }

std::string PortSpan::to_string() const {
    return first == last ? fmt::format("{}", first) : fmt::format("{}-{}", first, last);
}

namespace {

std::string_view trim(std::string_view text) {
    while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
    while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
    return text;
}

}  // namespace

Result<PortRange> PortRange::parse(std::string_view text) {
    const size_t slash = text.find('/');
    if (slash != std::string_view::npos) {
        const std::string_view address_text = trim(text.substr(0, slash));
        auto address = Ipv4Addr::parse(address_text);
        if (!address || *address == Ipv4Addr{})
            return Result<PortRange>::fail(fmt::format(
                "{}: {} is not an IPv4 address (a range of another shared address is ADDRESS/RANGE, e.g. "
                "203.0.113.2/tcp:80)",
                quoted(text), quoted(address_text)));
        auto range = parse_unaddressed(text, trim(text.substr(slash + 1)));
        if (range) range.value().address = *address;
        return range;
    }
    return parse_unaddressed(text, text);
}

Result<PortRange> PortRange::parse_unaddressed(std::string_view whole, std::string_view text) {
    const size_t arrow = text.find("->");
    if (arrow == std::string_view::npos) return parse_untranslated(whole, text);
    auto range = parse_untranslated(whole, trim(text.substr(0, arrow)));
    if (!range) return range;
    auto inner = parse_span(whole, trim(text.substr(arrow + 2)));
    if (!inner) return Result<PortRange>::fail(inner.error());
    const unsigned outer_ports = range->ports.last - range->ports.first + 1u;
    const unsigned inner_ports = inner->last - inner->first + 1u;
    if (inner_ports != outer_ports)
        return Result<PortRange>::fail(fmt::format("{}: the inner range has {} port{}, the outer {}", quoted(whole),
                                                   inner_ports, inner_ports == 1 ? "" : "s", outer_ports));
    PortRange translated = *range;
    translated.translated = true;
    translated.inner_first = inner->first;
    return Result<PortRange>::ok(translated);
}

Result<PortRange> PortRange::parse_untranslated(std::string_view whole, std::string_view text) {
    PortRange range;
    std::string_view body = text;
    const size_t colon = text.find(':');
    if (colon != std::string_view::npos) {
        const std::string_view proto = text.substr(0, colon);
        if (proto == "tcp") {
            range.udp = false;
        } else if (proto == "udp") {
            range.tcp = false;
        } else {
            return Result<PortRange>::fail(
                fmt::format("{}: unknown protocol {} (expected tcp: or udp:)", quoted(whole), quoted(proto)));
        }
        body = text.substr(colon + 1);
    }
    auto span = parse_span(whole, body);
    if (!span) return Result<PortRange>::fail(span.error());
    range.ports = *span;
    return Result<PortRange>::ok(range);
}

std::string PortRange::to_string() const {
    const std::string outer = tcp && !udp ? "tcp:" + ports.to_string()
                              : udp && !tcp ? "udp:" + ports.to_string()
                                            : ports.to_string();
    const std::string unaddressed = translated ? outer + "->" + inner().to_string() : outer;
    return on_first_address() ? unaddressed : address.to_string() + "/" + unaddressed;
}

bool PortRange::overlaps(const PortRange& o) const {
    return address == o.address && ((tcp && o.tcp) || (udp && o.udp)) && ports.overlaps(o.ports);
}

const PortRange* answer_port_overlap(const std::vector<PortRange>& ranges, const PortRange& candidate) {
    for (const PortRange& range : ranges) {
        if (range == candidate || range.address != candidate.address) continue;
        const bool common_proto = (range.tcp && candidate.tcp) || (range.udp && candidate.udp);
        if (common_proto && range.inner().overlaps(candidate.inner())) return &range;
    }
    return nullptr;
}

}  // namespace portmux
