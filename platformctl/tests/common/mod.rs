//! Running `platformctl up` from tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use nix::sys::signal::kill;
use nix::unistd::Pid;

pub fn port(offset: i32, base: u16) -> u16 {
    u16::try_from(i32::from(base) + offset).expect("port in range")
}

pub fn addr(offset: i32, base: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], port(offset, base)))
}

/// Starts `platformctl up` and waits for its ready line.
/// A running `platformctl up`, stopped like Ctrl-C when dropped (also when a
/// test fails), so no process outlives the test.
pub struct Up(pub Child);

impl Up {
    /// Ctrl-C, then the exit status.
    pub fn interrupt(mut self) -> std::process::ExitStatus {
        let _ = kill(
            Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        self.0.wait().expect("platformctl exits")
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = kill(
                Pid::from_raw(self.0.id() as i32),
                nix::sys::signal::Signal::SIGINT,
            );
            let _ = self.0.wait();
        }
    }
}

pub fn up(data_dir: &Path, offset: i32, env: &[(&str, String)]) -> Up {
    up_with(data_dir, offset, env, &[])
}

/// `up` with extra arguments, such as `--green-env FAULT_ERROR_RATE=0.2`.
pub fn up_with(data_dir: &Path, offset: i32, env: &[(&str, String)], args: &[&str]) -> Up {
    let mut child = Command::new(env!("CARGO_BIN_EXE_platformctl"))
        .args(["up", "--data-dir"])
        .arg(data_dir)
        .arg(format!("--port-offset={offset}"))
        .args(args)
        .env("RUST_LOG", "info")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("platformctl starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.starts_with("platform is up") => break,
            Some(Ok(_)) => continue,
            _ => panic!("platformctl up ended before the platform was up"),
        }
    }
    std::thread::spawn(move || for _ in lines {});
    Up(child)
}

pub fn pid(data_dir: &Path, name: &str) -> i32 {
    std::fs::read_to_string(data_dir.join("run").join(format!("{name}.pid")))
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid")
}

pub fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
}

/// One HTTP/1.1 request on a fresh connection; the whole response as text.
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.expect("read");
    reply
}

/// The status line and body of a raw HTTP/1.1 response.
pub fn split(reply: &str) -> (u16, &str) {
    let status = reply.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, reply.split("\r\n\r\n").nth(1).unwrap_or(""))
}

/// Registers a user through the gateway and returns its bearer header value.
pub async fn bearer(gateway: std::net::SocketAddr, email: &str) -> String {
    let credentials = &format!(r#"{{"email":"{email}","password":"correct horse battery"}}"#);
    let registered = http(gateway, "POST", "/v1/auth/register", &[], credentials).await;
    assert!(registered.starts_with("HTTP/1.1 200"), "{registered}");
    let login = http(gateway, "POST", "/v1/auth/login", &[], credentials).await;
    let login: serde_json::Value = serde_json::from_str(split(&login).1).expect("json");
    format!("Bearer {}", login["accessToken"].as_str().expect("token"))
}

/// True when Prometheus is not installed (the test that needs it is then
/// skipped with a note); under CI it must be there.
pub fn prometheus_missing() -> bool {
    !testkit::tool("prometheus", "--version", "this check")
}

/// The version and built binary of the previous release (the last one of
/// releases.toml before this version), which scripts/test.sh builds before
/// the tests; None, with a note, when it is not built, which CI forbids.
pub fn previous_release() -> Option<(String, std::path::PathBuf)> {
    earlier_releases(1).and_then(|mut found| found.pop())
}

/// The last `count` releases of releases.toml before this version, oldest
/// first, each with its built binary (scripts/test.sh builds them before
/// the tests); None, with a note, when one is not built, which CI forbids.
pub fn earlier_releases(count: usize) -> Option<Vec<(String, std::path::PathBuf)>> {
    let ctl = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_platformctl"))
            .args(args)
            .output()
            .expect("platformctl runs");
        assert!(
            out.status.success(),
            "platformctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let listed = ctl(&["releases", "list"]);
    let earlier: Vec<&str> = listed
        .lines()
        .filter(|line| !line.starts_with(&format!("{} ", env!("CARGO_PKG_VERSION"))))
        .collect();
    assert!(
        earlier.len() >= count,
        "releases.toml records {} releases before this one, not {count}",
        earlier.len()
    );
    let mut found = Vec::new();
    for line in &earlier[earlier.len() - count..] {
        let version = line.split_whitespace().next().expect("version").to_owned();
        if !line.ends_with("(built)") {
            assert!(
                std::env::var_os("CI").is_none(),
                "release {version} is not built: run `platformctl releases build {version}` \
                 before the tests (scripts/test.sh does)"
            );
            eprintln!(
                "note: release {version} is not built (platformctl releases build {version})"
            );
            return None;
        }
        let path = ctl(&["releases", "build", &version]);
        found.push((version, std::path::PathBuf::from(path.trim())));
    }
    Some(found)
}
