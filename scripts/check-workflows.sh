#!/usr/bin/env bash
# Lints every GitHub Actions workflow (expressions, inputs, job graph, and
# the shell of each step when shellcheck is present).
set -euo pipefail
cd "$(dirname "$0")/.."
actionlint .github/workflows/*.yml
echo "workflows: $(ls .github/workflows/*.yml | wc -l) linted"
