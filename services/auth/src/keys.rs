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
    std::fs::create_dir_all(data_dir).map_err(unwritable)?;
    // When both colors start at once, one creates the key and both read the
    // whole of that one file (never an empty or half-written one).
    let pem =
        platform_runtime::files::create_once(&path, KeyRing::generate().to_pem()?.as_bytes(), true)
            .map_err(unwritable)?;
    let pem = String::from_utf8(pem)
        .map_err(|_| KeyError(format!("{} is not UTF-8 text", path.display())))?;
    Ok(KeyRing::from_pem(&pem).map_err(|e| KeyError(format!("{}: {e}", path.display())))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    /// Two colors (here eight) starting at once on one data directory all
    /// come up, with the same key.
    #[test]
    fn colors_starting_together_share_one_key() {
        for _ in 0..10 {
            let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
            let start = Arc::new(Barrier::new(8));
            let colors: Vec<_> = (0..8)
                .map(|_| {
                    let (dir, start) = (Arc::clone(&dir), Arc::clone(&start));
                    std::thread::spawn(move || {
                        start.wait();
                        load(&Env::from_pairs([]), dir.path())
                            .map(|keys| keys.signing_kid().to_owned())
                            .map_err(|e| e.to_string())
                    })
                })
                .collect();
            let kids: Vec<String> = colors
                .into_iter()
                .map(|c| c.join().expect("thread").expect("the key loads"))
                .collect();
            assert!(kids.iter().all(|k| *k == kids[0]), "{kids:?}");
        }
    }
}
