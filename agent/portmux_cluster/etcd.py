"""Connecting to etcd (python3-etcd3 over gRPC) with several endpoints and optional TLS and user.

python3-etcd3 0.12 talks to one endpoint per client; Endpoints rotates through the list, so that a member
that is down is skipped at the next connection. Reads that need the store's revision (a full read before a
watch) use the raw Range call, whose header carries it.
"""

import os
import urllib.parse

# gRPC's core writes its own TLS and connection errors to stderr; every failure is reported once, with its
# endpoint, by the agent and by portmuxctl instead (set GRPC_VERBOSITY to see them).
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import etcd3  # noqa: E402
from etcd3 import etcdrpc  # noqa: E402

from .options import DEFAULT_ENDPOINT  # noqa: E402


class EtcdSettings:
    def __init__(self, endpoints, ca_cert=None, cert=None, key=None, user=None, password=None, timeout=2.0):
        self.endpoints = [parse_endpoint(e) for e in endpoints] or [parse_endpoint(DEFAULT_ENDPOINT)]
        self.ca_cert, self.cert, self.key = ca_cert, cert, key
        self.user, self.password = user, password
        self.timeout = timeout
        self._next = 0

    def connect(self):
        """A client for the next endpoint in turn (endpoint string, client). Raises on a bad TLS setting."""
        host, port = self.endpoints[self._next % len(self.endpoints)]
        self._next += 1
        client = etcd3.client(host=host, port=port, ca_cert=self.ca_cert, cert_key=self.key,
                              cert_cert=self.cert, timeout=self.timeout, user=self.user, password=self.password)
        return "%s:%d" % (host, port), client


def parse_endpoint(text):
    """host:port from "http://h:p", "https://h:p" or "h:p" (the scheme only says TLS or not; TLS is set by
    --cacert)."""
    if "://" not in text:
        text = "http://" + text
    url = urllib.parse.urlparse(text)
    if not url.hostname:
        raise ValueError("etcd endpoint %r: no host" % text)
    return url.hostname, url.port or 2379


def settings_from_args(args):
    user, password = args.user, args.password
    if user and ":" in user and password is None:
        user, password = user.split(":", 1)
    endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    return EtcdSettings(endpoints, ca_cert=args.cacert, cert=args.cert, key=args.key, user=user,
                        password=password, timeout=args.etcd_timeout)


def prefix_range_end(prefix):
    """The end of the key range that holds every key starting with PREFIX (etcd's convention)."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return bytes(raw)


def read_prefix(client, prefix):
    """[(key, value, mod_revision)] of every key under PREFIX and the store revision of that read."""
    request = etcdrpc.RangeRequest(key=prefix.encode(), range_end=prefix_range_end(prefix))
    response = client.kvstub.Range(request, client.timeout, credentials=client.call_credentials,
                                   metadata=client.metadata)
    items = [(kv.key, kv.value, kv.mod_revision) for kv in response.kvs]
    return items, response.header.revision


class ModifiedSince:
    """A transaction compare that holds when no key in [KEY, RANGE_END) was modified after REVISION: the
    whole cluster's VM keys as read, in one compare, however many there are."""

    def __init__(self, key, range_end, revision):
        self.key, self.range_end, self.revision = key, range_end, revision

    def build_message(self):
        compare = etcdrpc.Compare()
        compare.key = self.key.encode()
        compare.range_end = self.range_end
        compare.target = etcdrpc.Compare.MOD
        compare.result = etcdrpc.Compare.LESS
        compare.mod_revision = self.revision + 1
        return compare
