// Dense port indexes: the uplink is 0, the host port 1, VM i is 2 + i. Counters and transmit routes are
// indexed by them; DPDK's port ids are not dense (vdevs, hot plug) and are kept beside them.
#pragma once

#include <cstddef>
#include <cstdint>

namespace portmux {

inline constexpr uint16_t kUplinkPortIndex = 0;
inline constexpr uint16_t kHostPortIndex = 1;
inline constexpr uint16_t kFirstVmPortIndex = 2;
inline constexpr uint16_t vm_port_index(size_t vm_index) { return static_cast<uint16_t>(kFirstVmPortIndex + vm_index); }

enum class PortRole : uint8_t { kUplink, kHost, kVm };
inline PortRole role_of_port(uint16_t index) {
    return index == kUplinkPortIndex ? PortRole::kUplink : index == kHostPortIndex ? PortRole::kHost : PortRole::kVm;
}
inline const char* to_string(PortRole role) {
    return role == PortRole::kUplink ? "uplink" : role == PortRole::kHost ? "host" : "vm";
}

}  // namespace portmux
