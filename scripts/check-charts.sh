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
kubernetes-validate --quiet --strict "$out"/*.yaml
echo "charts: $(find "$out" -name '*.yaml' | wc -l) renders linted and valid"
