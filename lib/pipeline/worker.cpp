// The worker loop and the order of the stages: rx -> parse -> plan -> (reassemble) -> firewall ->
// TCP/UDP check and range lookup -> rewrite -> tx. See docs/architecture.md for the picture.
#include "pipeline/worker.hpp"

#include <algorithm>
#include <cstring>
#include <new>
#include <stdexcept>

#include <rte_cycles.h>
#include <rte_ether.h>
#include <rte_ethdev.h>
#include <rte_ip.h>
#include <rte_ip_frag.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_prefetch.h>
#include <rte_rcu_qsbr.h>
#include <rte_ring.h>
#include <rte_vhost.h>

#include "pipeline/ingress_decision.hpp"
#include "pipeline/parse.hpp"
#include "pipeline/port_rewrite.hpp"
#include "pipeline/reject.hpp"
#include "pipeline/vm_egress.hpp"
#include "pipeline/vxlan.hpp"

namespace portmux {
namespace {

// Headers are parsed from at most this many bytes; a chained mbuf whose first segment is shorter is
// linearised into a scratch buffer of this size first.
constexpr uint32_t kParseWindow = 256;
// Fragment reassembly: datagrams in flight per worker, and how long an incomplete one is kept.
constexpr uint32_t kFragBuckets = 1024;
constexpr uint32_t kFragBucketEntries = 8;
constexpr uint32_t kFragMaxFlows = 4096;
constexpr uint64_t kFragTimeoutMs = 2000;
// A reassembled datagram split again for a port yields at most this many fragments.
constexpr uint16_t kMaxRefragments = 64;
// Connection-table buckets swept for expired flows at each expiry check (every 10 ms): a sequential pass over
// 160 KiB, so a table of 65,536 entries is swept in 160 ms for about a thousandth of the worker's time.
constexpr uint32_t kConnSweepBuckets = 1024;
// vhost queues: idle ("cold") queues are polled in turn at a pace set by time, not by loop iterations, so
// that every one is looked at once per kColdSweepUs whatever their number: the uplink pays for cold queues
// in proportion to how many there are per unit of time (about one empty poll per microsecond at 1,024 idle
// VMs), not per burst, and an idle VM's first frame waits at most about kColdSweepUs. At most
// kMaxColdPollsPerIteration are polled in one iteration, so a long iteration is not followed by a long sweep.
// A hot queue that has been empty for kHotEmptyPollsBeforeCold polls in a row goes back among the cold.
constexpr uint64_t kColdSweepUs = 1000;
constexpr uint32_t kMaxColdPollsPerIteration = 8;
constexpr uint32_t kHotEmptyPollsBeforeCold = 1024;

// Which shared address's range table applies: the IPv4 destination (inbound) or source (from a VM) picks it;
// IPv6 and a single address always use table 0. A frame of no shared address also gets 0 (it was planned
// to the host or is dropped by the egress check).
unsigned shared_address_index(const SharedAddresses& shared, const ParsedFrame& p, bool source) {
    if (shared.extra_ip4_count == 0 || p.kind != FrameKind::kIpv4) return 0;
    const int index = shared.ip4_index(source ? p.key.v4.src : p.key.v4.dst);
    return index < 0 ? 0 : static_cast<unsigned>(index);
}

}  // namespace

Worker::Worker(WorkerSetup setup, const WorkerShared& shared)
    : setup_(std::move(setup)),
      shared_(shared),
      counters_(std::make_unique<WorkerCounters>(shared.port_count)),
      tx_buffers_(shared.port_count),
      pending_(std::make_unique<uint16_t[]>(shared.port_count)),
      death_row_(std::make_unique<rte_ip_frag_death_row>()) {
    // Rebuilding the poll lists must not allocate in the common case.
    hot_.reserve(2 * kMaxVms);
    cold_.reserve(2 * kMaxVms);
    previously_hot_.reserve(2 * kMaxVms);
    std::memset(death_row_.get(), 0, sizeof(rte_ip_frag_death_row));
    uint64_t hz = rte_get_tsc_hz();
    uint64_t timeout_cycles = (hz + 999) / 1000 * kFragTimeoutMs;
    frag_table_ = rte_ip_frag_table_create(kFragBuckets, kFragBucketEntries, kFragMaxFlows, timeout_cycles,
                                           static_cast<int>(rte_socket_id()));
    if (frag_table_ == nullptr) throw std::runtime_error("cannot allocate the fragment reassembly table");
    expiry_interval_ = hz / 100;  // look for expired datagrams every 10 ms
    cold_sweep_cycles_ = hz * kColdSweepUs / 1000000;
    connections_ = std::make_unique<ConnectionTable>(shared_.connections.max, hz * shared_.connections.tcp_timeout_s,
                                                     hz * shared_.connections.udp_timeout_s);
    if (shared_.host_rate_pps != 0) {
        host_bucket_ = std::max(1.0, shared_.host_rate_pps / 10.0);
        host_tokens_ = host_bucket_;
        host_tokens_per_cycle_ = static_cast<double>(shared_.host_rate_pps) / static_cast<double>(hz);
    }
}

Worker::~Worker() {
    if (frag_table_ != nullptr) rte_ip_frag_table_destroy(frag_table_);
}

int Worker::lcore_main(void* worker) { return static_cast<Worker*>(worker)->run(); }

int Worker::run() {
    rte_rcu_qsbr* rcu = shared_.snapshots->rcu();
    const unsigned id = setup_.worker_id;
    rte_rcu_qsbr_thread_register(rcu, id);
    rte_rcu_qsbr_thread_online(rcu, id);

    rte_mbuf* pkts[kBurstSize];
    while (!shared_.stop->load(std::memory_order_relaxed)) {
        // One snapshot for the whole iteration: every packet of a burst sees the same tables.
        const Snapshot* snap = shared_.snapshots->current();
        for (const RxPoll& poll : setup_.rx) {
            uint16_t n = rte_eth_rx_burst(poll.eth_port, poll.queue, pkts, kBurstSize);
            if (n == 0) continue;
            uint64_t bytes = 0;
            for (uint16_t i = 0; i < n; ++i) bytes += rte_pktmbuf_pkt_len(pkts[i]);
            counters_->add(poll.port_index, PortCounter::rx_packets, n);
            counters_->add(poll.port_index, PortCounter::rx_bytes, bytes);
            switch (role_of_port(poll.port_index)) {
                case PortRole::kUplink: handle_uplink(*snap, pkts, n); break;
                case PortRole::kHost: handle_host(pkts, n); break;
                case PortRole::kVm: handle_vm(*snap, poll.port_index, pkts, n); break;
            }
        }
        if (shared_.vhost != nullptr) poll_vhost(*snap);
        drain_handoffs();
        flush_all();
        publish_counts();
        rte_ip_frag_free_death_row(death_row_.get(), 3);
        uint64_t now = rte_rdtsc();
        if (now >= next_expiry_check_) {
            rte_ip_frag_table_del_expired_entries(frag_table_, death_row_.get(), now);
            rte_ip_frag_free_death_row(death_row_.get(), 3);
            if (connections_->occupied() != 0) connections_->expire(now, kConnSweepBuckets);
            next_expiry_check_ = now + expiry_interval_;
        }
        // The snapshot loaded above is no longer used: the control side may free it once every worker
        // has passed this point.
        rte_rcu_qsbr_quiescent(rcu, id);
    }

    flush_all();
    publish_counts();
    rte_rcu_qsbr_thread_offline(rcu, id);
    rte_rcu_qsbr_thread_unregister(rcu, id);
    return 0;
}

// Inlined into the burst loops: it runs for every frame, and the common case is a few loads and compares.
namespace {

// The bytes the parser reads: the first segment, or a linearised copy of a chained mbuf's first bytes.
__attribute__((always_inline)) inline const uint8_t* parse_window(rte_mbuf* m, uint8_t* scratch, uint32_t* available) {
    const uint32_t frame_len = rte_pktmbuf_pkt_len(m);
    *available = rte_pktmbuf_data_len(m);
    const uint8_t* data = rte_pktmbuf_mtod(m, const uint8_t*);
    if (*available < frame_len && *available < kParseWindow) {
        const uint32_t want = frame_len < kParseWindow ? frame_len : kParseWindow;
        const void* copy = rte_pktmbuf_read(m, 0, want, scratch);
        if (copy != nullptr) {
            data = static_cast<const uint8_t*>(copy);
            *available = want;
        }
    }
    return data;
}

}  // namespace

__attribute__((always_inline)) inline ParsedFrame Worker::parse(rte_mbuf* m, uint8_t* scratch,
                                                                Ipv4ChecksumState ip4_checksum) const {
    uint32_t available;
    const uint8_t* data = parse_window(m, scratch, &available);
    return parse_frame(data, available, rte_pktmbuf_pkt_len(m), ip4_checksum);
}

__attribute__((always_inline)) inline bool Worker::parse_into(rte_mbuf* m, uint8_t* scratch,
                                                              Ipv4ChecksumState ip4_checksum, ParsedFrame* out) const {
    uint32_t available;
    const uint8_t* data = parse_window(m, scratch, &available);
    return parse_frame_into(data, available, rte_pktmbuf_pkt_len(m), ip4_checksum, out);
}

// RTE_MBUF_F_RX_IP_CKSUM_NONE (the data is wrong but the header was vouched for elsewhere) is not trusted:
// the frame would leave with that wrong checksum.
__attribute__((always_inline)) inline Ipv4ChecksumState Worker::uplink_ip4_checksum(const rte_mbuf* m) const {
    if (!shared_.uplink_checks_ip4_checksum) return Ipv4ChecksumState::kUnchecked;
    switch (m->ol_flags & RTE_MBUF_F_RX_IP_CKSUM_MASK) {
        case RTE_MBUF_F_RX_IP_CKSUM_GOOD: return Ipv4ChecksumState::kGood;
        case RTE_MBUF_F_RX_IP_CKSUM_BAD: return Ipv4ChecksumState::kBad;
        default: return Ipv4ChecksumState::kUnchecked;
    }
}

// An accepted packet to an enabled VM: its MAC, the port translation if any, and its port. Inlined into
// handle_uplink's last loop, where nearly every packet takes it, and into deliver().
__attribute__((always_inline)) inline void Worker::deliver_to_vm(const Snapshot& snap, const OwnerTarget& target,
                                                                 rte_mbuf* m, const ParsedFrame& parsed,
                                                                 unsigned address, bool reassembled) {
    auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
    std::memcpy(&eth->dst_addr, target.mac.bytes.data(), RTE_ETHER_ADDR_LEN);
    if (snap.translation != nullptr && parsed.has_ports && address == 0) {
        const L4Proto proto = parsed.ip_proto == kIpProtoTcp ? L4Proto::kTcp : L4Proto::kUdp;
        const uint16_t inner = snap.translation->inbound(proto, parsed.dst_port);
        if (inner != parsed.dst_port)
            rewrite_l4_port(rte_pktmbuf_mtod(m, uint8_t*), rte_pktmbuf_data_len(m), parsed, false, inner);
    }
    count(SwitchCounter::to_vm);
    if (!reassembled) {
        send(target.port, m);  // the common case, without send_datagram's checks
        return;
    }
    send_datagram(target.port, m, parsed, reassembled);
}

// Uplink to inside: plan every frame, classify the ones for a shared address with the firewall in one
// call per address family, then deliver in arrival order.
void Worker::handle_uplink(const Snapshot& snap, rte_mbuf** pkts, uint16_t n) {
    // Raw storage: each frame's ParsedFrame is built in place by parse(); zeroing a burst's worth first
    // and copying each result in would cost more than parsing.
    alignas(ParsedFrame) unsigned char parsed_storage[sizeof(ParsedFrame) * kBurstSize];
    ParsedFrame* parsed = reinterpret_cast<ParsedFrame*>(parsed_storage);
    rte_mbuf* fw_pkts[kBurstSize];
    uint16_t fw_index[kBurstSize];  // index into parsed[]
    bool fw_reassembled[kBurstSize];
    Arrival fw_arrival[kBurstSize];
    uint8_t fw_address[kBurstSize];  // index of the shared address (range table) each frame is for
    uint16_t fw_count = 0;
    // The firewall's keys, grouped by address family as the frames are planned (one call per family below).
    const FlowKey4* keys4[kBurstSize];
    const FlowKey6* keys6[kBurstSize];
    uint16_t slot4[kBurstSize], slot6[kBurstSize];  // index into the fw_* arrays
    uint16_t n4 = 0, n6 = 0;
    alignas(8) uint8_t scratch[kParseWindow];
    const uint64_t now = rte_rdtsc();
    refill_host_tokens(now);

    // Headers of the whole burst are requested at once: their cache misses overlap instead of adding up.
    for (uint16_t i = 0; i < n; ++i) rte_prefetch0(rte_pktmbuf_mtod(pkts[i], void*));
    for (uint16_t i = 0; i < n; ++i) {
        rte_mbuf* m = pkts[i];
        bool common = parse_into(m, scratch, uplink_ip4_checksum(m), &parsed[i]);
        // A tunnel frame from a peer carries a frame that host's portmux sent here: it is switched as if it
        // had arrived on the uplink itself. One pointer test when no tunnel is configured.
        Arrival arrival = Arrival::kUplink;
        if (snap.vxlan != nullptr && snap.vxlan->is_tunnel_frame(parsed[i])) {
            bool resent = false;
            m = decapsulate(*snap.vxlan, m, parsed[i], resent);
            if (m == nullptr) continue;
            arrival = resent ? Arrival::kTunnelResent : Arrival::kTunnel;
            // The NIC's verdict was about the outer header: the inner one is checked here.
            common = parse_into(m, scratch, Ipv4ChecksumState::kUnchecked, &parsed[i]);
        }
        UplinkPlan plan =
            common ? plan_common_frame(parsed[i], snap.shared) : plan_uplink_frame(parsed[i], snap.shared);
        bool reassembled = false;
        if (plan.step == UplinkStep::kReassemble) {
            m = reassemble(m, parsed[i], now);
            if (m == nullptr) continue;  // held until its other fragments arrive (or dropped and counted)
            counters_->add(SwitchCounter::reassembled);
            reassembled = true;
            // Every fragment's header was verified; reassemble() wrote the whole datagram's checksum.
            new (&parsed[i]) ParsedFrame(parse(m, scratch, Ipv4ChecksumState::kGood));
            plan = plan_uplink_frame(parsed[i], snap.shared);
            if (plan.step == UplinkStep::kReassemble) plan = {UplinkStep::kDrop, SwitchCounter::drop_fragment};
        }
        switch (plan.step) {
            case UplinkStep::kToHost:
                send_to_host(m);
                break;
            case UplinkStep::kFlood: flood(snap, m); break;
            case UplinkStep::kDrop: drop(m, plan.drop_reason); break;
            case UplinkStep::kReassemble:  // handled above
            case UplinkStep::kFirewall: {
                // Its owner-table entry (a random place in 256 KiB) is loaded while the rest of the burst is
                // parsed and classified, not when deliver() needs it.
                const unsigned address = shared_address_index(snap.shared, parsed[i], false);
                if (parsed[i].has_ports) {
                    const L4Proto proto = parsed[i].ip_proto == kIpProtoTcp ? L4Proto::kTcp : L4Proto::kUdp;
                    rte_prefetch0(&snap.table_at[address]->owner[static_cast<unsigned>(proto)][parsed[i].dst_port]);
                }
                // Only IPv4 and IPv6 frames are planned to the firewall.
                if (parsed[i].kind == FrameKind::kIpv4) {
                    keys4[n4] = &parsed[i].key.v4;
                    slot4[n4++] = fw_count;
                } else {
                    keys6[n6] = &parsed[i].key.v6;
                    slot6[n6++] = fw_count;
                }
                fw_address[fw_count] = static_cast<uint8_t>(address);
                fw_pkts[fw_count] = m;
                fw_index[fw_count] = i;
                fw_reassembled[fw_count] = reassembled;
                fw_arrival[fw_count] = arrival;
                ++fw_count;
                break;
            }
        }
    }
    if (fw_count == 0) return;

    // The firewall, once per address family for the whole burst.
    bool drop4[kBurstSize], drop6[kBurstSize], fw_drop[kBurstSize];
    if (n4 != 0) snap.firewall->classify_v4(keys4, drop4, n4);
    if (n6 != 0) snap.firewall->classify_v6(keys6, drop6, n6);
    for (uint16_t j = 0; j < n4; ++j) fw_drop[slot4[j]] = drop4[j];
    for (uint16_t j = 0; j < n6; ++j) fw_drop[slot6[j]] = drop6[j];

    // Load balancing only when the snapshot has groups: otherwise delivery pays nothing for it.
    const LbContext lb_context{snap.groups ? snap.groups->data() : nullptr, connections_.get(), now};
    const LbContext* lb = snap.groups ? &lb_context : nullptr;
    for (uint16_t k = 0; k < fw_count; ++k) {
        if (fw_drop[k]) {
            drop(fw_pkts[k], SwitchCounter::drop_firewall);
            continue;
        }
        const ParsedFrame& p = parsed[fw_index[k]];
        const DeliveryDecision decision = decide_delivery(p, *snap.table_at[fw_address[k]], snap.owners.data(),
                                                          snap.unmatched, lb);
        // The common case without a call into deliver(): an enabled VM's port, no load-balancing event.
        if (decision.delivery == Delivery::kVm && decision.lb_event == LbEvent::kNone) {
            deliver_to_vm(snap, snap.owners[decision.owner], fw_pkts[k], p, fw_address[k], fw_reassembled[k]);
            continue;
        }
        deliver(snap, decision, fw_pkts[k], p, fw_address[k], fw_reassembled[k], fw_arrival[k]);
    }
}

rte_mbuf* Worker::decapsulate(const VxlanSettings& vxlan, rte_mbuf* m, const ParsedFrame& outer, bool& resent) {
    // The outer headers must be in the first segment (they are, unless a driver splits at tiny sizes).
    VxlanCheck check = check_vxlan(rte_pktmbuf_mtod(m, const uint8_t*), rte_pktmbuf_data_len(m), outer, vxlan);
    if (!check.accept) {
        drop(m, check.drop_reason);
        return nullptr;
    }
    rte_pktmbuf_adj(m, static_cast<uint16_t>(check.inner_offset));
    // Ethernet padding of a short outer frame is not part of the inner frame.
    if (rte_pktmbuf_pkt_len(m) > check.inner_length)
        rte_pktmbuf_trim(m, static_cast<uint16_t>(rte_pktmbuf_pkt_len(m) - check.inner_length));
    count(SwitchCounter::vxlan_decapsulated);
    resent = check.resent;
    return m;
}

void Worker::send_remote(const Snapshot& snap, const OwnerTarget& target, rte_mbuf* m, const ParsedFrame& parsed,
                         bool resent) {
    const uint32_t inner_length = rte_pktmbuf_pkt_len(m);
    // The outer IP packet is the inner frame plus 36 bytes (IPv4, UDP, VXLAN); it leaves with DF.
    if (snap.vxlan == nullptr || inner_length + kVxlanOverhead - sizeof(rte_ether_hdr) > shared_.mtu) {
        drop(m, SwitchCounter::drop_vxlan_too_big);
        return;
    }
    auto* out = reinterpret_cast<uint8_t*>(rte_pktmbuf_prepend(m, kVxlanOverhead));
    if (out == nullptr) {
        // No headroom (a reassembled chain can start without it): the headers go in a segment of their own.
        rte_mbuf* head = rte_pktmbuf_alloc(shared_.pool);
        if (head == nullptr) {
            drop(m, SwitchCounter::drop_no_mbuf);
            return;
        }
        out = reinterpret_cast<uint8_t*>(rte_pktmbuf_append(head, kVxlanOverhead));
        if (out == nullptr || rte_pktmbuf_chain(head, m) != 0) {
            rte_pktmbuf_free(head);
            drop(m, SwitchCounter::drop_no_mbuf);
            return;
        }
        m = head;
    }
    write_vxlan_headers(out, shared_.uplink_mac, target.mac, target.remote_ip, *snap.vxlan, inner_length,
                        vxlan_source_port(parsed), resent);
    count(SwitchCounter::vxlan_encapsulated);
    counters_->add_remote(target.remote_slot, rte_pktmbuf_pkt_len(m));
    send(kUplinkPortIndex, m);
}

void Worker::deliver(const Snapshot& snap, const DeliveryDecision& decision, rte_mbuf* m, const ParsedFrame& parsed,
                     unsigned address, bool reassembled, Arrival arrival) {
    if (decision.lb_event != LbEvent::kNone) count_lb(decision.lb_event);
    switch (decision.delivery) {
        case Delivery::kVm: deliver_to_vm(snap, snap.owners[decision.owner], m, parsed, address, reassembled); break;
        case Delivery::kHost:
            if (!take_host_token()) {
                drop(m, SwitchCounter::drop_host_rate);
                break;
            }
            count(SwitchCounter::to_host);
            send_datagram(kHostPortIndex, m, parsed, reassembled);
            break;
        case Delivery::kDrop:
            if (decision.drop_reason == SwitchCounter::drop_vm_disabled && decision.owner != kNoOwner)
                counters_->add(snap.owners[decision.owner].port, PortCounter::dropped_disabled);
            drop(m, decision.drop_reason);
            break;
        case Delivery::kReject: reject(m, parsed); break;
        case Delivery::kRemote:
            // A frame from the tunnel whose range has moved on (the sender's tables were older than ours, as
            // during a move between hosts) goes once more, to the owner this host knows, marked so that the
            // next host delivers or drops it: one extra hop at most, never a loop.
            if (arrival == Arrival::kTunnelResent) {
                drop(m, SwitchCounter::drop_vxlan_loop);
                break;
            }
            if (arrival == Arrival::kTunnel) count(SwitchCounter::vxlan_resent);
            send_remote(snap, snap.owners[decision.owner], m, parsed, arrival == Arrival::kTunnel);
            break;
    }
}

// ARP replies, gratuitous ARP and neighbour advertisements: every VM must be able to resolve its gateway,
// so each VM gets a copy (addressed to its own MAC when the original was unicast to the uplink) and the
// host the original.
void Worker::flood(const Snapshot& snap, rte_mbuf* m) {
    counters_->add(SwitchCounter::flooded);
    auto* eth = rte_pktmbuf_mtod(m, rte_ether_hdr*);
    const bool to_uplink = std::memcmp(&eth->dst_addr, shared_.uplink_mac.bytes.data(), RTE_ETHER_ADDR_LEN) == 0;
    for (size_t owner = kFirstVmOwner; owner < snap.owners.size(); ++owner) {
        const OwnerTarget& target = snap.owners[owner];
        // One copy per VM port: a VM served by its backup (its port is down) adds none to the backup's.
        if (target.kind != OwnerKind::kVm || target.port != vm_port_index(owner - kFirstVmOwner)) continue;
        // A vhost-user VM without a guest would only count the copy as a transmit drop.
        if (!vm_port_connected(target.port)) continue;
        rte_mbuf* copy = rte_pktmbuf_copy(m, shared_.pool, 0, UINT32_MAX);
        if (copy == nullptr) {
            counters_->add(SwitchCounter::drop_no_mbuf);
            continue;
        }
        if (to_uplink) {
            auto* copy_eth = rte_pktmbuf_mtod(copy, rte_ether_hdr*);
            std::memcpy(&copy_eth->dst_addr, target.mac.bytes.data(), RTE_ETHER_ADDR_LEN);
        }
        send(target.port, copy);
        // With a thousand VMs, a burst of ARP replies buffered per VM would hold tens of thousands of copies.
        if (setup_.tx[target.port].kind == TxKind::kVhost) flush(target.port);
    }
    if (!take_host_token()) {
        // The frame is accounted for once, in `flooded` (the VMs got their copies); the host's missing copy
        // has its own counter, outside the per-frame accounting.
        rte_pktmbuf_free(m);
        counters_->add(SwitchCounter::host_copies_limited);
        return;
    }
    send(kHostPortIndex, m);
}

void Worker::reject(rte_mbuf* m, const ParsedFrame& parsed) {
    rte_mbuf* answer = rte_pktmbuf_alloc(shared_.pool);
    if (answer == nullptr) {
        counters_->add(SwitchCounter::drop_no_mbuf);
        rte_pktmbuf_free(m);
        return;
    }
    uint8_t* out = rte_pktmbuf_mtod(answer, uint8_t*);
    uint32_t length = build_reject(rte_pktmbuf_mtod(m, const uint8_t*), rte_pktmbuf_data_len(m), parsed,
                                   shared_.uplink_mac, out, rte_pktmbuf_tailroom(answer));
    rte_pktmbuf_free(m);
    if (length == 0) {
        // Nothing may be answered (a RST, a broadcast source...): the packet is simply dropped.
        rte_pktmbuf_free(answer);
        counters_->add(SwitchCounter::drop_unmatched);
        return;
    }
    answer->data_len = static_cast<uint16_t>(length);
    answer->pkt_len = length;
    counters_->add(SwitchCounter::rejected);
    send(kUplinkPortIndex, answer);
}

rte_mbuf* Worker::reassemble(rte_mbuf* m, const ParsedFrame& parsed, uint64_t now) {
    // rte_ip_frag needs the IP header (and IPv6's fragment header) in the first segment.
    if (rte_pktmbuf_data_len(m) < parsed.l3_offset + sizeof(rte_ipv6_hdr) + sizeof(rte_ipv6_fragment_ext)) {
        if (parsed.kind != FrameKind::kIpv4 || rte_pktmbuf_data_len(m) < parsed.l3_offset + sizeof(rte_ipv4_hdr)) {
            drop(m, SwitchCounter::drop_fragment);
            return nullptr;
        }
    }
    m->l2_len = parsed.l3_offset;
    rte_mbuf* whole = nullptr;
    if (parsed.kind == FrameKind::kIpv4) {
        auto* ip = rte_pktmbuf_mtod_offset(m, rte_ipv4_hdr*, parsed.l3_offset);
        m->l3_len = static_cast<uint16_t>((ip->version_ihl & 0x0f) * 4);
        whole = rte_ipv4_frag_reassemble_packet(frag_table_, death_row_.get(), m, now, ip);
        if (whole != nullptr) {
            auto* whole_ip = rte_pktmbuf_mtod_offset(whole, rte_ipv4_hdr*, whole->l2_len);
            whole_ip->hdr_checksum = 0;
            whole_ip->hdr_checksum = rte_ipv4_cksum(whole_ip);
        }
    } else {
        auto* ip6 = rte_pktmbuf_mtod_offset(m, rte_ipv6_hdr*, parsed.l3_offset);
        rte_ipv6_fragment_ext* frag = rte_ipv6_frag_get_ipv6_fragment_header(ip6);
        if (frag == nullptr) {
            // Extension headers before the fragment header: rte_ip_frag only reassembles the plain case.
            drop(m, SwitchCounter::drop_fragment);
            return nullptr;
        }
        m->l3_len = sizeof(rte_ipv6_hdr) + sizeof(rte_ipv6_fragment_ext);
        whole = rte_ipv6_frag_reassemble_packet(frag_table_, death_row_.get(), m, now, ip6, frag);
    }
    if (whole == nullptr) counters_->add(SwitchCounter::fragments_held);
    return whole;
}

// Sends an IP datagram to a VM or the host; a reassembled datagram larger than the MTU leaves as fragments
// again, so the receiver sees what the sender sent.
void Worker::send_datagram(uint16_t port_index, rte_mbuf* m, const ParsedFrame& parsed, bool reassembled) {
    uint32_t ip_length = rte_pktmbuf_pkt_len(m) - parsed.l3_offset;
    if (!reassembled || ip_length <= shared_.mtu) {
        send(port_index, m);
        return;
    }
    rte_ether_hdr eth;
    std::memcpy(&eth, rte_pktmbuf_mtod(m, const void*), sizeof(eth));
    const uint16_t l2_len = parsed.l3_offset;
    if (l2_len != sizeof(rte_ether_hdr)) {
        drop(m, SwitchCounter::drop_fragment);
        return;
    }
    rte_pktmbuf_adj(m, l2_len);
    rte_mbuf* frags[kMaxRefragments];
    int32_t count = parsed.kind == FrameKind::kIpv4
                        ? rte_ipv4_fragment_packet(m, frags, kMaxRefragments, shared_.mtu, shared_.pool,
                                                   shared_.indirect_pool)
                        : rte_ipv6_fragment_packet(m, frags, kMaxRefragments, shared_.mtu, shared_.pool,
                                                   shared_.indirect_pool);
    rte_pktmbuf_free(m);
    if (count <= 0) {
        counters_->add(SwitchCounter::drop_fragment);
        return;
    }
    for (int32_t f = 0; f < count; ++f) {
        rte_mbuf* frag = frags[f];
        auto* frag_eth = reinterpret_cast<rte_ether_hdr*>(rte_pktmbuf_prepend(frag, sizeof(rte_ether_hdr)));
        if (frag_eth == nullptr) {
            rte_pktmbuf_free(frag);
            counters_->add(SwitchCounter::drop_fragment);
            continue;
        }
        std::memcpy(frag_eth, &eth, sizeof(eth));
        if (parsed.kind == FrameKind::kIpv4) {
            auto* ip = reinterpret_cast<rte_ipv4_hdr*>(frag_eth + 1);
            ip->hdr_checksum = 0;
            ip->hdr_checksum = rte_ipv4_cksum(ip);
        }
        send(port_index, frag);
    }
}

// From the host kernel: forwarded unchanged.
void Worker::handle_host(rte_mbuf** pkts, uint16_t n) {
    counters_->add(SwitchCounter::to_uplink_from_host, n);
    for (uint16_t i = 0; i < n; ++i) send(kUplinkPortIndex, pkts[i]);
}

// From a VM: its offloads finished, the egress checks, then the VM's frame is made to look like the uplink's own.
void Worker::handle_vm(const Snapshot& snap, uint16_t port_index, rte_mbuf** pkts, uint16_t n) {
    const OwnerId self = vm_owner_id(port_index - kFirstVmPortIndex);
    const bool enabled = self < snap.owners.size() && snap.owners[self].enabled;
    if (!enabled) {
        counters_->add(port_index, PortCounter::dropped_disabled, n);
        for (uint16_t i = 0; i < n; ++i) drop(pkts[i], SwitchCounter::drop_vm_disabled);
        return;
    }
    alignas(8) uint8_t scratch[kParseWindow];
    const uint32_t max_frame = RTE_ETHER_HDR_LEN + shared_.offload.mtu;
    for (uint16_t i = 0; i < n; ++i) rte_prefetch0(rte_pktmbuf_mtod(pkts[i], void*));
    for (uint16_t i = 0; i < n; ++i) {
        rte_mbuf* m = pkts[i];
        if (__builtin_expect(guest_frame_needs_work(m, max_frame), 0)) {
            rte_mbuf* segments[kMaxGuestSegments];
            const bool partial = (m->ol_flags & RTE_MBUF_F_RX_L4_CKSUM_MASK) == RTE_MBUF_F_RX_L4_CKSUM_NONE;
            const GuestOffloadOutcome done = finish_guest_frame(shared_.offload, m, segments);
            switch (done.result) {
                case GuestOffloadResult::kUnsupported:
                    counters_->add(port_index, PortCounter::dropped_offload);
                    drop(m, SwitchCounter::drop_guest_offload);
                    continue;
                case GuestOffloadResult::kNoMbuf: drop(m, SwitchCounter::drop_no_mbuf); continue;
                case GuestOffloadResult::kDone:
                    if (partial) count(SwitchCounter::guest_csum_completed);
                    break;
                case GuestOffloadResult::kSegmented:
                    count(SwitchCounter::guest_tso_frames);
                    burst_counts_[static_cast<size_t>(SwitchCounter::guest_tso_segments)] += done.count;
                    burst_counts_[static_cast<size_t>(SwitchCounter::drop_no_mbuf)] += done.dropped;
                    for (uint16_t s = 0; s < done.count; ++s) vm_frame(snap, port_index, self, segments[s], scratch);
                    continue;
            }
            m = segments[0];
        }
        vm_frame(snap, port_index, self, m, scratch);
    }
}

void Worker::vm_frame(const Snapshot& snap, uint16_t port_index, OwnerId self, rte_mbuf* m, uint8_t* scratch) {
    // A guest's IPv4 header checksum is never offloaded (virtio has no such feature; TSO segments and
    // partial checksums were completed above, header included): a wrong one is the guest's fault and is
    // dropped here, counted, rather than by the next router without a trace.
    ParsedFrame parsed = parse(m, scratch, Ipv4ChecksumState::kUnchecked);
    // The rewrites below touch only headers; they must be contiguous (they are, but for exotic chains).
    if (rte_pktmbuf_data_len(m) < rte_pktmbuf_pkt_len(m) && rte_pktmbuf_data_len(m) < kParseWindow &&
        rte_pktmbuf_linearize(m) != 0) {
        drop(m, SwitchCounter::drop_malformed);
        return;
    }
    if (snap.translation != nullptr && parsed.has_ports &&
        (parsed.ip_proto == kIpProtoTcp || parsed.ip_proto == kIpProtoUdp) &&
        shared_address_index(snap.shared, parsed, true) == 0) {
        // A translated range: the VM answers from its inner port, the wire must see the outer one.
        const L4Proto proto = parsed.ip_proto == kIpProtoTcp ? L4Proto::kTcp : L4Proto::kUdp;
        const uint16_t outer = snap.translation->outbound(self, proto, parsed.src_port);
        if (outer != parsed.src_port) {
            rewrite_l4_port(rte_pktmbuf_mtod(m, uint8_t*), rte_pktmbuf_data_len(m), parsed, true, outer);
            parsed.src_port = outer;
        }
    }
    EgressDecision decision = check_vm_egress(parsed, snap.shared, snap.table_at, self, snap.owners.data(),
                                              snap.groups ? snap.groups->data() : nullptr);
    if (!decision.forward) {
        counters_->add(port_index, PortCounter::dropped_spoof);
        drop(m, decision.drop_reason);
        return;
    }
    rewrite_vm_egress(rte_pktmbuf_mtod(m, uint8_t*), rte_pktmbuf_data_len(m), parsed, shared_.uplink_mac);
    count(SwitchCounter::to_uplink_from_vm);
    send(kUplinkPortIndex, m);
}

// The lists of vhost queues this worker owns: guest-to-host queue pair q of VM v belongs to worker
// (v + q) % workers, so a guest's queues spread over the workers and each queue has one poller (its
// frames keep their order). Rebuilt here, by the worker itself, whenever the slots' layout changes.
void Worker::rebuild_vhost_polls() {
    previously_hot_.swap(hot_);
    hot_.clear();
    cold_.clear();
    cold_cursor_ = 0;
    for (uint16_t vm = 0; vm < kMaxVms; ++vm) {
        const VhostSlot& slot = shared_.vhost->slot(vm);
        if (!slot.configured.load(std::memory_order_acquire) || slot.vid.load(std::memory_order_acquire) < 0)
            continue;
        const uint64_t mask = slot.rx_queue_mask.load(std::memory_order_acquire);
        for (uint16_t q = 0; q < kMaxGuestQueuePairs; ++q) {
            if ((mask & (1ULL << q)) == 0 || (vm + q) % shared_.worker_count != setup_.worker_id) continue;
            // A queue that was busy stays among the hot ones: a guest connecting elsewhere must not slow it.
            const bool was_hot = std::any_of(previously_hot_.begin(), previously_hot_.end(),
                                             [&](const VhostPoll& p) { return p.vm == vm && p.queue_pair == q; });
            (was_hot ? hot_ : cold_).push_back(VhostPoll{vm, q, 0});
        }
    }
    previously_hot_.clear();
}

void Worker::poll_vhost(const Snapshot& snap) {
    const uint64_t layout = shared_.vhost->layout();
    if (layout != vhost_layout_) {
        rebuild_vhost_polls();
        vhost_layout_ = layout;
    }
    for (size_t i = 0; i < hot_.size();) {
        VhostPoll& poll = hot_[i];
        if (poll_vhost_queue(snap, poll.vm, poll.queue_pair)) {
            poll.empty_polls = 0;
            ++i;
        } else if (++poll.empty_polls >= kHotEmptyPollsBeforeCold) {
            cold_.push_back(VhostPoll{poll.vm, poll.queue_pair, 0});
            hot_[i] = hot_.back();
            hot_.pop_back();
        } else {
            ++i;
        }
    }
    // Credit for cold polls accrues with time: cold_.size() of them per sweep period.
    const uint64_t now = rte_rdtsc();
    if (cold_.empty()) {
        cold_credit_ = 0;
    } else {
        cold_credit_ += static_cast<double>(now - cold_paced_at_) * static_cast<double>(cold_.size()) /
                        static_cast<double>(cold_sweep_cycles_);
        if (cold_credit_ > kMaxColdPollsPerIteration) cold_credit_ = kMaxColdPollsPerIteration;
    }
    cold_paced_at_ = now;
    const size_t budget = static_cast<size_t>(cold_credit_);
    cold_credit_ -= static_cast<double>(budget);
    for (size_t done = 0; done < budget && !cold_.empty(); ++done) {
        if (cold_cursor_ >= cold_.size()) cold_cursor_ = 0;
        const VhostPoll poll = cold_[cold_cursor_];
        if (poll_vhost_queue(snap, poll.vm, poll.queue_pair)) {
            // Busy again: polled every iteration from now on.
            hot_.push_back(poll);
            cold_[cold_cursor_] = cold_.back();
            cold_.pop_back();
        } else {
            ++cold_cursor_;
        }
    }
}

// Returns true when the queue had frames.
bool Worker::poll_vhost_queue(const Snapshot& snap, uint16_t vm, uint16_t queue_pair) {
    const int vid = shared_.vhost->slot(vm).vid.load(std::memory_order_acquire);
    if (vid < 0) return false;
    rte_mbuf* pkts[kBurstSize];
    const uint16_t n = rte_vhost_dequeue_burst(vid, static_cast<uint16_t>(2 * queue_pair + 1), shared_.pool, pkts,
                                               kBurstSize);
    if (n == 0) return false;
    if (shared_.capture != nullptr) shared_.capture->capture(vm, CaptureDirection::kFromVm, pkts, n, queue_pair);
    const uint16_t port_index = vm_port_index(vm);
    uint64_t bytes = 0;
    for (uint16_t i = 0; i < n; ++i) bytes += rte_pktmbuf_pkt_len(pkts[i]);
    counters_->add(port_index, PortCounter::rx_packets, n);
    counters_->add(port_index, PortCounter::rx_bytes, bytes);
    handle_vm(snap, port_index, pkts, n);
    return true;
}

bool Worker::vm_port_connected(uint16_t port_index) const {
    if (setup_.tx[port_index].kind != TxKind::kVhost) return true;
    return shared_.vhost != nullptr &&
           shared_.vhost->slot(port_index - kFirstVmPortIndex).vid.load(std::memory_order_acquire) >= 0;
}

// The library copies the frames into the guest's buffers: every mbuf is still ours afterwards. One retry
// when the guest's ring is full (it may be draining it right now), counted.
uint16_t Worker::transmit_vhost(uint16_t port_index, rte_mbuf** pkts, uint16_t count) {
    if (shared_.vhost == nullptr) return 0;
    const VhostSlot& slot = shared_.vhost->slot(port_index - kFirstVmPortIndex);
    const int vid = slot.vid.load(std::memory_order_acquire);
    const uint16_t queues = slot.tx_queues.load(std::memory_order_acquire);
    if (vid < 0 || queues == 0) return 0;
    const uint16_t vring = static_cast<uint16_t>(2 * (setup_.worker_id % queues));
    if (shared_.capture != nullptr)
        shared_.capture->capture(port_index - kFirstVmPortIndex, CaptureDirection::kToVm, pkts, count, vring / 2);
    uint16_t sent = rte_vhost_enqueue_burst(vid, vring, pkts, count);
    if (sent < count) {
        counters_->add(port_index, PortCounter::tx_retries);
        sent = static_cast<uint16_t>(sent + rte_vhost_enqueue_burst(vid, vring, pkts + sent, count - sent));
    }
    return sent;
}

void Worker::drain_handoffs() {
    rte_mbuf* pkts[kBurstSize];
    for (const HandoffIn& in : setup_.handoff_in) {
        unsigned n = rte_ring_sc_dequeue_burst(in.ring, reinterpret_cast<void**>(pkts), kBurstSize, nullptr);
        for (unsigned i = 0; i < n; ++i) send(in.port_index, pkts[i]);
    }
}

void Worker::refill_host_tokens(uint64_t now) {
    if (host_tokens_per_cycle_ == 0) return;
    host_tokens_ = std::min(host_bucket_, host_tokens_ + static_cast<double>(now - host_refilled_at_) * host_tokens_per_cycle_);
    host_refilled_at_ = now;
}

bool Worker::take_host_token() {
    if (host_tokens_per_cycle_ == 0) return true;
    if (host_tokens_ < 1) return false;
    host_tokens_ -= 1;
    return true;
}

void Worker::send_to_host(rte_mbuf* m) {
    if (!take_host_token()) {
        drop(m, SwitchCounter::drop_host_rate);
        return;
    }
    count(SwitchCounter::to_host);
    send(kHostPortIndex, m);
}

void Worker::send(uint16_t port_index, rte_mbuf* m) {
    TxBuffer& buffer = tx_buffers_[port_index];
    if (buffer.count == 0 && !buffer.pending) {
        buffer.pending = true;
        pending_[pending_count_++] = port_index;
    }
    buffer.pkts[buffer.count++] = m;
    if (buffer.count == kBurstSize) flush(port_index);
}

void Worker::flush(uint16_t port_index) {
    TxBuffer& buffer = tx_buffers_[port_index];
    if (buffer.count == 0) return;
    const TxRoute& route = setup_.tx[port_index];
    uint16_t sent;
    if (route.kind == TxKind::kHandoff) {
        sent = static_cast<uint16_t>(
            rte_ring_sp_enqueue_burst(route.handoff, reinterpret_cast<void**>(buffer.pkts), buffer.count, nullptr));
    } else {
        uint64_t bytes = 0;
        for (uint16_t i = 0; i < buffer.count; ++i) bytes += rte_pktmbuf_pkt_len(buffer.pkts[i]);
        if (route.kind == TxKind::kVhost) {
            sent = transmit_vhost(port_index, buffer.pkts, buffer.count);
        } else {
            sent = rte_eth_tx_burst(route.eth_port, route.queue, buffer.pkts, buffer.count);
        }
        for (uint16_t i = sent; i < buffer.count; ++i) bytes -= rte_pktmbuf_pkt_len(buffer.pkts[i]);
        counters_->add(port_index, PortCounter::tx_packets, sent);
        counters_->add(port_index, PortCounter::tx_bytes, bytes);
    }
    if (sent < buffer.count) {
        // Queue full or port down (a VM not connected): never queue without bound, count and free.
        uint16_t unsent = static_cast<uint16_t>(buffer.count - sent);
        counters_->add(port_index, PortCounter::tx_dropped, unsent);
        counters_->add(SwitchCounter::drop_tx, unsent);
        if (route.kind != TxKind::kVhost) rte_pktmbuf_free_bulk(buffer.pkts + sent, unsent);
    }
    // vhost copied what it sent; the rest was counted above.
    if (route.kind == TxKind::kVhost) rte_pktmbuf_free_bulk(buffer.pkts, buffer.count);
    buffer.count = 0;
}

// Only the ports written to since the last flush: the loop's cost does not grow with the number of VMs.
void Worker::flush_all() {
    for (uint16_t i = 0; i < pending_count_; ++i) {
        uint16_t port_index = pending_[i];
        flush(port_index);
        tx_buffers_[port_index].pending = false;
    }
    pending_count_ = 0;
}

void Worker::count_lb(LbEvent event) {
    switch (event) {
        case LbEvent::kHit: count(SwitchCounter::lb_flow_hits); break;
        case LbEvent::kNewFlowEvicted: count(SwitchCounter::lb_evictions);
            [[fallthrough]];
        case LbEvent::kNewFlow: count(SwitchCounter::lb_new_flows); break;
        case LbEvent::kNone: break;
    }
}

void Worker::drop(rte_mbuf* m, SwitchCounter reason) {
    count(reason);
    rte_pktmbuf_free(m);
}

void Worker::publish_counts() {
    for (size_t c = 0; c < kSwitchCounterCount; ++c) {
        if (burst_counts_[c] == 0) continue;
        counters_->add(static_cast<SwitchCounter>(c), burst_counts_[c]);
        burst_counts_[c] = 0;
    }
}

}  // namespace portmux
