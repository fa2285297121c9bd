// libFuzzer target: range and span syntax; whatever parses prints canonically and parses back to the same value.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/port_range.hpp"

using namespace portmux;

namespace {

[[noreturn]] void fail(const char* what, std::string_view input, const std::string& printed) {
    std::fprintf(stderr, "fuzz_port_range: %s: input \"%.*s\" printed \"%s\"\n", what, static_cast<int>(input.size()),
                 input.data(), printed.c_str());
    std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string copy(reinterpret_cast<const char*>(data), size);  // exact-size heap buffer for ASan
    const std::string_view text(copy);

    const Result<PortRange> range = PortRange::parse(text);
    if (range) {
        if (range->ports.first > range->ports.last) fail("range FROM above TO accepted", text, range->to_string());
        if (!range->tcp && !range->udp) fail("range without a protocol", text, range->to_string());
        const std::string printed = range->to_string();
        const Result<PortRange> again = PortRange::parse(printed);
        if (!again) fail("canonical range does not parse", text, printed);
        if (*again != *range) fail("range round trip changed the value", text, printed);
        if (again->to_string() != printed) fail("canonical form is not stable", text, printed);
    } else if (range.error().empty()) {
        fail("range refused without an error message", text, "");
    }

    const Result<PortSpan> span = PortSpan::parse(text);
    if (span) {
        if (span->first > span->last) fail("span FROM above TO accepted", text, span->to_string());
        const std::string printed = span->to_string();
        const Result<PortSpan> again = PortSpan::parse(printed);
        if (!again || *again != *span) fail("span round trip changed the value", text, printed);
        // A span is a range for both protocols.
        const Result<PortRange> as_range = PortRange::parse(printed);
        if (!as_range || !as_range->tcp || !as_range->udp || as_range->ports != *span)
            fail("span is not the both-protocols range", text, printed);
    } else if (span.error().empty()) {
        fail("span refused without an error message", text, "");
    }
    return 0;
}
