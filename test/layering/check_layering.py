#!/usr/bin/env python3
"""Checks that the code's dependencies point down: every #include "room/..." in lib/, drivers/ and app/, and
every <room>_dep a lib/<room>/meson.build links, names the room itself or one below it in LAYERS.

Usage: check_layering.py SOURCE_ROOT   (exit 0: clean; exit 1: every forbidden arrow printed as file:line)
Before checking SOURCE_ROOT it checks two small trees of its own, one clean and one with an upward include
and an upward meson dependency, so a checker that stopped finding arrows fails too.
"""

import pathlib
import re
import sys
import tempfile

# Bottom to top; each room may use only itself and the rooms before it. docs/architecture.md explains them.
LAYERS = ["core", "config", "packet", "tables", "ports", "pipeline", "control", "drivers", "app"]
RANK = {room: rank for rank, room in enumerate(LAYERS)}
# Where each room's files live, relative to the source root.
ROOM_DIRS = {room: f"lib/{room}" for room in LAYERS[:RANK["control"] + 1]}
ROOM_DIRS.update(drivers="drivers", app="app")

SOURCE_SUFFIXES = {".hpp", ".cpp", ".h", ".cc"}
INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')
MESON_DEP = re.compile(r"\b([a-z]+?)(?:_dpdk)?_dep\b")


def allowed(room):
    return ", ".join(LAYERS[:RANK[room] + 1])


def room_of_include(target, including_file, root):
    """The room an #include "target" reaches, or None when it is not one of ours (or cannot be told)."""
    first, _, rest = target.partition("/")
    if rest and first in RANK:
        return first
    if rest:
        return None  # "x/y.h" with x not a room: reported by the caller
    # An include without a room prefix: the including file's own directory first, then drivers/ and app/,
    # whose headers the build also puts on the include path.
    if (including_file.parent / target).is_file():
        return room_of_file(including_file, root)
    for room in ("drivers", "app"):
        if (root / ROOM_DIRS[room] / target).is_file():
            return room
    return None


def room_of_file(path, root):
    relative = path.relative_to(root).as_posix()
    for room, directory in ROOM_DIRS.items():
        if relative.startswith(directory + "/"):
            return room
    return None


def check_includes(root):
    errors = []
    for directory in ["lib", "drivers", "app"]:
        for path in sorted((root / directory).rglob("*")):
            if path.suffix not in SOURCE_SUFFIXES or not path.is_file():
                continue
            relative = path.relative_to(root).as_posix()
            room = room_of_file(path, root)
            if room is None:
                errors.append(f"{relative}: {path.parent.relative_to(root).as_posix()}/ is not a room of the "
                              f"layering order ({' -> '.join(LAYERS)}); add it to LAYERS in {sys.argv[0]}")
                continue
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
                match = INCLUDE.match(line)
                if not match:
                    continue
                target = match.group(1)
                to_room = room_of_include(target, path, root)
                if to_room is None:
                    if "/" in target:
                        errors.append(f'{relative}:{number}: #include "{target}": "{target.split("/")[0]}" is '
                                      f"not a room ({' -> '.join(LAYERS)})")
                    else:
                        errors.append(f'{relative}:{number}: #include "{target}": no such header next to the '
                                      f"file or in drivers/ or app/")
                    continue
                if RANK[to_room] > RANK[room]:
                    errors.append(f'{relative}:{number}: {room} -> {to_room} points up (#include "{target}"); '
                                  f"{room} may include only {allowed(room)}")
    return errors


def check_meson(root):
    """Each lib/<room>/meson.build and drivers/, app/ meson.build may name only <room>_dep of rooms below."""
    errors = []
    for room, directory in ROOM_DIRS.items():
        build_file = root / directory / "meson.build"
        if not build_file.is_file():
            continue
        relative = build_file.relative_to(root).as_posix()
        for number, line in enumerate(build_file.read_text().splitlines(), start=1):
            code = line.split("#", 1)[0]
            for match in MESON_DEP.finditer(code):
                dep_room = match.group(1)
                if dep_room in RANK and RANK[dep_room] > RANK[room]:
                    errors.append(f"{relative}:{number}: {room} -> {dep_room} points up ({match.group(0)}); "
                                  f"{room} may link only {allowed(room)}")
    return errors


def check(root):
    return check_includes(root) + check_meson(root)


def write(root, relative, text):
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def self_test():
    """The checker on two trees: clean passes; one upward include and one upward dependency are both named."""
    problems = []
    with tempfile.TemporaryDirectory() as scratch:
        clean = pathlib.Path(scratch) / "clean"
        write(clean, "lib/core/a.hpp", "#pragma once\n")
        write(clean, "lib/tables/b.hpp", '#include "core/a.hpp"\n#include "tables/c.hpp"\n')
        write(clean, "lib/tables/c.hpp", "#pragma once\n")
        write(clean, "lib/tables/meson.build", "tables_lib = static_library('t', dependencies: [core_dep])\n")
        write(clean, "drivers/d.hpp", '#include "tables/b.hpp"\n')
        write(clean, "app/main.cpp", '#include "d.hpp"\n#include "core/a.hpp"\n')
        found = check(clean)
        if found:
            problems.append("a clean tree was refused: " + "; ".join(found))

        bad = pathlib.Path(scratch) / "bad"
        write(bad, "lib/core/a.hpp", "#pragma once\n\n#include \"tables/b.hpp\"\n")
        write(bad, "lib/tables/b.hpp", "#pragma once\n")
        write(bad, "lib/tables/meson.build", "tables_dep = declare_dependency(dependencies: [control_dep])\n")
        write(bad, "drivers/d.cpp", '#include "main.hpp"\n')
        write(bad, "app/main.hpp", "#pragma once\n")
        found = check(bad)
        expected = ["lib/core/a.hpp:3: core -> tables points up",
                    "lib/tables/meson.build:1: tables -> control points up",
                    "drivers/d.cpp:1: drivers -> app points up"]
        for start in expected:
            if not any(line.startswith(start) for line in found):
                problems.append(f"not reported: {start} (reported: {found})")
        if len(found) != len(expected):
            problems.append(f"expected {len(expected)} arrows, reported {len(found)}: {found}")
    return problems


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    problems = self_test()
    if problems:
        print("the layering checker itself is broken:", *problems, sep="\n  ")
        return 1
    root = pathlib.Path(sys.argv[1]).resolve()
    errors = check(root)
    for error in errors:
        print(error)
    if errors:
        print(f"{len(errors)} dependencies point up; the order is {' -> '.join(LAYERS)} (docs/architecture.md)")
        return 1
    print(f"layering: every include and library dependency points down ({' -> '.join(LAYERS)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
