"""The command-line options shared by portmux-agent and `portmuxctl cluster`: how to reach etcd.

Kept apart from etcd.py so that defining them does not import gRPC (portmuxctl builds its whole parser on
every run, and most of its commands never talk to etcd)."""

DEFAULT_ENDPOINT = "http://127.0.0.1:2379"


def add_settings_arguments(parser):
    """--etcd/--endpoints and the TLS/auth options, the same for portmux-agent and portmuxctl cluster."""
    parser.add_argument("--etcd", "--endpoints", dest="endpoints", default=DEFAULT_ENDPOINT,
                        help="etcd client URLs, comma-separated (default %s)" % DEFAULT_ENDPOINT)
    parser.add_argument("--cacert", help="CA certificate that signed the etcd servers' certificates (TLS)")
    parser.add_argument("--cert", help="client certificate (etcd --client-cert-auth)")
    parser.add_argument("--key", help="the client certificate's private key")
    parser.add_argument("--user", help="etcd user (with --password, or USER:PASSWORD)")
    parser.add_argument("--password", help="the etcd user's password")
    parser.add_argument("--prefix", default="/portmux/", help="the cluster's key prefix (default /portmux/)")
    parser.add_argument("--etcd-timeout", type=float, default=2.0, help="seconds per etcd call (default 2)")
