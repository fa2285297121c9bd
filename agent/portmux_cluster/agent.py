"""portmux-agent: keeps one host's portmux in the state the cluster in etcd describes (docs/cluster.md).

One thread does everything in order: register the host key under a lease, read the whole prefix, apply
the difference to portmux, then watch from the revision after that read; the watch's responses, the lease
keepalive and a periodic reconcile (which reverts changes made by hand) are taken from one queue. Any etcd
failure ends the connection: the data plane keeps its state, and the agent connects again (next endpoint),
registers again and resyncs with a full read before watching again, changing only what differs.

After a reconcile that applied a change of a range served here, the agent publishes the revision it has
applied (applied/NAME, under its lease). A move of a range to a VM of another host is held back until that host
has published the change's revision (bounded by model.ORDERED_APPLY_WAIT_S): the new owner's host applies
a move first, so no host re-sends the range's frames to a host that no longer has it (docs/cluster.md,
"Frames in flight during a move").
"""

import argparse
import json
import os
import queue
import signal
import sys
import threading
import time

from . import etcd as etcd_conn
from . import model, options, schema
from .portmux import CtlError, Portmux

RECONCILE_EVERY_S = 5.0
RETRY_PAUSE_S = 0.5


def log(message):
    sys.stderr.write("portmux-agent: %s\n" % message)
    sys.stderr.flush()


class Agent:
    def __init__(self, args):
        self.name = args.name
        self.prefix = schema.normalize_prefix(args.prefix)
        self.settings = etcd_conn.settings_from_args(args)
        self.ttl = args.ttl
        self.host_value = {"underlay_ip": args.underlay_ip, "vxlan_mac": args.vxlan_mac.lower(),
                           "file_prefix": args.file_prefix}
        self.portmux = Portmux(args.file_prefix)
        self.status_file = args.status_file
        self.view = model.ClusterView(self.prefix, log)
        self.stopping = False
        self.events = queue.Queue()
        # What the agent last made portmux look like: a difference found later that no etcd change
        # explains was made by hand, and is reverted and counted.
        self.last_applied = None
        self.counters = {"applied_commands": 0, "apply_errors": 0, "reverted_by_hand": 0, "resyncs": 0,
                         "etcd_failures": 0}
        # Moves held back until the new owner's host has applied them, each with its deadline.
        self.held_moves = model.HeldMoves()
        # The newest change of a range served here that the last reconcile applied (what other hosts wait
        # for), and the revision last published in applied/NAME (None: not under the current lease).
        self.own_change_revision = 0
        self.published_revision = None
        self.connected = False
        self.endpoint = None
        self.applied_revision = 0
        self.last_error = ""
        self._logged_apply_errors = set()
        self.portmux_refused = {}  # command -> portmux's error, for the commands refused at the last reconcile

    # -- status ----------------------------------------------------------------------------------------------

    def write_status(self):
        status = {"name": self.name, "connected": 1 if self.connected else 0, "endpoint": self.endpoint,
                  "revision": self.view.revision, "applied_revision": self.applied_revision,
                  "refused_total": self.view.refused_total,
                  "refused": {k: {"revision": r.revision, "reason": r.reason} for k, r in self.view.refused.items()},
                  "portmux_refused": self.portmux_refused, "last_error": self.last_error, "time": time.time(),
                  "held_moves": {text: {"owner": owner, "revision": rev}
                                 for text, owner, rev in sorted(self.held_moves.deadlines)},
                  "ordered_apply_waits": self.held_moves.waits, "ordered_apply_timeouts": self.held_moves.timeouts}
        status.update(self.counters)
        tmp = "%s.tmp.%d" % (self.status_file, os.getpid())
        with open(tmp, "w") as f:
            json.dump(status, f, sort_keys=True, indent=1)
        os.replace(tmp, self.status_file)

    # -- reconcile -------------------------------------------------------------------------------------------

    def reconcile(self):
        """Makes portmux match the accepted view; returns the number of commands sent."""
        hosts, vms, addresses = self.view.accepted()
        try:
            want = model.desired_state(self.name, hosts, vms, addresses, self.portmux.vm_macs())
            actual_ranges = self.portmux.ranges()
            actual_remotes = self.portmux.remotes()
            actual_addresses = self.portmux.addresses()
        except CtlError as e:
            self.note_error("portmux %s: %s" % (self.portmux.file_prefix, e))
            # Held moves are judged again at the next reconcile that can read portmux: a deadline that
            # passed meanwhile must not make the loop reconcile without pause.
            self.held_moves.clear()
            return 0
        for name in sorted(vms):
            if vms[name]["host"] == self.name and name not in want.local_vms and any(
                    o is model.KEEP for o in (want.ranges.get(r.text) for r in vms[name]["parsed_ranges"])):
                self.note_error("VM %s is in the cluster on this host but this portmux has no VM of that name "
                                "and MAC %s: its ranges are left as they are" % (name, vms[name]["mac"]))
        if self.last_applied is not None:
            by_hand = [t for t, o in self.last_applied.items()
                       if o is not model.KEEP and want.ranges.get(t) == o and actual_ranges.get(t) != o]
            if by_hand:
                self.counters["reverted_by_hand"] += len(by_hand)
                log("ranges changed by hand, reverted to the cluster's owners: %s" % ", ".join(sorted(by_hand)))
        ops = model.plan(want, actual_ranges, actual_remotes, actual_addresses, set(vms))
        held = self.hold_back_moves(want, actual_ranges, hosts, vms)
        if held:
            # A held range keeps its current owner, so that owner's remote must stay too.
            still_used = {actual_ranges[text] for text in held}
            ops = [(command, params) for command, params in ops
                   if not (command == "/portmux/range/move" and params.split(",")[0] in held)
                   and not (command == "/portmux/remote/del" and params in still_used)]
        failed = 0
        failed_ranges = set()
        refused_now = {}
        for command, params in ops:
            try:
                self.portmux.call(command, params)
                self.counters["applied_commands"] += 1
            except CtlError as e:
                failed += 1
                failed_ranges.update(p for p in params.split(",") if p in want.ranges)
                refused_now["%s,%s" % (command, params)] = str(e)
                # The same refusal comes back at every reconcile: it is logged and counted once.
                key = (command, params, str(e))
                if key not in self._logged_apply_errors:
                    self._logged_apply_errors.add(key)
                    self.counters["apply_errors"] += 1
                    log("%s,%s refused by portmux: %s" % (command, params, e))
        self.portmux_refused = refused_now
        if len(ops) > failed:
            # Only when something changed: a refusal that persists is not logged again at every reconcile.
            log("revision %d: %d change(s) applied%s" % (self.view.revision, len(ops) - failed,
                                                          ", %d refused" % failed if failed else ""))
        # A range portmux refused is not what the agent made it: no later difference there is by hand.
        self.last_applied = {t: o for t, o in want.ranges.items() if t not in failed_ranges and t not in held}
        self.applied_revision = self.view.revision
        self.own_change_revision = model.own_change_revision(self.name, want, vms, self.view.mod_revision)
        return len(ops)

    def hold_back_moves(self, want, actual_ranges, hosts, vms):
        """The range texts whose move waits for the new owner's host now (model.move_prerequisites); a move
        that has waited ORDERED_APPLY_WAIT_S is let through and counted (ordered_apply_timeouts)."""
        waits = model.move_prerequisites(self.name, want, actual_ranges, vms, set(hosts) | {self.name},
                                         self.view.mod_revision)
        pending = model.unmet(waits, self.view.applied_revisions())
        held, expired = self.held_moves.update(pending, want.ranges, time.monotonic())
        for text, host, revision in expired:
            log("%s: host %s has not applied revision %d within %g s: moving it to %s anyway"
                % (text, host, revision, self.held_moves.wait_s, want.ranges[text]))
        return held

    def note_error(self, message):
        if message != self.last_error:
            log(message)
        self.last_error = message

    # -- etcd ------------------------------------------------------------------------------------------------

    def register(self, client):
        lease = client.lease(self.ttl)
        client.put(schema.key_of(self.prefix, "hosts", self.name), schema.encode_value(self.host_value), lease=lease)
        self.published_revision = None  # a new lease: applied/NAME is written again under it
        return lease

    def publish_applied(self, client, lease):
        """Writes applied/NAME once a reconcile has applied a newer change of a range served here: only such a
        change can be waited for, so a move elsewhere costs no write (and the other agents' applied/
        writes, which change no range, never lead to one: no agent writes because another one wrote)."""
        if self.published_revision is not None and self.published_revision >= self.own_change_revision:
            return
        client.put(schema.key_of(self.prefix, "applied", self.name),
                   schema.encode_value({"revision": self.applied_revision}), lease=lease)
        self.published_revision = self.applied_revision

    def on_watch(self, response):
        self.events.put(response)

    def session(self):
        """One connection to etcd, until it fails (raises) or the agent stops."""
        self.endpoint, client = self.settings.connect()
        try:
            lease = self.register(client)
            items, revision = etcd_conn.read_prefix(client, self.prefix)
            self.view.reset(items, revision)
            self.connected = True
            self.last_error = ""
            self.reconcile()
            self.publish_applied(client, lease)
            self.write_status()
            self.events = queue.Queue()
            watch_id = client.add_watch_prefix_callback(self.prefix, self.on_watch, start_revision=revision + 1)
            next_keepalive = time.monotonic() + self.ttl / 3.0
            next_reconcile = time.monotonic() + RECONCILE_EVERY_S
            while not self.stopping:
                timeout = 0.2
                held_deadline = self.held_moves.next_deadline()
                if held_deadline is not None:
                    timeout = min(timeout, max(0.0, held_deadline - time.monotonic()))
                try:
                    item = self.events.get(timeout=timeout)
                except queue.Empty:
                    item = None
                if isinstance(item, Exception):
                    raise item
                if item is not None:
                    changed = self.apply_events(item)
                    # Take every response already queued before reconciling once for all of them.
                    while True:
                        try:
                            more = self.events.get_nowait()
                        except queue.Empty:
                            break
                        if isinstance(more, Exception):
                            raise more
                        changed = self.apply_events(more) or changed
                    # Another host's applied/ key alone changes nothing here, unless a move waits for it.
                    if changed or self.held_moves.deadlines:
                        self.reconcile()
                        self.publish_applied(client, lease)
                        self.write_status()
                elif held_deadline is not None and time.monotonic() >= held_deadline:
                    self.reconcile()
                    self.publish_applied(client, lease)
                    self.write_status()
                now = time.monotonic()
                if now >= next_keepalive:
                    if not self.keepalive(client, lease):
                        lease = self.register(client)
                        self.publish_applied(client, lease)
                    next_keepalive = now + self.ttl / 3.0
                if now >= next_reconcile:
                    self.reconcile()
                    self.publish_applied(client, lease)
                    self.write_status()
                    next_reconcile = now + RECONCILE_EVERY_S
            # The lease is not revoked: an agent restarted within the TTL (an upgrade) is never seen down;
            # one that stays stopped is down TTL seconds later, as if it had died.
            client.cancel_watch(watch_id)
        finally:
            self.connected = False
            try:
                client.close()
            except Exception:
                pass

    def keepalive(self, client, lease):
        """Refreshes the lease; False when it has expired (the host key is gone: register again)."""
        answers = list(client.refresh_lease(lease.id))
        ttl = answers[0].TTL if answers else 0
        if ttl <= 0:
            log("lease %x expired: registering %s again" % (lease.id, self.name))
            return False
        return True

    def apply_events(self, response):
        """Feeds one watch response to the view; True when it changed more than applied/ keys."""
        applied_prefix = schema.key_of(self.prefix, "applied", "")
        changed = False
        for event in response.events:
            key = event.key.decode("utf-8", errors="replace")
            if not key.startswith(applied_prefix):
                changed = True
            if type(event).__name__ == "DeleteEvent":
                self.view.delete(key)
            else:
                self.view.put(key, event.value, event.mod_revision)
        self.view.revision = max(self.view.revision, response.header.revision)
        return changed

    def run(self):
        first = True
        while not self.stopping:
            if not first:
                self.counters["resyncs"] += 1
            first = False
            try:
                self.session()
            except Exception as e:  # an etcd failure (gRPC, a closed channel) or anything else: never a crash
                self.counters["etcd_failures"] += 1
                detail = e.details() if hasattr(e, "details") and callable(e.details) else str(e)
                self.note_error("etcd %s: %s (data plane keeps its state; reconnecting)"
                                % (self.endpoint, (detail or type(e).__name__)[:200]))
                try:
                    self.write_status()
                except OSError:
                    pass
                time.sleep(RETRY_PAUSE_S)
        self.write_status()


def quiet_closed_watch_threads():
    """python3-etcd3's watch thread ends with "Channel closed" when its client is closed (every session
    end): that is expected, not worth a traceback. Other threads' errors are reported as usual."""
    default = threading.excepthook

    def hook(args):
        name = args.thread.name if args.thread is not None else ""
        if name.startswith("etcd3_watch") and isinstance(args.exc_value, ValueError):
            return
        default(args)

    threading.excepthook = hook


def parse_args(argv):
    p = argparse.ArgumentParser(prog="portmux-agent", description=__doc__.split("\n")[0])
    p.add_argument("--name", required=True, help="this host's name in the cluster (hosts/NAME)")
    p.add_argument("--file-prefix", default="portmux", help="the local portmux's EAL --file-prefix")
    p.add_argument("--underlay-ip", help="this host's vxlan.local_ip (default: read from portmux)")
    p.add_argument("--vxlan-mac",
                   help="the next-hop MAC other hosts use toward this one (its uplink MAC on a shared segment)")
    p.add_argument("--ttl", type=int, default=3, help="lease TTL in seconds: how soon a dead host fails over")
    p.add_argument("--status-file", help="where the agent's status is written (default "
                                         "/run/portmux-agent/NAME.json)")
    p.add_argument("--status", action="store_true", help="print the status of the agent of --name and exit")
    options.add_settings_arguments(p)
    args = p.parse_args(argv)
    if not schema.NAME_RE.match(args.name):
        p.error("--name %r: 1 to 15 of [A-Za-z0-9.-]" % args.name)
    if args.ttl < 1:
        p.error("--ttl must be at least 1")
    if args.status_file is None:
        args.status_file = "/run/portmux-agent/%s.json" % args.name
    return p, args


def fill_from_portmux(args):
    """--underlay-ip defaults to the local portmux's vxlan.local_ip (portmux does not show its uplink's
    next hop as others see it, so --vxlan-mac is always given)."""
    if not args.underlay_ip:
        args.underlay_ip = Portmux(args.file_prefix).call("/portmux/info").get("vxlan_local_ip")
        if not args.underlay_ip:
            raise CtlError("portmux %s has no vxlan: the cluster needs it (docs/remote-vms.md)" % args.file_prefix)


def main(argv=None):
    parser, args = parse_args(argv)
    if args.status:
        try:
            with open(args.status_file) as f:
                print(f.read().rstrip())
            return 0
        except OSError as e:
            print("portmux-agent: %s: %s" % (args.status_file, e.strerror), file=sys.stderr)
            return 1
    try:
        import jsonschema  # noqa: F401  (every value is checked against conf/cluster/*.schema.json)
    except ImportError:
        print("portmux-agent: python3-jsonschema is not installed", file=sys.stderr)
        return 1
    if not args.vxlan_mac:
        parser.error("--vxlan-mac is required (the next hop other hosts send this host's frames to)")
    try:
        fill_from_portmux(args)
    except CtlError as e:
        print("portmux-agent: %s" % e, file=sys.stderr)
        return 1
    try:
        schema.validate_schema("hosts", {"underlay_ip": args.underlay_ip, "vxlan_mac": args.vxlan_mac.lower(),
                                         "file_prefix": args.file_prefix})
    except schema.BadValue as e:
        parser.error("this host's key would be refused: %s" % e)
    os.makedirs(os.path.dirname(os.path.abspath(args.status_file)), exist_ok=True)
    agent = Agent(args)
    quiet_closed_watch_threads()

    def stop(signum, frame):
        agent.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log("%s: portmux %s, etcd %s, prefix %s, lease TTL %d s" % (args.name, args.file_prefix, args.endpoints,
                                                               agent.prefix, args.ttl))
    agent.run()
    return 0
