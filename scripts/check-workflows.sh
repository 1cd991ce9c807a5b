#!/usr/bin/env bash
# Lints every GitHub Actions workflow (expressions, inputs, job graph, and
# the shell of each step with shellcheck) and every shell script of the
# repository (shellcheck, warnings and errors).
set -euo pipefail
cd "$(dirname "$0")/.."
actionlint .github/workflows/*.yml
scripts=(scripts/*.sh load/*.sh .ci/run)
shellcheck --severity=warning "${scripts[@]}"
echo "workflows: $(find .github/workflows -name '*.yml' | wc -l) linted; ${#scripts[@]} shell scripts checked"
