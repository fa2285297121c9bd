// Running the switch: EAL -> ports -> snapshot -> workers -> telemetry, then wait for a signal.
#pragma once

#include "command_line.hpp"
#include "config/config.hpp"

namespace portmux {

// Returns the process exit status: 0 after a clean stop (SIGINT/SIGTERM), 1 after a startup failure
// (already reported on stderr as one line).
int run_switch(const CommandLine& command_line, const Config& config);

}  // namespace portmux
