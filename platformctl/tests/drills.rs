//! The failure drills in their short form (`load/drill.sh --short` does the
//! same with release binaries): replica kills, a rolling restart, a
//! PostgreSQL restart and a release, each on a fresh `platformctl up
//! --replicas 2` under k6 load, each ending with the integrity check of
//! every acknowledged order. Every drill must pass.

mod common;

use std::path::Path;

use load_lab::drills::{self, Settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_drill_passes_in_its_short_form() {
    if !testkit::tool("k6", "version", "the drills") {
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let settings = Settings {
        platformctl: env!("CARGO_BIN_EXE_platformctl").into(),
        script: repo.join("load/scenarios/steady.js"),
        // Clear of every other test's ports, replicas included.
        port_offset: 12_975,
        rate: 30,
        write_rate: 8,
        short: true,
        // The release drill goes through the last two releases to this one.
        previous: common::earlier_releases(2)
            .unwrap_or_default()
            .into_iter()
            .map(|(_, binary)| binary)
            .collect(),
        // The restore drill at a small size (the full drill goes to 1M orders).
        sizes: vec![2_000],
    };
    let mut failed = Vec::new();
    for drill in drills::ALL {
        let work = tempfile::tempdir().expect("tempdir");
        let outcome = drills::run(drill, &settings, work.path())
            .await
            .unwrap_or_else(|e| panic!("the {} drill could not run: {e:#}", drill.name()));
        println!("{}", outcome.line());
        assert!(outcome.k6_requests > 0 && !outcome.written.acks.is_empty());
        if !outcome.passed() {
            failed.push(format!("{}: {}", drill.name(), outcome.problems.join("; ")));
        }
    }
    assert!(failed.is_empty(), "drills failed:\n{}", failed.join("\n"));
}
