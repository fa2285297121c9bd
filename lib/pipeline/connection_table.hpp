// Per-worker connection table for load-balanced groups: which member a flow went to, so draining a member
// or changing the group keeps existing flows where they are. Fixed size, allocated before the worker
// starts; bounded set-associative buckets that replace the oldest entry when full.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/owner_id.hpp"
#include "core/port_range.hpp"
#include "packet/parsed_frame.hpp"

namespace portmux {

inline constexpr uint32_t kDefaultMaxConnections = 65536;
inline constexpr uint32_t kDefaultTcpTimeoutS = 300;
inline constexpr uint32_t kDefaultUdpTimeoutS = 30;

// A flow toward a group. The destination address is always the shared address of the family, so the
// source address, the ports, the protocol, the family and the group identify it. Compared as bytes.
struct ConnKey {
    uint8_t src[16];
    uint16_t src_port;
    uint16_t dst_port;
    uint8_t proto;
    uint8_t family;  // 4 or 6
    OwnerId group;
};
static_assert(sizeof(ConnKey) == 24, "ConnKey is compared with memcmp: no padding");

// The key of a TCP/UDP packet for `group`. Pure.
ConnKey make_conn_key(const ParsedFrame& frame, OwnerId group);

// 32 bytes: a bucket of four is two cache lines. Time is kept in units of 2^kTimeShift TSC cycles in 32 bits
// (about 0.35 ms at 3 GHz, wrapping after about 17 days); the sweep frees every entry soon after its timeout
// (at most 7 days), so no entry lives long enough to see the counter wrap.
struct ConnEntry {
    ConnKey key;
    OwnerId member;      // kNoOwner: the slot is free
    uint16_t pad;
    uint32_t last_seen;  // TSC >> kTimeShift
};
static_assert(sizeof(ConnEntry) == 32, "four entries per two cache lines");
inline constexpr unsigned kTimeShift = 20;
inline uint32_t conn_time(uint64_t tsc) { return static_cast<uint32_t>(tsc >> kTimeShift); }

// Single-writer: only the owning worker calls the non-const functions. flows() may be read from any
// thread (relaxed loads) for telemetry. A flow's packets always reach the same worker (RSS on the uplink
// queues, one worker per queue), so per-worker tables see every packet of their flows.
class ConnectionTable {
public:
    static constexpr uint32_t kWays = 4;

    // `max_entries` is rounded up to a multiple of kWays buckets (a power of two); 0 gives an empty table
    // that never holds anything. Timeouts in TSC cycles (kept to 2^kTimeShift resolution). Control side
    // (allocates). Times passed to the functions below are TSC values.
    ConnectionTable(uint32_t max_entries, uint64_t tcp_timeout_cycles, uint64_t udp_timeout_cycles);

    // The live entry for `key`, or null (an expired entry is not live). A caller that uses the entry sets
    // its last_seen to conn_time(now).
    ConnEntry* find(const ConnKey& key, uint64_t now);
    // Stores `key` -> `member`; true when a live entry had to be evicted to make room.
    bool insert(const ConnKey& key, OwnerId member, uint64_t now);
    // Frees the expired entries of the next `buckets` buckets (round robin); returns how many.
    uint32_t expire(uint64_t now, uint32_t buckets);

    uint32_t capacity() const { return bucket_count_ * kWays; }
    uint32_t bucket_count() const { return bucket_count_; }
    // Occupied entries (live or expired and not yet swept), in all and for one group; any thread.
    uint64_t occupied() const { return __atomic_load_n(&occupied_, __ATOMIC_RELAXED); }
    uint32_t flows(OwnerId group) const {
        return group < kMaxOwners ? __atomic_load_n(&per_group_[group], __ATOMIC_RELAXED) : 0;
    }

private:
    struct alignas(64) Bucket {
        ConnEntry way[kWays];
    };
    // Unsigned difference: correct across the wrap of the 32-bit time.
    bool expired(const ConnEntry& e, uint32_t now) const {
        const uint32_t timeout = e.key.proto == kIpProtoTcp ? tcp_timeout_ : udp_timeout_;
        return static_cast<uint32_t>(now - e.last_seen) > timeout;
    }
    Bucket& bucket_of(const ConnKey& key) { return buckets_[hash(key) & bucket_mask_]; }
    static uint64_t hash(const ConnKey& key);
    void count(OwnerId group, int delta);

    uint32_t bucket_count_ = 0;
    uint32_t bucket_mask_ = 0;
    uint32_t sweep_next_ = 0;
    uint32_t tcp_timeout_ = 0;  // in conn_time units
    uint32_t udp_timeout_ = 0;
    uint64_t occupied_ = 0;
    std::unique_ptr<Bucket[]> buckets_;
    std::unique_ptr<uint32_t[]> per_group_;  // kMaxOwners counters, by group OwnerId
};

}  // namespace portmux
