// The /portmux/capture* commands: pcapng captures of vhost-user VM ports (docs/vms.md "Capturing a VM's
// traffic"). The captures themselves are ports/vm_capture.hpp.
#include <algorithm>
#include <cctype>

#include <fmt/format.h>

#include "control/command_params.hpp"
#include "control/commands.hpp"
#include "ports/vm_capture.hpp"

namespace portmux {
namespace {

using nlohmann::json;

using command_params::check_count;
using command_params::error;
const auto& split = command_params::split_params;

// Telemetry cuts strings at 127 bytes: a longer FILE could not be shown whole in the answers.
inline constexpr size_t kMaxCapturePath = 120;

// The VM port named by the first of `args` once their count is right, or the error message.
Result<const Port*> vm_of(const ControlContext& ctx, const std::vector<std::string>& args, size_t min, size_t max,
                          const char* usage) {
    std::string bad = check_count(args, min, max, usage);
    if (!bad.empty()) return Result<const Port*>::fail(bad);
    if (ctx.capture == nullptr) return Result<const Port*>::fail("captures are not available in this process");
    auto it = std::find_if(ctx.ports.begin(), ctx.ports.end(),
                           [&](const Port& p) { return p.role == PortRole::kVm && p.name == args[0]; });
    if (it == ctx.ports.end()) return Result<const Port*>::fail(fmt::format("unknown VM \"{}\"", args[0]));
    return Result<const Port*>::ok(&*it);
}

Result<uint64_t> parse_max_packets(const std::string& text) {
    const bool digits = !text.empty() && text.size() <= 9 && std::all_of(text.begin(), text.end(), ::isdigit);
    const uint64_t value = digits ? std::stoull(text) : 0;
    if (value == 0 || value > kMaxCapturePackets)
        return Result<uint64_t>::fail(fmt::format("MAX_PACKETS \"{}\": expected 1..{}", text, kMaxCapturePackets));
    return Result<uint64_t>::ok(value);
}

json counts(const CaptureStatus& s) {
    json answer = {{"vm", s.vm_name},
                   {"file", s.path},
                   {"state", to_string(s.state)},
                   {"max_packets", s.max_packets},
                   {"snaplen", s.snaplen},
                   {"captured", s.captured},
                   {"written", s.written},
                   {"dropped", s.dropped}};
    if (!s.failure.empty()) answer["failure"] = s.failure;
    return answer;
}

json cmd_capture_start(const ControlContext& ctx, const std::string& params) {
    std::vector<std::string> args = split(params);
    auto vm = vm_of(ctx, args, 2, 3, "/portmux/capture/start,VM,FILE[,MAX_PACKETS]");
    if (!vm) return error(vm.error());
    const Port& port = **vm;
    if (!port.is_vhost)
        return error(fmt::format("VM \"{}\" is a device port: capture it with dpdk-dumpcap", port.name));
    const std::string& path = args[1];
    if (path.size() > kMaxCapturePath) return error(fmt::format("FILE: at most {} bytes", kMaxCapturePath));
    uint64_t max_packets = kDefaultCapturePackets;
    if (args.size() == 3) {
        auto parsed = parse_max_packets(args[2]);
        if (!parsed) return error(parsed.error());
        max_packets = *parsed;
    }
    const std::string failed = ctx.capture->start(port.index - kFirstVmPortIndex, port.name, path, max_packets,
                                                  kDefaultCaptureSnaplen, port.mac);
    if (!failed.empty()) return error(failed);
    return {{"vm", port.name},
            {"file", path},
            {"state", "running"},
            {"max_packets", max_packets},
            {"snaplen", kDefaultCaptureSnaplen}};
}

json cmd_capture_stop(const ControlContext& ctx, const std::string& params) {
    auto vm = vm_of(ctx, split(params), 1, 1, "/portmux/capture/stop,VM");
    if (!vm) return error(vm.error());
    auto stopped = ctx.capture->stop((*vm)->index - kFirstVmPortIndex);
    if (!stopped) return error(fmt::format("VM \"{}\" is not captured", (*vm)->name));
    return counts(*stopped);
}

// One object per capture keyed by its position ("0".."3"): VM names are values (see commands.cpp).
json cmd_captures(const ControlContext& ctx, const std::string& params) {
    if (!split(params).empty()) return error("/portmux/captures takes no parameters");
    json answer = json::object();
    std::vector<CaptureStatus> all = ctx.capture != nullptr ? ctx.capture->list() : std::vector<CaptureStatus>{};
    for (size_t i = 0; i < all.size(); ++i) answer[std::to_string(i)] = counts(all[i]);
    answer["captures"] = all.size();
    answer["max_captures"] = kMaxCaptures;
    return answer;
}

}  // namespace

const std::vector<CommandSpec>& capture_command_table() {
    static const std::vector<CommandSpec> table = {
        {"/portmux/capture/start",
         "Capture a vhost-user VM's frames into a new pcapng FILE (absolute). Parameters: VM,FILE[,MAX_PACKETS]",
         true, cmd_capture_start},
        {"/portmux/capture/stop", "Stop a VM's capture; answers frames written and dropped. Parameter: VM", true,
         cmd_capture_stop},
        {"/portmux/captures", "Running and finished captures: VM, file, state, counters. No parameters.", false,
         cmd_captures},
    };
    return table;
}

}  // namespace portmux
