// What a guest's virtio offloads leave for portmux to finish before its frame may leave the uplink:
// partial TCP/UDP checksums (VIRTIO_NET_F_CSUM) and TCP segmentation offload for IPv4 (HOST_TSO4).
//
// The vhost library marks such frames with receive flags (RTE_VHOST_USER_NET_COMPLIANT_OL_FLAGS):
// RTE_MBUF_F_RX_L4_CKSUM_NONE for "the L4 checksum is partial", RTE_MBUF_F_RX_LRO with tso_segsz for a
// frame above the MTU to be cut into segments of at most tso_segsz payload bytes. Every frame leaves
// here complete: its checksums correct, no larger than the uplink's MTU, and its offload flags cleared,
// so the rest of the pipeline (parse, egress checks, rewrites) sees ordinary frames.
#pragma once

#include <cstdint>

#include <rte_mbuf.h>

struct rte_mempool;

namespace portmux {

// The slow path is taken only for frames with offload flags or longer than the MTU allows: one test.
inline bool guest_frame_needs_work(const rte_mbuf* m, uint32_t max_frame) {
    return m->ol_flags != 0 || rte_pktmbuf_pkt_len(m) > max_frame;
}

enum class GuestOffloadResult : uint8_t {
    kDone,         // `out[0]` is the finished frame (the input, its checksums completed)
    kSegmented,    // `out[0..count)` are the segments; the input was consumed
    kUnsupported,  // neither TCP nor UDP over IPv4/IPv6, IPv6 TSO, or a frame above the MTU without TSO
    kNoMbuf,       // the pools ran dry while segmenting
};

struct GuestOffloadOutcome {
    GuestOffloadResult result = GuestOffloadResult::kDone;
    uint16_t count = 0;    // frames in `out`
    uint16_t dropped = 0;  // kSegmented: segments that could not be made contiguous (freed)
};

// Segments and checksums carry their own limit: a TSO frame of 64 KiB at an MSS of 536 makes 123 frames.
inline constexpr uint16_t kMaxGuestSegments = 128;

struct GuestOffloadContext {
    rte_mempool* direct_pool = nullptr;    // segment headers
    rte_mempool* indirect_pool = nullptr;  // segment payloads (pointing into the guest's frame)
    uint16_t mtu = 1500;                   // largest IP packet the uplink sends
};

// Finishes `m` (see above). On kUnsupported and kNoMbuf, `m` is untouched and still the caller's to drop.
GuestOffloadOutcome finish_guest_frame(const GuestOffloadContext& ctx, rte_mbuf* m, rte_mbuf** out);

// Computes the IPv4 header checksum (IPv4) and the TCP or UDP checksum of a frame whose headers are in
// its first segment, over all of its segments. Returns false when the frame is not TCP/UDP over IP.
bool complete_checksums(rte_mbuf* m);

}  // namespace portmux
