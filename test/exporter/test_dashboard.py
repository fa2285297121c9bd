#!/usr/bin/python3
"""conf/grafana/portmux.json: valid JSON, its Prometheus data source a variable, every query valid PromQL
(checked by `promtool check rules`) and naming only metrics that docs/metrics.md documents, and panels for
what an operator looks at first: reachability, packet rates per port and per VM, drops by reason, links.

Usage: /usr/bin/python3 test_dashboard.py DASHBOARD_JSON METRICS_MD
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

failures = []


def check(condition, message):
    print("%s: %s" % ("PASS" if condition else "FAIL", message), flush=True)
    if not condition:
        failures.append(message)
    return condition


def grafana_variables_to_promql(expr):
    """The query as Prometheus receives it once Grafana has put in its variables."""
    return expr.replace("$__rate_interval", "5m").replace("$instance", ".*").replace("$vm", ".*")


def main():
    if len(sys.argv) != 3:
        print("usage: test_dashboard.py DASHBOARD_JSON METRICS_MD", file=sys.stderr)
        return 2
    try:
        with open(sys.argv[1]) as f:
            dashboard = json.load(f)
    except ValueError as e:
        check(False, "the dashboard is valid JSON (%s)" % e)
        return 1
    with open(sys.argv[2]) as f:
        documented = set(re.findall(r"`(portmux_[a-z_]+)`", f.read()))

    variables = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
    source = variables.get("datasource", {})
    check(source.get("type") == "datasource" and source.get("query") == "prometheus",
          "a data source variable of type prometheus")
    panels = dashboard.get("panels", [])
    targets = [(p, t) for p in panels for t in p.get("targets", [])]
    check(panels and all(p.get("datasource", {}).get("uid") == "${datasource}" for p in panels)
          and all(t.get("datasource", {}).get("uid") == "${datasource}" for _, t in targets),
          "every panel and query uses the data source variable")
    ids = [p.get("id") for p in panels]
    check(len(ids) == len(set(ids)), "panel ids are unique")

    exprs = [t["expr"] for _, t in targets if "expr" in t]
    exprs += [v["definition"] for v in variables.values() if v.get("type") == "query"]
    names = set()
    for expr in exprs:
        names |= set(re.findall(r"\b(portmux_[a-z_]+)", expr))
    check(names and names <= documented,
          "every metric the dashboard queries is documented (not: %s)" % sorted(names - documented))
    wanted = {"portmux_up": "reachability", "portmux_port_rx_packets_total": "packet rates per port",
              "portmux_vm_tx_packets_total": "packet rates per VM", "portmux_drops_total": "drops by reason",
              "portmux_port_link_up": "port links", "portmux_vm_link_up": "VM links"}
    missing = [what for name, what in wanted.items() if name not in names]
    check(not missing, "panels for reachability, rates per port and VM, drops, links (missing: %s)" % missing)

    promtool = shutil.which("promtool")
    if promtool is None:
        print("note: promtool not installed (Debian package prometheus): PromQL syntax not checked")
    else:
        # Rule files hold PromQL that promtool parses offline; label_values() is Grafana's, not PromQL.
        queries = [grafana_variables_to_promql(t["expr"]) for _, t in targets if "expr" in t]
        rules = {"groups": [{"name": "dashboard", "rules": [{"record": "dashboard:query_%d" % i, "expr": q}
                                                            for i, q in enumerate(queries)]}]}
        with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
            json.dump(rules, f)  # JSON is YAML
        try:
            p = subprocess.run([promtool, "check", "rules", f.name], capture_output=True, text=True, timeout=60)
        finally:
            os.unlink(f.name)
        check(p.returncode == 0,
              "all %d queries are valid PromQL (%s)" % (len(queries), (p.stdout + p.stderr).strip()[-300:]))

    print("%d check(s) failed" % len(failures) if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
