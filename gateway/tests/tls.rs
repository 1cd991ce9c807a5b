//! TLS termination: HTTP/2 or HTTP/1.1 by ALPN, and a renewed certificate
//! served to new connections without a restart (a broken renewal refused).

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::Stack;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn self_signed(dir: &Path, name: &str) {
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
        ])
        .args([
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "extendedKeyUsage=serverAuth",
        ])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .output()
        .expect("openssl runs");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
}

fn cert(dir: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(dir.join("cert.pem")).expect("cert")
}

/// A TLS connection trusting `trusted`, offering `alpn`; returns the stream.
async fn connect(
    addr: std::net::SocketAddr,
    trusted: &CertificateDer<'static>,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone()).expect("root");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    connector
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS handshake")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminates_tls_and_reloads_the_certificate() {
    if !testkit::tool("openssl", "version", "TLS (it makes the test certificates)") {
        return;
    }
    let stack = Stack::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    self_signed(dir.path(), "first");
    let first = cert(dir.path());
    let auth = testkit::url(stack.platform.auth.addr);
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let gateway = common::start_gateway(
        &[
            ("ROUTES_FILE", stack.routes_file.to_str().expect("utf-8")),
            ("AUTH_ADDR", &auth),
            ("TLS_CERT_FILE", cert_file.to_str().expect("utf-8")),
            ("TLS_KEY_FILE", key_file.to_str().expect("utf-8")),
        ],
        &[platform_proto::PLATFORM_DESCRIPTOR_SET],
    )
    .await;

    // ALPN picks HTTP/2 when offered...
    let h2 = connect(gateway.addr, &first, b"h2").await;
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    // ...and HTTP/1.1 works too, end to end.
    let mut h1 = connect(gateway.addr, &first, b"http/1.1").await;
    h1.write_all(b"GET /v1/auth/jwks HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut reply = String::new();
    h1.read_to_string(&mut reply).await.expect("read");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("\"kty\":\"OKP\""), "{reply}");

    // A renewed certificate is served to new connections, without a restart.
    let renewed_dir = tempfile::tempdir().expect("tempdir");
    self_signed(renewed_dir.path(), "renewed");
    let renewed = cert(renewed_dir.path());
    std::fs::copy(renewed_dir.path().join("key.pem"), &key_file).expect("key");
    std::fs::copy(renewed_dir.path().join("cert.pem"), &cert_file).expect("cert");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = connect(gateway.addr, &renewed, b"h2").await;
    assert_eq!(
        after.get_ref().1.peer_certificates().map(|c| c[0].clone()),
        Some(renewed.clone())
    );

    // A broken renewal is refused: the current certificate keeps serving.
    std::fs::write(&cert_file, "not a certificate").expect("write");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let still = connect(gateway.addr, &renewed, b"h2").await;
    assert_eq!(
        still.get_ref().1.peer_certificates().map(|c| c[0].clone()),
        Some(renewed)
    );
    drop((h2, after, still));
    gateway.stop().await;
    stack.stop().await;
}
