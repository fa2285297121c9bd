// The address(es) the host and every VM share, in the form the data path compares against.
#pragma once

#include <cstdint>
#include <cstring>

#include "core/limits.hpp"

namespace portmux {

struct SharedAddresses {
    uint32_t ip4 = 0;  // the first address; network byte order, as read from a header with memcpy
    bool has_ip6 = false;
    uint8_t ip6[16] = {};
    uint8_t extra_ip4_count = 0;
    uint32_t extra_ip4[kMaxExtraSharedIps] = {};  // network byte order; address i + 1 has range table i + 1

    // The index of the range table for IPv4 destination `addr_be`: 0 for the first address, 1.. for the
    // others, -1 when it is not a shared address. The first address costs one compare.
    int ip4_index(uint32_t addr_be) const {
        if (addr_be == ip4) return 0;
        for (unsigned i = 0; i < extra_ip4_count; ++i)
            if (addr_be == extra_ip4[i]) return static_cast<int>(i + 1);
        return -1;
    }
    bool is_ip4(uint32_t addr_be) const { return addr_be == ip4 || (extra_ip4_count != 0 && ip4_index(addr_be) > 0); }
    bool is_ip6(const uint8_t* addr) const { return has_ip6 && std::memcmp(addr, ip6, 16) == 0; }
};

}  // namespace portmux
