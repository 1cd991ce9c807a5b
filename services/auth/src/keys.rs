//! Where the signing keys come from: `AUTH_SIGNING_KEYS` (PEM text, from a
//! Kubernetes Secret), `AUTH_SIGNING_KEYS_FILE` (a mounted file), or, for one
//! machine only, a development key generated once into the data directory.

use std::path::Path;

use platform_runtime::tokens::{KeyError, KeyRing};
use platform_runtime::{ConfigError, Env};

use platform_runtime::StartError;

pub fn load(env: &Env, data_dir: &Path) -> Result<KeyRing, StartError> {
    if let Some(pem) = env.string("AUTH_SIGNING_KEYS") {
        return KeyRing::from_pem(&pem)
            .map_err(|e| ConfigError::new("AUTH_SIGNING_KEYS", e.to_string()).into());
    }
    if let Some(path) = env.string("AUTH_SIGNING_KEYS_FILE") {
        let pem = std::fs::read_to_string(&path).map_err(|e| {
            ConfigError::new("AUTH_SIGNING_KEYS_FILE", format!("cannot read {path}: {e}"))
        })?;
        return KeyRing::from_pem(&pem).map_err(|e| {
            ConfigError::new("AUTH_SIGNING_KEYS_FILE", format!("{path}: {e}")).into()
        });
    }
    let path = data_dir.join("dev-signing-key.pem");
    tracing::warn!(
        path = %path.display(),
        "no AUTH_SIGNING_KEYS or AUTH_SIGNING_KEYS_FILE: using a development key kept in the data directory; \
         never do this in production"
    );
    let unwritable = |e: std::io::Error| {
        ConfigError::new(
            "DATA_DIR",
            format!(
                "cannot keep the development signing key at {}: {e} (make the data directory writable, or set AUTH_SIGNING_KEYS)",
                path.display()
            ),
        )
    };
    if !path.exists() {
        std::fs::create_dir_all(data_dir).map_err(unwritable)?;
        write_private(&path, &KeyRing::generate().to_pem()?).map_err(unwritable)?;
    }
    // Read back what is on disk: when both colors start at once, the first
    // writer's key is the one both use.
    let pem = std::fs::read_to_string(&path).map_err(unwritable)?;
    Ok(KeyRing::from_pem(&pem).map_err(|e| KeyError(format!("{}: {e}", path.display())))?)
}

/// Writes a file only its owner can read, without replacing one that a
/// concurrently starting color wrote first.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(contents.as_bytes())?;
            file.sync_all()
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}
