// Snapshot publication: one atomic exchange, then a grace period before the old tables are freed.
#include "tables/snapshot.hpp"

#include <stdexcept>
#include <vector>

#include <rte_malloc.h>
#include <rte_rcu_qsbr.h>

namespace portmux {

SnapshotPublisher::SnapshotPublisher(unsigned readers) {
    if (readers == 0) readers = 1;
    size_t size = rte_rcu_qsbr_get_memsize(readers);
    rcu_ = static_cast<rte_rcu_qsbr*>(rte_zmalloc("portmux_rcu", size, RTE_CACHE_LINE_SIZE));
    if (rcu_ == nullptr || rte_rcu_qsbr_init(rcu_, readers) != 0)
        throw std::runtime_error("cannot allocate the RCU state for the workers");
}

SnapshotPublisher::~SnapshotPublisher() {
    retired_.clear();  // the workers have stopped
    delete current_.exchange(nullptr);
    rte_free(rcu_);
}

void SnapshotPublisher::publish(std::unique_ptr<const Snapshot> next) { wait(install(std::move(next))); }

uint64_t SnapshotPublisher::install(std::unique_ptr<const Snapshot> next) {
    std::lock_guard<std::mutex> guard(publish_mutex_);
    const Snapshot* previous = current_.exchange(next.release(), std::memory_order_acq_rel);
    // Every registered worker reports a quiescent state once per loop iteration, after its last use of
    // the snapshot it loaded; once all have done so after this token, nobody can still hold `previous`.
    // Tokens grow with each install made under this lock, so retired_ stays in token order.
    const uint64_t token = rte_rcu_qsbr_start(rcu_);
    if (previous != nullptr) retired_.push_back(Retired{token, std::unique_ptr<const Snapshot>(previous)});
    return token;
}

void SnapshotPublisher::wait(uint64_t token) {
    // Offline workers (stopped, or not yet started) are not waited for.
    rte_rcu_qsbr_check(rcu_, token, true);
    std::vector<std::unique_ptr<const Snapshot>> done;
    {
        std::lock_guard<std::mutex> guard(publish_mutex_);
        while (!retired_.empty() && retired_.front().token <= token) {
            done.push_back(std::move(retired_.front().snapshot));
            retired_.pop_front();
        }
    }
    // Freed outside the lock: a snapshot may hold the last reference to rte_acl contexts and tables.
}

}  // namespace portmux
