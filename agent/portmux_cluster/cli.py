"""The `cluster` subcommand's arguments for portmuxctl (the commands themselves are in edit.py)."""

from . import options


def add_parser(sub):
    """The `cluster` subcommand of portmuxctl: its own options (etcd, TLS), its own subcommands."""
    c = sub.add_parser("cluster", help="the cluster in etcd: VMs, ranges, live hosts (see docs/cluster.md)")
    options.add_settings_arguments(c)
    cs = c.add_subparsers(dest="cluster_command", metavar="vm|range|status|show")
    cs.required = True
    v = cs.add_parser("vm", help="add, delete a VM; move one of its ranges")
    vs = v.add_subparsers(dest="cluster_vm_command", metavar="add|del|move-range")
    vs.required = True
    x = vs.add_parser("add", help="a VM of HOST with MAC and ranges")
    x.add_argument("name", metavar="NAME")
    x.add_argument("--host", required=True)
    x.add_argument("--mac", required=True)
    x.add_argument("--range", action="append", metavar="RANGE", help="repeat for several ranges")
    x.add_argument("--backup", metavar="VM", help="the VM that serves its ranges while its host is down")
    vs.add_parser("del", help="delete a VM (its ranges become unowned)").add_argument("name", metavar="NAME")
    x = vs.add_parser("move-range", help="move RANGE of VM to VM TO (one transaction)")
    x.add_argument("name", metavar="VM")
    x.add_argument("range", metavar="RANGE")
    x.add_argument("to", metavar="TO")
    r = cs.add_parser("range", help="move, add or delete one range")
    rs = r.add_subparsers(dest="cluster_range_command", metavar="move|add|del")
    rs.required = True
    x = rs.add_parser("move", help="give RANGE to VM, whichever host either is on (one transaction)")
    x.add_argument("range", metavar="RANGE")
    x.add_argument("vm", metavar="VM")
    x = rs.add_parser("add", help="give a new RANGE to VM")
    x.add_argument("vm", metavar="VM")
    x.add_argument("range", metavar="RANGE")
    rs.add_parser("del", help="remove RANGE from its VM").add_argument("range", metavar="RANGE")
    cs.add_parser("status", help="live hosts, VMs and who serves them, refused keys")
    cs.add_parser("show", help="every key under the prefix with its revision")
