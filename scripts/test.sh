#!/usr/bin/env bash
# Builds portmux (installing what it needs) and runs the whole test suite with meson test.
# Extra arguments go to meson test, e.g. scripts/test.sh --suite integration
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
status=0
meson test -C build --print-errorlogs --num-processes 1 "$@" || status=$?

# One closing line that any reader of the log understands.
/usr/bin/python3 - <<'PY'
import json
passed = failed = skipped = 0
with open("build/meson-logs/testlog.json") as log:
    for line in log:
        result = json.loads(line)["result"]
        if result in ("OK", "EXPECTEDFAIL"):
            passed += 1
        elif result == "SKIP":
            skipped += 1
        else:
            failed += 1
print(f"{passed} passed, {failed} failed, {skipped} skipped")
PY
exit $status
