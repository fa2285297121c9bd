// portmux's log: one rte_log type ("portmux"), messages formatted with fmt. Never used per packet.
#pragma once

#include <string>

#include <fmt/format.h>
#include <rte_log.h>

namespace portmux {

// The logtype id; registered by log_init(). Thread safety: log_init() once at startup, then any thread.
extern int g_logtype;
void log_init();

template <class... Args>
void log(uint32_t level, fmt::format_string<Args...> format, Args&&... args) {
    std::string line = fmt::format(format, std::forward<Args>(args)...);
    rte_log(level, static_cast<uint32_t>(g_logtype), "portmux: %s\n", line.c_str());
}

#define PMX_LOG_ERR(...) ::portmux::log(RTE_LOG_ERR, __VA_ARGS__)
#define PMX_LOG_WARN(...) ::portmux::log(RTE_LOG_WARNING, __VA_ARGS__)
#define PMX_LOG_INFO(...) ::portmux::log(RTE_LOG_INFO, __VA_ARGS__)
#define PMX_LOG_DEBUG(...) ::portmux::log(RTE_LOG_DEBUG, __VA_ARGS__)

}  // namespace portmux
