// Test main for unit tests that need DPDK: starts the EAL once without hugepages or PCI, then runs Catch2.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <filesystem>
#include <string>
#include <system_error>
#include <unistd.h>

#include <rte_eal.h>

int main(int argc, char** argv) {
    // A private file prefix per process, so parallel test runs never share DPDK runtime files.
    std::string prefix = "--file-prefix=pmx-unit-" + std::to_string(getpid());
    const char* eal_args[] = {"unit_dpdk", "--no-huge", "--no-pci", "-m", "256", "--no-shconf",
                              "--log-level", "lib.eal:error", prefix.c_str(), "-l", "0"};
    int eal_argc = static_cast<int>(sizeof(eal_args) / sizeof(eal_args[0]));
    if (rte_eal_init(eal_argc, const_cast<char**>(eal_args)) < 0) {
        fprintf(stderr, "unit_dpdk: cannot initialise the EAL\n");
        return 1;
    }
    int result = Catch::Session().run(argc, argv);
    rte_eal_cleanup();
    // The EAL leaves its runtime directory behind; a test cleans up what it created.
    std::error_code ignored;
    std::filesystem::remove_all("/var/run/dpdk/" + prefix.substr(prefix.find('=') + 1), ignored);
    return result;
}
