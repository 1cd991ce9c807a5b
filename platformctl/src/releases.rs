//! `platformctl releases list|build` and `up --green-ref/--blue-ref`: the
//! releases recorded in `releases.toml`, and any of them (or any commit)
//! built once into `<target>/releases/<commit>/platformctl`.
//!
//! The build shares the workspace's target directory, so an earlier
//! release costs only the crates that differ. Cargo links the binary it
//! builds to `<target>/debug/platformctl`, where the current build lives:
//! that file is set aside before and put back after, so whoever runs the
//! current binary (a test, `up`) never runs the old one by mistake.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail, ensure};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub version: String,
    pub commit: String,
}

#[derive(Debug, clap::Args)]
pub struct ReleasesArgs {
    #[command(subcommand)]
    command: ReleasesCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ReleasesCommand {
    /// The releases recorded in releases.toml, oldest first.
    List,
    /// Build a release (its version, or any git ref) once, and print the
    /// path of its platformctl.
    Build {
        /// A version of releases.toml (0.1.0), `previous` (the last one
        /// recorded before this binary's version), or a git ref (a commit, a
        /// tag, HEAD~3)
        release: String,
        /// An optimized build (cargo's release profile), as the drills and
        /// benchmarks run
        #[arg(long = "release")]
        optimized: bool,
    },
}

/// Which of cargo's profiles a build uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Debug,
    Release,
}

impl Profile {
    /// The profile this binary was built with: `up --green-ref` runs the
    /// other release built alike.
    pub fn of_this_binary() -> Self {
        if cfg!(debug_assertions) {
            Profile::Debug
        } else {
            Profile::Release
        }
    }

    /// Its directory under the target directory.
    fn dir(self) -> &'static str {
        match self {
            Profile::Debug => "debug",
            Profile::Release => "release",
        }
    }
}

pub fn run(args: ReleasesArgs) -> anyhow::Result<()> {
    let repo = repository()?;
    match args.command {
        ReleasesCommand::List => {
            for release in recorded(&repo)? {
                let built = cached(&repo, &release.commit, Profile::Debug).is_file();
                println!(
                    "{:<10} {}{}",
                    release.version,
                    release.commit,
                    if built { "  (built)" } else { "" }
                );
            }
        }
        ReleasesCommand::Build { release, optimized } => {
            let profile = if optimized {
                Profile::Release
            } else {
                Profile::Debug
            };
            println!("{}", build(&release, profile)?.display());
        }
    }
    Ok(())
}

/// The top of the git clone the command runs in.
fn repository() -> anyhow::Result<PathBuf> {
    let out = Command::new("git")
        .args(["rev-parse", "--show-toplevel"])
        .output()
        .context("cannot run git: building a release needs git and a clone of the platform")?;
    ensure!(
        out.status.success(),
        "not inside a git clone of the platform: run this from the clone (releases are built from its history)"
    );
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

/// The releases of `repo`'s releases.toml, oldest first.
pub fn recorded(repo: &Path) -> anyhow::Result<Vec<Release>> {
    let path = repo.join("releases.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    parse(&text).with_context(|| format!("in {}", path.display()))
}

/// The `version` and `commit` of each `[[release]]` table (the file's other
/// keys, the migrations, are for the compatibility check).
fn parse(text: &str) -> anyhow::Result<Vec<Release>> {
    let mut releases = Vec::new();
    let mut current: Option<(Option<String>, Option<String>)> = None;
    let mut finish = |current: Option<(Option<String>, Option<String>)>| -> anyhow::Result<()> {
        if let Some((version, commit)) = current {
            match (version, commit) {
                (Some(version), Some(commit)) => releases.push(Release { version, commit }),
                _ => bail!("a [[release]] lacks its version or commit"),
            }
        }
        Ok(())
    };
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line == "[[release]]" {
            finish(current.take())?;
            current = Some((None, None));
            continue;
        }
        if line.starts_with('[') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        if let (Some((version, commit)), "version" | "commit") = (current.as_mut(), key) {
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .with_context(|| format!("line {}: {key} must be a quoted string", n + 1))?;
            let slot = if key == "version" { version } else { commit };
            *slot = Some(value.to_owned());
        }
    }
    finish(current)?;
    for release in &releases {
        ensure!(
            release.commit.len() == 40 && release.commit.chars().all(|c| c.is_ascii_hexdigit()),
            "release {}: commit must be a full 40-digit hash, got {:?}",
            release.version,
            release.commit
        );
    }
    Ok(releases)
}

/// The commit `release` names: a recorded version's, the previous
/// release's, or a git ref's.
fn resolve(repo: &Path, release: &str) -> anyhow::Result<String> {
    let recorded = recorded(repo)?;
    if release == "previous" {
        return recorded
            .into_iter()
            .rfind(|r| r.version != env!("CARGO_PKG_VERSION"))
            .map(|r| r.commit)
            .context("releases.toml records no release before this one");
    }
    if let Some(found) = recorded.into_iter().find(|r| r.version == release) {
        return Ok(found.commit);
    }
    let out = Command::new("git")
        .current_dir(repo)
        .args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("{release}^{{commit}}"))
        .output()
        .context("cannot run git")?;
    ensure!(
        out.status.success(),
        "{release:?} is neither a release of releases.toml nor a commit of this clone \
         (see `platformctl releases list`; fetch the history if the clone is shallow)"
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// Where cargo builds: `CARGO_TARGET_DIR`, or the clone's `target`.
fn target_dir(repo: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_absolute() {
                dir
            } else {
                repo.join(dir)
            }
        })
        .unwrap_or_else(|| repo.join("target"))
}

fn cached(repo: &Path, commit: &str, profile: Profile) -> PathBuf {
    target_dir(repo)
        .join("releases")
        .join(commit)
        .join(profile.dir())
        .join("platformctl")
}

/// The platformctl of `release`, built from its commit unless built before.
pub fn build(release: &str, profile: Profile) -> anyhow::Result<PathBuf> {
    let repo = repository()?;
    let commit = resolve(&repo, release)?;
    let binary = cached(&repo, &commit, profile);
    if binary.is_file() {
        return Ok(binary);
    }
    let home = binary.parent().context("cache path")?.to_path_buf();
    let source = home.join("src");
    if source.exists() {
        std::fs::remove_dir_all(&source)
            .with_context(|| format!("cannot clear {}", source.display()))?;
    }
    std::fs::create_dir_all(&source)
        .with_context(|| format!("cannot create {}", source.display()))?;
    eprintln!("building {release} ({commit}) into {}", home.display());
    let status = Command::new("sh")
        .arg("-c")
        // -m: the files get the time of extraction, not of the commit, so
        // cargo sees them as newer than whatever the target directory holds
        // for the same crates (their artifacts share names across the two
        // trees) and rebuilds them and reruns their build scripts.
        .arg(r#"git -C "$1" archive --format=tar "$2" | tar -x -m -C "$3""#)
        .args(["sh"])
        .arg(&repo)
        .arg(&commit)
        .arg(&source)
        .status()
        .context("cannot run git archive")?;
    ensure!(
        status.success(),
        "cannot export commit {commit} from {}",
        repo.display()
    );
    let target = target_dir(&repo);
    let current = target.join(profile.dir()).join("platformctl");
    let kept = target
        .join("releases")
        .join(format!(".current-{}", std::process::id()));
    // Set the current build aside (a second name for the same file).
    let had_current = std::fs::hard_link(&current, &kept).is_ok();
    let built = Command::new("cargo")
        .current_dir(&source)
        .args(["build", "--locked", "-p", "platformctl", "--target-dir"])
        .arg(&target)
        .args((profile == Profile::Release).then_some("--release"))
        .status()
        .context("cannot run cargo");
    let copied = built.as_ref().ok().filter(|s| s.success()).map(|_| {
        let partial = home.join("platformctl.partial");
        std::fs::copy(&current, &partial)
            .and_then(|_| std::fs::rename(&partial, &binary))
            .with_context(|| format!("cannot copy the build to {}", binary.display()))
    });
    if had_current {
        std::fs::rename(&kept, &current).with_context(|| {
            format!("cannot put the current build back at {}", current.display())
        })?;
    } else {
        // Cargo links the current build there again on its next run.
        let _ = std::fs::remove_file(&current);
    }
    // Gone, the old tree's files make cargo rebuild the current crates on
    // its next run (their records name files that no longer exist) rather
    // than take the old artifacts for them.
    let _ = std::fs::remove_dir_all(&source);
    let status = built?;
    ensure!(
        status.success(),
        "building {release} ({commit}) failed ({status}): see cargo's output above"
    );
    copied.context("no build")??;
    Ok(binary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_recorded_releases() {
        let text = "# note\n[[release]]\nversion = \"0.1.0\"\ncommit = \"640258aaf7d87861f183d1960965286f31f7da2e\"\n\n[release.migrations]\norders = [\"0001_orders\"]\n\n[[release]]\nversion = \"0.2.0\"\ncommit = \"1111111111111111111111111111111111111111\"\n";
        assert_eq!(
            parse(text).expect("parse"),
            vec![
                Release {
                    version: "0.1.0".into(),
                    commit: "640258aaf7d87861f183d1960965286f31f7da2e".into()
                },
                Release {
                    version: "0.2.0".into(),
                    commit: "1111111111111111111111111111111111111111".into()
                }
            ]
        );
        assert!(parse("[[release]]\nversion = \"0.1.0\"\n").is_err());
        assert!(parse("[[release]]\nversion = \"0.1.0\"\ncommit = \"abc\"\n").is_err());
        assert!(parse("[[release]]\nversion = 0.1\ncommit = \"abc\"\n").is_err());
    }

    #[test]
    fn the_repository_records_its_releases() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let releases = recorded(&repo).expect("releases.toml");
        assert!(
            releases.iter().any(|r| r.version == "0.1.0"),
            "{releases:?}"
        );
    }
}
