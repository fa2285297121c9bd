// The /portmux/group* commands (load-balanced groups, docs/load-balancing.md).
#include <algorithm>
#include <cctype>

#include <fmt/format.h>

#include "control/command_params.hpp"
#include "control/commands.hpp"
#include "pipeline/connection_table.hpp"

namespace portmux {
namespace {

using nlohmann::json;

inline constexpr size_t kGroupPageSize = 40;

using command_params::check_count;
using command_params::error;
using command_params::trim;
const auto& split = command_params::split_params;

Result<uint8_t> parse_weight(const std::string& text) {
    if (text.empty() || text.size() > 3 || !std::all_of(text.begin(), text.end(), ::isdigit) || std::stoul(text) == 0 ||
        std::stoul(text) > kMaxMemberWeight)
        return Result<uint8_t>::fail(fmt::format("weight \"{}\": expected 1..255", text));
    return Result<uint8_t>::ok(static_cast<uint8_t>(std::stoul(text)));
}

uint64_t flows_of(const ControlContext& ctx, OwnerId group) {
    uint64_t flows = 0;
    for (const ConnectionTable* table : ctx.connections)
        if (table != nullptr) flows += table->flows(group);
    return flows;
}

json changed(const ChangeReport& report, json answer) {
    answer["generation"] = report.generation;
    return answer;
}

// Without a parameter: one summary object per group, keyed by position (names are values, see commands.cpp);
// with GROUP: that group's members and ranges as arrays.
json cmd_groups(const ControlContext& ctx, const std::string& params) {
    std::vector<std::string> args = split(params);
    size_t offset = 0;
    if (!args.empty() && args.back().rfind("offset=", 0) == 0) {
        const std::string value = args.back().substr(7);
        if (value.empty() || value.size() > 9 || !std::all_of(value.begin(), value.end(), ::isdigit))
            return error(fmt::format("\"{}\": offset must be a non-negative integer", value));
        offset = std::stoul(value);
        args.pop_back();
    }
    if (args.size() > 1) return error("usage: /portmux/groups[,GROUP][,offset=N]");
    std::vector<GroupStatus> groups = ctx.state->groups();
    if (args.size() == 1) {
        for (const GroupStatus& g : groups) {
            if (g.name != args[0]) continue;
            json answer;
            answer["name"] = g.name;
            answer["members"] = json::array();
            for (const GroupMemberStatus& m : g.members)
                answer["members"].push_back(fmt::format("{} weight={} {}", m.vm, m.weight, to_string(m.state)));
            answer["ranges"] = json::array();
            for (const PortRange& r : g.ranges) answer["ranges"].push_back(r.to_string());
            answer["flows"] = flows_of(ctx, g.id);
            return answer;
        }
        return error(fmt::format("unknown group \"{}\"", args[0]));
    }
    json answer = json::object();
    const size_t end = std::min(groups.size(), offset + kGroupPageSize);
    for (size_t i = offset; i < end; ++i) {
        const GroupStatus& g = groups[i];
        std::string members, ranges;
        size_t active = 0;
        for (const GroupMemberStatus& m : g.members) {
            members += fmt::format("{}{}:{}:{}", members.empty() ? "" : " ", m.vm, m.weight, to_string(m.state));
            active += m.state == MemberState::kActive ? 1 : 0;
        }
        for (const PortRange& r : g.ranges) ranges += (ranges.empty() ? "" : " ") + r.to_string();
        // Telemetry cuts strings at 127 bytes; the full lists are in /portmux/groups,GROUP.
        auto fit = [](std::string s) { return s.size() <= kMaxMessage ? s : s.substr(0, kMaxMessage - 3) + "..."; };
        json entry;
        entry["name"] = g.name;
        entry["members"] = fit(members);
        entry["member_count"] = g.members.size();
        entry["active"] = active;
        entry["ranges"] = fit(ranges);
        entry["flows"] = flows_of(ctx, g.id);
        answer[std::to_string(i)] = entry;
    }
    answer["page_total"] = groups.size();
    answer["page_offset"] = offset;
    if (end < groups.size()) answer["page_next"] = fmt::format("offset={}", end);
    return answer;
}

json cmd_group_add(const ControlContext& ctx, const std::string& params) {
    std::vector<std::string> args = split(params);
    const char* usage = "/portmux/group/add,NAME[,VM[:WEIGHT]]...";
    std::string bad = check_count(args, 1, 1 + 255, usage);
    if (!bad.empty()) return error(bad);
    std::vector<GroupMemberConfig> members;
    for (size_t i = 1; i < args.size(); ++i) {
        GroupMemberConfig member;
        const size_t colon = args[i].find(':');
        member.vm = args[i].substr(0, colon);
        if (colon != std::string::npos) {
            auto weight = parse_weight(args[i].substr(colon + 1));
            if (!weight) return error(weight.error());
            member.weight = *weight;
        }
        members.push_back(member);
    }
    auto report = ctx.state->add_group(args[0], members);
    if (!report) return error(report.error());
    return changed(*report, {{"group", args[0]}, {"members", members.size()}});
}

json cmd_group_del(const ControlContext& ctx, const std::string& params) {
    std::vector<std::string> args = split(params);
    std::string bad = check_count(args, 1, 1, "/portmux/group/del,NAME");
    if (!bad.empty()) return error(bad);
    auto report = ctx.state->remove_group(args[0]);
    if (!report) return error(report.error());
    return changed(*report, {{"removed", args[0]}});
}

json cmd_member_add(const ControlContext& ctx, const std::string& params) {
    std::vector<std::string> args = split(params);
    std::string bad = check_count(args, 2, 3, "/portmux/group/member/add,GROUP,VM[,WEIGHT]");
    if (!bad.empty()) return error(bad);
    uint8_t weight = 1;
    if (args.size() == 3) {
        auto parsed = parse_weight(args[2]);
        if (!parsed) return error(parsed.error());
        weight = *parsed;
    }
    auto report = ctx.state->add_group_member(args[0], args[1], weight);
    if (!report) return error(report.error());
    return changed(*report, {{"group", args[0]}, {"added", args[1]}, {"weight", weight}});
}

json cmd_member_del(const ControlContext& ctx, const std::string& params) {
    std::vector<std::string> args = split(params);
    std::string bad = check_count(args, 2, 2, "/portmux/group/member/del,GROUP,VM");
    if (!bad.empty()) return error(bad);
    auto report = ctx.state->remove_group_member(args[0], args[1]);
    if (!report) return error(report.error());
    return changed(*report, {{"group", args[0]}, {"removed", args[1]}});
}

json cmd_member_weight(const ControlContext& ctx, const std::string& params) {
    std::vector<std::string> args = split(params);
    std::string bad = check_count(args, 3, 3, "/portmux/group/member/weight,GROUP,VM,WEIGHT");
    if (!bad.empty()) return error(bad);
    auto weight = parse_weight(args[2]);
    if (!weight) return error(weight.error());
    auto report = ctx.state->set_member_weight(args[0], args[1], *weight);
    if (!report) return error(report.error());
    return changed(*report, {{"group", args[0]}, {"vm", args[1]}, {"weight", *weight}, {"was", report->previous}});
}

json cmd_member_drain(const ControlContext& ctx, const std::string& params) {
    std::vector<std::string> args = split(params);
    std::string bad = check_count(args, 2, 3, "/portmux/group/member/drain,GROUP,VM[,on|off]");
    if (!bad.empty()) return error(bad);
    if (args.size() == 3 && args[2] != "on" && args[2] != "off")
        return error(fmt::format("\"{}\": expected on or off", args[2]));
    const bool drain = args.size() == 2 || args[2] == "on";
    auto report = ctx.state->set_member_drain(args[0], args[1], drain);
    if (!report) return error(report.error());
    return changed(*report, {{"group", args[0]}, {"vm", args[1]}, {"drain", drain ? "on" : "off"}, {"was", report->previous}});
}

}  // namespace

const std::vector<CommandSpec>& group_command_table() {
    static const std::vector<CommandSpec> table = {
        {"/portmux/groups", "Load-balanced groups: members (vm:weight:state), ranges, flows. Parameters: [GROUP][,offset=N]",
         false, cmd_groups},
        {"/portmux/group/add", "Create a load-balanced group. Parameters: NAME[,VM[:WEIGHT]]...", true, cmd_group_add},
        {"/portmux/group/del", "Delete a group that owns no range. Parameter: NAME", true, cmd_group_del},
        {"/portmux/group/member/add", "Add a member to a group. Parameters: GROUP,VM[,WEIGHT]", true, cmd_member_add},
        {"/portmux/group/member/del", "Remove a member from a group. Parameters: GROUP,VM", true, cmd_member_del},
        {"/portmux/group/member/weight", "Set a member's weight (1..255). Parameters: GROUP,VM,WEIGHT", true,
         cmd_member_weight},
        {"/portmux/group/member/drain", "No new flows to a member, existing ones stay. Parameters: GROUP,VM[,on|off]",
         true, cmd_member_drain},
    };
    return table;
}

}  // namespace portmux
