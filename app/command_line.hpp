// portmux's command line: `portmux --config FILE [--check] [-- EAL-ARGS...]`, `--help`, `--version`.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

namespace portmux {

struct CommandLine {
    std::string config_file;
    bool check = false;
    bool help = false;
    bool version = false;
    std::vector<std::string> eal_args;  // everything after "--"
};

class UsageError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Throws UsageError for unknown options, a missing --config, or stray arguments.
CommandLine parse_command_line(int argc, const char* const* argv);
std::string usage_text();

}  // namespace portmux
