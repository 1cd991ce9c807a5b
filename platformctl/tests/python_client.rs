//! The protos as another language's tools read them: every `.proto` in the
//! repository compiles with protoc (the reference compiler, from
//! grpcio-tools), and a Python client generated from `proto/` calls the
//! platform through the gateway: register, log in, order, read it back, and
//! the status codes of an unknown order and of a missing token.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

// Above the kernel's ephemeral range, apart from the other tests' layouts.
const OFFSET: i32 = 13_750;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

/// `python3 -m grpc_tools.protoc ARGS`; `None` when grpcio-tools is not
/// installed outside CI.
fn protoc(args: &[String]) -> Option<std::process::Output> {
    if !testkit::python_module("grpc_tools.protoc", "grpcio-tools", "the protoc checks") {
        return None;
    }
    Some(
        Command::new("python3")
            .args(["-m", "grpc_tools.protoc"])
            .args(args)
            .output()
            .expect("python3 runs"),
    )
}

fn protos(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable directory") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            protos(&path, found);
        } else if path.extension().is_some_and(|e| e == "proto") {
            found.push(path);
        }
    }
}

#[test]
fn every_proto_compiles_with_protoc() {
    let root = repo();
    let mut files = Vec::new();
    protos(&root.join("proto"), &mut files);
    protos(&root.join("gateway/tests/protos"), &mut files);
    assert!(files.len() >= 7, "found only {files:?}");
    for file in files {
        let dir = file.parent().expect("parent");
        let args = vec![
            format!("-I{}", root.join("proto").display()),
            format!("-I{}", dir.display()),
            "--descriptor_set_out=/dev/null".to_owned(),
            file.display().to_string(),
        ];
        let Some(output) = protoc(&args) else { return };
        assert!(
            output.status.success(),
            "protoc refuses {}: {}",
            file.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn a_generated_python_client_calls_the_platform() {
    let root = repo();
    let dir = tempfile::tempdir().expect("tempdir");
    // The proto package `platform` has the name of Python's standard
    // `platform` module, so the generated code goes under `platform_protos`
    // (README, "Clients in other languages").
    let sources = dir.path().join("protos");
    let generated = dir.path().join("generated");
    std::fs::create_dir_all(&generated).expect("mkdir");
    let mut files = Vec::new();
    for service in ["auth", "orders", "payments", "notifications"] {
        let target = sources.join("platform_protos").join(service).join("v1");
        std::fs::create_dir_all(&target).expect("mkdir");
        let file = format!("{service}.proto");
        std::fs::copy(
            root.join("proto/platform")
                .join(service)
                .join("v1")
                .join(&file),
            target.join(&file),
        )
        .expect("copy proto");
        files.push(target.join(file).display().to_string());
    }
    let mut args = vec![
        format!("-I{}", sources.display()),
        format!("-I{}", root.join("proto").display()),
        format!("--python_out={}", generated.display()),
        format!("--grpc_python_out={}", generated.display()),
    ];
    for shared in [
        "google/api/annotations.proto",
        "google/api/http.proto",
        "google/api/field_behavior.proto",
        "fieldrules/v1/fieldrules.proto",
    ] {
        args.push(root.join("proto").join(shared).display().to_string());
    }
    args.extend(files);
    let Some(output) = protoc(&args) else { return };
    assert!(
        output.status.success(),
        "protoc: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let data = dir.path().join("data");
    let _platform = common::up(&data, OFFSET, &[]);
    let gateway = common::addr(OFFSET, 8080).to_string();
    let output = Command::new("python3")
        .arg(root.join("platformctl/tests/clients/python_client.py"))
        .arg(&generated)
        .arg(&gateway)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "the Python client failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("one JSON line from the client");
    // HealthCheckResponse { status: SERVING } on the wire.
    assert_eq!(seen["health"], "0801", "{seen}");
    assert_eq!(seen["created_status"], "ORDER_STATUS_PAID", "{seen}");
    assert_eq!(seen["total_minor"], 2500, "{seen}");
    assert_eq!(seen["unknown_order"], "NOT_FOUND", "{seen}");
    assert_eq!(seen["no_token"], "UNAUTHENTICATED", "{seen}");
}
