// The address(es) the host and every VM share, in the form the data path compares against.
#pragma once

#include <cstdint>
#include <cstring>

namespace portmux {

struct SharedAddresses {
    uint32_t ip4 = 0;  // network byte order, as read from a header with memcpy
    bool has_ip6 = false;
    uint8_t ip6[16] = {};

    bool is_ip4(uint32_t addr_be) const { return addr_be == ip4; }
    bool is_ip6(const uint8_t* addr) const { return has_ip6 && std::memcmp(addr, ip6, 16) == 0; }
};

}  // namespace portmux
