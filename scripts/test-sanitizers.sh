#!/usr/bin/env bash
# Builds portmux with AddressSanitizer and UndefinedBehaviorSanitizer (build-asan) and runs the unit tests and
# the integration suite against it; any sanitizer report fails the run (halt/abort on the first error, leaks
# included). Extra arguments go to every meson test call, e.g. scripts/test-sanitizers.sh --list
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f build-asan/build.ninja ]; then
    # b_lundef=false: the sanitizer runtimes resolve some symbols at load time.
    meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
fi
ninja -C build-asan

# Leaks inside DPDK's own libraries (EAL and driver state kept for the life of the process, freed by the
# kernel) are not portmux's: suppress those by library, never portmux's code.
supp=$(mktemp /tmp/portmux-lsan.XXXXXX)
trap 'rm -f "$supp"' EXIT
cat >"$supp" <<'SUPP'
leak:librte_
leak:libpcap
SUPP

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export LSAN_OPTIONS=suppressions=$supp:print_suppressions=0

status=0
meson test -C build-asan --print-errorlogs --num-processes 1 unit-pure unit-dpdk "$@" || status=$?
meson test -C build-asan --print-errorlogs --num-processes 1 --suite integration "$@" || status=$?
exit $status
