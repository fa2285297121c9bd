#!/usr/bin/env bash
# Builds portmux (installing what it needs) and runs the whole test suite: every meson test (unit,
# integration, live namespaces, control, real guests, hostile frames, soak, benchmark smoke) and a short run
# of each fuzz target. With --sanitizers, the unit and integration tests also run under ASan and UBSan.
# Other arguments go to meson test, e.g. scripts/test.sh --suite integration (the fuzz run is then skipped).
set -euo pipefail
cd "$(dirname "$0")/.."

sanitizers=0
meson_args=()
for arg in "$@"; do
  if [ "$arg" = "--sanitizers" ]; then sanitizers=1; else meson_args+=("$arg"); fi
done

scripts/setup.sh
status=0
meson test -C build --print-errorlogs --num-processes 1 "${meson_args[@]}" || status=$?

fuzz_status=skipped
if [ ${#meson_args[@]} -eq 0 ]; then
  if scripts/fuzz.sh 10; then fuzz_status=ok; else fuzz_status=failed; status=1; fi
fi

logs=(build/meson-logs/testlog.json)
if [ $sanitizers -eq 1 ]; then
  scripts/test-sanitizers.sh || status=1
  logs+=(build-asan/meson-logs/testlog.json)
fi

# One closing line that any reader of the log understands (the fuzz run counts as one test).
/usr/bin/python3 - "$fuzz_status" "${logs[@]}" <<'PY'
import json, sys
passed = failed = skipped = 0
fuzz = sys.argv[1]
for path in sys.argv[2:]:
    with open(path) as log:
        for line in log:
            result = json.loads(line)["result"]
            if result in ("OK", "EXPECTEDFAIL"):
                passed += 1
            elif result == "SKIP":
                skipped += 1
            else:
                failed += 1
if fuzz == "ok":
    passed += 1
elif fuzz == "failed":
    failed += 1
print(f"{passed} passed, {failed} failed, {skipped} skipped")
PY
exit $status
