// Text helpers shared by every telemetry command handler: parameters split at commas, errors cut to what
// telemetry can carry.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/result.hpp"

namespace portmux::command_params {

// {"error": message}, shortened visibly ("...") when telemetry would cut it (kMaxMessage bytes).
nlohmann::json error(const std::string& message);
// `text` without leading and trailing white space.
std::string trim(const std::string& text);
// Comma-separated parameters, each trimmed; an empty string gives no parameter at all.
std::vector<std::string> split_params(const std::string& params);
// A non-negative integer parameter (at most 9 digits); `what` names it in the error.
Result<size_t> parse_index(const std::string& text, const char* what);
// "offset=N" as the last parameter of a paged command (removed from `params`); 0 when absent.
Result<size_t> parse_offset(std::vector<std::string>& params);
// Telemetry keys may only hold [A-Za-z0-9_/], so names (which may contain '.' and '-') are always values,
// never keys, and paging is described by three keys: page_total, page_offset and, while more follow,
// page_next ("offset=N").
void add_page(nlohmann::json& answer, size_t total, size_t offset, size_t count);
// "" when there are `min`..`max` parameters and none is empty; else the message that says so, with `usage`.
std::string check_count(const std::vector<std::string>& params, size_t min, size_t max, const char* usage);

}  // namespace portmux::command_params
