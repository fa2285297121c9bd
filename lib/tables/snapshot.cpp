// Snapshot publication: one atomic exchange, then a grace period before the old tables are freed.
#include "tables/snapshot.hpp"

#include <stdexcept>

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
    delete current_.exchange(nullptr);
    rte_free(rcu_);
}

void SnapshotPublisher::publish(std::unique_ptr<const Snapshot> next) {
    std::lock_guard<std::mutex> guard(publish_mutex_);
    const Snapshot* previous = current_.exchange(next.release(), std::memory_order_acq_rel);
    if (previous == nullptr) return;
    // Every registered worker reports a quiescent state once per loop iteration, after its last use of
    // the snapshot it loaded; once all have done so after the exchange, nobody can still hold `previous`.
    // Offline workers (stopped, or not yet started) are not waited for.
    rte_rcu_qsbr_synchronize(rcu_, RTE_QSBR_THRID_INVALID);
    delete previous;
}

}  // namespace portmux
