"""The local portmux through its telemetry socket, with the socket code of scripts/portmuxctl."""

import importlib.machinery
import importlib.util
import os

# scripts/portmuxctl of the source tree, or PREFIX/bin/portmuxctl when this package is installed in
# PREFIX/lib/portmux/agent/portmux_cluster.
_HERE = os.path.dirname(os.path.realpath(__file__))
_CTL_CANDIDATES = [os.path.normpath(os.path.join(_HERE, "..", "..", "scripts", "portmuxctl")),
                   os.path.normpath(os.path.join(_HERE, "..", "..", "..", "..", "bin", "portmuxctl"))]
_CTL_PATH = next((p for p in _CTL_CANDIDATES if os.path.isfile(p)), _CTL_CANDIDATES[0])


def load_portmuxctl():
    """scripts/portmuxctl as a module (it has no .py suffix, so it is loaded by path)."""
    loader = importlib.machinery.SourceFileLoader("portmuxctl", _CTL_PATH)
    spec = importlib.util.spec_from_loader("portmuxctl", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


ctl = load_portmuxctl()
CtlError = ctl.CtlError


class Portmux:
    """One telemetry connection, opened again after a failure (portmux restarted)."""

    def __init__(self, file_prefix, timeout=5.0):
        self.file_prefix = file_prefix
        self.timeout = timeout
        self._client = None

    def _connect(self):
        if self._client is None:
            args = type("Args", (), {"socket": None, "file_prefix": self.file_prefix})()
            self._client = ctl.Client(ctl.Telemetry(ctl.find_socket(args), self.timeout))
        return self._client

    def close(self):
        if self._client is not None:
            self._client.tel.close()
            self._client = None

    def _do(self, method, *args):
        try:
            return getattr(self._connect(), method)(*args)
        except CtlError:
            # A refusal leaves the connection usable; a socket that is gone is opened again next time.
            if not self._still_connected():
                self.close()
            raise

    def _still_connected(self):
        try:
            self._client.raw("/portmux/info")
            return True
        except Exception:
            return False

    def call(self, command, params=None):
        return self._do("call", command, params)

    def ranges(self):
        """range text -> owner, every page."""
        return {text: owner for owner, text in self._do_all_ranges()}

    def _do_all_ranges(self):
        try:
            return ctl.all_ranges(self._connect(), None)
        except CtlError:
            self.close()
            raise

    def remotes(self):
        """name -> (host, mac) of every remote (an empty dict without vxlan)."""
        out = {}
        try:
            pages = self._connect().pages("/portmux/remotes")
        except CtlError:
            self.close()
            raise
        for page in pages:
            for entry in ctl.sorted_entries(page):
                out[entry["name"]] = (entry.get("host"), entry.get("mac"))
        return out

    def vm_macs(self):
        """name -> MAC of every local VM."""
        out = {}
        try:
            pages = self._connect().pages("/portmux/vms")
        except CtlError:
            self.close()
            raise
        for page in pages:
            for entry in ctl.sorted_entries(page):
                out[entry["name"]] = str(entry.get("mac", "")).lower()
        return out

    def addresses(self):
        """The further shared addresses (the first one is the configuration's and never changes)."""
        return set(self.call("/portmux/info").get("more_shared_ips", []))
