// A worker lcore: polls its rx queues, runs the stages in order and transmits in bursts.
// This is the only file that knows the order of the stages.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/net_types.hpp"
#include "core/port_index.hpp"
#include "core/worker_counters.hpp"
#include "packet/parsed_frame.hpp"
#include "pipeline/connection_table.hpp"
#include "pipeline/guest_offload.hpp"
#include "ports/vhost_slots.hpp"
#include "ports/vm_capture.hpp"
#include "tables/snapshot.hpp"

struct rte_mbuf;
struct rte_mempool;
struct rte_ring;
struct rte_ip_frag_tbl;
struct rte_ip_frag_death_row;

namespace portmux {

struct DeliveryDecision;

enum class LbEvent : uint8_t;
struct LbContext;

inline constexpr uint16_t kBurstSize = 32;

// One rx queue this worker owns.
struct RxPoll {
    uint16_t port_index = 0;
    uint16_t eth_port = 0;
    uint16_t queue = 0;
};

// How this worker transmits to one port: an ethdev's tx queue of its own, a single-producer ring to the
// worker that owns the port's only tx queue (an ethdev with fewer tx queues than workers), or a vhost-user
// VM's host-to-guest queue (worker w uses queue w % the guest's enabled queues; see ports/vhost_slots.hpp).
enum class TxKind : uint8_t { kEthdev, kHandoff, kVhost };
struct TxRoute {
    TxKind kind = TxKind::kVhost;  // VM slots without an ethdev are vhost-user ports
    uint16_t eth_port = 0;
    uint16_t queue = 0;
    rte_ring* handoff = nullptr;
};

// A ring this worker drains on behalf of another worker, into `port_index`'s tx queue.
struct HandoffIn {
    rte_ring* ring = nullptr;
    uint16_t port_index = 0;
};

// What all workers share; everything here outlives the workers.
struct WorkerShared {
    const SnapshotPublisher* snapshots = nullptr;
    const std::atomic<bool>* stop = nullptr;
    rte_mempool* pool = nullptr;           // copies (flooding), answers (reject), fragments' headers
    rte_mempool* indirect_pool = nullptr;  // fragment payloads when a reassembled datagram is split again
    MacAddr uplink_mac{};
    uint16_t port_count = 0;  // dense ports: uplink, host, then kMaxVms VM slots
    unsigned worker_count = 1;
    VhostSlots* vhost = nullptr;     // the vhost-user VM ports (null: none can exist)
    VmCapture* capture = nullptr;    // captures of VM ports (null: none can run)
    GuestOffloadContext offload;     // finishing guests' checksum and TSO frames before the uplink
    uint16_t mtu = 1500;      // largest IP packet sent to a VM or the host without fragmenting it
    // The uplink was configured with RTE_ETH_RX_OFFLOAD_IPV4_CKSUM: its mbufs' RX_IP_CKSUM flags are trusted.
    bool uplink_checks_ip4_checksum = false;
    uint32_t host_rate_pps = 0;  // frames per second this worker may hand to the host port (0: no limit)
    ConnectionsConfig connections;  // each worker's connection table for load-balanced groups
};

// One worker's assignment, built before the worker starts and never changed while it runs.
struct WorkerSetup {
    unsigned worker_id = 0;  // dense: RCU thread id and counters index
    std::vector<RxPoll> rx;
    std::vector<TxRoute> tx;  // by dense port index
    std::vector<HandoffIn> handoff_in;
};

class Worker {
public:
    // Control side, before the lcore is launched. Allocates everything the loop will need.
    Worker(WorkerSetup setup, const WorkerShared& shared);
    ~Worker();
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    // The lcore entry point (rte_eal_remote_launch with a Worker*): loops until *shared.stop.
    static int lcore_main(void* worker);
    int run();

    const WorkerCounters& counters() const { return *counters_; }
    const ConnectionTable& connections() const { return *connections_; }

private:
    struct TxBuffer {
        uint16_t count = 0;
        bool pending = false;  // listed in pending_
        rte_mbuf* pkts[kBurstSize];
    };

    void handle_uplink(const Snapshot& snap, rte_mbuf** pkts, uint16_t n);
    void handle_host(rte_mbuf** pkts, uint16_t n);
    void handle_vm(const Snapshot& snap, uint16_t port_index, rte_mbuf** pkts, uint16_t n);
    // One frame from VM `self` (offloads already finished): egress checks, rewrite, to the uplink.
    void vm_frame(const Snapshot& snap, uint16_t port_index, OwnerId self, rte_mbuf* m, uint8_t* scratch);
    void drain_handoffs();
    // vhost-user VMs' guest-to-host queues (docs/architecture.md "Polling many VMs").
    void poll_vhost(const Snapshot& snap);
    bool poll_vhost_queue(const Snapshot& snap, uint16_t vm, uint16_t queue_pair);
    void rebuild_vhost_polls();
    uint16_t transmit_vhost(uint16_t port_index, rte_mbuf** pkts, uint16_t count);
    bool vm_port_connected(uint16_t port_index) const;

    // Parses an mbuf, linearising the first bytes of a chained mbuf into `scratch`.
    ParsedFrame parse(rte_mbuf* m, uint8_t* scratch, Ipv4ChecksumState ip4_checksum) const;
    // parse() into raw storage; true when the straight path took the frame (see parse_frame_into).
    bool parse_into(rte_mbuf* m, uint8_t* scratch, Ipv4ChecksumState ip4_checksum, ParsedFrame* out) const;
    // What the uplink's NIC says about an IPv4 header checksum (only when it was asked to check them).
    Ipv4ChecksumState uplink_ip4_checksum(const rte_mbuf* m) const;
    rte_mbuf* reassemble(rte_mbuf* m, const ParsedFrame& parsed, uint64_t now);
    // Carries out `decision` (decide_delivery's) for a packet the firewall accepted; handle_uplink calls
    // deliver_to_vm() itself for the common case. `address`: the index of the frame's shared address (its
    // range table), found once when the frame was planned.
    // How a frame reached delivery: on the uplink itself, or out of a peer's tunnel (re-sent once already by
    // a host it reached before its range moved, or not).
    enum class Arrival : uint8_t { kUplink, kTunnel, kTunnelResent };
    void deliver(const Snapshot& snap, const DeliveryDecision& decision, rte_mbuf* m, const ParsedFrame& parsed,
                 unsigned address, bool reassembled, Arrival arrival);
    void deliver_to_vm(const Snapshot& snap, const OwnerTarget& target, rte_mbuf* m, const ParsedFrame& parsed,
                       unsigned address, bool reassembled);
    // VXLAN (docs/remote-vms.md): unwraps a tunnel frame from a peer (nullptr: dropped and counted; `resent`
    // tells whether the sender re-sent it), and wraps a frame for a remote VM and queues it on the uplink,
    // marked as re-sent when `resent`.
    rte_mbuf* decapsulate(const VxlanSettings& vxlan, rte_mbuf* m, const ParsedFrame& outer, bool& resent);
    void send_remote(const Snapshot& snap, const OwnerTarget& target, rte_mbuf* m, const ParsedFrame& parsed,
                     bool resent = false);
    void flood(const Snapshot& snap, rte_mbuf* m);
    void reject(rte_mbuf* m, const ParsedFrame& parsed);
    void send_datagram(uint16_t port_index, rte_mbuf* m, const ParsedFrame& parsed, bool reassembled);

    void send(uint16_t port_index, rte_mbuf* m);
    // Frames for the host go through a token bucket: a TAP costs a system call per frame, and a flood toward
    // the host must not take the worker away from VM traffic. Over the limit: dropped, drop_host_rate.
    void send_to_host(rte_mbuf* m);
    bool take_host_token();
    void refill_host_tokens(uint64_t now);
    void flush(uint16_t port_index);
    void flush_all();
    void drop(rte_mbuf* m, SwitchCounter reason);
    void count_lb(LbEvent event);
    // Per-packet switch-wide outcomes are counted here during a loop iteration and published into
    // counters_ once at its end (a relaxed store per counter touched), not once per packet.
    void count(SwitchCounter c) { ++burst_counts_[static_cast<size_t>(c)]; }
    void publish_counts();

    WorkerSetup setup_;
    WorkerShared shared_;
    std::unique_ptr<WorkerCounters> counters_;
    std::vector<TxBuffer> tx_buffers_;  // by dense port index
    std::unique_ptr<uint16_t[]> pending_;  // ports with buffered packets, each listed once
    uint16_t pending_count_ = 0;
    rte_ip_frag_tbl* frag_table_ = nullptr;
    std::unique_ptr<rte_ip_frag_death_row> death_row_;
    uint64_t next_expiry_check_ = 0;
    double host_tokens_ = 0;         // frames the host may still take now
    double host_bucket_ = 0;         // at most this many (a tenth of a second's worth)
    double host_tokens_per_cycle_ = 0;
    uint64_t host_refilled_at_ = 0;
    uint64_t expiry_interval_ = 0;
    std::unique_ptr<ConnectionTable> connections_;  // load-balanced groups' flows; fixed size
    // The vhost queues this worker polls: `hot_` had frames lately and are polled every iteration; `cold_`
    // are polled in turn, each once per sweep period (worker.cpp), so a thousand idle VMs cost the uplink little.
    struct VhostPoll {
        uint16_t vm = 0;
        uint16_t queue_pair = 0;
        uint32_t empty_polls = 0;  // consecutive empty polls while hot
    };
    std::vector<VhostPoll> hot_;
    std::vector<VhostPoll> cold_;
    std::vector<VhostPoll> previously_hot_;  // only while rebuilding
    size_t cold_cursor_ = 0;
    double cold_credit_ = 0;         // cold polls due and not yet made
    uint64_t cold_paced_at_ = 0;     // TSC when the credit was last brought up to date
    uint64_t cold_sweep_cycles_ = 1;  // TSC cycles in which every cold queue is polled once
    uint64_t vhost_layout_ = 0;  // VhostSlots::layout() the lists were built for
    uint32_t burst_counts_[kSwitchCounterCount] = {};  // not yet in counters_; zero between iterations
};

}  // namespace portmux
