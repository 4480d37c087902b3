#!/usr/bin/env python3
"""Lists the classes and structs of the C++ files under the given folders whose body spans
more than LIMIT lines, largest first; exits 1 if there is any.

    python3 tests/checks/class_size.py [--limit 250] lib [more folders...]

A class is `class NAME` or `struct NAME` (with an optional base list) followed by its
braces; comments, string and character literals are blanked before the braces are
matched, so that a brace inside them does not count. Standard library only.
"""

import argparse
import re
import sys
from pathlib import Path

SUFFIXES = {".hpp", ".cpp", ".h"}
HEAD = re.compile(r"\b(?:class|struct)\s+(?:\[\[[^\]]*\]\]\s*)?(?:[A-Z_]+_API\s+)?(\w+)"
                  r"(?:\s+final)?\s*(?::[^;{]*)?\{")


def blank(source):
    """The source with comments and literals replaced by blanks (newlines kept)."""
    def keep_lines(match):
        return "\n" * match.group(0).count("\n")
    source = re.sub(r'R"(\w*)\(.*?\)\1"', keep_lines, source, flags=re.S)
    source = re.sub(r"/\*.*?\*/", keep_lines, source, flags=re.S)
    source = re.sub(r"//[^\n]*", "", source)
    source = re.sub(r'"(\\.|[^"\\\n])*"', '""', source)
    return re.sub(r"'(\\.|[^'\\\n])*'", "''", source)


def classes(text):
    """(name, first line, last line) of every class body in `text`."""
    source = blank(text)
    for match in HEAD.finditer(source):
        depth, i = 1, match.end()
        while depth and i < len(source):
            depth += {"{": 1, "}": -1}.get(source[i], 0)
            i += 1
        first = source.count("\n", 0, match.start()) + 1
        yield match.group(1), first, source.count("\n", 0, i) + 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=250)
    ap.add_argument("folders", nargs="+", type=Path)
    args = ap.parse_args(argv)
    found = []
    for folder in args.folders:
        for path in sorted(folder.rglob("*")):
            if path.suffix in SUFFIXES:
                for name, first, last in classes(path.read_text(errors="replace")):
                    found.append((last - first + 1, f"{path}:{first}-{last}", name))
    over = sorted((f for f in found if f[0] > args.limit), reverse=True)
    for lines, where, name in over:
        print(f"{name}: {lines} lines ({where}), more than {args.limit}")
    largest = max(found, default=None)
    if largest:
        print(f"largest: {largest[2]}, {largest[0]} lines ({largest[1]})", file=sys.stderr)
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
