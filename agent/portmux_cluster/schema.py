"""The cluster's keys in etcd and the checks of their values (docs/cluster.md, conf/cluster/*.schema.json).

Keys live under a prefix (default "/portmux/"):
  PREFIX hosts/NAME      one live host, written by its own agent under a lease (alive = key present)
  PREFIX vms/NAME        a VM: its host, MAC, ranges and optional backup VM
  PREFIX addresses/IPV4  a further shared address
  PREFIX applied/NAME    the revision host NAME's agent has applied, written by that agent under its lease
                         (the other hosts wait for it before moving a range to NAME: docs/cluster.md)

parse_value() turns one key and its bytes into a checked value or raises BadValue with the reason; the
checks that span keys (overlaps, unknown backups) are in model.py.
"""

import bisect
import ipaddress
import json
import os
import re

DEFAULT_PREFIX = "/portmux/"
KINDS = ("hosts", "vms", "addresses", "applied")
# A value larger than this is refused unread: 512 ranges of the longest form fit in about 16 KiB.
MAX_VALUE_BYTES = 16384
# Cluster names have no "_", so that the remote names "host_NAME" cannot be taken by a cluster VM.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,14}$")
RANGE_RE = re.compile(r"^(?:(?P<addr>[0-9.]{7,15})/)?(?:(?P<proto>tcp|udp):)?(?P<lo>[0-9]{1,5})(?:-(?P<hi>[0-9]{1,5}))?$")

SCHEMA_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "conf", "cluster"))
SCHEMA_FILES = {"hosts": "host.schema.json", "vms": "vm.schema.json", "addresses": "address.schema.json",
                "applied": "applied.schema.json"}


class BadValue(Exception):
    """A key or value the cluster refuses; the message says why (and is logged once, counted)."""


def normalize_prefix(prefix):
    if not prefix.startswith("/"):
        prefix = "/" + prefix
    return prefix if prefix.endswith("/") else prefix + "/"


def key_of(prefix, kind, name):
    return "%s%s/%s" % (prefix, kind, name)


def split_key(prefix, key):
    """(kind, name) of a key under PREFIX; BadValue for a key the schema does not know."""
    rest = key[len(prefix):]
    kind, sep, name = rest.partition("/")
    if not sep or kind not in KINDS:
        raise BadValue("unknown key (expected %s{hosts,vms,addresses,applied}/NAME)" % prefix)
    if kind == "addresses":
        check_ipv4(name, "key")
    elif not NAME_RE.match(name):
        raise BadValue("%s name %r: 1 to 15 of [A-Za-z0-9.-], starting with a letter or digit" % (kind[:-1], name))
    return kind, name


def check_ipv4(text, what):
    try:
        address = ipaddress.IPv4Address(text)
    except ValueError:
        raise BadValue("%s %r is not an IPv4 address" % (what, text))
    if address.is_multicast or address.is_unspecified or str(address) != text:
        raise BadValue("%s %r is not a unicast IPv4 address in dotted decimal" % (what, text))


class PortRange:
    """One range as portmux writes it: [ADDRESS/][tcp:|udp:]FROM[-TO]; no protocol means both."""

    __slots__ = ("address", "protos", "lo", "hi", "text")

    def __init__(self, text):
        m = RANGE_RE.match(text)
        if not m:
            raise BadValue("range %r: expected [ADDRESS/][tcp:|udp:]FROM[-TO]" % text)
        self.address = m.group("addr") or ""
        if self.address:
            check_ipv4(self.address, "range %r: address" % text)
        proto = m.group("proto")
        self.protos = frozenset([proto]) if proto else frozenset(["tcp", "udp"])
        self.lo = int(m.group("lo"))
        self.hi = int(m.group("hi")) if m.group("hi") is not None else self.lo
        if self.hi > 65535:
            raise BadValue("range %r: port above 65535" % text)
        if self.lo > self.hi:
            raise BadValue("range %r: FROM is above TO" % text)
        # The form portmux prints in /portmux/ranges, so that the agent compares like with like.
        ports = str(self.lo) if self.lo == self.hi else "%d-%d" % (self.lo, self.hi)
        body = ("%s:%s" % (proto, ports)) if proto else ports
        self.text = ("%s/%s" % (self.address, body)) if self.address else body

    def overlaps(self, other):
        return (self.address == other.address and bool(self.protos & other.protos)
                and self.lo <= other.hi and other.lo <= self.hi)

    def __repr__(self):
        return self.text


class RangeIndex:
    """Ranges that do not overlap, by address and protocol, sorted by first port: finding a collision costs
    a binary search (the agent checks every range of the cluster at every reconcile)."""

    def __init__(self):
        self._by_key = {}  # (address, proto) -> sorted list of (lo, hi, PortRange, owner)

    def collision(self, r):
        """(PortRange, owner) of a range in the index that overlaps R, or None."""
        for proto in sorted(r.protos):
            spans = self._by_key.get((r.address, proto))
            if not spans:
                continue
            i = bisect.bisect_left(spans, (r.lo,))
            # Stored spans do not overlap each other: only the neighbours of R's place can overlap it.
            for j in (i - 1, i):
                if 0 <= j < len(spans) and spans[j][0] <= r.hi and r.lo <= spans[j][1]:
                    return spans[j][2], spans[j][3]
        return None

    def add(self, r, owner):
        for proto in r.protos:
            bisect.insort(self._by_key.setdefault((r.address, proto), []), (r.lo, r.hi, r, owner),
                          key=lambda span: span[:2])


def _validator(kind):
    import jsonschema  # python3-jsonschema
    with open(os.path.join(SCHEMA_DIR, SCHEMA_FILES[kind])) as f:
        schema = json.load(f)
    return jsonschema.Draft7Validator(schema)


_VALIDATORS = {}


def validate_schema(kind, value):
    if kind not in _VALIDATORS:
        _VALIDATORS[kind] = _validator(kind)
    errors = sorted(_VALIDATORS[kind].iter_errors(value), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.path) or "value"
        raise BadValue("%s: %s" % (where, e.message[:200]))


def parse_value(kind, name, raw):
    """The checked value of one key: a dict; ranges of a VM as PortRange objects in `parsed_ranges`."""
    if raw is None:
        raise BadValue("no value")
    if len(raw) > MAX_VALUE_BYTES:
        raise BadValue("value of %d bytes (at most %d)" % (len(raw), MAX_VALUE_BYTES))
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise BadValue("not JSON: %s" % str(e)[:120])
    validate_schema(kind, value)
    if kind == "hosts":
        check_ipv4(value["underlay_ip"], "underlay_ip")
    elif kind == "addresses":
        if value["address"] != name:
            raise BadValue("address %r differs from the key's %r" % (value["address"], name))
    elif kind == "vms":
        ranges = [PortRange(text) for text in value["ranges"]]
        index = RangeIndex()
        for r in ranges:
            hit = index.collision(r)
            if hit is not None:
                raise BadValue("ranges %s and %s overlap" % (hit[0].text, r.text))
            index.add(r, name)
        if value.get("backup") == name:
            raise BadValue("backup: a VM cannot be its own backup")
        value["parsed_ranges"] = ranges
    return value


def encode_value(value):
    """The bytes written to etcd for a value (without the parsed extras)."""
    clean = {k: v for k, v in value.items() if k != "parsed_ranges"}
    return json.dumps(clean, sort_keys=True, separators=(",", ":")).encode()


def remote_name(host):
    """The remote under which the other hosts' portmux know host HOST. One remote per host, not per VM: the
    remote only says where to send the frames (HOST's portmux delivers them to its VM), a range moving
    between two VMs of one host changes nothing on the other hosts, and every live host is a VXLAN peer
    of every other one whether or not it serves a range now."""
    return "host_%s" % host


def is_remote_name(name):
    return name.startswith("host_") and bool(NAME_RE.match(name[5:]))
