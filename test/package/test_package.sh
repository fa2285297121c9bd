#!/usr/bin/env bash
# The Debian package as an operator gets it: builds portmux_*.deb from the source tree with
# dpkg-buildpackage, installs it, checks that every file is where docs/operations.md ("Installing") says,
# that the commands and man pages work and that the unit is installed but not enabled, then purges it and
# checks that nothing is left.
#
# Usage: test_package.sh SOURCE_DIR   (root; exit 0 pass, 1 fail, 77 skip)
# It builds the whole project once more (several minutes); the tree is exported first, so the build never
# writes into SOURCE_DIR. A git checkout is exported as its HEAD commit (uncommitted changes are not in it).
set -euo pipefail

readonly SRC=${1:?usage: test_package.sh SOURCE_DIR}
# Build packages the test can install itself when dpkg-buildpackage is missing (scripts/setup.sh has them).
readonly TOOLS=(dpkg-dev debhelper fakeroot scdoc build-essential)
readonly APT=(apt-get -o DPkg::Lock::Timeout=300 -y -q)

WORK=""
INSTALLED_BY_US=0
FAILED=0

skip() { echo "SKIP: $*"; exit 77; }
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; FAILED=1; }
# check NAME COMMAND...: the command must succeed.
check() {
    local name=$1
    shift
    if "$@"; then pass "$name"; else fail "$name"; fi
}

cleanup() {
    # Only a package this test installed is removed; an operator's package is never touched (see below).
    if [ "$INSTALLED_BY_US" -eq 1 ] && dpkg-query -W portmux >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive "${APT[@]}" purge portmux >/dev/null 2>&1 || dpkg --purge portmux >/dev/null 2>&1 || true
    fi
    [ -z "$WORK" ] || rm -rf "$WORK"
}
trap cleanup EXIT

package_state() { dpkg-query -W -f='${db:Status-Status}' portmux 2>/dev/null || true; }

# --- preconditions -------------------------------------------------------------------------------------
[ "$(id -u)" -eq 0 ] || skip "installing a package needs root"
{ command -v dpkg && command -v apt-get; } >/dev/null || skip "not a Debian system (no dpkg or apt-get)"
state=$(package_state)
[ -z "$state" ] || [ "$state" = "not-installed" ] || skip "a portmux package is already installed ($state); not replacing it"
for path in /usr/bin/portmux /usr/bin/portmuxctl; do
    [ ! -e "$path" ] || skip "$path exists but belongs to no package; installing would overwrite it"
done
if ! command -v dpkg-buildpackage >/dev/null || ! command -v dh >/dev/null || ! command -v scdoc >/dev/null; then
    echo "installing the package build tools: ${TOOLS[*]}"
    DEBIAN_FRONTEND=noninteractive "${APT[@]}" --no-install-recommends install "${TOOLS[@]}" >/dev/null 2>&1 ||
        skip "dpkg-buildpackage, debhelper or scdoc is missing and cannot be installed (${TOOLS[*]})"
fi

# --- export the tree -----------------------------------------------------------------------------------
WORK=$(mktemp -d /tmp/pmx-package.XXXXXX)
readonly TREE=$WORK/portmux
mkdir "$TREE"
if [ "$(git -C "$SRC" rev-parse --show-toplevel 2>/dev/null)" = "$(cd "$SRC" && pwd -P)" ]; then
    git -C "$SRC" archive HEAD | tar -x -C "$TREE"
    echo "exported $(git -C "$SRC" rev-parse --short HEAD) with git archive"
else
    # Not a checkout: the source without build directories (meson's, and dh's obj-* ones).
    tar -C "$SRC" --exclude='./build*' --exclude='./obj-*' --exclude='./debian/portmux' --exclude='./.git' \
        -cf - . | tar -x -C "$TREE"
    echo "exported $SRC by copying it"
fi
version=$(sed -n "s/^ *version: *'\([^']*\)'.*/\1/p" "$TREE/meson.build" | head -n 1)
[ -n "$version" ] || { echo "FAIL: no project version in meson.build"; exit 1; }

if ! (cd "$TREE" && dpkg-checkbuilddeps) >"$WORK/builddeps.log" 2>&1; then
    # "Unmet build dependencies: a b (>= 1)": install what is named, then ask again.
    missing=$(sed -n 's/.*Unmet build dependencies: //p' "$WORK/builddeps.log" | sed 's/([^)]*)//g; s/|//g')
    echo "installing the build dependencies: $missing"
    # shellcheck disable=SC2086 # one package name per word
    DEBIAN_FRONTEND=noninteractive "${APT[@]}" --no-install-recommends install $missing >/dev/null 2>&1 || true
    (cd "$TREE" && dpkg-checkbuilddeps) >/dev/null 2>&1 ||
        skip "build dependencies cannot be installed: $(cat "$WORK/builddeps.log")"
fi

# --- build ---------------------------------------------------------------------------------------------
echo "building portmux $version with dpkg-buildpackage -us -uc -b (log: $WORK/build.log)"
if ! (cd "$TREE" && DEB_BUILD_OPTIONS="nocheck parallel=2" dpkg-buildpackage -us -uc -b) >"$WORK/build.log" 2>&1; then
    tail -n 40 "$WORK/build.log"
    echo "FAIL: dpkg-buildpackage failed"
    exit 1
fi
debs=("$WORK"/portmux_*.deb)
[ -f "${debs[0]}" ] || { echo "FAIL: dpkg-buildpackage made no portmux_*.deb"; ls "$WORK"; exit 1; }
readonly DEB=${debs[0]}
pass "dpkg-buildpackage built $(basename "$DEB")"
check "the package version is meson.build's project version ($version)" \
    test "$(dpkg-deb -f "$DEB" Version)" = "$version"
depends=$(dpkg-deb -f "$DEB" Depends)
for dep in python3 python3-prometheus-client librte-; do
    check "the package depends on $dep" grep -q "\\b$dep" <<<"$depends"
done

# --- install -------------------------------------------------------------------------------------------
INSTALLED_BY_US=1
if ! (cd "$WORK" && DEBIAN_FRONTEND=noninteractive "${APT[@]}" install "./$(basename "$DEB")") >"$WORK/install.log" 2>&1; then
    tail -n 20 "$WORK/install.log"
    if ! DEBIAN_FRONTEND=noninteractive "${APT[@]}" --simulate install python3 python3-prometheus-client >/dev/null 2>&1; then
        skip "the package's dependencies (python3-prometheus-client) cannot be installed here"
    fi
    echo "FAIL: apt-get install ./$(basename "$DEB") failed"
    exit 1
fi
check "the package is installed" test "$(package_state)" = "installed"

dpkg -L portmux >"$WORK/files" 2>/dev/null || true
# Where each file goes (docs/operations.md, "Installing"); every page of docs/ and the README with it.
expected=(
    /usr/bin/portmux /usr/bin/portmuxctl /usr/bin/portmux-exporter
    /lib/systemd/system/portmux@.service /lib/systemd/system/portmux-exporter@.service
    /usr/share/portmux/grafana/portmux.json
    /usr/bin/portmux-agent /usr/lib/portmux/agent/portmux-agent /usr/lib/portmux/agent/portmux_cluster/agent.py
    /lib/systemd/system/portmux-agent@.service /usr/share/portmux/cluster/vm.schema.json
    /usr/share/portmux/portmux.schema.json /usr/share/portmux/example.json
    /usr/share/man/man8/portmux.8.gz /usr/share/man/man8/portmuxctl.8.gz
    /usr/share/doc/portmux/README.md /usr/share/doc/portmux/copyright
    /etc/portmux/README
)
for page in "$TREE"/docs/*.md; do expected+=("/usr/share/doc/portmux/$(basename "$page")"); done
for path in "${expected[@]}"; do
    if grep -qx -- "$path" "$WORK/files" && [ -f "$path" ]; then pass "installed: $path"; else fail "not installed: $path"; fi
done
check "portmux and portmuxctl are executable" test -x /usr/bin/portmux -a -x /usr/bin/portmuxctl
check "/etc/portmux holds no configuration that a unit instance would run" \
    test -z "$(find /etc/portmux -name '*.json' 2>/dev/null)"

# --- the installed commands ----------------------------------------------------------------------------
out=$(/usr/bin/portmux --version 2>&1) || true
check "portmux --version prints $version" test "$out" = "portmux $version"
out=$(/usr/bin/portmux --config /usr/share/portmux/example.json --check 2>&1) && status=0 || status=$?
check "portmux --check accepts the installed example (exit 0, a summary)" \
    test "$status" -eq 0 -a -n "$(grep -F 'shared address' <<<"$out")"
out=$(/usr/bin/portmuxctl --help 2>&1) && status=0 || status=$?
check "portmuxctl --help runs (exit 0, the usage)" test "$status" -eq 0 -a -n "$(grep -F 'usage: portmuxctl' <<<"$out")"
out=$(/usr/bin/portmuxctl exporter --help 2>&1) && status=0 || status=$?
check "portmuxctl exporter --help runs the installed exporter (exit 0, its usage)" \
    test "$status" -eq 0 -a -n "$(grep -F 'usage: portmux-exporter' <<<"$out")"
check "the exporter's unit runs the installed exporter" \
    grep -q '^ExecStart=/usr/bin/portmux-exporter --file-prefix portmux-%i' /lib/systemd/system/portmux-exporter@.service
out=$(/usr/bin/portmux-agent --help 2>&1) && status=0 || status=$?
check "portmux-agent --help runs from the path (exit 0, its usage)" \
    test "$status" -eq 0 -a -n "$(grep -F 'usage: portmux-agent' <<<"$out")"
out=$(/usr/bin/portmuxctl cluster --help 2>&1) && status=0 || status=$?
check "portmuxctl cluster --help finds the installed cluster package" \
    test "$status" -eq 0 -a -n "$(grep -F 'cluster' <<<"$out")"
if command -v man >/dev/null; then
    for page in portmux portmuxctl; do
        check "man -w $page finds section 8" test "$(man -w "$page" 2>/dev/null)" = "/usr/share/man/man8/$page.8.gz"
    done
    check "portmux(8) documents the unit's default file prefix" \
        grep -q PORTMUX_DEFAULT_FILE_PREFIX <(man -l /usr/share/man/man8/portmux.8.gz 2>/dev/null)
fi

# --- the systemd unit ----------------------------------------------------------------------------------
readonly UNIT=/lib/systemd/system/portmux@.service
check "the unit runs the installed binary on /etc/portmux/NAME.json" \
    grep -qx 'ExecStart=/usr/bin/portmux --config /etc/portmux/%i.json' "$UNIT"
check "the unit checks the configuration first" \
    grep -qx 'ExecStartPre=/usr/bin/portmux --config /etc/portmux/%i.json --check' "$UNIT"
check "the unit gives each instance its own default file prefix" \
    grep -qx 'Environment=PORTMUX_DEFAULT_FILE_PREFIX=portmux-%i' "$UNIT"
if command -v systemd-analyze >/dev/null; then
    # A template is verified through an instance of it.
    mkdir "$WORK/units"
    ln -s "$UNIT" "$WORK/units/portmux@pkgtest.service"
    if systemd-analyze verify --man=no "$WORK/units/portmux@pkgtest.service" >"$WORK/verify.log" 2>&1 &&
        ! grep -q 'portmux@' "$WORK/verify.log"; then
        pass "systemd-analyze verify accepts portmux@pkgtest.service"
    else
        fail "systemd-analyze verify portmux@pkgtest.service: $(cat "$WORK/verify.log")"
    fi
fi
check "no instance of the unit is enabled (no symlink under /etc/systemd)" \
    test -z "$(find /etc/systemd -name 'portmux@*' 2>/dev/null)"
if command -v systemctl >/dev/null; then
    enabled=$(systemctl --root=/ is-enabled portmux@.service 2>/dev/null || true)
    check "systemctl reports the unit not enabled ($enabled)" test "$enabled" != "enabled"
fi

# --- purge ---------------------------------------------------------------------------------------------
if DEBIAN_FRONTEND=noninteractive "${APT[@]}" purge portmux >"$WORK/purge.log" 2>&1; then
    pass "apt-get purge portmux"
else
    tail -n 20 "$WORK/purge.log"
    fail "apt-get purge portmux failed"
fi
check "dpkg -L portmux fails after the purge" bash -c '! dpkg -L portmux >/dev/null 2>&1'
left=()
for path in "${expected[@]}" /etc/portmux /usr/share/portmux /usr/share/doc/portmux; do
    [ ! -e "$path" ] || left+=("$path")
done
check "nothing is left after the purge${left[*]:+ (left: ${left[*]})}" test ${#left[@]} -eq 0

if [ "$FAILED" -ne 0 ]; then
    echo "package test FAILED"
    exit 1
fi
echo "package test passed"
