#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (build-fuzz) and runs each for SECONDS (default 60) on a copy of its
# seed corpus. Exits non-zero when a target crashes; the crashing input is kept under build-fuzz/fuzz-run/.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_parse fuzz_config fuzz_port_range)

if ! command -v clang++ >/dev/null || ! ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
    echo "fuzz.sh: installing clang and its sanitizer runtimes"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q clang libclang-rt-14-dev >/dev/null
fi

if [ ! -f build-fuzz/build.ninja ]; then
    CXX=clang++ meson setup build-fuzz -Dfuzz=true >/dev/null
else
    meson configure build-fuzz -Dfuzz=true >/dev/null
fi
ninja -C build-fuzz "${targets[@]/#/test/fuzz/}" >/dev/null

run_dir=build-fuzz/fuzz-run
mkdir -p "$run_dir"
status=0
for target in "${targets[@]}"; do
    work="$run_dir/$target"
    rm -rf "$work/corpus"
    mkdir -p "$work/crashes"
    cp -r "test/fuzz/corpus/$target" "$work/corpus"
    # One process, so the time limit holds; -max_len covers a jumbo frame and any config worth writing.
    if build-fuzz/test/fuzz/"$target" -max_total_time="$seconds" -max_len=9216 -timeout=10 -rss_limit_mb=2048 \
            -print_final_stats=1 -artifact_prefix="$work/crashes/" "$work/corpus" >"$work/log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log")
        echo "fuzz.sh: $target: ${runs:-?} inputs in ${seconds} s, no crash"
    else
        status=1
        echo "fuzz.sh: $target: CRASH, input kept in $work/crashes/:"
        ls "$work/crashes"
        grep -E "ERROR|check failed|fuzz_|SUMMARY" "$work/log" | head -20
    fi
done
exit $status
