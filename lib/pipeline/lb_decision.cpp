// Delivery to a load-balanced group: the connection table first, the Maglev table for new flows.
#include "pipeline/connection_table.hpp"
#include "pipeline/ingress_decision.hpp"
#include "tables/lb_group.hpp"

namespace portmux {

DeliveryDecision decide_group(const ParsedFrame& frame, OwnerId group, const OwnerTarget* owners, const LbContext& lb) {
    const LbGroup& g = lb.groups[owners[group].group];
    DeliveryDecision d;
    ConnEntry* known = nullptr;
    ConnKey key;
    if (lb.connections != nullptr) {
        key = make_conn_key(frame, group);
        known = lb.connections->find(key, lb.now);
        if (known != nullptr && g.is_usable(known->member)) {
            known->last_seen = conn_time(lb.now);
            d = deliver_to_vm(known->member, owners);
            d.lb_event = LbEvent::kHit;
            return d;
        }
    }
    const OwnerId member = g.pick(flow_hash(frame));
    if (member == kNoOwner) {
        d.delivery = Delivery::kDrop;
        d.owner = group;
        d.drop_reason = SwitchCounter::drop_group_empty;
        return d;
    }
    d = deliver_to_vm(member, owners);
    d.lb_event = LbEvent::kNewFlow;
    if (known != nullptr) {
        // Its member went down or left the group: the flow moves, in place.
        known->member = member;
        known->last_seen = conn_time(lb.now);
    } else if (lb.connections != nullptr && lb.connections->insert(key, member, lb.now)) {
        d.lb_event = LbEvent::kNewFlowEvicted;
    }
    return d;
}

}  // namespace portmux
