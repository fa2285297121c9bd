// Capture of VM ports into pcapng files (docs/vms.md "Capturing a VM's traffic"): dpdk-dumpcap attaches to
// ethdevs only, and vhost-user VMs are none.
//
// A few captures run at once, each of one VM, bounded in frames. The workers hand every frame from or to a
// captured VM to capture(): it copies the frame with rte_pcapng_copy() into mbufs of the capture's own small
// pool and puts the copy on the capture's multi-producer ring; a writer thread of the capture (control side)
// drains the ring into the file. Nothing waits: a full ring or an empty pool loses the copy, counted.
//
// Costless when off: capture() reads one per-VM pointer with a relaxed atomic load and returns when it is
// null. Stopping a capture clears the pointer and waits for a grace period of the workers' RCU
// (rte_rcu_qsbr_synchronize) before anything is freed, so no worker can still be inside it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/net_types.hpp"
#include "core/result.hpp"
#include "ports/vhost_slots.hpp"

struct rte_mbuf;
struct rte_rcu_qsbr;

namespace portmux {

enum class CaptureDirection : uint8_t {
    kFromVm,  // received from the guest (pcapng "inbound")
    kToVm,    // about to be handed to the guest ("outbound")
};

inline constexpr size_t kMaxCaptures = 4;
inline constexpr uint64_t kDefaultCapturePackets = 100000;
inline constexpr uint64_t kMaxCapturePackets = 10000000;
// Whole frames by default, a guest's 64 KiB TSO frames included.
inline constexpr uint32_t kDefaultCaptureSnaplen = 65535;
inline constexpr uint32_t kMinCaptureSnaplen = 64;
inline constexpr uint32_t kMaxCaptureSnaplen = 65535;
// Each capture's ring and mbuf pool (copies waiting for the writer): about 9 MiB of DPDK memory.
inline constexpr unsigned kCaptureRingSize = 4096;
inline constexpr unsigned kCaptureMbufs = 4095;

enum class CaptureState : uint8_t {
    kRunning,
    kFinished,  // took its MAX_PACKETS frames; all written, the file is closed
    kFailed,    // the file could not be written (e.g. a full disk); later frames are counted lost
    kStopped,   // stopped by the operator while it was running
};
const char* to_string(CaptureState state);

struct CaptureStatus {
    size_t vm_index = 0;
    std::string vm_name;
    std::string path;
    CaptureState state = CaptureState::kRunning;
    std::string failure;  // why, when kFailed
    uint64_t max_packets = 0;
    uint32_t snaplen = 0;
    uint64_t captured = 0;  // frames the capture took (at most max_packets)
    uint64_t written = 0;   // of those, in the file
    uint64_t dropped = 0;   // of those, lost: ring full, no mbuf, or the file failed
};

class VmCapture {
public:
    // `rcu`: the workers' quiescent-state variable (null when no worker runs, e.g. in tests).
    explicit VmCapture(rte_rcu_qsbr* rcu);
    // Stops every capture (the workers must be stopped or still reporting quiescent states).
    ~VmCapture();
    VmCapture(const VmCapture&) = delete;
    VmCapture& operator=(const VmCapture&) = delete;

    // Control side, any thread. Starts capturing VM `vm_index` into a new file `path` (absolute; an
    // existing file is never overwritten), stopping by itself after `max_packets` frames. The interface in
    // the file is named "vm:<vm_name>" and carries `mac` when given. Returns "" or why nothing was started
    // (then nothing changed and no file was left behind).
    std::string start(size_t vm_index, const std::string& vm_name, const std::string& path, uint64_t max_packets,
                      uint32_t snaplen, std::optional<MacAddr> mac = std::nullopt);
    // Stops VM `vm_index`'s capture (running or finished), writes what is queued, closes the file and frees
    // the capture. Answers its final counts, or fails when the VM is not captured.
    Result<CaptureStatus> stop(size_t vm_index);
    std::vector<CaptureStatus> list() const;

    // Data path (workers): copies the frames for VM `vm_index`'s capture, if one runs. `queue`: the guest's
    // queue pair, recorded with each frame. The frames are only read.
    void capture(size_t vm_index, CaptureDirection direction, rte_mbuf* const* pkts, uint16_t n, uint16_t queue = 0) {
        CaptureTap* tap = taps_[vm_index].load(std::memory_order_relaxed);
        if (__builtin_expect(tap == nullptr, 1)) return;
        copy_burst(*tap, direction, pkts, n, queue);
    }

private:
    struct CaptureTap;  // what the workers touch
    struct Session;     // the rest: file, writer thread, names

    static void copy_burst(CaptureTap& tap, CaptureDirection direction, rte_mbuf* const* pkts, uint16_t n,
                           uint16_t queue);
    void write_loop(Session& session);
    static CaptureStatus status_of(const Session& session);

    rte_rcu_qsbr* rcu_;
    std::unique_ptr<std::atomic<CaptureTap*>[]> taps_;  // by VM index; null: not captured
    mutable std::mutex mutex_;                          // sessions_, and start/stop one at a time
    std::vector<std::unique_ptr<Session>> sessions_;    // at most kMaxCaptures
    unsigned created_ = 0;                              // for unique ring and pool names
};

}  // namespace portmux
