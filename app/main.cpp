// portmux: parse the command line, load the configuration, then check it or run the switch.
#include <cstdio>

#include "command_line.hpp"
#include "config/config.hpp"
#include "switch_app.hpp"

int main(int argc, char** argv) {
    using namespace portmux;
    CommandLine command_line;
    try {
        command_line = parse_command_line(argc, argv);
    } catch (const UsageError& e) {
        std::fprintf(stderr, "portmux: %s\nTry 'portmux --help'.\n", e.what());
        return 1;
    }
    if (command_line.help) {
        std::fputs(usage_text().c_str(), stdout);
        return 0;
    }
    if (command_line.version) {
        std::printf("portmux %s\n", PORTMUX_VERSION);
        return 0;
    }

    Config config;
    try {
        config = load_config_file(command_line.config_file);
    } catch (const ConfigError& e) {
        std::fprintf(stderr, "portmux: %s: %s: %s\n", command_line.config_file.c_str(), e.path().c_str(), e.what());
        return 1;
    }
    if (command_line.check) {
        std::fputs(config_summary(config).c_str(), stdout);
        std::printf("%s: configuration OK\n", command_line.config_file.c_str());
        return 0;
    }
    return run_switch(command_line, config);
}
