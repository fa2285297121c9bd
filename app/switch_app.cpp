// Wiring of the running switch. Owns nothing clever: every piece lives in lib/ or drivers/.
#include "switch_app.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <regex>
#include <thread>
#include <sys/resource.h>
#include <vector>

#include <fmt/format.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_pdump.h>

#include "control/stats.hpp"
#include "control/switch_state.hpp"
#include "control/telemetry.hpp"
#include "core/log.hpp"
#include "core/startup_error.hpp"
#include "pipeline/worker.hpp"
#include "ports/vm_capture.hpp"
#include "port_set.hpp"

namespace portmux {
namespace {

std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free, "the signal handler needs a lock-free flag");

void on_signal(int) { g_stop.store(true); }

void install_signal_handlers() {
    struct sigaction action{};
    action.sa_handler = on_signal;
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, nullptr);
    sigaction(SIGTERM, &action, nullptr);
}

// A PCI address as DPDK writes it: [domain:]bus:device.function, e.g. 0000:3b:00.0 or 3b:00.0.
bool is_pci_address(const std::string& devargs) {
    static const std::regex pattern("^([0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\\.[0-7]$");
    return std::regex_match(devargs.substr(0, devargs.find(',')), pattern);
}

bool names_pci_policy(const std::vector<std::string>& args) {
    for (const std::string& arg : args)
        if (arg == "-a" || arg == "-b" || arg == "--no-pci" || arg.rfind("--allow", 0) == 0 ||
            arg.rfind("--block", 0) == 0 || arg.rfind("-a", 0) == 0 || arg.rfind("-b", 0) == 0)
            return true;
    return false;
}

// portmux touches only the devices its configuration names: unless the EAL arguments already say which PCI
// devices to use, the configured PCI addresses are allow-listed, or PCI is left alone when none is named
// (otherwise the EAL would probe every NIC it can drive, including ones the host uses).
std::vector<std::string> pci_policy(const Config& config, const std::vector<std::string>& eal_args) {
    if (names_pci_policy(eal_args)) return {};
    std::vector<std::string> devices{config.uplink.device, config.host.device};
    for (const VmConfig& vm : config.vms)
        if (!vm.device.empty()) devices.push_back(vm.device);
    std::vector<std::string> policy;
    for (const std::string& device : devices)
        if (is_pci_address(device)) {
            policy.push_back("-a");
            policy.push_back(device);
        }
    if (policy.empty()) policy.push_back("--no-pci");
    return policy;
}

// Every connected vhost-user guest holds a socket, two event descriptors per ring and its memory regions'
// descriptors: a thousand VMs need far more than the default soft limit of 1,024 open files.
void raise_open_file_limit() {
    rlimit limit{};
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= limit.rlim_max) return;
    limit.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0)
        PMX_LOG_WARN("cannot raise the open-file limit to {}: many vhost-user VMs may not connect", limit.rlim_max);
}

void init_eal(const CommandLine& command_line, const Config& config) {
    std::vector<std::string> args{"portmux"};
    // A default file prefix from the environment goes first (the EAL keeps the last --file-prefix), so that a
    // configuration or command line naming its own prefix still wins. The systemd template unit sets it to
    // give every instance its own runtime directory and hugepage files.
    const char* default_prefix = std::getenv("PORTMUX_DEFAULT_FILE_PREFIX");
    if (default_prefix != nullptr && *default_prefix != '\0') {
        args.push_back("--file-prefix");
        args.push_back(default_prefix);
    }
    // The configuration's "eal" next, so the command line can override it.
    args.insert(args.end(), config.eal.begin(), config.eal.end());
    args.insert(args.end(), command_line.eal_args.begin(), command_line.eal_args.end());
    std::vector<std::string> policy = pci_policy(config, std::vector<std::string>(args.begin() + 1, args.end()));
    args.insert(args.begin() + 1, policy.begin(), policy.end());
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    // rte_eal_init permutes argv; `args` keeps the strings alive for the life of the call.
    if (rte_eal_init(static_cast<int>(args.size()), argv.data()) < 0)
        throw StartupError(fmt::format("cannot initialise DPDK (EAL): {}", rte_strerror(rte_errno)));
}

void log_totals(const CounterTotals& totals, const std::vector<Port>& ports) {
    for (const Port& port : ports)
        if (!port.name.empty())
            PMX_LOG_INFO("{} {}: rx {} tx {} tx_dropped {}", to_string(port.role), port.name,
                     totals.get(port.index, PortCounter::rx_packets), totals.get(port.index, PortCounter::tx_packets),
                     totals.get(port.index, PortCounter::tx_dropped));
    for (size_t c = 0; c < kSwitchCounterCount; ++c)
        if (totals.switch_counters[c] != 0)
            PMX_LOG_INFO("{}: {}", counter_name(static_cast<SwitchCounter>(c)), totals.switch_counters[c]);
}

// The last link state seen of a port, and of which VM: an index may be given to another VM at runtime.
struct LinkSeen {
    int up = -1;  // -1 before the first look
    std::string name;
};

// Logs link changes (every port's first state too) and hands them to SwitchState: a VM's link drives its
// failover to a backup. `link` holds the last state seen per dense port index.
void watch_links(const PortSet& ports, SwitchState& state, std::vector<LinkSeen>& link) {
    size_t waiting = 0;  // VMs first seen down: one line for all of them (a thousand guests may be missing)
    for (const Port& port : ports.ports()) {
        if (port.index >= link.size()) link.resize(port.index + 1);
        LinkSeen& seen = link[port.index];
        if (port.name.empty() || port.name != seen.name) seen = LinkSeen{-1, port.name};  // a free or new VM index
        if (port.name.empty()) continue;
        const int up = ports.link_up(port.index) ? 1 : 0;
        if (up == seen.up) continue;
        const bool first_look = seen.up == -1;
        seen.up = up;
        const bool is_vm = port.role == PortRole::kVm;
        if (is_vm && first_look && up == 0)
            ++waiting;
        else
            PMX_LOG_INFO("{}: link {}", is_vm ? fmt::format("VM \"{}\"", port.name) : port.name, up ? "up" : "down");
        if (is_vm && state.set_link(port.index - kFirstVmPortIndex, up == 1)) {
            const std::string serving = state.served_by(port.index - kFirstVmPortIndex);
            // A group member without a backup changes only its groups' tables.
            if (serving != port.name || up == 1)
                PMX_LOG_INFO("VM \"{}\": its ranges are now served by \"{}\"", port.name, serving);
            else
                PMX_LOG_INFO("VM \"{}\": down in its load-balanced groups", port.name);
        }
    }
    if (waiting != 0) PMX_LOG_INFO("{} VM(s) without a guest yet: link down (see /portmux/vms)", waiting);
}

// Control-side objects shared with telemetry callbacks; released in order at shutdown.
struct ProcessLifetime {
    std::unique_ptr<SnapshotPublisher> publisher;
    std::unique_ptr<SwitchState> state;
    std::unique_ptr<VmCapture> capture;
    std::unique_ptr<ControlContext> control;
};
ProcessLifetime* g_lifetime = nullptr;

}  // namespace

int run_switch(const CommandLine& command_line, const Config& config) {
    std::unique_ptr<PortSet> ports;
    std::vector<std::unique_ptr<Worker>> workers;
    std::vector<unsigned> worker_lcores;
    // Signals first: a SIGTERM during startup (which can take seconds: hugepages, vhost sockets, the
    // firewall build) stops portmux cleanly once it is up, instead of killing it half-initialised.
    install_signal_handlers();
    try {
        init_eal(command_line, config);
        log_init();
        raise_open_file_limit();
        unsigned lcore;
        RTE_LCORE_FOREACH_WORKER(lcore) worker_lcores.push_back(lcore);
        if (worker_lcores.empty())
            throw StartupError("needs at least two lcores, one for control and one or more workers (EAL -l 0-1, "
                               "or --lcores 0@0,1@1)");
        if (rte_pdump_init() != 0)
            PMX_LOG_WARN("packet capture (dpdk-dumpcap) is unavailable: {}", rte_strerror(rte_errno));

        ports = std::make_unique<PortSet>(config, static_cast<unsigned>(worker_lcores.size()));

        g_lifetime = new ProcessLifetime();
        g_lifetime->publisher = std::make_unique<SnapshotPublisher>(static_cast<unsigned>(worker_lcores.size()));
        g_lifetime->state = std::make_unique<SwitchState>(config, *g_lifetime->publisher);
        g_lifetime->state->publish_initial();
        // Stopping a capture waits for the workers' grace period before freeing it.
        g_lifetime->capture = std::make_unique<VmCapture>(g_lifetime->publisher->rcu());

        WorkerShared shared;
        shared.snapshots = g_lifetime->publisher.get();
        shared.stop = &g_stop;
        shared.pool = ports->pool();
        shared.indirect_pool = ports->indirect_pool();
        shared.uplink_mac = ports->uplink().mac;
        shared.uplink_checks_ip4_checksum = ports->uplink().rx_checks_ip4_checksum;
        shared.port_count = static_cast<uint16_t>(kFirstVmPortIndex + kMaxVms);
        shared.worker_count = static_cast<unsigned>(worker_lcores.size());
        shared.vhost = &ports->vhost_slots();
        shared.capture = g_lifetime->capture.get();
        shared.offload.direct_pool = ports->pool();
        shared.offload.indirect_pool = ports->indirect_pool();
        shared.offload.mtu = shared.mtu;
        // A vhost device going away now waits for the workers before the library frees it.
        ports->vhost_ports().attach_workers(g_lifetime->publisher->rcu());
        // The host's limit is shared among the workers: the uplink's RSS spreads its traffic over them.
        shared.host_rate_pps = config.host.rate_limit_pps == 0
                                   ? 0
                                   : std::max<uint32_t>(1, config.host.rate_limit_pps /
                                                               static_cast<uint32_t>(worker_lcores.size()));
        shared.connections = config.connections;
        for (WorkerSetup& setup : ports->plan_workers()) workers.push_back(std::make_unique<Worker>(setup, shared));

        auto control = std::make_unique<ControlContext>();
        control->state = g_lifetime->state.get();
        control->ports = ports->ports();
        PortSet* port_set = ports.get();
        control->link_up = [port_set](uint16_t index) { return port_set->link_up(index); };
        control->vhost_status = [port_set](size_t vm_index, bool with_queue_stats) {
            return port_set->vhost_ports().status(vm_index, with_queue_stats);
        };
        control->attach_vm = [port_set](size_t vm_index, const VmConfig& vm) {
            return port_set->add_vhost_vm(vm_index, vm);
        };
        control->detach_vm = [port_set](size_t vm_index) { port_set->remove_vhost_vm(vm_index); };
        for (const auto& worker : workers) control->counters.push_back(&worker->counters());
        for (const auto& worker : workers) control->connections.push_back(&worker->connections());
        control->worker_lcores = worker_lcores;
        control->main_lcore = rte_get_main_lcore();
        control->config_file = command_line.config_file;
        control->started = std::chrono::steady_clock::now();
        control->read_only = config.control.read_only;
        control->pool = ports->pool();
        control->capture = g_lifetime->capture.get();
        g_lifetime->control = std::move(control);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "portmux: %s\n", e.what());
        return 1;
    }

    // Commands can be served before any packet flows; then links: a VM whose port is down at start is
    // served by its backup from the first packet on.
    register_telemetry(g_lifetime->control.get());
    std::vector<LinkSeen> link(kFirstVmPortIndex + kMaxVms);
    watch_links(*ports, *g_lifetime->state, link);
    for (size_t i = 0; i < workers.size(); ++i)
        rte_eal_remote_launch(Worker::lcore_main, workers[i].get(), worker_lcores[i]);
    PMX_LOG_INFO("forwarding with {} worker(s); shared address {}", workers.size(), config.shared_ip.to_string());

    // The main lcore is the control side: it only watches links (and signals) while telemetry serves commands.
    while (!g_stop.load()) {
        watch_links(*ports, *g_lifetime->state, link);
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }

    PMX_LOG_INFO("stopping");
    rte_eal_mp_wait_lcore();
    log_totals(sum_counters(g_lifetime->control->counters, ports->ports().size()), ports->ports());
    // Everything that lives in DPDK memory goes before rte_eal_cleanup(); telemetry must not reach it then.
    quiesce_telemetry();
    // Captures still running are closed with what they have; no worker runs any more.
    g_lifetime->capture.reset();
    workers.clear();
    ports.reset();
    g_lifetime->state.reset();
    g_lifetime->publisher.reset();
    rte_eal_cleanup();
    return 0;
}

}  // namespace portmux
