//! Files that are read by other processes while they are written: a reader
//! sees the old contents or the new, never a part, and a power loss after
//! the call returns keeps the new contents.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Replaces `path` with `bytes` atomically: a temporary file of its own
/// (unique per process and call, so concurrent writers in several processes
/// never share one) is written, synced and renamed over `path`, and the
/// directory is synced so the rename survives a power loss. With `private`,
/// the file is readable by its owner only from its first moment.
pub fn replace(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    let tmp = temporary(path);
    let written = write_new(&tmp, bytes, private).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    sync_dir(path)
}

/// Creates `path` with `bytes` unless it exists, atomically: when several
/// processes race, one creates it and every one of them then reads the whole
/// of that file, never an empty or partial one. Returns the file's contents
/// (the ones written here, or the winner's).
pub fn create_once(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<Vec<u8>> {
    if let Ok(existing) = std::fs::read(path) {
        return Ok(existing);
    }
    let tmp = temporary(path);
    write_new(&tmp, bytes, private)?;
    // A hard link never replaces a file another process created first.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_dir(path)?;
            Ok(bytes.to_vec())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read(path),
        Err(e) => Err(e),
    }
}

fn temporary(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy());
    path.with_file_name(format!(
        ".{name}.{}-{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

fn write_new(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    #[test]
    fn racing_creators_all_read_the_one_winner() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = Arc::new(dir.path().join("key.pem"));
            let start = Arc::new(Barrier::new(8));
            let readers: Vec<_> = (0..8u8)
                .map(|i| {
                    let (path, start) = (Arc::clone(&path), Arc::clone(&start));
                    std::thread::spawn(move || {
                        let mine = vec![i; 64 * 1024];
                        start.wait();
                        create_once(&path, &mine, true).expect("create or read")
                    })
                })
                .collect();
            let seen: Vec<Vec<u8>> = readers
                .into_iter()
                .map(|r| r.join().expect("thread"))
                .collect();
            assert!(seen.iter().all(|s| s.len() == 64 * 1024 && *s == seen[0]));
            assert_eq!(std::fs::read(&*path).expect("file"), seen[0]);
            let leftovers = std::fs::read_dir(dir.path()).expect("dir").count();
            assert_eq!(leftovers, 1, "temporary files left behind");
        }
    }

    #[test]
    fn concurrent_replacements_leave_one_whole_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = Arc::new(dir.path().join("routes.json"));
        let start = Arc::new(Barrier::new(6));
        let writers: Vec<_> = (0..6u8)
            .map(|i| {
                let (path, start) = (Arc::clone(&path), Arc::clone(&start));
                std::thread::spawn(move || {
                    start.wait();
                    for _ in 0..20 {
                        replace(&path, &vec![i; 32 * 1024], false).expect("replace");
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().expect("thread");
        }
        let file = std::fs::read(&*path).expect("file");
        assert_eq!(file.len(), 32 * 1024);
        assert!(file.iter().all(|b| *b == file[0]));
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_private_from_the_start() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("secret");
        create_once(&path, b"s", true).expect("create");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        replace(&path, b"t", true).expect("replace");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
