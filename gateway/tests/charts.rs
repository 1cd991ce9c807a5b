//! The Helm charts as a cluster would receive them: `helm template` of every
//! service in both colors and of the gateway. The routing ConfigMap the
//! gateway chart renders must be accepted by the gateway's own parser and
//! name the Services the service chart creates; every workload must run
//! locked down (non-root, read-only root, no capabilities, RuntimeDefault
//! seccomp), with probes and a shutdown that fits its drain.

use std::path::PathBuf;
use std::process::Command;

use platform_routing::RoutingConfig;
use serde_json::Value;

const SERVICES: [(&str, u64); 4] = [
    ("auth", 50051),
    ("orders", 50052),
    ("payments", 50053),
    ("notifications", 50054),
];

fn helm_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../helm")
}

/// `helm template` with `args` (and a registry, unless they name the
/// image), or None when helm is missing outside CI.
fn render(args: &[&str]) -> Option<Vec<Value>> {
    let image = if args.iter().any(|a| a.starts_with("image.re")) {
        Vec::new()
    } else {
        vec!["--set", "image.registry=ghcr.io/example/platform"]
    };
    let output = match Command::new("helm")
        .arg("template")
        .args(args)
        .args(image)
        .current_dir(helm_dir())
        .output()
    {
        Ok(output) => output,
        Err(_) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "helm is required under CI (scripts/install-tools.sh)"
            );
            eprintln!("note: helm is not installed; skipping the chart checks");
            return None;
        }
    };
    assert!(
        output.status.success(),
        "helm template {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("utf-8");
    let documents = serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            let value: serde_yaml::Value =
                serde::Deserialize::deserialize(doc).expect("valid YAML");
            serde_json::to_value(value).expect("JSON-compatible")
        })
        .filter(|v| !v.is_null())
        .collect();
    Some(documents)
}

fn service_chart(service: &str, color: &str) -> Option<Vec<Value>> {
    render(&[
        &format!("{service}-{color}"),
        "service",
        "-f",
        &format!("values/{service}.yaml"),
        "--set",
        &format!("color={color}"),
        "--set",
        "image.tag=0123abc",
    ])
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn the_routing_configmap_is_the_gateways_and_names_the_service_charts_services() {
    let Some(gateway) = render(&["gateway", "gateway", "--namespace", "platform"]) else {
        return;
    };
    let routes = of_kind(&gateway, "ConfigMap")
        .into_iter()
        .find(|c| c["metadata"]["name"] == "gateway-routes")
        .expect("the routing ConfigMap");
    let text = routes["data"]["routes.json"].as_str().expect("routes.json");
    let config = RoutingConfig::parse(text).expect("the gateway accepts the rendered routing");
    assert_eq!(config.services.len(), 4);
    let env = of_kind(&gateway, "ConfigMap")
        .into_iter()
        .find(|c| c["metadata"]["name"] == "gateway")
        .expect("the gateway's settings");
    assert_eq!(env["data"]["ROUTES_CONFIGMAP"], "platform/gateway-routes");
    for (service, port) in SERVICES {
        let routing = &config.services[service];
        assert_eq!((routing.weights.blue, routing.weights.green), (100, 0));
        for color in ["blue", "green"] {
            let Some(docs) = service_chart(service, color) else {
                return;
            };
            let svc = of_kind(&docs, "Service")[0];
            let name = svc["metadata"]["name"].as_str().expect("name");
            assert_eq!(
                svc["spec"]["clusterIP"], "None",
                "headless, for per-pod balancing"
            );
            assert_eq!(svc["spec"]["ports"][0]["port"], port);
            let endpoint = format!("k8s:{name}:{port}");
            let listed = if color == "blue" {
                &routing.endpoints.blue
            } else {
                &routing.endpoints.green
            };
            assert_eq!(listed, &vec![endpoint], "{service} {color}");
        }
    }
}

/// Every address a rendered workload is configured with names something the
/// charts create: a Service of the gateway chart, or (for the gateway's own
/// token keys) its internal listener on loopback.
#[test]
fn every_configured_address_points_at_something_the_charts_create() {
    let Some(gateway) = render(&["gateway", "gateway", "--namespace", "platform"]) else {
        return;
    };
    let services: Vec<String> = of_kind(&gateway, "Service")
        .iter()
        .map(|s| {
            let port = &s["spec"]["ports"][0]["port"];
            format!(
                "http://{}:{port}",
                s["metadata"]["name"].as_str().expect("name")
            )
        })
        .collect();
    let env = of_kind(&gateway, "ConfigMap")
        .into_iter()
        .find(|c| c["metadata"]["name"] == "gateway")
        .expect("the gateway's settings");
    let internal_port = env["data"]["INTERNAL_ADDR"]
        .as_str()
        .and_then(|a| a.rsplit(':').next())
        .expect("INTERNAL_ADDR");
    assert_eq!(
        env["data"]["AUTH_ADDR"],
        format!("http://127.0.0.1:{internal_port}").as_str(),
        "the gateway fetches auth's keys through its own internal listener"
    );
    for (service, _) in SERVICES {
        let Some(docs) = service_chart(service, "blue") else {
            return;
        };
        let config = of_kind(&docs, "ConfigMap")[0];
        let addresses: Vec<(&String, &Value)> = config["data"]
            .as_object()
            .expect("data")
            .iter()
            .filter(|(k, _)| k.ends_with("_ADDR") && *k != "LISTEN_ADDR" && *k != "METRICS_ADDR")
            .collect();
        assert!(
            service == "auth" || !addresses.is_empty(),
            "{service} reaches auth"
        );
        for (key, value) in addresses {
            let value = value.as_str().expect("string");
            assert!(
                services.iter().any(|s| s == value),
                "{service}: {key}={value} is not a Service of the gateway chart ({services:?})"
            );
        }
    }
}

fn check_workload(name: &str, docs: &[Value]) {
    let deployment = of_kind(docs, "Deployment")[0];
    let pod = &deployment["spec"]["template"]["spec"];
    let security = &pod["securityContext"];
    assert_eq!(security["runAsNonRoot"], true, "{name}");
    assert_eq!(
        security["seccompProfile"]["type"], "RuntimeDefault",
        "{name}"
    );
    let grace = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("grace");
    for container in pod["containers"].as_array().expect("containers") {
        let sc = &container["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(
            sc["capabilities"]["drop"],
            serde_json::json!(["ALL"]),
            "{name}"
        );
        for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
            assert!(container[probe].is_object(), "{name}: {probe}");
        }
        let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
            .as_u64()
            .expect("preStop");
        let env = of_kind(docs, "ConfigMap")
            .into_iter()
            .find(|c| c["data"]["DRAIN_DELAY_MS"].is_string())
            .expect("settings");
        let drain_ms: u64 = env["data"]["DRAIN_DELAY_MS"]
            .as_str()
            .expect("drain")
            .parse()
            .expect("ms");
        let shutdown_ms: u64 = env["data"]["SHUTDOWN_TIMEOUT_MS"]
            .as_str()
            .map_or(20_000, |s| s.parse().expect("ms"));
        assert!(
            grace * 1000 > pre_stop * 1000 + drain_ms + shutdown_ms,
            "{name}: the grace period ({grace}s) covers preStop, drain and shutdown"
        );
        assert!(
            container["resources"]["requests"].is_object(),
            "{name}: resources"
        );
    }
    for kind in [
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    ] {
        assert_eq!(of_kind(docs, kind).len(), 1, "{name}: {kind}");
    }
}

#[test]
fn every_workload_is_locked_down_probed_and_drains() {
    let Some(gateway) = render(&["gateway", "gateway"]) else {
        return;
    };
    check_workload("gateway", &gateway);
    for (service, _) in SERVICES {
        for color in ["blue", "green"] {
            let docs = service_chart(service, color).expect("rendered");
            check_workload(&format!("{service}-{color}"), &docs);
        }
    }
}

const REPOSITORY: &str = "acme/shop";
const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(path),
    )
    .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The images `.github/workflows/release.yml` pushes for a commit: one per
/// binary of its matrix, named by its `images:` line, tagged with the full
/// sha (its `type=sha,format=long` tag).
fn pushed() -> Vec<String> {
    let workflow = repo_file(".github/workflows/release.yml");
    let bins = workflow
        .lines()
        .find_map(|l| l.trim().strip_prefix("bin: ["))
        .and_then(|l| l.strip_suffix(']'))
        .expect("release.yml has a matrix of binaries");
    let images = workflow
        .lines()
        .find_map(|l| l.trim().strip_prefix("images: "))
        .expect("release.yml names its images");
    assert!(
        workflow.contains("type=sha,format=long,prefix="),
        "release.yml tags each push with the full sha"
    );
    bins.split(',')
        .map(|bin| {
            let image = images
                .replace("${{ github.repository }}", REPOSITORY)
                .replace("${{ matrix.bin }}", bin.trim());
            format!("{image}:{SHA}")
        })
        .collect()
}

/// Shell lines with their `\` continuations joined.
fn joined(text: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        match line.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    lines
}

/// `helm upgrade [--install] NAME CHART ...` as `helm template` arguments,
/// run from `helm/`.
fn template_args(command: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut words = command.split_whitespace().map(|w| w.replace('"', ""));
    let mut skip_value = false;
    for word in words.by_ref().skip(2) {
        if skip_value {
            skip_value = false;
            continue;
        }
        match word.as_str() {
            "--install" | "--wait" => {}
            "-n" | "--namespace" | "--timeout" => skip_value = true,
            _ => args.push(word.strip_prefix("helm/").unwrap_or(&word).to_owned()),
        }
    }
    args
}

/// Every `image:` of the rendered objects.
fn images(docs: &[Value]) -> Vec<String> {
    docs.iter()
        .filter_map(|d| d["spec"]["template"]["spec"]["containers"].as_array())
        .flatten()
        .filter_map(|c| c["image"].as_str().map(str::to_owned))
        .collect()
}

/// The README's install and release commands and the deploy workflow's
/// upgrade name only images the release workflow pushes.
#[test]
fn the_documented_and_deployed_images_are_the_released_ones() {
    let pushed = pushed();
    assert_eq!(pushed.len(), 5, "{pushed:?}");
    let mut commands = Vec::new();

    // README: the block of the Kubernetes section, loops unrolled.
    let readme = repo_file("README.md");
    let section = readme
        .split("## Kubernetes with Helm")
        .nth(1)
        .and_then(|s| s.split("```sh").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("the README's Helm commands");
    let (mut services, mut colors) = (vec![String::new()], vec![String::new()]);
    for line in joined(section) {
        let line = line.trim().to_owned();
        if let Some(list) = line.strip_prefix("for svc in ") {
            services = list
                .trim_end_matches("; do")
                .split_whitespace()
                .map(str::to_owned)
                .collect();
        } else if let Some(list) = line.strip_prefix("for color in ") {
            colors = list
                .trim_end_matches("; do")
                .split_whitespace()
                .map(str::to_owned)
                .collect();
        } else if line.starts_with("helm upgrade") {
            for service in &services {
                for color in &colors {
                    commands.push(
                        line.replace("$REGISTRY", &format!("ghcr.io/{REPOSITORY}"))
                            .replace("$NEW_SHA", SHA)
                            .replace("$SHA", SHA)
                            .replace("$svc", service)
                            .replace("$color", color),
                    );
                }
            }
        } else if line == "done" {
            services = vec![String::new()];
            colors = vec![String::new()];
        }
    }
    assert!(commands.len() >= 10, "{commands:?}");

    // The deploy workflow: its upgrade of the idle color, for every service.
    let deploy = repo_file(".github/workflows/deploy.yml");
    let registry = deploy
        .lines()
        .find_map(|l| l.trim().strip_prefix("REGISTRY: "))
        .expect("deploy.yml names the registry")
        .replace("${{ github.repository }}", REPOSITORY);
    let upgrade = joined(&deploy)
        .into_iter()
        .find(|l| l.starts_with("helm upgrade"))
        .expect("deploy.yml upgrades a color");
    for service in ["auth", "orders", "payments", "notifications"] {
        commands.push(
            upgrade
                .replace("$SERVICE", service)
                .replace("$IDLE", "green")
                .replace("$REGISTRY", &registry)
                .replace("$VERSION", SHA),
        );
    }

    for command in commands {
        let args = template_args(&command);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let Some(docs) = render(&args) else {
            return;
        };
        let named = images(&docs);
        assert!(!named.is_empty(), "{command}: no workload");
        for image in named {
            assert!(
                pushed.contains(&image),
                "{command}\nrenders {image}, which the release workflow does not push: {pushed:?}"
            );
        }
    }
}
