// Names and descriptions of the counters, generated from the tables in counters.hpp.
#include "core/counters.hpp"

namespace portmux {
namespace {

#define PORTMUX_NAME(name, desc) #name,
#define PORTMUX_DESC(name, desc) desc,
constexpr const char* kSwitchNames[] = {PORTMUX_SWITCH_COUNTERS(PORTMUX_NAME)};
constexpr const char* kSwitchDescriptions[] = {PORTMUX_SWITCH_COUNTERS(PORTMUX_DESC)};
constexpr const char* kPortNames[] = {PORTMUX_PORT_COUNTERS(PORTMUX_NAME)};
constexpr const char* kPortDescriptions[] = {PORTMUX_PORT_COUNTERS(PORTMUX_DESC)};
#undef PORTMUX_NAME
#undef PORTMUX_DESC

static_assert(sizeof(kSwitchNames) / sizeof(kSwitchNames[0]) == kSwitchCounterCount);
static_assert(sizeof(kPortNames) / sizeof(kPortNames[0]) == kPortCounterCount);

}  // namespace

const char* counter_name(SwitchCounter c) { return kSwitchNames[static_cast<size_t>(c)]; }
const char* counter_description(SwitchCounter c) { return kSwitchDescriptions[static_cast<size_t>(c)]; }
const char* counter_name(PortCounter c) { return kPortNames[static_cast<size_t>(c)]; }
const char* counter_description(PortCounter c) { return kPortDescriptions[static_cast<size_t>(c)]; }

}  // namespace portmux
