//! The Helm charts as a cluster would receive them: `helm template` of every
//! service in both colors and of the gateway. The routing ConfigMap the
//! gateway chart renders must be accepted by the gateway's own parser and
//! name the Services the service chart creates; every workload must run
//! locked down (non-root, read-only root, no capabilities, RuntimeDefault
//! seccomp), with probes and a shutdown that fits its drain.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Command, Output};

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
fn helm_template(args: &[&str]) -> Option<Output> {
    let image = if args.iter().any(|a| a.starts_with("image.re")) {
        Vec::new()
    } else {
        vec!["--set", "image.registry=ghcr.io/example/platform"]
    };
    match Command::new("helm")
        .arg("template")
        .args(args)
        .args(image)
        .current_dir(helm_dir())
        .output()
    {
        Ok(output) => Some(output),
        Err(_) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "helm is required under CI (scripts/install-tools.sh)"
            );
            eprintln!("note: helm is not installed; skipping the chart checks");
            None
        }
    }
}

/// The objects `helm template` renders with `args`.
fn render(args: &[&str]) -> Option<Vec<Value>> {
    let output = helm_template(args)?;
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

// Scheduled database backups (helm/backup.md): the service chart's
// `backup` values, off by default, and the samples in helm/service/ci/.

/// A values file of `helm/service/ci/`, as JSON.
fn sample(name: &str) -> Value {
    let text = repo_file(&format!("helm/service/ci/{name}"));
    let value: serde_yaml::Value = serde_yaml::from_str(&text).expect("valid YAML");
    serde_json::to_value(value).expect("JSON-compatible")
}

/// The service chart with only a sample of its `ci/` values, in `color`.
fn sample_chart(name: &str, color: &str) -> Option<Vec<Value>> {
    render(&[
        &format!("orders-{color}"),
        "service",
        "-f",
        &format!("service/ci/{name}"),
        "--set",
        &format!("color={color}"),
    ])
}

/// What the backup values can make: CronJobs, ScheduledBackups, and
/// anything named or labelled as a backup.
fn backup_objects(docs: &[Value]) -> Vec<&Value> {
    docs.iter()
        .filter(|d| {
            ["CronJob", "Job", "ScheduledBackup"]
                .iter()
                .any(|kind| d["kind"] == *kind)
                || d["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.contains("backup"))
                || d["metadata"]["labels"]["app.kubernetes.io/component"] == "backup"
        })
        .collect()
}

/// The names of a pod spec's emptyDir volumes.
fn empty_dirs(pod: &Value) -> BTreeSet<&str> {
    pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .filter(|v| v["emptyDir"].is_object())
        .filter_map(|v| v["name"].as_str())
        .collect()
}

/// The volumes a pod template tells Velero to leave out.
fn velero_excludes(template: &Value) -> BTreeSet<&str> {
    template["metadata"]["annotations"]["backup.velero.io/backup-volumes-excludes"]
        .as_str()
        .map(|list| list.split(',').map(str::trim).collect())
        .unwrap_or_default()
}

/// An INI file's options, as (section, option) -> value; an option set
/// twice in a section fails.
fn ini(text: &str) -> BTreeMap<(String, String), String> {
    let mut section = String::new();
    let mut options = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (option, value) = line.split_once('=').expect("option=value");
        let previous = options.insert((section.clone(), option.to_owned()), value.to_owned());
        assert!(previous.is_none(), "[{section}] {option} is set twice");
    }
    options
}

#[test]
fn nothing_backup_related_renders_by_default() {
    let mut renders = Vec::new();
    for (service, _) in SERVICES {
        for color in ["blue", "green"] {
            let Some(docs) = service_chart(service, color) else {
                return;
            };
            renders.push((format!("{service}-{color}"), docs));
        }
    }
    let Some(docs) = sample_chart("default-values.yaml", "blue") else {
        return;
    };
    renders.push(("ci/default-values.yaml".to_owned(), docs));
    for (name, docs) in &renders {
        let objects = backup_objects(docs);
        assert!(objects.is_empty(), "{name} renders {objects:?}");
        let annotations =
            &of_kind(docs, "Deployment")[0]["spec"]["template"]["metadata"]["annotations"];
        let velero: Vec<&String> = annotations
            .as_object()
            .expect("pod annotations")
            .keys()
            .filter(|k| k.contains("velero.io"))
            .collect();
        assert!(velero.is_empty(), "{name}: {velero:?}");
    }
}

#[test]
fn the_pgbackrest_sample_takes_incremental_and_weekly_full_backups() {
    let values = sample("backup-pgbackrest-values.yaml");
    let backup = &values["backup"]["pgbackrest"];
    let Some(docs) = sample_chart("backup-pgbackrest-values.yaml", "blue") else {
        return;
    };

    // pgbackrest.conf: the repository on the object store, the database
    // through its pgBackRest TLS server.
    let config = of_kind(&docs, "ConfigMap")
        .into_iter()
        .find(|c| c["metadata"]["name"] == "orders-backup")
        .expect("pgBackRest's ConfigMap");
    let conf = ini(config["data"]["pgbackrest.conf"]
        .as_str()
        .expect("pgbackrest.conf"));
    let option = |section: &str, name: &str| {
        conf.get(&(section.to_owned(), name.to_owned()))
            .map(String::as_str)
    };
    assert_eq!(option("global", "repo1-type"), Some("s3"));
    for (name, value) in [
        ("repo1-s3-bucket", "bucket"),
        ("repo1-s3-endpoint", "endpoint"),
        ("repo1-s3-region", "region"),
    ] {
        assert_eq!(
            option("global", name),
            backup["repo"][value].as_str(),
            "{name}"
        );
    }
    assert_eq!(
        option("platform", "pg1-host"),
        backup["pgHost"]["host"].as_str()
    );
    assert_eq!(option("platform", "pg1-host-type"), Some("tls"));
    assert!(option("platform", "pg1-path").is_some_and(|p| p.starts_with('/')));

    let service_selector = of_kind(&docs, "Service")[0]["spec"]["selector"]
        .as_object()
        .expect("the Service's selector");
    let cronjobs = of_kind(&docs, "CronJob");
    assert_eq!(cronjobs.len(), 2, "an incremental and a full CronJob");
    for (kind, schedule) in [("incr", "schedule"), ("full", "fullSchedule")] {
        let name = format!("orders-backup-{kind}");
        let cronjob = cronjobs
            .iter()
            .find(|c| c["metadata"]["name"] == name.as_str())
            .unwrap_or_else(|| panic!("no CronJob {name}"));
        let spec = &cronjob["spec"];
        assert_eq!(spec["schedule"], backup[schedule], "{name}");
        assert_eq!(spec["concurrencyPolicy"], "Forbid", "{name}");
        for field in [
            "startingDeadlineSeconds",
            "successfulJobsHistoryLimit",
            "failedJobsHistoryLimit",
        ] {
            assert!(spec[field].is_u64(), "{name}: {field}");
        }
        let job = &spec["jobTemplate"]["spec"];
        for field in ["backoffLimit", "activeDeadlineSeconds"] {
            assert!(job[field].is_u64(), "{name}: {field}");
        }
        let template = &job["template"];
        let pod = &template["spec"];
        assert_eq!(pod["restartPolicy"], "Never", "{name}");
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
            "{name}"
        );
        let labels = template["metadata"]["labels"].as_object().expect("labels");
        assert!(
            !service_selector
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v)),
            "{name}: the service's Service, PDB and NetworkPolicy would select the backup pods"
        );

        let containers = pod["containers"].as_array().expect("containers");
        assert_eq!(containers.len(), 1, "{name}");
        let container = &containers[0];
        assert_eq!(
            container["command"],
            serde_json::json!([
                "pgbackrest",
                "--stanza=platform",
                "backup",
                format!("--type={kind}")
            ]),
            "{name}"
        );
        assert_eq!(
            container["image"],
            format!(
                "{}:{}",
                backup["image"]["repository"].as_str().expect("repository"),
                backup["image"]["tag"].as_str().expect("tag")
            )
            .as_str()
        );
        let sc = &container["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(
            sc["capabilities"]["drop"],
            serde_json::json!(["ALL"]),
            "{name}"
        );
        assert!(container["resources"]["requests"].is_object(), "{name}");

        // The bucket's credentials from the existing Secret.
        let env = container["env"].as_array().expect("env");
        for variable in ["PGBACKREST_REPO1_S3_KEY", "PGBACKREST_REPO1_S3_KEY_SECRET"] {
            let entry = env
                .iter()
                .find(|e| e["name"] == variable)
                .unwrap_or_else(|| panic!("{name}: no {variable}"));
            let reference = &entry["valueFrom"]["secretKeyRef"];
            assert_eq!(
                reference["name"], backup["repo"]["credentials"]["secretName"],
                "{name}: {variable}"
            );
            assert!(reference["key"].is_string(), "{name}: {variable}");
        }

        // Where the files are: the config and TLS files in the projected
        // volume, pgBackRest's lock, log and spool paths on emptyDirs.
        let volumes = pod["volumes"].as_array().expect("volumes");
        let mounts = container["volumeMounts"].as_array().expect("mounts");
        let mounted_on = |path: &str| {
            mounts
                .iter()
                .filter(|m| {
                    let at = m["mountPath"].as_str().expect("mountPath");
                    path == at || path.starts_with(&format!("{at}/"))
                })
                .max_by_key(|m| m["mountPath"].as_str().map_or(0, str::len))
                .map(|m| {
                    let volume = volumes
                        .iter()
                        .find(|v| v["name"] == m["name"])
                        .expect("a mounted volume");
                    (volume, m["mountPath"].as_str().expect("mountPath"))
                })
        };
        for path in [
            Some("/tmp"),
            option("global", "lock-path"),
            option("global", "log-path"),
            option("global", "spool-path"),
        ] {
            let path = path.expect("pgBackRest's lock, log and spool paths are set");
            let (volume, _) =
                mounted_on(path).unwrap_or_else(|| panic!("{name}: nothing mounted on {path}"));
            assert!(
                volume["emptyDir"].is_object(),
                "{name}: {path} is not on an emptyDir"
            );
        }
        let tls = backup["pgHost"]["tlsSecret"].as_str().expect("tlsSecret");
        for (file, source) in [
            (
                "/etc/pgbackrest/pgbackrest.conf".to_owned(),
                "orders-backup",
            ),
            (
                option("platform", "pg1-host-ca-file")
                    .expect("ca")
                    .to_owned(),
                tls,
            ),
            (
                option("platform", "pg1-host-cert-file")
                    .expect("cert")
                    .to_owned(),
                tls,
            ),
            (
                option("platform", "pg1-host-key-file")
                    .expect("key")
                    .to_owned(),
                tls,
            ),
        ] {
            let (volume, at) =
                mounted_on(&file).unwrap_or_else(|| panic!("{name}: nothing mounted on {file}"));
            let relative = file
                .strip_prefix(&format!("{at}/"))
                .expect("under the mount");
            let provided = volume["projected"]["sources"]
                .as_array()
                .expect("a projected volume")
                .iter()
                .filter_map(|s| s["configMap"].as_object().or(s["secret"].as_object()))
                .filter(|s| s["name"] == source)
                .flat_map(|s| s["items"].as_array().expect("items"))
                .any(|item| item["path"] == relative);
            assert!(provided, "{name}: {file} is not from {source}");
        }

        // Velero leaves the job's scratch space out.
        assert_eq!(velero_excludes(template), empty_dirs(pod), "{name}");
    }

    // The sample has Velero's exclusions on: the service's pods leave out
    // every emptyDir they mount.
    let deployment = of_kind(&docs, "Deployment")[0];
    let template = &deployment["spec"]["template"];
    assert!(!empty_dirs(&template["spec"]).is_empty());
    assert_eq!(
        velero_excludes(template),
        empty_dirs(&template["spec"]),
        "the Deployment's Velero exclusions"
    );

    // Both colors share the database: only blue (backup.color) backs it up.
    let Some(green) = sample_chart("backup-pgbackrest-values.yaml", "green") else {
        return;
    };
    let objects = backup_objects(&green);
    assert!(objects.is_empty(), "green renders {objects:?}");
}

#[test]
fn the_cloudnativepg_sample_schedules_a_backup_of_the_services_cluster() {
    let values = sample("backup-cloudnativepg-values.yaml");
    let backup = &values["backup"]["cloudnativepg"];
    let Some(docs) = sample_chart("backup-cloudnativepg-values.yaml", "blue") else {
        return;
    };
    let scheduled = of_kind(&docs, "ScheduledBackup");
    assert_eq!(scheduled.len(), 1);
    let scheduled = scheduled[0];
    assert_eq!(scheduled["apiVersion"], "postgresql.cnpg.io/v1");
    let spec = &scheduled["spec"];
    assert_eq!(spec["cluster"]["name"], backup["cluster"]);
    assert_eq!(spec["schedule"], backup["schedule"]);
    assert_eq!(
        spec["schedule"]
            .as_str()
            .expect("schedule")
            .split_whitespace()
            .count(),
        6,
        "CloudNativePG's cron has seconds first"
    );
    assert_eq!(spec["backupOwnerReference"], "self");
    assert_eq!(spec["method"], "barmanObjectStore");
    assert_eq!(spec["immediate"], true);
    assert_eq!(spec["suspend"], false);
    for field in spec.as_object().expect("spec").keys() {
        assert!(
            [
                "schedule",
                "cluster",
                "immediate",
                "suspend",
                "backupOwnerReference",
                "method",
                "pluginConfiguration",
                "target",
            ]
            .contains(&field.as_str()),
            "spec.{field} is not a ScheduledBackup field"
        );
    }
    assert!(of_kind(&docs, "CronJob").is_empty(), "one mode only");

    let Some(green) = sample_chart("backup-cloudnativepg-values.yaml", "green") else {
        return;
    };
    let objects = backup_objects(&green);
    assert!(objects.is_empty(), "green renders {objects:?}");
}

#[test]
fn bad_backup_values_are_refused_by_the_values_schema() {
    for (file, set, at, says) in [
        (
            "backup-cloudnativepg-values.yaml",
            "backup.pgbackrest.enabled=true",
            "/backup/pgbackrest/enabled",
            "value must be false",
        ),
        (
            "backup-pgbackrest-values.yaml",
            "backup.cloudnativepg.enabled=true",
            "/backup/pgbackrest/enabled",
            "value must be false",
        ),
        (
            "backup-cloudnativepg-values.yaml",
            "backup.cloudnativepg.schedule=30 1 * * *",
            "/backup/cloudnativepg/schedule",
            "does not match pattern '^(?<second>",
        ),
        (
            "backup-pgbackrest-values.yaml",
            "backup.pgbackrest.fullSchedule=0 15 1 * * 0",
            "/backup/pgbackrest/fullSchedule",
            "does not match pattern '^(@(yearly",
        ),
        (
            "backup-pgbackrest-values.yaml",
            "backup.pgbackrest.enable=false",
            "/backup/pgbackrest",
            "additional properties 'enable' not allowed",
        ),
    ] {
        let path = format!("service/ci/{file}");
        let Some(output) = helm_template(&["orders-blue", "service", "-f", &path, "--set", set])
        else {
            return;
        };
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{file} with {set} is accepted");
        assert!(
            stderr.contains("don't meet the specifications of the schema"),
            "{set}: not the values schema: {stderr}"
        );
        assert!(
            stderr.contains(&format!("at '{at}': ")) && stderr.contains(says),
            "{set}: {stderr}"
        );
    }
    // A mode turned on without what it needs: the chart names the value.
    for (set, says) in [
        (
            "backup.cloudnativepg.enabled=true",
            "backup.cloudnativepg.cluster: name the CloudNativePG Cluster",
        ),
        (
            "backup.pgbackrest.enabled=true",
            "backup.pgbackrest.image.repository",
        ),
    ] {
        let Some(output) = helm_template(&[
            "orders-blue",
            "service",
            "-f",
            "service/ci/default-values.yaml",
            "--set",
            set,
        ]) else {
            return;
        };
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{set} is accepted");
        assert!(stderr.contains(says), "{set}: {stderr}");
    }
}
