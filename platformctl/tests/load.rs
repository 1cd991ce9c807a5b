//! The k6 scenarios of `load/scenarios` against a running platform, in
//! their short forms: the smoke walk (sign up, orders created, read,
//! cancelled, notifications listed and streamed live over gRPC) through the
//! gateway, and the gRPC scenario straight to auth and orders. k6's own
//! thresholds decide: it exits non-zero when one is missed.

mod common;

use std::path::Path;
use std::process::Command;

use common::addr;

const OFFSET: i32 = 13_525;

fn k6(script: &str, env: &[(&str, String)]) -> (bool, String) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("k6")
        .args(["run", "--quiet", "--no-usage-report"])
        .arg(repo.join("load/scenarios").join(script))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("k6 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_smoke_and_grpc_scenarios_pass_their_thresholds() {
    if !testkit::tool("k6", "version", "the k6 scenarios") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let platform = common::up(dir.path(), OFFSET, &[]);
    let gateway = addr(OFFSET, 8080);

    let (ok, output) = k6(
        "smoke.js",
        &[
            ("BASE_URL", format!("http://{gateway}")),
            ("DURATION", "5s".into()),
        ],
    );
    assert!(ok, "smoke.js missed a threshold:\n{output}");
    assert!(output.contains("notification streamed"), "{output}");

    let (ok, output) = k6(
        "grpc.js",
        &[
            ("AUTH_ADDR", addr(OFFSET, 50051).to_string()),
            ("ORDERS_ADDR", addr(OFFSET, 50052).to_string()),
            ("RATE", "20".into()),
            ("DURATION", "5s".into()),
        ],
    );
    assert!(ok, "grpc.js missed a threshold:\n{output}");

    // The thresholds can fail: an impossible latency bound fails the run.
    let (ok, _) = k6(
        "smoke.js",
        &[
            ("BASE_URL", format!("http://{gateway}")),
            ("DURATION", "2s".into()),
            ("P95_MS", "0.001".into()),
        ],
    );
    assert!(!ok, "k6 must fail a run that misses its thresholds");
    assert!(platform.interrupt().success());
}
