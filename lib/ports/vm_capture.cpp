// VM captures: the workers' copy into a ring, the writer thread that empties it into the file, and the
// start and stop that make sure the two never outlive what they use.
#include "ports/vm_capture.hpp"

#include <algorithm>
#include <condition_variable>
#include <ctime>
#include <system_error>
#include <thread>

#include <pthread.h>
#include <unistd.h>

#include <fmt/format.h>
#include <rte_cycles.h>
#include <rte_errno.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_pcapng.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring.h>

#include "core/log.hpp"
#include "ports/pcapng_file.hpp"

namespace portmux {
namespace {

constexpr uint16_t kCopyBurst = 32;
constexpr unsigned kWriteBurst = 64;
constexpr unsigned kCaptureMbufCache = 32;
// How long the writer sleeps on an empty ring: short enough that a burst of a few thousand frames finds
// room in the ring, long enough to cost nothing.
constexpr auto kWriterIdle = std::chrono::milliseconds(1);

uint64_t realtime_ns() {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

// TSC cycles to nanoseconds since the epoch, from a base taken when the capture starts and never changed,
// so any number of workers can convert at once.
struct CaptureClock {
    uint64_t epoch_ns = 0;
    uint64_t epoch_tsc = 0;
    uint64_t tsc_hz = 1;

    uint64_t to_ns(uint64_t tsc) const {
        const uint64_t delta = tsc > epoch_tsc ? tsc - epoch_tsc : 0;
        // Whole seconds and the rest apart: delta * 10^9 would overflow after a few seconds.
        return epoch_ns + delta / tsc_hz * 1000000000ULL + delta % tsc_hz * 1000000000ULL / tsc_hz;
    }
};

}  // namespace

const char* to_string(CaptureState state) {
    switch (state) {
        case CaptureState::kRunning: return "running";
        case CaptureState::kFinished: return "finished";
        case CaptureState::kFailed: return "failed";
        case CaptureState::kStopped: return "stopped";
    }
    return "?";
}

struct alignas(64) VmCapture::CaptureTap {
    rte_ring* ring = nullptr;      // copies for the writer: multi-producer, single consumer
    rte_mempool* pool = nullptr;   // the copies' mbufs
    uint32_t snaplen = 0;
    uint64_t max_packets = 0;
    CaptureClock clock;
    // Written by the workers: frames claimed toward max_packets (may run past it), claimed frames whose copy
    // is queued or counted lost (released after the enqueue, so the writer knows when all are in), and lost.
    alignas(64) std::atomic<uint64_t> claimed{0};
    std::atomic<uint64_t> settled{0};
    std::atomic<uint64_t> dropped{0};

    ~CaptureTap() {
        if (ring != nullptr) {
            rte_mbuf* left[kWriteBurst];
            unsigned n;
            while ((n = rte_ring_sc_dequeue_burst(ring, reinterpret_cast<void**>(left), kWriteBurst, nullptr)) != 0)
                rte_pktmbuf_free_bulk(left, n);
            rte_ring_free(ring);
        }
        rte_mempool_free(pool);
    }
};

struct VmCapture::Session {
    size_t vm_index = 0;
    std::string vm_name;
    std::string path;
    uint64_t start_ns = 0;
    std::unique_ptr<CaptureTap> tap;
    std::optional<PcapngFile> file;  // touched by the writer thread only, once it runs
    std::atomic<CaptureState> state{CaptureState::kRunning};
    std::atomic<uint64_t> written{0};
    std::atomic<uint64_t> lost_in_writer{0};

    mutable std::mutex mutex;  // failure, stop_requested
    std::condition_variable wake;
    std::string failure;
    bool stop_requested = false;
    std::thread writer;
};

VmCapture::VmCapture(rte_rcu_qsbr* rcu) : rcu_(rcu), taps_(std::make_unique<std::atomic<CaptureTap*>[]>(kMaxVms)) {
    for (size_t i = 0; i < kMaxVms; ++i) taps_[i].store(nullptr, std::memory_order_relaxed);
}

VmCapture::~VmCapture() {
    std::vector<size_t> running;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        for (const auto& session : sessions_) running.push_back(session->vm_index);
    }
    for (size_t vm : running) (void)stop(vm);
}

std::string VmCapture::start(size_t vm_index, const std::string& vm_name, const std::string& path,
                             uint64_t max_packets, uint32_t snaplen, std::optional<MacAddr> mac) {
    if (vm_index >= kMaxVms) return fmt::format("VM index {} is out of range", vm_index);
    if (max_packets == 0 || max_packets > kMaxCapturePackets)
        return fmt::format("MAX_PACKETS {}: expected 1..{}", max_packets, kMaxCapturePackets);
    if (snaplen < kMinCaptureSnaplen || snaplen > kMaxCaptureSnaplen)
        return fmt::format("snap length {}: expected {}..{}", snaplen, kMinCaptureSnaplen, kMaxCaptureSnaplen);
    // portmux's working directory is nobody's business: a relative path would land somewhere unexpected.
    if (path.empty() || path[0] != '/') return fmt::format("\"{}\": FILE must be an absolute path", path);

    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& session : sessions_)
        if (session->vm_index == vm_index)
            return fmt::format("VM \"{}\" is already captured (see /portmux/captures); stop it first", vm_name);
    if (sessions_.size() >= kMaxCaptures)
        return fmt::format("{} captures run already, the most at once; stop one first", sessions_.size());

    auto session = std::make_unique<Session>();
    session->vm_index = vm_index;
    session->vm_name = vm_name;
    session->path = path;
    session->tap = std::make_unique<CaptureTap>();
    CaptureTap& tap = *session->tap;
    tap.snaplen = snaplen;
    tap.max_packets = max_packets;
    // Ring and pool before the file: failing here leaves nothing on disk.
    const unsigned id = created_++;
    const std::string ring_name = fmt::format("pmx_capr{}", id);
    const std::string pool_name = fmt::format("pmx_capm{}", id);
    tap.ring = rte_ring_create(ring_name.c_str(), kCaptureRingSize, SOCKET_ID_ANY, RING_F_SC_DEQ);
    if (tap.ring == nullptr) return fmt::format("cannot allocate the capture's ring: {}", rte_strerror(rte_errno));
    tap.pool = rte_pktmbuf_pool_create(pool_name.c_str(), kCaptureMbufs, kCaptureMbufCache, 0,
                                       RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
    if (tap.pool == nullptr)
        return fmt::format("cannot allocate the capture's {} mbufs: {}", kCaptureMbufs, rte_strerror(rte_errno));

    PcapngInterface interface;
    interface.name = "vm:" + vm_name;
    interface.description = fmt::format("portmux VM port \"{}\"", vm_name);
    interface.mac = mac;
    interface.snaplen = snaplen;
    auto file = PcapngFile::create(path, "portmux " PORTMUX_VERSION, interface);
    if (!file) return file.error();
    session->file.emplace(std::move(file.value()));

    // The time base is taken at once from both clocks, so the file's timestamps are wall-clock times.
    tap.clock.tsc_hz = std::max<uint64_t>(1, rte_get_tsc_hz());
    tap.clock.epoch_tsc = rte_get_tsc_cycles();
    tap.clock.epoch_ns = realtime_ns();
    session->start_ns = tap.clock.epoch_ns;

    Session* raw = session.get();
    try {
        // A plain thread: it inherits the control thread's CPU set, never a worker's core.
        raw->writer = std::thread([this, raw] { write_loop(*raw); });
    } catch (const std::system_error& e) {
        session->file.reset();
        ::unlink(path.c_str());
        return fmt::format("cannot start the capture's writer thread: {}", e.what());
    }
    pthread_setname_np(raw->writer.native_handle(), "pmx-capture");
    sessions_.push_back(std::move(session));
    // Release: a worker that sees the pointer sees the tap complete.
    taps_[vm_index].store(&tap, std::memory_order_release);
    PMX_LOG_INFO("VM \"{}\": capturing at most {} frames into {}", vm_name, max_packets, path);
    return "";
}

Result<CaptureStatus> VmCapture::stop(size_t vm_index) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = std::find_if(sessions_.begin(), sessions_.end(),
                           [&](const auto& session) { return session->vm_index == vm_index; });
    if (it == sessions_.end()) return Result<CaptureStatus>::fail("not captured");
    std::unique_ptr<Session> session = std::move(*it);
    sessions_.erase(it);

    // No worker takes the tap from now on; after the grace period none is still using it either, so the
    // ring gets nothing more and the writer can empty it for good.
    taps_[vm_index].store(nullptr, std::memory_order_release);
    if (rcu_ != nullptr) rte_rcu_qsbr_synchronize(rcu_, RTE_QSBR_THRID_INVALID);
    {
        std::lock_guard<std::mutex> session_lock(session->mutex);
        session->stop_requested = true;
    }
    session->wake.notify_one();
    session->writer.join();
    CaptureStatus status = status_of(*session);
    PMX_LOG_INFO("VM \"{}\": capture {}: {} frames written to {}, {} lost", session->vm_name, to_string(status.state),
                 status.written, session->path, status.dropped);
    return Result<CaptureStatus>::ok(status);  // the session (ring, pool, file) goes here
}

std::vector<CaptureStatus> VmCapture::list() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::vector<CaptureStatus> all;
    for (const auto& session : sessions_) all.push_back(status_of(*session));
    return all;
}

CaptureStatus VmCapture::status_of(const Session& session) {
    const CaptureTap& tap = *session.tap;
    CaptureStatus status;
    status.vm_index = session.vm_index;
    status.vm_name = session.vm_name;
    status.path = session.path;
    status.state = session.state.load(std::memory_order_acquire);
    {
        std::lock_guard<std::mutex> lock(session.mutex);
        status.failure = session.failure;
    }
    status.max_packets = tap.max_packets;
    status.snaplen = tap.snaplen;
    status.captured = std::min(tap.claimed.load(std::memory_order_relaxed), tap.max_packets);
    status.written = session.written.load(std::memory_order_relaxed);
    status.dropped = tap.dropped.load(std::memory_order_relaxed) + session.lost_in_writer.load(std::memory_order_relaxed);
    return status;
}

void VmCapture::copy_burst(CaptureTap& tap, CaptureDirection direction, rte_mbuf* const* pkts, uint16_t n,
                           uint16_t queue) {
    // Pairs with start()'s release store (the caller's load was relaxed): the tap's fields are set.
    std::atomic_thread_fence(std::memory_order_acquire);
    // A finished capture stays visible until its writer clears the pointer: cheap reads, no contended write.
    if (tap.claimed.load(std::memory_order_relaxed) >= tap.max_packets) return;
    const uint64_t first = tap.claimed.fetch_add(n, std::memory_order_relaxed);
    if (first >= tap.max_packets) return;
    const auto take = static_cast<uint16_t>(std::min<uint64_t>(n, tap.max_packets - first));

    const uint64_t now = rte_get_tsc_cycles();
    const uint64_t now_ns = tap.clock.to_ns(now);  // one timestamp for the burst: it arrived at once
    const rte_pcapng_direction pcapng_direction =
        direction == CaptureDirection::kFromVm ? RTE_PCAPNG_DIRECTION_IN : RTE_PCAPNG_DIRECTION_OUT;
    uint64_t lost = 0;
    for (uint16_t done = 0; done < take;) {
        const auto chunk = static_cast<uint16_t>(std::min<int>(take - done, kCopyBurst));
        rte_mbuf* copies[kCopyBurst];
        unsigned made = 0;
        for (uint16_t i = 0; i < chunk; ++i) {
            // Port 0 is only recorded in the copy's mbuf (for rte_pcapng_write_packets, which is not used);
            // the block's interface id is set by stamp_packet_block.
            rte_mbuf* copy = rte_pcapng_copy(0, queue, pkts[done + i], tap.pool, tap.snaplen, now, pcapng_direction);
            if (copy == nullptr) {
                ++lost;
                continue;
            }
            if (!stamp_packet_block(copy, 0, now_ns)) {
                rte_pktmbuf_free(copy);
                ++lost;
                continue;
            }
            copies[made++] = copy;
        }
        const unsigned queued =
            made == 0 ? 0 : rte_ring_mp_enqueue_burst(tap.ring, reinterpret_cast<void**>(copies), made, nullptr);
        if (queued < made) {
            rte_pktmbuf_free_bulk(copies + queued, made - queued);
            lost += made - queued;
        }
        done = static_cast<uint16_t>(done + chunk);
    }
    if (lost != 0) tap.dropped.fetch_add(lost, std::memory_order_relaxed);
    tap.settled.fetch_add(take, std::memory_order_release);
}

// The capture's thread: empties the ring into the file until stop() says no worker can add to it any more.
// When all of max_packets are in, it closes the file and clears the VM's pointer itself, so a finished
// capture costs the workers nothing while it waits for the operator's stop.
void VmCapture::write_loop(Session& session) {
    CaptureTap& tap = *session.tap;
    rte_mbuf* burst[kWriteBurst];
    auto drain = [&] {
        unsigned n;
        while ((n = rte_ring_sc_dequeue_burst(tap.ring, reinterpret_cast<void**>(burst), kWriteBurst, nullptr)) != 0) {
            std::string failed;
            if (session.state.load(std::memory_order_relaxed) == CaptureState::kRunning)
                failed = session.file->write_blocks(burst, n);
            else
                failed = "closed";
            rte_pktmbuf_free_bulk(burst, n);
            if (failed.empty()) {
                session.written.fetch_add(n, std::memory_order_relaxed);
                continue;
            }
            session.lost_in_writer.fetch_add(n, std::memory_order_relaxed);
            if (session.state.load(std::memory_order_relaxed) != CaptureState::kRunning) continue;
            {
                std::lock_guard<std::mutex> lock(session.mutex);
                session.failure = failed;
            }
            session.state.store(CaptureState::kFailed, std::memory_order_release);
            taps_[session.vm_index].store(nullptr, std::memory_order_release);
            PMX_LOG_ERR("VM \"{}\": capture failed writing {}: {}", session.vm_name, session.path, failed);
        }
    };
    auto close_file = [&] {
        const uint64_t received = std::min(tap.claimed.load(std::memory_order_relaxed), tap.max_packets);
        const uint64_t lost = tap.dropped.load(std::memory_order_relaxed) +
                              session.lost_in_writer.load(std::memory_order_relaxed);
        session.file->close(received, lost, session.start_ns, realtime_ns());
    };

    while (true) {
        // Read before draining: once every claimed frame is settled, what the drain misses was never queued.
        const bool all_in = tap.settled.load(std::memory_order_acquire) >= tap.max_packets;
        drain();
        std::unique_lock<std::mutex> lock(session.mutex);
        if (session.stop_requested) break;
        if (all_in && session.state.load(std::memory_order_relaxed) == CaptureState::kRunning) {
            lock.unlock();
            close_file();
            session.state.store(CaptureState::kFinished, std::memory_order_release);
            taps_[session.vm_index].store(nullptr, std::memory_order_release);
            PMX_LOG_INFO("VM \"{}\": capture finished: {} frames written to {}", session.vm_name,
                         session.written.load(std::memory_order_relaxed), session.path);
            continue;
        }
        session.wake.wait_for(lock, kWriterIdle, [&] { return session.stop_requested; });
    }
    // stop() waited for the workers: the ring receives nothing more.
    drain();
    if (session.state.load(std::memory_order_relaxed) == CaptureState::kRunning) {
        close_file();
        session.state.store(CaptureState::kStopped, std::memory_order_release);
    }
}

}  // namespace portmux
