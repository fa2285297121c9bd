"""What the cluster says, checked, and what one host's portmux must therefore look like.

ClusterView holds every key under the prefix with the last GOOD value of each: a bad write is refused for
that key alone (logged once, counted) and the key keeps its previous good value; other keys are unaffected.
desired_state() derives one host's ranges and remotes from the accepted view (pure, no I/O), plan()
the telemetry commands that turn the running state into it, touching nothing that is already right, and
move_prerequisites() which of those moves must wait until the new owner's host has applied the change.
"""

from . import schema
from .schema import BadValue

# The desired owner of a range whose serving VM lives on a host that is down and has no live backup: the
# range is left as the data plane has it (the last state), neither moved nor removed.
KEEP = object()


class Refusal:
    __slots__ = ("key", "revision", "reason")

    def __init__(self, key, revision, reason):
        self.key, self.revision, self.reason = key, revision, reason


class ClusterView:
    def __init__(self, prefix, log=None):
        self.prefix = schema.normalize_prefix(prefix)
        self.log = log or (lambda message: None)
        self.good = {}          # key -> (kind, name, value, mod_revision): the last good value of each key
        self.used = {}          # VM key -> value last accepted across keys (fallback when a write overlaps)
        self.refused = {}       # key -> Refusal of its newest write, while that write is in force
        self.refused_total = 0  # every refused write, counted once
        self._seen = set()      # (key, revision) already refused: logged and counted once
        self.revision = 0

    # -- feeding -------------------------------------------------------------------------------------------

    def reset(self, items, revision):
        """A full read (startup, resync): ITEMS are (key bytes, value bytes, mod_revision)."""
        present = set()
        for key, raw, mod in items:
            key = key.decode("utf-8", errors="replace")
            present.add(key)
            self.put(key, raw, mod)
        for key in list(self.good):
            if key not in present:
                self.delete(key)
        for key in list(self.refused):
            if key not in present:
                del self.refused[key]
        self.revision = max(self.revision, revision)

    def put(self, key, raw, mod_revision):
        try:
            kind, name = schema.split_key(self.prefix, key)
            value = schema.parse_value(kind, name, raw)
        except BadValue as e:
            self.refuse(key, mod_revision, str(e))
            return
        self.refused.pop(key, None)
        self.good[key] = (kind, name, value, mod_revision)

    def delete(self, key):
        self.good.pop(key, None)
        self.used.pop(key, None)
        self.refused.pop(key, None)

    def refuse(self, key, revision, reason):
        self.refused[key] = Refusal(key, revision, reason)
        if (key, revision) not in self._seen:
            self._seen.add((key, revision))
            self.refused_total += 1
            kept = " (its last good value stays in force)" if key in self.good else ""
            self.log("refused %s at revision %d: %s%s" % (key, revision, reason, kept))

    # -- checking across keys --------------------------------------------------------------------------------

    def accepted(self):
        """(hosts, vms, addresses): name -> value, after the checks that span keys.

        A VM whose ranges overlap those of a VM written earlier (lower mod_revision: the first writer wins),
        or whose backup is not a VM of the cluster, is refused; it keeps the value last accepted for it if
        that one still fits, or is left out."""
        hosts, vms, addresses = {}, {}, {}
        vm_entries = []
        for key, (kind, name, value, mod) in self.good.items():
            if kind == "hosts":
                hosts[name] = value
            elif kind == "addresses":
                addresses[name] = value
            elif kind == "vms":
                vm_entries.append((mod, key, name, value))
        vm_entries.sort(key=lambda e: (e[0], e[1]))
        vm_names = {e[2] for e in vm_entries}
        taken = schema.RangeIndex()
        for mod, key, name, value in vm_entries:
            reason = self._cross_key_fault(value, vm_names, taken, addresses)
            if reason is not None:
                self.refuse(key, mod, reason)
                value = self.used.get(key)
                if value is None or self._cross_key_fault(value, vm_names, taken, addresses) is not None:
                    self.used.pop(key, None)
                    continue
            self.used[key] = value
            vms[name] = value
            for r in value["parsed_ranges"]:
                taken.add(r, name)
        return hosts, vms, addresses

    def mod_revision(self, kind, name):
        """The revision of the good value of KIND/NAME in force (0 when there is none)."""
        entry = self.good.get(schema.key_of(self.prefix, kind, name))
        return entry[3] if entry is not None else 0

    def applied_revisions(self):
        """host name -> the revision its agent says it has applied (applied/NAME, present while it lives)."""
        return {name: value["revision"] for kind, name, value, _ in self.good.values() if kind == "applied"}

    @staticmethod
    def _cross_key_fault(value, vm_names, taken, addresses):
        backup = value.get("backup")
        if backup is not None and backup not in vm_names:
            return "backup: unknown VM %r" % backup
        for r in value["parsed_ranges"]:
            if r.address and r.address not in addresses:
                return "range %s: address %s is not in %saddresses/" % (r.text, r.address, "PREFIX ")
            hit = taken.collision(r)
            if hit is not None:
                return "range %s overlaps %s of VM %s" % (r.text, hit[0].text, hit[1])
        return None


class Desired:
    """One host's target: ranges (text -> owner name, or KEEP), remotes (name -> (ip, mac)), addresses."""

    def __init__(self):
        self.ranges = {}
        self.servers = {}  # range text -> (serving VM, True when that VM serves it as the backup)
        self.remotes = {}
        self.addresses = set()
        self.local_vms = set()


def serving_vm(name, vms, alive):
    """The VM that receives NAME's ranges: itself while its host is alive; else its backup if the backup's
    host is alive; else None (nobody alive can serve it: keep the last state)."""
    vm = vms[name]
    if vm["host"] in alive:
        return name
    backup = vm.get("backup")
    if backup in vms and vms[backup]["host"] in alive:
        return backup
    return None


def desired_state(me, hosts, vms, addresses, local_vm_macs):
    """The state of host ME's portmux. LOCAL_VM_MACS: name -> MAC of the VMs its portmux has; a cluster VM
    on ME that portmux lacks (or with another MAC) cannot be served here and its ranges are KEEP."""
    want = Desired()
    alive = set(hosts) | {me}
    want.addresses = set(addresses)
    for host in sorted(hosts):
        if host != me:
            want.remotes[schema.remote_name(host)] = (hosts[host]["underlay_ip"], hosts[host]["vxlan_mac"])
    for name in sorted(vms):
        server = serving_vm(name, vms, alive)
        for r in vms[name]["parsed_ranges"]:
            if server is None:
                want.ranges[r.text] = KEEP
                continue
            want.servers[r.text] = (server, server != name)
            host = vms[server]["host"]
            if host == me:
                if local_vm_macs.get(server) != vms[server]["mac"]:
                    want.ranges[r.text] = KEEP
                    continue
                want.local_vms.add(server)
                want.ranges[r.text] = server
            else:
                want.ranges[r.text] = schema.remote_name(host)
    return want


def managed_owner(name, cluster_vm_names):
    """Owners whose ranges the agent keeps exactly as the cluster says: cluster VMs and host_NAME remotes."""
    return name in cluster_vm_names or schema.is_remote_name(name)


def plan(want, actual_ranges, actual_remotes, actual_addresses, cluster_vm_names):
    """Telemetry commands, in a safe order, that make the running state (ACTUAL_*) the desired one.

    actual_ranges: range text -> owner; actual_remotes: name -> (ip, mac); actual_addresses: set.
    Only differences produce commands, so a range that did not change is never touched. Order: new
    addresses and remotes first (targets must exist), then ranges of managed owners that are no longer
    wanted are removed (a range that changes shape frees its ports before the new shape is added), then
    moves (one atomic step per range: no gap), then additions, and last remotes and addresses no longer
    used."""
    ops = []
    for address in sorted(want.addresses - set(actual_addresses)):
        ops.append(("/portmux/address/add", address))
    for name, (ip, mac) in sorted(want.remotes.items()):
        if name not in actual_remotes:
            ops.append(("/portmux/remote/add", "%s,%s,%s" % (name, ip, mac)))
    for text, owner in sorted(actual_ranges.items()):
        if text not in want.ranges and managed_owner(owner, cluster_vm_names):
            ops.append(("/portmux/range/del", text))
    for text, owner in sorted(want.ranges.items()):
        if owner is KEEP:
            continue
        current = actual_ranges.get(text)
        if current == owner:
            continue
        if current is None:
            ops.append(("/portmux/range/add", "%s,%s" % (owner, text)))
        else:
            ops.append(("/portmux/range/move", "%s,%s" % (text, owner)))
    kept_remotes = {owner for owner in want.ranges.values() if owner is not KEEP}
    kept_remotes |= {actual_ranges[t] for t, o in want.ranges.items() if o is KEEP and t in actual_ranges}
    for name in sorted(actual_remotes):
        if schema.is_remote_name(name) and name not in want.remotes and name not in kept_remotes:
            ops.append(("/portmux/remote/del", name))
    # Further addresses are only ever added: one the cluster no longer lists is left to the operator
    # (portmux refuses to remove an address that still has ranges, and the host's TAP needs it too).
    return ops


# How long a host waits for the new owner's host before it applies a move anyway (counted as
# ordered_apply_timeouts): the new owner's agent may be slow, stopped, or unable to apply it.
ORDERED_APPLY_WAIT_S = 1.0


def move_prerequisites(me, want, actual_ranges, vms, alive, revision_of):
    """The moves host ME must not send yet: range text -> (host, revision) for every range that portmux
    has with another owner and that the cluster now gives to a VM of another live host; ME moves it once
    that host has applied a revision >= the change's (its applied/ key), so that the new owner's host is
    the first to know. Otherwise a frame ME tunnels to the new owner's host could be re-sent by it, still
    on the old view, to the old owner's host, which (already on the new view) drops it as a loop.

    Not waited for: moves to a VM of ME (ME is then the new owner's host), a VM serving as a backup
    (failover: the old owner's host is down, waiting gains nothing), and ranges portmux does not have yet
    (an addition moves no frame). REVISION_OF(kind, name) is the revision of a key's value in force; the
    change's revision is that of the new owner's VM key or of its host key, whichever is later (a move
    rewrites the VM key; a host coming back rewrites its host key)."""
    waits = {}
    for text, owner in want.ranges.items():
        if owner is KEEP or not schema.is_remote_name(owner):
            continue
        current = actual_ranges.get(text)
        if current is None or current == owner:
            continue
        server, as_backup = want.servers[text]
        host = vms[server]["host"]
        if as_backup or host == me or host not in alive:
            continue
        waits[text] = (host, max(revision_of("vms", server), revision_of("hosts", host)))
    return waits


def unmet(waits, applied):
    """The entries of WAITS (text -> (host, revision)) whose host has not yet applied that revision."""
    return {text: (host, rev) for text, (host, rev) in waits.items() if applied.get(host, 0) < rev}


class HeldMoves:
    """The moves held back now, each with the time after which it is sent anyway (WAIT_S after it was
    first held); counts the moves held (waits) and those let through at their deadline (timeouts)."""

    def __init__(self, wait_s=ORDERED_APPLY_WAIT_S):
        self.wait_s = wait_s
        self.deadlines = {}  # (range text, owner, revision) -> monotonic deadline
        self.waits = 0
        self.timeouts = 0

    def update(self, pending, owners, now):
        """PENDING: text -> (host, revision) still unmet (unmet()); OWNERS: text -> the owner it moves to.
        Returns (texts to hold now, [(text, host, revision) let through because their wait ran out]).
        A move no longer pending is forgotten; one whose change was superseded is a new wait."""
        deadlines, expired = {}, []
        for text, (host, revision) in sorted(pending.items()):
            key = (text, owners[text], revision)
            deadline = self.deadlines.get(key)
            if deadline is None:
                deadline = now + self.wait_s
                self.waits += 1
            elif now >= deadline:
                self.timeouts += 1
                expired.append((text, host, revision))
                continue
            deadlines[key] = deadline
        self.deadlines = deadlines
        return {key[0] for key in deadlines}, expired

    def clear(self):
        self.deadlines = {}

    def next_deadline(self):
        return min(self.deadlines.values()) if self.deadlines else None


def own_change_revision(me, want, vms, revision_of):
    """The revision other hosts may wait for before moving a range to host ME (move_prerequisites): the
    newest change revision among the ranges that a VM of ME serves as their own VM (0 when none). ME
    publishes the revision it has applied once that is at least this one."""
    newest = 0
    for server, as_backup in want.servers.values():
        if not as_backup and vms[server]["host"] == me:
            newest = max(newest, revision_of("vms", server), revision_of("hosts", me))
    return newest
