#!/usr/bin/env bash
# Static checks of observability/: the rules parse (promtool check rules),
# every alert fires and stays quiet when it should (promtool test rules),
# the Prometheus configurations Compose and `platformctl up --observe` use
# are valid, and the dashboards and provisioning files parse. Whether the
# queries return data from the running platform is checked by
# platformctl/tests/observability.rs.
set -euo pipefail
cd "$(dirname "$0")/../observability"

promtool check rules prometheus/rules/*.yml
promtool test rules prometheus/tests/*.yml
promtool check config --syntax-only prometheus/compose.yml
# Debian's Prometheus is built without Kubernetes service discovery, so the
# cluster configuration is checked as YAML with the expected structure.
python3 - <<'PY'
import glob, json, sys
import yaml

k8s = yaml.safe_load(open("prometheus/kubernetes.yml"))
job = k8s["scrape_configs"][0]
assert job["kubernetes_sd_configs"][0]["role"] == "pod", "kubernetes.yml: pod discovery"
assert k8s["rule_files"], "kubernetes.yml: rule files"
for path in glob.glob("grafana/provisioning/*/*.yml") + ["otel-collector.yaml"]:
    yaml.safe_load(open(path))
collector = yaml.safe_load(open("otel-collector.yaml"))
traces = collector["service"]["pipelines"]["traces"]
assert traces["processors"][0] == "memory_limiter" and traces["processors"][-1] == "batch", \
    "otel-collector.yaml: memory_limiter first, batch last"
uids = set()
for path in sorted(glob.glob("grafana/dashboards/*.json")):
    dashboard = json.load(open(path))
    assert dashboard["uid"] not in uids, f"{path}: duplicate uid"
    uids.add(dashboard["uid"])
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "prometheus", f"{path}: {panel['title']}"
print(f"observability: {len(uids)} dashboards, provisioning and collector config parse")
PY
