// Every counter portmux keeps, named once: the enums, their telemetry keys and their descriptions.
#pragma once

#include <cstddef>
#include <cstdint>

namespace portmux {

// Switch-wide outcomes. Each packet received is accounted for by exactly one of the delivery or drop
// counters (a flooded ARP/NDP frame counts once in `flooded`, its copies are not counted again).
#define PORTMUX_SWITCH_COUNTERS(X)                                                                      \
    X(to_vm, "frames from the uplink delivered to a VM")                                                \
    X(to_host, "frames from the uplink delivered to the host port")                                     \
    X(flooded, "ARP replies / gratuitous ARP / neighbour advertisements sent to the host and every VM") \
    X(to_uplink_from_vm, "frames from VMs sent out of the uplink")                                      \
    X(to_uplink_from_host, "frames from the host sent out of the uplink")                               \
    X(rejected, "TCP RST or ICMP port unreachable answers sent for unmatched ports")                    \
    X(drop_firewall, "dropped by a firewall rule or the firewall default")                              \
    X(drop_malformed, "dropped: malformed or truncated headers")                                        \
    X(drop_vm_disabled, "dropped: the destination VM is disabled")                                      \
    X(drop_unmatched, "dropped: no owner for the port and `unmatched` is drop (or reject failed)")     \
    X(drop_spoof_arp, "dropped from a VM: ARP or NDP for an address that is not shared")                          \
    X(drop_spoof_address, "dropped from a VM: IP source is not the shared address")                     \
    X(drop_spoof_port, "dropped from a VM: TCP/UDP source port outside the VM's ranges")                \
    X(drop_tx, "dropped at transmit: queue full or port down")                                          \
    X(drop_host_rate, "dropped: traffic to the host above host.rate_limit_pps")                         \
    X(host_copies_limited, "flooded frames whose host copy the host rate limit refused (counted in flooded)") \
    X(drop_no_mbuf, "dropped: no mbuf for a copy or an answer")                                         \
    X(drop_fragment, "fragments dropped: reassembly table full, overlapping or invalid")                \
    X(fragments_held, "fragments held for reassembly (the datagram is counted when complete)")          \
    X(reassembled, "datagrams reassembled from fragments")                                             \
    X(vxlan_encapsulated, "frames sent out of the uplink in VXLAN to a remote VM")                       \
    X(vxlan_decapsulated, "VXLAN frames from a peer unwrapped (the inner frame is then counted as any)") \
    X(drop_vxlan, "dropped: VXLAN from a non-peer, wrong VNI, bad flags or truncated")                  \
    X(vxlan_resent, "frames from VXLAN for a range that has moved to another host, re-sent there once")    \
    X(drop_vxlan_loop, "dropped: a frame re-sent over VXLAN once already whose range is remote again")     \
    X(drop_vxlan_too_big, "dropped: a frame for a remote VM that would exceed the uplink MTU in VXLAN") \
    X(lb_new_flows, "flows to a load-balanced group given a member (new, or their member became unusable)") \
    X(lb_flow_hits, "packets to a load-balanced group that found their flow in the connection table")   \
    X(lb_evictions, "live connection-table entries replaced because their bucket was full")             \
    X(drop_group_empty, "dropped: a load-balanced group has no usable member for the flow")                \
    X(guest_csum_completed, "frames from VMs whose partial TCP/UDP checksum portmux completed (offload)")   \
    X(guest_tso_frames, "TSO frames from VMs cut into MTU-sized segments (each segment is then counted)")  \
    X(guest_tso_segments, "segments made from guests' TSO frames")                                         \
    X(drop_guest_offload, "dropped from a VM: an offload portmux cannot finish, or a frame above the MTU")

enum class SwitchCounter : uint16_t {
#define PORTMUX_ENUM(name, desc) name,
    PORTMUX_SWITCH_COUNTERS(PORTMUX_ENUM)
#undef PORTMUX_ENUM
        kCount
};

// Per-port counters; "rx"/"tx" are relative to portmux (a VM's transmit is portmux's rx).
#define PORTMUX_PORT_COUNTERS(X)                                     \
    X(rx_packets, "frames received by portmux on this port")        \
    X(rx_bytes, "bytes received by portmux on this port")           \
    X(tx_packets, "frames sent by portmux on this port")            \
    X(tx_bytes, "bytes sent by portmux on this port")               \
    X(tx_dropped, "frames for this port dropped at transmit")       \
    X(dropped_disabled, "frames for this port dropped: VM disabled") \
    X(dropped_spoof, "frames from this port dropped by the egress checks") \
    X(dropped_offload, "frames from this port dropped: an offload portmux cannot finish, or above the MTU") \
    X(tx_retries, "transmit bursts retried because the VM's ring was full")

enum class PortCounter : uint16_t {
#define PORTMUX_ENUM(name, desc) name,
    PORTMUX_PORT_COUNTERS(PORTMUX_ENUM)
#undef PORTMUX_ENUM
        kCount
};

inline constexpr size_t kSwitchCounterCount = static_cast<size_t>(SwitchCounter::kCount);
inline constexpr size_t kPortCounterCount = static_cast<size_t>(PortCounter::kCount);

const char* counter_name(SwitchCounter c);
const char* counter_description(SwitchCounter c);
const char* counter_name(PortCounter c);
const char* counter_description(PortCounter c);

}  // namespace portmux
