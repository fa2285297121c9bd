// Internet checksum arithmetic (RFC 1071, incremental update per RFC 1624) and big-endian field access,
// shared by the pipeline stages that read or write headers.
#pragma once

#include <cstddef>
#include <cstdint>

namespace portmux::wire {

inline uint16_t load16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }

inline uint32_t load32(const uint8_t* p) {
    return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) |
           (static_cast<uint32_t>(p[2]) << 8) | p[3];
}

inline void store16(uint8_t* p, uint16_t v) {
    p[0] = static_cast<uint8_t>(v >> 8);
    p[1] = static_cast<uint8_t>(v);
}

inline void store32(uint8_t* p, uint32_t v) {
    p[0] = static_cast<uint8_t>(v >> 24);
    p[1] = static_cast<uint8_t>(v >> 16);
    p[2] = static_cast<uint8_t>(v >> 8);
    p[3] = static_cast<uint8_t>(v);
}

// Adds `n` bytes as big-endian 16-bit words to a running one's-complement sum. Only the last piece of
// a checksummed range may have an odd length (its last byte is padded with zero, as RFC 1071 says).
inline uint32_t csum_add(uint32_t sum, const uint8_t* p, size_t n) {
    uint64_t acc = sum;
    size_t i = 0;
    for (; i + 1 < n; i += 2) acc += load16(p + i);
    if (i < n) acc += static_cast<uint32_t>(p[i]) << 8;
    while (acc >> 32) acc = (acc & 0xffffffffu) + (acc >> 32);
    return static_cast<uint32_t>(acc);
}

inline uint32_t csum_add16(uint32_t sum, uint16_t word) {
    uint64_t acc = static_cast<uint64_t>(sum) + word;
    return static_cast<uint32_t>((acc & 0xffffffffu) + (acc >> 32));
}

// Folds the sum to 16 bits and complements it: the value written into a checksum field.
inline uint16_t csum_finish(uint32_t sum) {
    while (sum >> 16) sum = (sum & 0xffffu) + (sum >> 16);
    return static_cast<uint16_t>(~sum);
}

// RFC 1624 eqn. 3: the checksum after one 16-bit word covered by it changes from `old_word` to `new_word`.
inline uint16_t csum_replace16(uint16_t checksum, uint16_t old_word, uint16_t new_word) {
    uint32_t sum = static_cast<uint16_t>(~checksum);
    sum += static_cast<uint16_t>(~old_word);
    sum += new_word;
    return csum_finish(sum);
}

// True when an IPv4 header of `header_len` bytes (a multiple of 4, at least 20) carries a correct header
// checksum: the one's-complement sum of all its 16-bit words, the checksum included, is 0xffff (-0).
// One's-complement sums are sums modulo 0xffff, and 2^16 = 1 modulo 0xffff, so the 32-bit words may be
// added as plain integers in host byte order (byte order does not matter either: 2^8 * 2^8 = 1) and the
// total tested for a multiple of 0xffff; it is never 0, as the first byte (version and IHL) is not.
inline bool ipv4_header_checksum_ok(const uint8_t* ip, uint32_t header_len) {
    uint64_t acc = 0;
    for (uint32_t i = 0; i < header_len; i += 4) {
        uint32_t word;
        __builtin_memcpy(&word, ip + i, 4);
        acc += word;
    }
    return acc % 0xffffu == 0;
}

}  // namespace portmux::wire
