// The /portmux/* commands as plain functions from parameters to a JSON answer, so they can be tested
// without a telemetry socket. telemetry.cpp registers them with rte_telemetry.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/telemetry.hpp"

namespace portmux {

struct CommandSpec {
    const char* name;  // e.g. "/portmux/range/add"
    const char* help;  // shown by the telemetry client's /help
    bool mutating;     // not registered in read-only mode
    nlohmann::json (*handler)(const ControlContext& context, const std::string& params);
};

// Every command, in the order the documentation lists them.
const std::vector<CommandSpec>& command_table();

// The load-balanced group commands (group_commands.cpp); command_table() lists them after the others.
const std::vector<CommandSpec>& group_command_table();
// The VM capture commands (capture_commands.cpp); listed after the group commands.
const std::vector<CommandSpec>& capture_command_table();
// /portmux/workers (worker_commands.cpp); listed after the capture commands.
const std::vector<CommandSpec>& worker_command_table();

// Runs `name` with `params` (the text after the first comma, possibly empty). Answers a JSON object; a
// failure is {"error": "<what is wrong>"} and changes nothing. Any thread.
nlohmann::json run_command(const ControlContext& context, const std::string& name, const std::string& params);

// Answers are split into pages so that one fits telemetry's limits (16 KiB in all, 256 dictionary entries,
// 128-byte strings): ranges are short strings, firewall rules objects of up to ~250 bytes (VMs: vm_commands.hpp).
inline constexpr size_t kPageSize = 200;      // /portmux/ranges entries
inline constexpr size_t kRulePageSize = 50;   // /portmux/firewall/list rules
// Telemetry truncates strings at 127 bytes; error messages are kept under it.
inline constexpr size_t kMaxMessage = 127;

}  // namespace portmux
