"""portmux's cluster layer: the etcd schema, the per-host agent and the edits of `portmuxctl cluster`."""
