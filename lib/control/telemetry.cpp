// The bridge between rte_telemetry and the command handlers: JSON answers become rte_tel_data.
#include "control/telemetry.hpp"

#include <algorithm>
#include <atomic>
#include <thread>

#include <nlohmann/json.hpp>
#include <rte_telemetry.h>

#include "control/commands.hpp"
#include "core/log.hpp"

namespace portmux {
namespace {

using nlohmann::json;

// rte_telemetry callbacks carry no user pointer.
std::atomic<const ControlContext*> g_context{nullptr};
// Shutdown: once g_stopping is set no new command starts; quiesce_telemetry() waits for running ones.
std::atomic<bool> g_stopping{false};
std::atomic<int> g_in_flight{0};

// A scalar into a dictionary. rte_telemetry has no booleans or floats: they become integers / strings.
void add_dict_scalar(rte_tel_data* d, const std::string& key, const json& value) {
    if (value.is_string())
        rte_tel_data_add_dict_string(d, key.c_str(), value.get<std::string>().c_str());
    else if (value.is_number_unsigned())
        rte_tel_data_add_dict_u64(d, key.c_str(), value.get<uint64_t>());
    else if (value.is_number_integer())
        rte_tel_data_add_dict_int(d, key.c_str(), static_cast<int>(value.get<int64_t>()));
    else if (value.is_boolean())
        rte_tel_data_add_dict_int(d, key.c_str(), value.get<bool>() ? 1 : 0);
    else
        rte_tel_data_add_dict_string(d, key.c_str(), value.dump().c_str());
}

// rte_telemetry allows one level of containers: a nested object or array holds only scalars (anything
// deeper is sent as its JSON text).
rte_tel_data* container(const json& value) {
    rte_tel_data* c = rte_tel_data_alloc();
    if (c == nullptr) return nullptr;
    if (value.is_object()) {
        rte_tel_data_start_dict(c);
        for (auto it = value.begin(); it != value.end(); ++it) add_dict_scalar(c, it.key(), it.value());
        return c;
    }
    bool numbers = !value.empty() && std::all_of(value.begin(), value.end(),
                                                 [](const json& v) { return v.is_number_unsigned(); });
    if (numbers) {
        rte_tel_data_start_array(c, RTE_TEL_U64_VAL);
        for (const json& v : value) rte_tel_data_add_array_u64(c, v.get<uint64_t>());
    } else {
        rte_tel_data_start_array(c, RTE_TEL_STRING_VAL);
        for (const json& v : value)
            rte_tel_data_add_array_string(c, v.is_string() ? v.get<std::string>().c_str() : v.dump().c_str());
    }
    return c;
}

void to_tel_data(const json& answer, rte_tel_data* d) {
    rte_tel_data_start_dict(d);
    for (auto it = answer.begin(); it != answer.end(); ++it) {
        if (it.value().is_structured()) {
            rte_tel_data* c = container(it.value());
            if (c != nullptr && rte_tel_data_add_dict_container(d, it.key().c_str(), c, 0) != 0) rte_tel_data_free(c);
        } else {
            add_dict_scalar(d, it.key(), it.value());
        }
    }
}

int dispatch(const char* cmd, const char* params, rte_tel_data* d) {
    g_in_flight.fetch_add(1);
    const ControlContext* context = g_context.load();
    json answer = g_stopping.load() || context == nullptr
                      ? json{{"error", "portmux is stopping"}}
                      : run_command(*context, cmd, params == nullptr ? "" : params);
    g_in_flight.fetch_sub(1);
    to_tel_data(answer, d);
    return 0;
}

}  // namespace

void register_telemetry(const ControlContext* context) {
    g_context.store(context);
    for (const CommandSpec& spec : command_table()) {
        if (spec.mutating && context->read_only) continue;
        if (rte_telemetry_register_cmd(spec.name, dispatch, spec.help) != 0)
            PMX_LOG_WARN("cannot register telemetry command {}", spec.name);
    }
    if (context->read_only) PMX_LOG_INFO("read-only: telemetry commands that change the switch are not registered");
}

}  // namespace portmux

namespace portmux {

void quiesce_telemetry() {
    g_stopping.store(true);
    while (g_in_flight.load() != 0) std::this_thread::yield();
}

}  // namespace portmux
