// Command-line parsing with Boost.Program_options; everything after "--" is handed to DPDK's EAL untouched.
#include "command_line.hpp"

#include <sstream>

#include <boost/program_options.hpp>

namespace portmux {
namespace po = boost::program_options;
namespace {

po::options_description options() {
    po::options_description desc("Options");
    desc.add_options()
        ("config,c", po::value<std::string>()->value_name("FILE"), "the JSON configuration (required to run)")
        ("check", "validate the configuration, print a summary and exit (no DPDK, no root needed)")
        ("help,h", "print this help and exit")
        ("version,V", "print the version and exit");
    return desc;
}

}  // namespace

std::string usage_text() {
    std::ostringstream out;
    out << "Usage: portmux --config FILE [--check] [-- EAL-ARGS...]\n"
           "       portmux --help | --version\n\n"
           "A DPDK switch that lets the host and many VMs share one IP address, by destination port.\n\n"
        << options()
        << "\nEverything after \"--\" goes to DPDK's EAL after the configuration's \"eal\" array,\n"
           "e.g. portmux -c /etc/portmux/portmux.json -- -l 2-3 --file-prefix pmx\n"
           "Runtime control: the /portmux/* commands on the telemetry socket (dpdk-telemetry.py).\n";
    return out.str();
}

CommandLine parse_command_line(int argc, const char* const* argv) {
    CommandLine cl;
    std::vector<std::string> own;
    bool eal = false;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        if (!eal && arg == "--") {
            eal = true;
            continue;
        }
        (eal ? cl.eal_args : own).push_back(arg);
    }
    po::variables_map vm;
    try {
        po::options_description desc = options();  // `parsed` refers to it until store() is done
        po::parsed_options parsed = po::command_line_parser(own).options(desc).run();
        po::store(parsed, vm);
        po::notify(vm);
    } catch (const po::error& e) {
        throw UsageError(e.what());
    }
    cl.help = vm.count("help") != 0;
    cl.version = vm.count("version") != 0;
    cl.check = vm.count("check") != 0;
    if (vm.count("config") != 0) cl.config_file = vm["config"].as<std::string>();
    if (!cl.help && !cl.version && cl.config_file.empty()) throw UsageError("--config FILE is required");
    return cl;
}

}  // namespace portmux
