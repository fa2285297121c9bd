"""`portmuxctl cluster`: edits of the cluster's VMs, each one etcd transaction, and the status views.

Every edit reads all VM keys, changes a copy, checks the result as a whole (no two ranges of the cluster
overlap, backups are VMs) and writes it in ONE transaction that holds only if no VM key changed since the
read (one compare over the whole vms/ key range, plus one per written key, which also catches a key
deleted in between). Moving a range from a VM on host A to a VM on host B is therefore one atomic step. A
transaction that fails because someone else edited in between is retried from a fresh read (a few times),
then reported as a conflict.
"""

import json
import sys
import time

from . import etcd as etcd_conn
from . import model, schema
from .schema import BadValue

EDIT_ATTEMPTS = 5


class ClusterError(Exception):
    """Refused edit or unreachable etcd: printed as `portmuxctl: cluster: ...`, exit status 1."""


class VmTable:
    """The VM keys as read: name -> [value, mod_revision]; bad values are kept apart (not editable)."""

    def __init__(self, prefix, items):
        self.prefix = prefix
        self.vms, self.bad = {}, {}
        for key, raw, mod in items:
            key = key.decode("utf-8", errors="replace")
            try:
                kind, name = schema.split_key(prefix, key)
                self.vms[name] = [schema.parse_value(kind, name, raw), mod]
            except BadValue as e:
                self.bad[key] = (str(e), mod)

    def mod_of(self, name):
        """The mod_revision of NAME's key as read (good or bad value), None if there was none."""
        if name in self.vms:
            return self.vms[name][1]
        bad = self.bad.get(schema.key_of(self.prefix, "vms", name))
        return bad[1] if bad else None

    def get(self, name):
        if name not in self.vms:
            raise ClusterError("no VM %r in the cluster" % name)
        return self.vms[name][0]

    def owner_of(self, text):
        for name, (value, _) in self.vms.items():
            if text in [r.text for r in value["parsed_ranges"]]:
                return name
        return None


def check_changes(result, changed):
    """Refuses an edit whose CHANGED VMs would overlap any range of the cluster or name a backup that is
    not a VM. Only what the edit changes is judged: a bad value someone else wrote (which the agents
    refuse) does not block unrelated edits."""
    changed = [n for n in changed if n in result]
    for name in changed:
        backup = result[name].get("backup")
        if backup is not None and backup not in result:
            raise ClusterError("VM %s: backup %r is not a VM of the cluster" % (name, backup))
    for name in changed:
        for r in result[name]["parsed_ranges"]:
            for other_name in sorted(result):
                if other_name == name:
                    continue
                for other in result[other_name]["parsed_ranges"]:
                    if r.overlaps(other):
                        raise ClusterError("range %s of VM %s overlaps %s of VM %s"
                                           % (r.text, name, other.text, other_name))


def checked(name, value):
    """VALUE as the agents will read it (schema and range checks), or ClusterError."""
    try:
        return schema.parse_value("vms", name, schema.encode_value(value))
    except BadValue as e:
        raise ClusterError("VM %s: %s" % (name, e))


def run_edit(client, prefix, change):
    """CHANGE(table) returns {name: new value or None to delete}; written in one transaction. Returns the
    number of attempts it took."""
    vms_prefix = prefix + "vms/"
    for attempt in range(1, EDIT_ATTEMPTS + 1):
        items, revision = etcd_conn.read_prefix(client, vms_prefix)
        table = VmTable(prefix, items)
        changes = change(table)
        result = {n: v for n, (v, _) in table.vms.items()}
        for name, value in changes.items():
            if value is None:
                result.pop(name, None)
            else:
                result[name] = checked(name, value)
        check_changes(result, changes)
        compares = [etcd_conn.ModifiedSince(vms_prefix, etcd_conn.prefix_range_end(vms_prefix), revision)]
        success = []
        for name, value in changes.items():
            key = schema.key_of(prefix, "vms", name)
            if table.mod_of(name) is not None:
                compares.append(client.transactions.mod(key) == table.mod_of(name))
            else:
                compares.append(client.transactions.version(key) == 0)
            if value is None:
                success.append(client.transactions.delete(key))
            else:
                success.append(client.transactions.put(key, schema.encode_value(value)))
        ok, _ = client.transaction(compare=compares, success=success, failure=[])
        if ok:
            return attempt
        time.sleep(0.05 * attempt)
    raise ClusterError("the VMs kept changing under this edit (%d attempts): try again" % EDIT_ATTEMPTS)


# -- the edits ---------------------------------------------------------------------------------------------


# What the last attempt of an edit did, in words: printed once the transaction has committed.
done = {"text": ""}


def vm_add(args):
    def change(table):
        if args.name in table.vms or schema.key_of(args.prefix, "vms", args.name) in table.bad:
            raise ClusterError("VM %s already exists" % args.name)
        value = {"host": args.host, "mac": args.mac.lower(), "ranges": [schema_text(r) for r in args.range or []]}
        if args.backup:
            value["backup"] = args.backup
        done["text"] = "added VM %s on host %s with %d range(s)" % (args.name, args.host, len(value["ranges"]))
        return {args.name: value}
    return change


def vm_del(args):
    def change(table):
        if schema.key_of(args.prefix, "vms", args.name) in table.bad:
            done["text"] = "deleted VM %s (its value was refused)" % args.name
            return {args.name: None}  # a value the agents refuse can always be deleted
        table.get(args.name)
        users = [n for n, (v, _) in table.vms.items() if v.get("backup") == args.name]
        if users:
            raise ClusterError("VM %s is the backup of %s: change their backup first" % (args.name, ", ".join(users)))
        done["text"] = "deleted VM %s" % args.name
        return {args.name: None}
    return change


def schema_text(text):
    try:
        return schema.PortRange(text).text
    except BadValue as e:
        raise ClusterError(str(e))


def move_range(text, to, expected_from=None):
    """RANGE (exactly as a VM owns it) from its owner to VM TO, in one transaction."""
    def change(table):
        wanted = schema_text(text)
        owner = table.owner_of(wanted)
        if owner is None:
            raise ClusterError("no VM owns exactly %s (see portmuxctl cluster show)" % wanted)
        if expected_from is not None and owner != expected_from:
            raise ClusterError("%s belongs to VM %s, not %s" % (wanted, owner, expected_from))
        target = table.get(to)
        if owner == to:
            done["text"] = "%s already belongs to VM %s" % (wanted, to)
            return {}
        source = dict(table.get(owner))
        source["ranges"] = [r for r in source["ranges"] if schema_text(r) != wanted]
        dest = dict(target)
        dest["ranges"] = list(dest["ranges"]) + [wanted]
        done["text"] = "moved %s from VM %s (host %s) to VM %s (host %s)" % (
            wanted, owner, source["host"], to, dest["host"])
        return {owner: source, to: dest}
    return change


def range_add(args):
    def change(table):
        value = dict(table.get(args.vm))
        value["ranges"] = list(value["ranges"]) + [schema_text(args.range)]
        done["text"] = "added %s to VM %s" % (value["ranges"][-1], args.vm)
        return {args.vm: value}
    return change


def range_del(args):
    def change(table):
        wanted = schema_text(args.range)
        owner = table.owner_of(wanted)
        if owner is None:
            raise ClusterError("no VM owns exactly %s" % wanted)
        value = dict(table.get(owner))
        value["ranges"] = [r for r in value["ranges"] if schema_text(r) != wanted]
        done["text"] = "removed %s from VM %s" % (wanted, owner)
        return {owner: value}
    return change


# -- views -------------------------------------------------------------------------------------------------


def show(client, args):
    items, revision = etcd_conn.read_prefix(client, args.prefix)
    entries = []
    for key, raw, mod in items:
        entry = {"key": key.decode("utf-8", errors="replace"), "mod_revision": mod}
        try:
            entry["value"] = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            entry["raw"] = raw[:200].decode("utf-8", errors="replace")
        entries.append(entry)
    if args.json:
        print(json.dumps({"revision": revision, "keys": entries}, indent=2, sort_keys=True))
        return
    print("revision %d, %d keys under %s" % (revision, len(entries), args.prefix))
    for e in entries:
        shown = json.dumps(e["value"], sort_keys=True) if "value" in e else "(not JSON) %r" % e["raw"]
        print("%s  %s  @%d" % (e["key"], shown, e["mod_revision"]))


def status(client, args):
    """Live hosts, every VM with who serves its ranges now, and the keys the agents refuse."""
    items, revision = etcd_conn.read_prefix(client, args.prefix)
    view = model.ClusterView(args.prefix)
    view.reset(items, revision)
    hosts, vms, addresses = view.accepted()
    alive = set(hosts)
    vm_rows = []
    for name in sorted(vms):
        server = model.serving_vm(name, vms, alive)
        state = "up" if server == name else ("failed over to %s" % server if server else "host down, no live backup")
        vm_rows.append({"vm": name, "host": vms[name]["host"], "ranges": [r.text for r in vms[name]["parsed_ranges"]],
                        "backup": vms[name].get("backup"), "state": state})
    refused = {k: r.reason for k, r in sorted(view.refused.items())}
    # The revision each live host's agent says it has applied (applied/NAME): a host whose agent lags
    # holds up moves to it on the other hosts (docs/cluster.md, "Frames in flight during a move").
    applied = {n: rev for n, rev in view.applied_revisions().items() if n in hosts}
    out = {"revision": revision, "hosts": {n: hosts[n] for n in sorted(hosts)}, "vms": vm_rows,
           "addresses": sorted(addresses), "refused": refused, "applied": applied}
    if args.json:
        print(json.dumps(out, indent=2, sort_keys=True))
        return
    print("revision %d; %d live host(s), %d VM(s)%s" % (revision, len(hosts), len(vms),
                                                      ", %d refused key(s)" % len(refused) if refused else ""))
    for n in sorted(hosts):
        h = hosts[n]
        print("host %-15s underlay %-15s next hop %s  portmux %s  applied %s" % (
            n, h["underlay_ip"], h["vxlan_mac"], h["file_prefix"], "@%d" % applied[n] if n in applied else "-"))
    for row in vm_rows:
        print("vm   %-15s on %-15s %-28s %s" % (row["vm"], row["host"], row["state"], " ".join(row["ranges"]) or "-"))
    for key, reason in refused.items():
        print("refused %s: %s" % (key, reason))


def main(args):
    """Runs `portmuxctl cluster ...`; returns the exit status."""
    args.prefix = schema.normalize_prefix(args.prefix)
    try:
        settings = etcd_conn.settings_from_args(args)
    except ValueError as e:
        print("portmuxctl: cluster: %s" % e, file=sys.stderr)
        return 2
    # A member that is down is skipped: the same command is tried on the next endpoint.
    for attempt in range(len(settings.endpoints)):
        endpoint, client = settings.connect()
        try:
            return run_command(client, args)
        except ClusterError as e:
            print("portmuxctl: cluster: %s" % e, file=sys.stderr)
            return 1
        except etcd_conn.etcd3.exceptions.ConnectionFailedError as e:
            failure = "etcd %s: cannot connect (%s)" % (endpoint, e)
        except Exception as e:  # gRPC and python3-etcd3 failures: TLS, permission, timeouts
            detail = e.details() if hasattr(e, "details") and callable(e.details) else str(e)
            failure = "etcd %s: %s" % (endpoint, detail or type(e).__name__)
            if "permission" in failure.lower() or "authenticat" in failure.lower():
                break
        finally:
            client.close()
    print("portmuxctl: cluster: %s" % failure, file=sys.stderr)
    return 1


def run_command(client, args):
    if args.cluster_command == "show":
        show(client, args)
        return 0
    if args.cluster_command == "status":
        status(client, args)
        return 0
    if args.cluster_command == "vm":
        change = {"add": vm_add, "del": vm_del}.get(args.cluster_vm_command)
        change = change(args) if change else move_range(args.range, args.to, expected_from=args.name)
    else:
        sub = args.cluster_range_command
        change = (move_range(args.range, args.vm) if sub == "move"
                  else range_add(args) if sub == "add" else range_del(args))
    attempts = run_edit(client, args.prefix, change)
    if attempts > 1:
        print("portmuxctl: cluster: applied after %d attempts (concurrent edits)" % attempts, file=sys.stderr)
    print(done["text"])
    return 0
