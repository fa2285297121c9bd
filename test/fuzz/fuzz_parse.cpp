// libFuzzer target: any bytes as a frame through parse (fast path against the full parser), the uplink decisions,
// the VM egress checks and rewrite, and the reject builder; sanitizers catch out-of-bounds reads, the checks
// below catch impossible verdicts.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "pipeline/ingress_decision.hpp"
#include "pipeline/parse.hpp"
#include "pipeline/reject.hpp"
#include "pipeline/vm_egress.hpp"

using namespace portmux;

namespace {

// A failed invariant is a crash libFuzzer records with its input, in every build type (assert may be off).
#define FUZZ_CHECK(cond)                                                            \
    do {                                                                            \
        if (!(cond)) {                                                              \
            __builtin_printf("fuzz_parse: check failed: %s (line %d)\n", #cond, __LINE__); \
            std::abort();                                                           \
        }                                                                           \
    } while (0)

constexpr OwnerId kVm = kFirstVmOwner;           // enabled VM, the sender of egress frames
constexpr OwnerId kDisabledVm = kFirstVmOwner + 1;
constexpr size_t kOwnerCount = kFirstVmOwner + 2;

struct Fixture {
    SharedAddresses shared;
    PortOwnerTable* table = new PortOwnerTable;  // 256 KiB: never on the stack
    OwnerTarget owners[kOwnerCount];
    MacAddr uplink_mac{};

    Fixture() {
        shared.ip4 = htonl_(0xc000020a);  // 192.0.2.10
        shared.has_ip6 = true;
        const uint8_t ip6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10};
        std::memcpy(shared.ip6, ip6, 16);
        owners[kHostOwner].kind = OwnerKind::kHost;
        owners[kVm].kind = OwnerKind::kVm;
        owners[kVm].port = 2;
        owners[kDisabledVm].kind = OwnerKind::kVm;
        owners[kDisabledVm].port = 3;
        owners[kDisabledVm].enabled = false;
        // Every owner kind appears in both protocols, including the edges 0 and 65535.
        for (unsigned proto = 0; proto < kL4ProtoCount; ++proto)
            for (unsigned port = 0; port < 65536; ++port) table->owner[proto][port] = static_cast<OwnerId>(port % 4);
        const uint8_t mac[6] = {0x02, 0, 0, 0, 0x0a, 0x01};
        std::memcpy(uplink_mac.bytes.data(), mac, 6);
    }
    static uint32_t htonl_(uint32_t v) { return __builtin_bswap32(v); }
};

bool is_tcp_udp(uint8_t proto) { return proto == kIpProtoTcp || proto == kIpProtoUdp; }

void check_parsed(const ParsedFrame& p, uint32_t length) {
    FUZZ_CHECK(static_cast<uint8_t>(p.kind) <= static_cast<uint8_t>(FrameKind::kMalformed));
    const bool ip = p.kind == FrameKind::kIpv4 || p.kind == FrameKind::kIpv6;
    if (p.has_ports) {
        FUZZ_CHECK(ip);
        FUZZ_CHECK(is_tcp_udp(p.ip_proto));
        FUZZ_CHECK(!p.is_fragment || p.first_fragment);
        const uint32_t l4_header = p.ip_proto == kIpProtoTcp ? 20 : 8;
        FUZZ_CHECK(p.l4_offset + l4_header <= length);
        FUZZ_CHECK(p.l4_offset + l4_header <= static_cast<uint32_t>(p.l3_offset) + p.l3_length);
    }
    if (ip) {
        FUZZ_CHECK(p.l3_offset >= 14);
        FUZZ_CHECK(static_cast<uint32_t>(p.l3_offset) + p.l3_length <= length);
        FUZZ_CHECK(p.l3_length >= (p.kind == FrameKind::kIpv4 ? 20 : 40));
        if (!p.is_fragment || p.first_fragment) {
            FUZZ_CHECK(p.l4_offset >= p.l3_offset);
            FUZZ_CHECK(p.l4_offset <= static_cast<uint32_t>(p.l3_offset) + p.l3_length);
        }
        if (p.first_fragment) FUZZ_CHECK(p.is_fragment);
    }
    if (p.has_ndp_target) FUZZ_CHECK(p.kind == FrameKind::kIpv6 && p.ip_proto == kIpProtoIcmpv6);
    if (p.has_quoted_ports) {
        FUZZ_CHECK(ip && (p.ip_proto == kIpProtoIcmp || p.ip_proto == kIpProtoIcmpv6));
        FUZZ_CHECK(is_tcp_udp(p.quoted_proto));
    }
}

bool valid_counter(SwitchCounter c) { return static_cast<uint16_t>(c) < kSwitchCounterCount; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static Fixture fx;
    if (size > 65535) return 0;
    const uint32_t length = static_cast<uint32_t>(size);
    // An exact-size heap copy, so ASan sees any read past the frame's last byte.
    std::vector<uint8_t> frame(data, data + size);
    // The later stages see the frame as if the NIC had vouched for its IPv4 header checksum: random bytes
    // rarely carry a right one, and the stages behind the parser should be explored all the same.
    const ParsedFrame p = parse_frame(frame.data(), length, length, Ipv4ChecksumState::kGood);
    check_parsed(p, length);
    // The straight-line path for the common case must give exactly the full parser's result, or stand aside,
    // whatever is known about the checksum.
    for (Ipv4ChecksumState state :
         {Ipv4ChecksumState::kUnchecked, Ipv4ChecksumState::kGood, Ipv4ChecksumState::kBad}) {
        const ParsedFrame full = parse_frame_full(frame.data(), length, length, state);
        FUZZ_CHECK(same_parse(parse_frame(frame.data(), length, length, state), full));
        ParsedFrame fast;
        if (parse_frame_fast(frame.data(), length, length, fast, state)) {
            FUZZ_CHECK(same_parse(fast, full));
            FUZZ_CHECK(fast.has_ports && !fast.is_fragment);
            FUZZ_CHECK(state != Ipv4ChecksumState::kBad || fast.kind == FrameKind::kIpv6);
        }
        // The checksum only ever turns an IPv4 frame malformed; it changes nothing else.
        if (full.kind != FrameKind::kMalformed) FUZZ_CHECK(same_parse(full, p));
        if (state == Ipv4ChecksumState::kBad && length >= 14 && frame[12] == 0x08 && frame[13] == 0x00)
            FUZZ_CHECK(full.kind == FrameKind::kMalformed);
        if (state == Ipv4ChecksumState::kUnchecked && p.kind == FrameKind::kIpv4) {
            const uint32_t header_len = static_cast<uint32_t>(frame[14] & 0x0f) * 4;
            const bool right = wire::ipv4_header_checksum_ok(frame.data() + 14, header_len);
            FUZZ_CHECK(right == (full.kind == FrameKind::kIpv4));
        }
    }

    const UplinkPlan plan = plan_uplink_frame(p, fx.shared);
    {
        // The shortcut plan for frames the straight path takes is the full plan.
        ParsedFrame into;
        const bool common = parse_frame_into(frame.data(), length, length, Ipv4ChecksumState::kGood, &into);
        FUZZ_CHECK(same_parse(into, p));
        if (common) {
            const UplinkPlan quick = plan_common_frame(into, fx.shared);
            FUZZ_CHECK(quick.step == plan.step && quick.drop_reason == plan.drop_reason);
            // And with a second shared IPv4 address, taken from the frame itself half of the time.
            SharedAddresses two = fx.shared;
            two.extra_ip4_count = 1;
            two.extra_ip4[0] = (length & 1) != 0 && into.kind == FrameKind::kIpv4 ? into.key.v4.dst : Fixture::htonl_(0xc000020b);
            const UplinkPlan full2 = plan_uplink_frame(into, two);
            const UplinkPlan quick2 = plan_common_frame(into, two);
            FUZZ_CHECK(quick2.step == full2.step && quick2.drop_reason == full2.drop_reason);
        }
    }
    FUZZ_CHECK(static_cast<uint8_t>(plan.step) <= static_cast<uint8_t>(UplinkStep::kFirewall));
    FUZZ_CHECK(valid_counter(plan.drop_reason));
    if (p.kind == FrameKind::kMalformed) FUZZ_CHECK(plan.step == UplinkStep::kDrop || plan.step == UplinkStep::kToHost);
    if (plan.step == UplinkStep::kFirewall) FUZZ_CHECK(p.kind == FrameKind::kIpv4 || p.kind == FrameKind::kIpv6);

    if (plan.step == UplinkStep::kFirewall) {
        for (UnmatchedPolicy policy : {UnmatchedPolicy::kHost, UnmatchedPolicy::kDrop, UnmatchedPolicy::kReject}) {
            const DeliveryDecision d = decide_delivery(p, *fx.table, fx.owners, policy);
            FUZZ_CHECK(static_cast<uint8_t>(d.delivery) <= static_cast<uint8_t>(Delivery::kReject));
            FUZZ_CHECK(valid_counter(d.drop_reason));
            if (d.delivery == Delivery::kVm) {
                // Only an enabled VM's own port, and only with ports the parser vouched for: the destination
                // port of TCP/UDP, or the source port of the flow an ICMP error quotes.
                FUZZ_CHECK(d.owner == kVm);
                if (p.has_ports && is_tcp_udp(p.ip_proto)) {
                    const L4Proto proto = p.ip_proto == kIpProtoTcp ? L4Proto::kTcp : L4Proto::kUdp;
                    FUZZ_CHECK(fx.table->lookup(proto, p.dst_port) == kVm);
                } else {
                    FUZZ_CHECK(p.has_quoted_ports);
                    FUZZ_CHECK(p.ip_proto == kIpProtoIcmp || p.ip_proto == kIpProtoIcmpv6);
                    FUZZ_CHECK(is_tcp_udp(p.quoted_proto));
                    const L4Proto proto = p.quoted_proto == kIpProtoTcp ? L4Proto::kTcp : L4Proto::kUdp;
                    FUZZ_CHECK(fx.table->lookup(proto, p.quoted_src_port) == kVm);
                }
            }
            if (d.delivery == Delivery::kReject) {
                FUZZ_CHECK(policy == UnmatchedPolicy::kReject && p.has_ports);
                uint8_t out[2048];
                const uint32_t n = build_reject(frame.data(), length, p, fx.uplink_mac, out, sizeof(out));
                FUZZ_CHECK(n == 0 || n >= 14 + 20 + 8);
                FUZZ_CHECK(n <= sizeof(out));
                if (n != 0) {
                    // Verified in software: the answer's IPv4 header checksum must be right.
                    const ParsedFrame answer = parse_frame(out, n, n, Ipv4ChecksumState::kUnchecked);
                    FUZZ_CHECK(answer.kind == FrameKind::kIpv4 || answer.kind == FrameKind::kIpv6);
                    FUZZ_CHECK(answer.kind == p.kind);
                }
                // A buffer too small for any answer is refused, never overrun.
                uint8_t small[40];
                FUZZ_CHECK(build_reject(frame.data(), length, p, fx.uplink_mac, small, sizeof(small)) == 0);
            }
        }
    }

    // The same bytes as a VM's transmit.
    const EgressDecision e = check_vm_egress(p, fx.shared, *fx.table, kVm);
    FUZZ_CHECK(valid_counter(e.drop_reason));
    if (e.forward) {
        FUZZ_CHECK(p.kind != FrameKind::kMalformed);
        if (p.has_ports) {
            const L4Proto proto = p.ip_proto == kIpProtoTcp ? L4Proto::kTcp : L4Proto::kUdp;
            FUZZ_CHECK(fx.table->lookup(proto, p.src_port) == kVm);
        }
        std::vector<uint8_t> copy(frame);
        rewrite_vm_egress(copy.data(), length, p, fx.uplink_mac);
        FUZZ_CHECK(length < 12 || std::memcmp(copy.data() + 6, fx.uplink_mac.bytes.data(), 6) == 0);
        // The rewrite touches addresses only: the frame parses the same way afterwards.
        const ParsedFrame q = parse_frame(copy.data(), length, length, Ipv4ChecksumState::kGood);
        FUZZ_CHECK(q.kind == p.kind && q.has_ports == p.has_ports && q.src_port == p.src_port &&
                   q.dst_port == p.dst_port && q.l4_offset == p.l4_offset);
    }

    // A chained mbuf: only the first bytes readable, the frame claiming more.
    if (length > 1) {
        const uint32_t available = length / 2;
        std::vector<uint8_t> head(data, data + available);
        const ParsedFrame h = parse_frame(head.data(), available, length);
        FUZZ_CHECK(same_parse(h, parse_frame_full(head.data(), available, length)));
        const ParsedFrame trusted = parse_frame(head.data(), available, length, Ipv4ChecksumState::kGood);
        FUZZ_CHECK(same_parse(trusted, parse_frame_full(head.data(), available, length, Ipv4ChecksumState::kGood)));
        FUZZ_CHECK(static_cast<uint8_t>(h.kind) <= static_cast<uint8_t>(FrameKind::kMalformed));
        if (h.has_ports) FUZZ_CHECK(h.l4_offset + 8u <= available);
    }
    return 0;
}
