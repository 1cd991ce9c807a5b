//! What a binary is: its crate version and, when built from a named commit,
//! that commit (`0.1.0+640258aaf7d8`); and the schema it runs on (the
//! highest migration it knows, and the highest the database has). Every
//! answer carries both in headers (`x-service-build`, `x-service-schema`),
//! which the gateway's probes read for `/admin/status` and `platformctl
//! status`; `build_info` and the schema gauges say the same to Prometheus.

use std::sync::LazyLock;

/// `<crate version>[+<commit>]`.
pub fn build() -> &'static str {
    static BUILD: LazyLock<String> = LazyLock::new(|| {
        let commit = env!("PLATFORM_COMMIT_ID");
        if commit.is_empty() {
            env!("CARGO_PKG_VERSION").to_owned()
        } else {
            format!("{}+{commit}", env!("CARGO_PKG_VERSION"))
        }
    });
    &BUILD
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_build_starts_with_the_crate_version() {
        let build = super::build();
        assert!(build.starts_with(env!("CARGO_PKG_VERSION")), "{build}");
        match build.split_once('+') {
            Some((_, commit)) => assert!(
                commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
                "{build}"
            ),
            None => assert_eq!(build, env!("CARGO_PKG_VERSION")),
        }
    }
}
