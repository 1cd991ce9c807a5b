#!/usr/bin/env bash
# What a release must not break, against the last one in releases.toml:
# the protos pass buf lint and are not broken for gRPC or REST clients (buf
# breaking, wire and JSON), the migrations that release shipped are unchanged
# byte for byte, and every migration added since passes squawk and, unless it
# is a contract step, drops, renames and narrows nothing
# (scripts/migration_check.py).
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in buf squawk; do
    command -v "$tool" >/dev/null || {
        echo "error: $tool is missing: run scripts/install-tools.sh" >&2
        exit 1
    }
done

# The last release: its commit, then "service migration" per line.
release="$(python3 - <<'PY'
import tomllib
releases = tomllib.load(open("releases.toml", "rb"))["release"]
last = releases[-1]
print(last["version"], last["commit"])
for service, names in last["migrations"].items():
    for name in names:
        print(service, name)
PY
)"
read -r version commit <<<"$(head -n 1 <<<"$release")"
if ! git cat-file -e "$commit^{commit}" 2>/dev/null; then
    git fetch --quiet --unshallow 2>/dev/null || git fetch --quiet origin "$commit" 2>/dev/null || true
fi
git cat-file -e "$commit^{commit}" 2>/dev/null || {
    echo "error: release $version's commit $commit is not in this clone: fetch the history (git fetch --unshallow)" >&2
    exit 1
}

buf lint proto
buf breaking proto --against ".git#ref=$commit,subdir=proto"

released=0
while read -r service name; do
    file="services/$service/migrations/$name.sql"
    if ! git show "$commit:$file" | cmp -s - "$file"; then
        echo "error: $file changed since release $version: released migrations are append-only, add a new one" >&2
        exit 1
    fi
    released=$((released + 1))
done < <(tail -n +2 <<<"$release")

added=()
for file in services/*/migrations/*.sql; do
    service="$(basename "$(dirname "$(dirname "$file")")")"
    name="$(basename "$file" .sql)"
    grep -qx "$service $name" <<<"$release" || added+=("$file")
done
if [ "${#added[@]}" -gt 0 ]; then
    squawk --config .squawk.toml "${added[@]}"
    python3 scripts/migration_check.py "${added[@]}"
fi
echo "compat: protos lint-clean and compatible with release $version, its $released migrations unchanged, ${#added[@]} added since linted by squawk"
