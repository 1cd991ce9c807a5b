#!/usr/bin/env bash
# The Helm charts: lint them, render every service in both colors and the
# gateway, and validate every rendered object against the Kubernetes
# schemas (offline). gateway/tests/charts.rs checks what they mean.
set -euo pipefail
cd "$(dirname "$0")/.."

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
# Each chart with only what it requires (its ci/ values, as chart-testing
# reads them), then as deployed.
helm lint --strict helm/gateway -f helm/gateway/ci/default-values.yaml >/dev/null
helm lint --strict helm/service -f helm/service/ci/default-values.yaml >/dev/null
registry=(--set image.registry=ghcr.io/example/platform)
helm template gateway helm/gateway --namespace platform "${registry[@]}" > "$out/gateway.yaml"
for values in helm/values/*.yaml; do
    service="$(basename "$values" .yaml)"
    helm lint --strict helm/service -f "$values" "${registry[@]}" >/dev/null
    for color in blue green; do
        helm template "$service-$color" helm/service -f "$values" "${registry[@]}" \
            --set color="$color" --set image.tag=check > "$out/$service-$color.yaml"
    done
done
# The HPA with the adapter's metrics too (requests per second, calls in flight).
helm template orders-blue helm/service -f helm/values/orders.yaml --set color=blue "${registry[@]}" \
    --set autoscaling.adapterMetrics=true --set autoscaling.targetInFlightRequests=20 \
    > "$out/orders-blue-custom-metrics.yaml"
grep -q 'name: rpc_server_in_flight_requests' "$out/orders-blue-custom-metrics.yaml"
grep -q 'name: rpc_server_requests_per_second' "$out/orders-blue-custom-metrics.yaml"
if grep -q 'rpc_server_requests_per_second' "$out/orders-blue.yaml"; then
    echo "error: the HPA asks for adapter metrics although autoscaling.adapterMetrics is false" >&2
    exit 1
fi
# The optional ServiceMonitors too (a CRD: its schema is not Kubernetes').
helm template gateway helm/gateway --set serviceMonitor.enabled=true "${registry[@]}" > /dev/null
# Scheduled database backups (helm/backup.md): off as deployed, on in each
# sample of helm/service/ci/ (alone, as chart-testing reads them), made by
# the owning color (blue) and never by the other.
if grep -l -E '^kind: (CronJob|ScheduledBackup)$|backup\.velero\.io' "$out"/*.yaml; then
    echo "error: backup objects or annotations rendered although every backup value is off" >&2
    exit 1
fi
for values in helm/service/ci/backup-*-values.yaml; do
    sample="$(basename "$values" -values.yaml)"
    helm lint --strict helm/service -f "$values" >/dev/null
    for color in blue green; do
        helm template "orders-$color" helm/service -f "$values" --set color="$color" \
            > "$out/$sample-$color.yaml"
    done
    if grep -q -E '^kind: (CronJob|ScheduledBackup)$' "$out/$sample-green.yaml"; then
        echo "error: $values: the green release makes backups too (backup.color is blue)" >&2
        exit 1
    fi
done
grep -q '^kind: ScheduledBackup$' "$out/backup-cloudnativepg-blue.yaml"
test "$(grep -c '^kind: CronJob$' "$out/backup-pgbackrest-blue.yaml")" -eq 2
# Both modes at once, or a schedule of the wrong shape: the values schema refuses them.
for bad in backup.cloudnativepg.enabled=true,backup.pgbackrest.enabled=true \
    "backup.cloudnativepg.schedule=0 1 * * *" "backup.pgbackrest.schedule=0 0 1 * * *"; do
    if helm template orders-blue helm/service -f helm/service/ci/default-values.yaml \
        --set "$bad" > /dev/null 2>&1; then
        echo "error: the values schema accepts $bad" >&2
        exit 1
    fi
done
# kubernetes-validate has no schema for CloudNativePG's CRD: each
# ScheduledBackup is taken out of its render and validated against
# helm/service/ci/scheduledbackup.schema.json (with the jsonschema module
# kubernetes-validate is built on).
python3 - "$out" helm/service/ci/scheduledbackup.schema.json <<'PY'
import glob
import json
import sys

import jsonschema
import yaml

out, schema = sys.argv[1:]
with open(schema) as f:
    validator = jsonschema.Draft7Validator(json.load(f))
checked = 0
for path in sorted(glob.glob(f"{out}/*.yaml")):
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    rest = [d for d in docs if d.get("kind") != "ScheduledBackup"]
    if len(rest) == len(docs):
        continue
    for doc in docs:
        if doc.get("kind") == "ScheduledBackup":
            errors = sorted(validator.iter_errors(doc), key=str)
            for error in errors:
                where = "/".join(str(p) for p in error.absolute_path)
                print(f"error: {path}: ScheduledBackup /{where}: {error.message}", file=sys.stderr)
            if errors:
                sys.exit(1)
            checked += 1
    with open(path, "w") as f:
        yaml.safe_dump_all(rest, f)
if not checked:
    sys.exit("error: no ScheduledBackup was rendered to validate")
print(f"charts: {checked} ScheduledBackup valid against its CRD's fields")
PY
kubernetes-validate --quiet --strict "$out"/*.yaml
echo "charts: $(find "$out" -name '*.yaml' | wc -l) renders linted and valid"
