//! Tokens at the edge: every forgery and every invalid claim is a 401 with
//! `WWW-Authenticate`, before any service is called.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::Stack;
use platform_runtime::tokens::{Audience, Claims, KeyRing};
use sha2::{Digest, Sha256};

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// HMAC-SHA256 (RFC 2104), to forge an HS256 token keyed with the public key.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    block[..key.len().min(64)].copy_from_slice(&key[..key.len().min(64)]);
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_invalid_tokens_are_401() {
    let stack = Stack::start().await;
    let good = stack.login("jwt@example.com").await;
    // The key auth signs with (the development key in its data directory).
    let pem = std::fs::read_to_string(stack.platform.dir.path().join("dev-signing-key.pem"))
        .expect("auth key");
    let ring = KeyRing::from_pem(&pem).expect("key");
    let kid = ring.signing_kid().to_owned();
    let jwk = &ring.jwks()[0];
    let now = platform_runtime::time::now_ms() / 1000;
    let claims = |f: &dyn Fn(&mut Claims)| {
        let mut c = Claims {
            iss: "platform-auth".into(),
            sub: "usr_forged".into(),
            aud: Audience::One("platform-api".into()),
            exp: now + 600,
            nbf: now,
            iat: now,
            jti: "j".into(),
            email: None,
            scope: None,
        };
        f(&mut c);
        c
    };
    let payload = b64(serde_json::to_vec(&claims(&|_| {})).expect("json"));
    let hs_header = b64(format!(r#"{{"alg":"HS256","typ":"JWT","kid":"{kid}"}}"#));
    let hs_signed = format!("{hs_header}.{payload}");
    let public_key = URL_SAFE_NO_PAD.decode(&jwk.x).expect("x");
    let hs256 = format!(
        "{hs_signed}.{}",
        b64(hmac_sha256(&public_key, hs_signed.as_bytes()))
    );
    let none = format!("{}.{payload}.", b64(r#"{"alg":"none","typ":"JWT"}"#));
    let cases = [
        ("alg none", none),
        ("HS256 keyed with the public key", hs256),
        (
            "expired",
            ring.sign(&claims(&|c| c.exp = now - 120)).expect("sign"),
        ),
        (
            "not yet valid",
            ring.sign(&claims(&|c| c.nbf = now + 120)).expect("sign"),
        ),
        (
            "wrong audience",
            ring.sign(&claims(&|c| {
                c.aud = Audience::One("platform-internal".into())
            }))
            .expect("sign"),
        ),
        (
            "wrong issuer",
            ring.sign(&claims(&|c| c.iss = "someone-else".into()))
                .expect("sign"),
        ),
        (
            "unknown key",
            KeyRing::generate().sign(&claims(&|_| {})).expect("sign"),
        ),
        ("garbage", "not.a.token".to_owned()),
    ];
    let mut client = stack.client().await;
    for (what, token) in cases {
        let bearer = format!("Bearer {token}");
        let reply = client
            .call(
                "GET",
                "/v1/orders",
                &[("authorization", bearer.as_str())],
                "",
            )
            .await;
        assert_eq!(reply.status, 401, "{what}: {}", reply.text());
        assert!(
            reply
                .header("www-authenticate")
                .starts_with("Bearer error=\"invalid_token\""),
            "{what}"
        );
        assert_eq!(reply.json()["code"], 16, "{what}");
    }
    let bearer = format!("Bearer {good}");
    let ok = client
        .call(
            "GET",
            "/v1/orders",
            &[("authorization", bearer.as_str())],
            "",
        )
        .await;
    assert_eq!(ok.status, 200, "the real token still works");
    // Public routes need no token.
    assert_eq!(
        client.call("GET", "/v1/auth/jwks", &[], "").await.status,
        200
    );
    stack.stop().await;
}
