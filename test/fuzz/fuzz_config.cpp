// libFuzzer target: any bytes as configuration JSON; only ConfigError may escape parse_config, and a
// configuration it accepts survives config_to_json -> parse_config unchanged.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <nlohmann/json.hpp>

#include "config/config.hpp"

using namespace portmux;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    nlohmann::json document;
    try {
        document = nlohmann::json::parse(data, data + size);
    } catch (const nlohmann::json::exception&) {
        return 0;  // not JSON: load_config_file reports that before parse_config is reached
    }
    Config config;
    try {
        config = parse_config(document);
    } catch (const ConfigError&) {
        return 0;
    }
    // Any other exception escapes and libFuzzer reports it as a crash with this input.
    const nlohmann::json written = config_to_json(config);
    Config again;
    try {
        again = parse_config(written);
    } catch (const ConfigError& e) {
        std::fprintf(stderr, "fuzz_config: config_to_json wrote a document parse_config refuses: %s: %s\n%s\n",
                     e.path().c_str(), e.what(), written.dump(2).c_str());
        std::abort();
    }
    const nlohmann::json rewritten = config_to_json(again);
    if (rewritten != written) {
        std::fprintf(stderr, "fuzz_config: round trip changed the configuration:\n%s\n---\n%s\n",
                     written.dump(2).c_str(), rewritten.dump(2).c_str());
        std::abort();
    }
    return 0;
}
