// Registration of portmux's rte_log type.
#include "core/log.hpp"

namespace portmux {

int g_logtype = RTE_LOGTYPE_USER1;

void log_init() {
    int type = rte_log_register_type_and_pick_level("portmux", RTE_LOG_INFO);
    if (type >= 0) g_logtype = type;
}

}  // namespace portmux
