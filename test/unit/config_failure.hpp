// Test-only: what parse_config says about a document, as (JSON path, message); "<accepted>" when it loads.
#pragma once

#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "config/config.hpp"

namespace portmux::test {

inline std::pair<std::string, std::string> config_failure(const nlohmann::json& document) {
    try {
        parse_config(document);
    } catch (const ConfigError& e) {
        return {e.path(), e.what()};
    }
    return {"<accepted>", ""};
}

}  // namespace portmux::test
