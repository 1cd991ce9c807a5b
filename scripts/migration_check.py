"""Refuses, in a migration whose first line says `-- Expand`, anything that
drops, renames or narrows what the previous release reads or writes: such a
change belongs in a `-- Contract` migration, shipped once no release that
needs the old shape can run (the runner then refuses to start those).

Usage: python3 scripts/migration_check.py FILE...  (exit 1 with one line per
finding, naming the file, the statement and what to do)
"""

import re
import sys

NARROWING = [
    (r"\bdrop\s+(table|column|view|constraint|type)\b", "drops"),
    (r"\brename\b", "renames"),
    (r"\balter\s+column\s+\w+\s+(set\s+data\s+)?type\b", "changes a column's type"),
    (r"\bset\s+not\s+null\b", "makes a column required"),
    (r"\badd\s+(column\s+)?(if\s+not\s+exists\s+)?\w+\s+[^;]*\bnot\s+null\b(?![^;]*\bdefault\b)",
     "adds a required column without a default (the previous release's inserts fail)"),
    (r"\badd\s+(constraint|check|unique|foreign\s+key)\b", "adds a constraint the previous release's writes may break"),
    (r"\bcreate\s+unique\s+index\b", "adds a uniqueness the previous release's writes may break"),
]


def statements(sql):
    without_comments = re.sub(r"--[^\n]*", "", sql)
    return [s.strip() for s in without_comments.split(";") if s.strip()]


def findings(path):
    with open(path, encoding="utf-8") as f:
        sql = f.read()
    first = sql.lstrip().split("\n", 1)[0]
    if first.startswith("-- Contract"):
        return []
    if not first.startswith("-- Expand"):
        return [f"{path}: the first line must say `-- Expand` or `-- Contract` (and the Migration's `contract` flag the same)"]
    found = []
    # A table this migration creates has no earlier reader.
    created = set(re.findall(r"\bcreate\s+table\s+(?:if\s+not\s+exists\s+)?(\w+)", sql.lower()))
    for statement in statements(sql):
        lowered = " ".join(statement.lower().split())
        target = re.search(r"\b(?:alter\s+table|on)\s+(?:if\s+exists\s+)?(?:only\s+)?(\w+)", lowered)
        if target and target.group(1) in created:
            continue
        for pattern, what in NARROWING:
            if re.search(pattern, lowered):
                found.append(
                    f"{path}: an expand migration {what}: {statement.splitlines()[0][:80]!r}; "
                    "move it to a `-- Contract` migration of a later release"
                )
    return found


def main(paths):
    problems = [line for path in paths for line in findings(path)]
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
