//! Flips under load, driven by k6 (`load/flip.js`): a constant arrival rate
//! of reads while the weights flip 0<->100 at a steady pace. k6's own
//! thresholds fail the run on any failed request; the share each color
//! served must match the time it held the weight.

mod common;

use std::time::{Duration, Instant};

use common::{ADMIN_TOKEN, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flips_under_k6_load_fail_nothing() {
    if !testkit::tool("k6", "version", "the flips under load") {
        return;
    }
    let stack = Stack::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let summary = dir.path().join("summary.json");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../load/flip.js");
    let mut k6 = tokio::process::Command::new("k6")
        .args([
            "run",
            "--quiet",
            "--no-usage-report",
            "-e",
            "RATE=150",
            "-e",
            "DURATION=8s",
        ])
        .arg("-e")
        .arg(format!("BASE_URL=http://{}", stack.gateway.addr))
        .arg("--summary-export")
        .arg(&summary)
        .arg(script)
        .kill_on_drop(true)
        .spawn()
        .expect("k6 starts");

    // Flip every 400 ms while k6 runs, and keep the time each color held 100%.
    let mut admin = stack.admin().await;
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let (mut blue_time, mut green_time) = (Duration::ZERO, Duration::ZERO);
    let mut green = false;
    let mut since = Instant::now();
    let mut flips = 0;
    let status = loop {
        tokio::select! {
            status = k6.wait() => break status.expect("k6 ran"),
            _ = tokio::time::sleep(Duration::from_millis(400)) => {
                green = !green;
                let weights = if green { r#"{"blue":0,"green":100}"# } else { r#"{"blue":100,"green":0}"# };
                let reply = admin.call("PUT", "/admin/routes/orders/weights", &[("authorization", &auth)], weights).await;
                assert_eq!(reply.status, 200, "{}", reply.text());
                let held = since.elapsed();
                if green { blue_time += held } else { green_time += held }
                since = Instant::now();
                flips += 1;
            }
        }
    };
    if green {
        green_time += since.elapsed()
    } else {
        blue_time += since.elapsed()
    }
    assert!(
        status.success(),
        "k6 failed its thresholds (a failed request or a slow one): {status}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).expect("summary")).expect("json");
    let count = |metric: &str| summary["metrics"][metric]["count"].as_f64().unwrap_or(0.0);
    let (blue, green_served) = (count("served_blue"), count("served_green"));
    let share = blue / (blue + green_served);
    let expected = blue_time.as_secs_f64() / (blue_time + green_time).as_secs_f64();
    eprintln!(
        "{flips} flips under load: {} requests, {} failed; blue served {:.1}% for {:.1}% of the time",
        count("http_reqs"),
        summary["metrics"]["http_req_failed"]["passes"],
        share * 100.0,
        expected * 100.0
    );
    assert!(flips >= 15, "flipped {flips} times");
    assert!(
        (share - expected).abs() < 0.1,
        "blue served {share:.3}, held the weight {expected:.3} of the time"
    );
    stack.stop().await;
}
