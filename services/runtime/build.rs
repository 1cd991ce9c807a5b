//! Records what built this crate: the compiler's version, for the
//! `build_info` metric (`rust-version` in Cargo.toml is a minimum, not this),
//! and the commit when the build names one (`PLATFORM_COMMIT`, set by the
//! image build from the release workflow's sha); a build from a working tree
//! names none rather than a commit it may not match.

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let version = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|line| line.split_whitespace().nth(1).map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=PLATFORM_RUSTC_VERSION={version}");
    let commit: String = std::env::var("PLATFORM_COMMIT")
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(12)
        .collect();
    println!("cargo:rustc-env=PLATFORM_COMMIT_ID={commit}");
    println!("cargo:rerun-if-env-changed=RUSTC");
    println!("cargo:rerun-if-env-changed=PLATFORM_COMMIT");
}
