// Text helpers shared by every telemetry command handler: parameters split at commas, errors cut to what
// telemetry can carry.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace portmux::command_params {

// {"error": message}, shortened visibly ("...") when telemetry would cut it (kMaxMessage bytes).
nlohmann::json error(const std::string& message);
// `text` without leading and trailing white space.
std::string trim(const std::string& text);
// Comma-separated parameters, each trimmed; an empty string gives no parameter at all.
std::vector<std::string> split_params(const std::string& params);
// "" when there are `min`..`max` parameters and none is empty; else the message that says so, with `usage`.
std::string check_count(const std::vector<std::string>& params, size_t min, size_t max, const char* usage);

}  // namespace portmux::command_params
