// The per-worker connection table of load-balanced groups.
#include "pipeline/connection_table.hpp"

#include <cstring>

namespace portmux {
namespace {

inline uint64_t key_hash(const ConnKey& key) {
    uint64_t w[3];
    std::memcpy(w, &key, sizeof(w));
    uint64_t h = w[0] * 0x9e3779b97f4a7c15ULL;
    h = (h ^ (h >> 29) ^ w[1]) * 0xbf58476d1ce4e5b9ULL;
    h = (h ^ (h >> 32) ^ w[2]) * 0x94d049bb133111ebULL;
    return h ^ (h >> 31);
}

// Three word compares: a memcmp call would cost more than the comparison itself.
inline bool same_key(const ConnKey& a, const ConnKey& b) {
    uint64_t x[3], y[3];
    std::memcpy(x, &a, sizeof(x));
    std::memcpy(y, &b, sizeof(y));
    return ((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2])) == 0;
}

}  // namespace

ConnKey make_conn_key(const ParsedFrame& frame, OwnerId group) {
    ConnKey key;
    std::memset(&key, 0, sizeof(key));
    if (frame.kind == FrameKind::kIpv6) {
        std::memcpy(key.src, frame.key.v6.src, 16);
        key.family = 6;
    } else {
        std::memcpy(key.src, &frame.key.v4.src, 4);
        key.family = 4;
    }
    key.src_port = frame.src_port;
    key.dst_port = frame.dst_port;
    key.proto = frame.ip_proto;
    key.group = group;
    return key;
}

ConnectionTable::ConnectionTable(uint32_t max_entries, uint64_t tcp_timeout_cycles, uint64_t udp_timeout_cycles)
    : tcp_timeout_(conn_time(tcp_timeout_cycles)),
      udp_timeout_(conn_time(udp_timeout_cycles)),
      per_group_(new uint32_t[kMaxOwners]()) {
    if (max_entries != 0) {
        uint32_t buckets = 1;
        while (static_cast<uint64_t>(buckets) * kWays < max_entries) buckets <<= 1;
        bucket_count_ = buckets;
        bucket_mask_ = buckets - 1;
        buckets_.reset(new Bucket[buckets]());
    }
}

uint64_t ConnectionTable::hash(const ConnKey& key) { return key_hash(key); }

void ConnectionTable::count(OwnerId group, int delta) {
    __atomic_store_n(&occupied_, __atomic_load_n(&occupied_, __ATOMIC_RELAXED) + delta, __ATOMIC_RELAXED);
    if (group < kMaxOwners)
        __atomic_store_n(&per_group_[group], __atomic_load_n(&per_group_[group], __ATOMIC_RELAXED) + delta,
                         __ATOMIC_RELAXED);
}

ConnEntry* ConnectionTable::find(const ConnKey& key, uint64_t now) {
    if (bucket_count_ == 0) return nullptr;
    Bucket& bucket = bucket_of(key);
    for (uint32_t w = 0; w < kWays; ++w) {
        ConnEntry& e = bucket.way[w];
        if (e.member != kNoOwner && same_key(e.key, key)) return expired(e, conn_time(now)) ? nullptr : &e;
    }
    return nullptr;
}

bool ConnectionTable::insert(const ConnKey& key, OwnerId member, uint64_t now) {
    if (bucket_count_ == 0) return false;
    const uint32_t t = conn_time(now);
    Bucket& bucket = bucket_of(key);
    ConnEntry* slot = nullptr;
    bool evicting = false;
    for (uint32_t w = 0; w < kWays; ++w) {
        ConnEntry& e = bucket.way[w];
        if (e.member == kNoOwner) {
            if (slot == nullptr || slot->member != kNoOwner) slot = &e;  // a free slot beats any other
            evicting = false;
            break;
        }
        if (same_key(e.key, key) || expired(e, t)) {
            slot = &e;
            evicting = false;
            break;
        }
        // The least recently seen: the one that has been idle longest (wrap-safe).
        if (slot == nullptr || static_cast<uint32_t>(t - e.last_seen) > static_cast<uint32_t>(t - slot->last_seen)) {
            slot = &e;
            evicting = true;
        }
    }
    if (slot->member != kNoOwner) count(slot->key.group, -1);
    slot->key = key;
    slot->member = member;
    slot->last_seen = t;
    count(key.group, +1);
    return evicting;
}

uint32_t ConnectionTable::expire(uint64_t now, uint32_t buckets) {
    if (bucket_count_ == 0) return 0;
    const uint32_t t = conn_time(now);
    uint32_t freed = 0;
    for (uint32_t b = 0; b < buckets && b < bucket_count_; ++b) {
        ConnEntry* bucket = buckets_[sweep_next_].way;
        for (uint32_t w = 0; w < kWays; ++w)
            if (bucket[w].member != kNoOwner && expired(bucket[w], t)) {
                count(bucket[w].key.group, -1);
                bucket[w].member = kNoOwner;
                ++freed;
            }
        sweep_next_ = (sweep_next_ + 1) & bucket_mask_;
    }
    return freed;
}

}  // namespace portmux
