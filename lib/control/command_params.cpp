// Text helpers shared by every telemetry command handler.
#include "control/command_params.hpp"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>

#include "control/commands.hpp"

namespace portmux::command_params {

nlohmann::json error(const std::string& message) {
    if (message.size() <= kMaxMessage) return nlohmann::json{{"error", message}};
    return nlohmann::json{{"error", message.substr(0, kMaxMessage - 3) + "..."}};
}

std::string trim(const std::string& text) {
    size_t begin = 0, end = text.size();
    while (begin < end && std::isspace(static_cast<unsigned char>(text[begin]))) ++begin;
    while (end > begin && std::isspace(static_cast<unsigned char>(text[end - 1]))) --end;
    return text.substr(begin, end - begin);
}

std::vector<std::string> split_params(const std::string& params) {
    std::vector<std::string> out;
    std::string all = trim(params);
    if (all.empty()) return out;
    size_t start = 0;
    while (true) {
        size_t comma = all.find(',', start);
        out.push_back(trim(all.substr(start, comma == std::string::npos ? std::string::npos : comma - start)));
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return out;
}

Result<size_t> parse_index(const std::string& text, const char* what) {
    if (text.empty() || text.size() > 9 || !std::all_of(text.begin(), text.end(), ::isdigit))
        return Result<size_t>::fail(fmt::format("\"{}\": {} must be a non-negative integer", text, what));
    return Result<size_t>::ok(std::stoul(text));
}

Result<size_t> parse_offset(std::vector<std::string>& params) {
    if (params.empty() || params.back().rfind("offset=", 0) != 0) return Result<size_t>::ok(0);
    std::string value = params.back().substr(7);
    params.pop_back();
    return parse_index(value, "offset");
}

void add_page(nlohmann::json& answer, size_t total, size_t offset, size_t count) {
    answer["page_total"] = total;
    answer["page_offset"] = offset;
    if (offset + count < total) answer["page_next"] = fmt::format("offset={}", offset + count);
}

std::string check_count(const std::vector<std::string>& params, size_t min, size_t max, const char* usage) {
    for (const std::string& p : params)
        if (p.empty()) return fmt::format("empty parameter; usage: {}", usage);
    if (params.size() >= min && params.size() <= max) return "";
    return fmt::format("{} parameter{} given; usage: {}", params.size(), params.size() == 1 ? "" : "s", usage);
}

}  // namespace portmux::command_params
