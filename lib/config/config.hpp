// The typed configuration: what the JSON file says, validated, with defaults applied.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/limits.hpp"
#include "core/net_types.hpp"
#include "core/port_range.hpp"

namespace portmux {

inline constexpr const char* kDefaultHostDevice = "net_tap0,iface=pmx0";

struct UplinkConfig {
    std::string device;          // DPDK devargs: PCI address or vdev string
    std::optional<MacAddr> mac;  // absent: keep the device's own MAC
};

inline constexpr uint32_t kDefaultHostRateLimitPps = 100000;

struct HostConfig {
    std::string device = kDefaultHostDevice;
    std::vector<PortRange> ranges;
    // Extension: frames per second the workers hand to the host port (0: no limit). Writing to a TAP is a
    // system call per frame; the limit keeps a flood toward the host from slowing VM traffic.
    uint32_t rate_limit_pps = kDefaultHostRateLimitPps;
};

enum class VhostMode : uint8_t { kClient, kServer };

struct VmConfig {
    std::string name;    // [A-Za-z0-9_.-]{1,32}, unique
    std::string vhost;   // vhost-user socket path; empty when `device` is used
    VhostMode vhost_mode = VhostMode::kClient;
    std::string device;  // any DPDK devargs; empty when `vhost` is used
    MacAddr mac;
    std::vector<PortRange> ranges;
    bool enabled = true;  // extension: "enabled": false starts the VM disabled
    std::string backup;   // extension: a VM that serves this VM's ranges while its port is down
};

enum class FirewallAction : uint8_t { kAccept, kDrop };

struct FirewallRule {
    FirewallAction action = FirewallAction::kAccept;
    std::optional<uint8_t> proto;  // IP protocol number ("tcp" = 6, "icmpv6" = 58, ...)
    std::optional<IpPrefix> src;
    std::optional<IpPrefix> dst;
    std::optional<PortSpan> src_ports;
    std::optional<PortSpan> dst_ports;
};

struct FirewallConfig {
    FirewallAction default_action = FirewallAction::kAccept;
    std::vector<FirewallRule> rules;  // priority order, first match wins
};

enum class UnmatchedPolicy : uint8_t { kHost, kDrop, kReject };

// Extension: runtime control through telemetry.
struct ControlConfig {
    bool read_only = false;  // register no command that changes anything
};

// Extension: remote VMs behind VXLAN (docs/remote-vms.md).
inline constexpr uint16_t kDefaultVxlanPort = 4789;
inline constexpr uint32_t kMaxVni = 0xffffff;

struct VxlanConfig {
    Ipv4Addr local_ip;                // this host's underlay address on the uplink (may equal shared_ip)
    uint16_t port = kDefaultVxlanPort;  // UDP destination port of the tunnel
    uint32_t vni = 0;                 // 24 bits
    std::vector<Ipv4Addr> peers;      // hosts allowed to send us VXLAN besides every remote's host
};

// A VM on another host: its ranges are sent there encapsulated. `mac` is the underlay next hop toward
// `host` (static: the data path keeps no ARP state).
struct RemoteConfig {
    std::string name;  // shares the namespace of VM names
    Ipv4Addr host;
    MacAddr mac;
    std::vector<PortRange> ranges;
};

// Extension: load-balanced groups (docs/load-balancing.md). A group owns ranges like a VM; new flows to
// them are spread over its members by a Maglev table.
inline constexpr uint8_t kMaxMemberWeight = 255;

struct GroupMemberConfig {
    std::string vm;
    uint8_t weight = 1;  // 1..kMaxMemberWeight
    bool drain = false;  // keeps existing flows, receives no new ones
};

struct GroupConfig {
    std::string name;  // shares one namespace with VM names
    std::vector<GroupMemberConfig> members;  // may be empty: the group's packets are dropped and counted
    std::vector<PortRange> ranges;
};

// The per-worker connection tables of groups: `max` entries per worker (0: none, Maglev alone).
struct ConnectionsConfig {
    uint32_t max = 65536;
    uint32_t tcp_timeout_s = 300;
    uint32_t udp_timeout_s = 30;
};

struct Config {
    std::vector<std::string> eal;
    Ipv4Addr shared_ip;  // the first (or only) shared address
    // Extension: "shared_ip" may be a list; the addresses after the first, each with its own range table.
    std::vector<Ipv4Addr> extra_shared_ips;
    std::optional<Ipv6Addr> shared_ip6;
    UplinkConfig uplink;
    HostConfig host;
    std::vector<VmConfig> vms;
    FirewallConfig firewall;
    UnmatchedPolicy unmatched = UnmatchedPolicy::kHost;
    ControlConfig control;
    std::optional<VxlanConfig> vxlan;   // extension: absent, no VXLAN is sent or accepted
    std::vector<RemoteConfig> remotes;  // extension: needs `vxlan`
    std::vector<GroupConfig> groups;
    ConnectionsConfig connections;
};

// A configuration error: `path` is the JSON path ("vms[1].ranges[0]", "$" for the document itself).
class ConfigError : public std::runtime_error {
public:
    ConfigError(std::string path, const std::string& what) : std::runtime_error(what), path_(std::move(path)) {}
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

// Parses and validates a whole configuration. Throws ConfigError on the first problem.
// Thread safety: pure function, any thread.
Config parse_config(const nlohmann::json& document);
// One firewall rule as in `firewall.rules[]`, for runtime changes; errors name `path`. Throws ConfigError.
FirewallRule parse_firewall_rule(const nlohmann::json& rule, const std::string& path);
// A VM or group name: [A-Za-z0-9_.-]{1,32}, not "host".
bool is_valid_owner_name(const std::string& name);
// Reads `file` and calls parse_config; JSON syntax errors name the line and column.
Config load_config_file(const std::string& file);
// The inverse of parse_config: a document that parse_config accepts and that yields `config` again.
nlohmann::json config_to_json(const Config& config);
// Makes `range`'s address canonical for `config`: the first shared address becomes the unwritten default.
// Returns an error (range unchanged) when the address is not shared, or names a translation on another
// address than the first; empty on success. Pure function.
std::string resolve_range_address(PortRange& range, const Config& config);
// True when `range` (resolved) covers the VXLAN port on the shared address the tunnel ends on (if it ends on
// one): that port belongs to the tunnel. Pure function.
bool range_holds_vxlan_port(const PortRange& range, const Config& config);
// The one-screen summary printed by --check.
std::string config_summary(const Config& config);

const char* to_string(UnmatchedPolicy policy);
const char* to_string(FirewallAction action);
const char* to_string(VhostMode mode);
// "tcp", "udp", "icmp", "icmpv6" or the decimal number.
std::string ip_proto_to_string(uint8_t proto);

}  // namespace portmux
