// Text helpers shared by every telemetry command handler.
#include "control/command_params.hpp"

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

std::string check_count(const std::vector<std::string>& params, size_t min, size_t max, const char* usage) {
    for (const std::string& p : params)
        if (p.empty()) return fmt::format("empty parameter; usage: {}", usage);
    if (params.size() >= min && params.size() <= max) return "";
    return fmt::format("{} parameter{} given; usage: {}", params.size(), params.size() == 1 ? "" : "s", usage);
}

}  // namespace portmux::command_params
