// The immutable set of tables the data path reads, and its publication with RCU (see docs/concurrency.md).
#pragma once

#include <atomic>
#include <deque>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "config/config.hpp"
#include "core/port_owners.hpp"
#include "packet/shared_addresses.hpp"
#include "packet/vxlan_tunnel.hpp"
#include "tables/firewall.hpp"
#include "tables/lb_group.hpp"
#include "tables/owner_target.hpp"
#include "tables/port_translation.hpp"

struct rte_rcu_qsbr;

namespace portmux {

// Everything a worker consults to forward a packet, replaced only as a whole: a packet never sees a new
// firewall with an old range table. Never modified after publication.
struct Snapshot {
    uint64_t generation = 0;
    SharedAddresses shared;
    UnmatchedPolicy unmatched = UnmatchedPolicy::kHost;
    std::shared_ptr<const Firewall> firewall;  // shared between generations until the rules change
    std::shared_ptr<const PortOwnerTable> table;  // 256 KiB; shared between generations until ranges change
    // Extension: the range tables of the further shared addresses (SharedAddresses::extra_ip4 order).
    std::vector<std::shared_ptr<const PortOwnerTable>> extra_tables;
    // Every address's table by index (SharedAddresses::ip4_index): [0] is `table`. For the data path.
    const PortOwnerTable* table_at[1 + kMaxExtraSharedIps] = {};
    std::vector<OwnerTarget> owners;           // indexed by OwnerId; covers every id the table holds
    std::shared_ptr<const PortTranslation> translation;  // null unless some range translates ports
    std::shared_ptr<const VxlanSettings> vxlan;          // null unless `vxlan` is configured
    // Load-balanced groups, indexed by OwnerTarget::group; null when there are none. Shared between
    // generations until a group, a member's link or a VM's enabled flag changes.
    std::shared_ptr<const std::vector<LbGroup>> groups;
};

// Publishes snapshots to the workers and frees replaced ones once every worker has moved on.
// Readers (workers) call current() once per loop iteration and report a quiescent state after their last
// use; the writer swaps the pointer and waits for a grace period (rte_rcu_qsbr_synchronize).
class SnapshotPublisher {
public:
    // `readers` workers will register with thread ids 0..readers-1. Needs the EAL (rte_zmalloc).
    explicit SnapshotPublisher(unsigned readers);
    ~SnapshotPublisher();
    SnapshotPublisher(const SnapshotPublisher&) = delete;
    SnapshotPublisher& operator=(const SnapshotPublisher&) = delete;

    // Data path: the snapshot to use for this iteration.
    const Snapshot* current() const { return current_.load(std::memory_order_acquire); }
    rte_rcu_qsbr* rcu() const { return rcu_; }

    // Control side: installs `next` and returns after the previous snapshot has been freed. Serialised
    // internally, so any control thread may call it. Never blocks a worker.
    void publish(std::unique_ptr<const Snapshot> next);
    // The same in two steps, so that a caller can wait for the grace period without holding its own lock:
    // install() makes `next` current at once and returns a token; wait() returns once every worker has
    // moved past the snapshots installed up to that token, and frees the ones replaced by then. Concurrent
    // changes then share grace periods instead of queueing for one each.
    uint64_t install(std::unique_ptr<const Snapshot> next);
    void wait(uint64_t token);

private:
    rte_rcu_qsbr* rcu_ = nullptr;
    std::atomic<const Snapshot*> current_{nullptr};
    std::mutex publish_mutex_;  // guards the exchange and `retired_`
    struct Retired {
        uint64_t token;  // freed once the workers have passed this grace-period token
        std::unique_ptr<const Snapshot> snapshot;
    };
    std::deque<Retired> retired_;  // in token order
};

}  // namespace portmux
