//! Compiles the contracts with protox (no `protoc` binary) and writes one
//! descriptor set per service for gRPC reflection, plus one with everything
//! for the gateway, which derives its REST routes from the annotations;
//! and the checks of the fields' rules (`validation`).

#[path = "src/annotations.rs"]
mod annotations;
mod validation;

use std::path::PathBuf;

const SERVICES: [&str; 4] = ["auth", "orders", "payments", "notifications"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let files: Vec<String> = SERVICES
        .iter()
        .map(|s| format!("platform/{s}/v1/{s}.proto"))
        .collect();

    for (service, file) in SERVICES.iter().zip(&files) {
        let mut compiler = protox::Compiler::new(["."])?;
        compiler.include_imports(true).include_source_info(true);
        compiler.open_file(file)?;
        std::fs::write(
            out_dir.join(format!("{service}_descriptor.bin")),
            compiler.encode_file_descriptor_set(),
        )?;
    }

    let mut compiler = protox::Compiler::new(["."])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(&files)?;
    std::fs::write(
        out_dir.join("platform_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    tonic_prost_build::configure()
        .emit_rerun_if_changed(false)
        .compile_fds(compiler.file_descriptor_set())?;
    std::fs::write(
        out_dir.join("validate.rs"),
        validation::generate(&compiler.descriptor_pool())?,
    )?;

    println!("cargo:rerun-if-changed=platform");
    println!("cargo:rerun-if-changed=google");
    println!("cargo:rerun-if-changed=fieldrules");
    Ok(())
}
