//! Access tokens: compact JWS with EdDSA (Ed25519) only, the algorithm pinned
//! on both sides. Auth signs with the first key of its [`KeyRing`] and
//! publishes every key as a JWKS, so a key can be rotated by adding the new
//! one first and removing the old one after the longest token lifetime. Every
//! other service verifies locally with a [`Verifier`] that fetches the key set
//! from auth and refreshes it, at most once per cooldown, on an unknown `kid`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use platform_proto::auth::v1::{
    GetJwksRequest, IssueServiceTokenRequest, Jwk, auth_service_client::AuthServiceClient,
};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tonic::transport::Channel;

use crate::config::TokenConfig;

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: i64 = 30;
/// Least time between two key-set fetches triggered by unknown key ids.
const REFRESH_COOLDOWN: Duration = Duration::from_secs(10);

/// The claims of every token this platform issues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    pub jti: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Space-separated permissions of a service token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// `aud` is a string or an array of strings (RFC 7519 section 4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn contains(&self, wanted: &str) -> bool {
        match self {
            Audience::One(a) => a == wanted,
            Audience::Many(list) => list.iter().any(|a| a == wanted),
        }
    }
}

impl Claims {
    pub fn has_scope(&self, wanted: &str) -> bool {
        self.scope
            .as_deref()
            .is_some_and(|s| s.split(' ').any(|granted| granted == wanted))
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
}

/// Why a token was refused. The text is safe to show to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token")]
    Malformed,
    #[error("unsupported token algorithm {0:?}: only EdDSA is accepted")]
    Algorithm(String),
    #[error("token has no key id")]
    NoKeyId,
    #[error("token is signed with an unknown key")]
    UnknownKey,
    #[error("token signature is invalid")]
    Signature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token has the wrong issuer")]
    Issuer,
    #[error("token is not meant for this audience")]
    Audience,
    #[error("the keys that verify tokens cannot be fetched right now")]
    KeysUnavailable,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

/// The private keys auth signs with; the first one signs new tokens.
#[derive(Clone)]
pub struct KeyRing {
    keys: Vec<(String, SigningKey)>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|(kid, _)| kid.as_str()).collect();
        f.debug_struct("KeyRing").field("kids", &kids).finish()
    }
}

impl KeyRing {
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        OsRng.fill_bytes(&mut seed);
        Self::from_keys(vec![SigningKey::from_bytes(&seed)])
    }

    fn from_keys(keys: Vec<SigningKey>) -> Self {
        Self {
            keys: keys
                .into_iter()
                .map(|k| (key_id(&k.verifying_key()), k))
                .collect(),
        }
    }

    /// Reads one or more PKCS#8 PEM Ed25519 private keys, the signing key first.
    pub fn from_pem(text: &str) -> Result<Self, KeyError> {
        const BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
        const END: &str = "-----END PRIVATE KEY-----";
        let mut keys = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find(BEGIN) {
            let end = rest[start..]
                .find(END)
                .ok_or_else(|| KeyError(format!("a key has {BEGIN} but no {END}")))?
                + start
                + END.len();
            let key = SigningKey::from_pkcs8_pem(&rest[start..end]).map_err(|e| {
                KeyError(format!(
                    "key {} is not a PKCS#8 Ed25519 private key: {e}",
                    keys.len() + 1
                ))
            })?;
            keys.push(key);
            rest = &rest[end..];
        }
        if keys.is_empty() {
            return Err(KeyError(format!("no {BEGIN} block found")));
        }
        Ok(Self::from_keys(keys))
    }

    pub fn to_pem(&self) -> Result<String, KeyError> {
        let mut out = String::new();
        for (_, key) in &self.keys {
            let pem = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| KeyError(format!("cannot encode key: {e}")))?;
            out.push_str(&pem);
        }
        Ok(out)
    }

    pub fn signing_kid(&self) -> &str {
        self.keys
            .first()
            .map(|(kid, _)| kid.as_str())
            .unwrap_or_default()
    }

    /// Signs `claims` with the first key.
    pub fn sign(&self, claims: &Claims) -> Result<String, KeyError> {
        let (kid, key) = self
            .keys
            .first()
            .ok_or_else(|| KeyError("no signing key".into()))?;
        let header = Header {
            alg: "EdDSA".into(),
            typ: Some("JWT".into()),
            kid: Some(kid.clone()),
        };
        let mut token = format!("{}.{}", b64_json(&header), b64_json(claims));
        let signature = key.sign(token.as_bytes());
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature.to_bytes()));
        Ok(token)
    }

    pub fn public_keys(&self) -> HashMap<String, VerifyingKey> {
        self.keys
            .iter()
            .map(|(kid, key)| (kid.clone(), key.verifying_key()))
            .collect()
    }

    pub fn jwks(&self) -> Vec<Jwk> {
        self.keys
            .iter()
            .map(|(kid, key)| Jwk {
                kty: "OKP".into(),
                crv: "Ed25519".into(),
                x: URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes()),
                kid: kid.clone(),
                alg: "EdDSA".into(),
                r#use: "sig".into(),
            })
            .collect()
    }
}

fn b64_json<T: Serialize>(value: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap_or_default())
}

/// RFC 7638 thumbprint of an Ed25519 public key, used as its `kid`.
pub fn key_id(key: &VerifyingKey) -> String {
    let x = URL_SAFE_NO_PAD.encode(key.as_bytes());
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// Parses the public keys of a JWKS, skipping keys of other types.
pub fn keys_from_jwks(jwks: &[Jwk]) -> HashMap<String, VerifyingKey> {
    jwks.iter()
        .filter(|k| k.kty == "OKP" && k.crv == "Ed25519")
        .filter_map(|k| {
            let bytes: [u8; 32] = URL_SAFE_NO_PAD.decode(&k.x).ok()?.try_into().ok()?;
            Some((k.kid.clone(), VerifyingKey::from_bytes(&bytes).ok()?))
        })
        .collect()
}

/// What a token must say to be accepted.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub now: i64,
}

/// Checks a token against `keys`: algorithm, signature, then claims.
pub fn verify(
    token: &str,
    keys: &HashMap<String, VerifyingKey>,
    expect: Expect<'_>,
) -> Result<Claims, TokenError> {
    let claims = verify_signature(token, keys)?;
    check_claims(&claims, expect)?;
    Ok(claims)
}

/// The claims of a token whose algorithm, key and signature are right; what
/// they say is checked by `check_claims`.
fn verify_signature(
    token: &str,
    keys: &HashMap<String, VerifyingKey>,
) -> Result<Claims, TokenError> {
    let kid = parse_header(token)?;
    let key = keys.get(&kid).ok_or(TokenError::UnknownKey)?;
    let (signed, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let signature: [u8; 64] = URL_SAFE_NO_PAD
        .decode(signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(TokenError::Malformed)?;
    key.verify_strict(signed.as_bytes(), &Signature::from_bytes(&signature))
        .map_err(|_| TokenError::Signature)?;
    let payload = signed.split('.').nth(1).ok_or(TokenError::Malformed)?;
    let claims: Claims = URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(TokenError::Malformed)?;
    Ok(claims)
}

/// Issuer, audience and validity period, against what the caller expects.
fn check_claims(claims: &Claims, expect: Expect<'_>) -> Result<(), TokenError> {
    if claims.iss != expect.issuer {
        return Err(TokenError::Issuer);
    }
    if !claims.aud.contains(expect.audience) {
        return Err(TokenError::Audience);
    }
    if claims.exp + LEEWAY_SECS <= expect.now {
        return Err(TokenError::Expired);
    }
    if claims.nbf - LEEWAY_SECS > expect.now {
        return Err(TokenError::NotYetValid);
    }
    Ok(())
}

/// Tokens whose signature was verified, remembered so that a token seen
/// again (every call of a session, at every hop) costs a lookup instead of
/// an Ed25519 verification. Claims are still checked on every call; the
/// memory is emptied whenever the key set changes and is bounded in size.
#[derive(Debug, Default)]
struct Verified {
    memory: std::sync::Mutex<Memory>,
}

#[derive(Debug, Default)]
struct Memory {
    /// Moves on at every change of the key set: a verification made with
    /// the keys of an earlier generation is not remembered.
    generation: u64,
    tokens: HashMap<String, Claims>,
}

/// Verified tokens remembered at most; beyond, the memory starts afresh.
const VERIFIED_CAPACITY: usize = 4096;
/// Longer tokens are verified every time (ours are well under 1 KiB).
const VERIFIED_MAX_TOKEN: usize = 2048;

impl Verified {
    fn lock(&self) -> std::sync::MutexGuard<'_, Memory> {
        match self.memory.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The remembered claims of `token`, or the generation to remember it in.
    fn get(&self, token: &str) -> Result<Claims, u64> {
        let memory = self.lock();
        memory.tokens.get(token).cloned().ok_or(memory.generation)
    }

    fn remember(&self, token: &str, claims: &Claims, generation: u64) {
        let mut memory = self.lock();
        if token.len() > VERIFIED_MAX_TOKEN || memory.generation != generation {
            return;
        }
        if memory.tokens.len() >= VERIFIED_CAPACITY {
            memory.tokens.clear();
        }
        memory.tokens.insert(token.to_owned(), claims.clone());
    }

    fn forget_all(&self) {
        let mut memory = self.lock();
        memory.generation += 1;
        memory.tokens.clear();
    }
}

/// Reads the header and insists on EdDSA with a key id, before any key is used.
fn parse_header(token: &str) -> Result<String, TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let header: Header = URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(TokenError::Malformed)?;
    if header.alg != "EdDSA" {
        return Err(TokenError::Algorithm(header.alg));
    }
    header.kid.ok_or(TokenError::NoKeyId)
}

fn now_secs() -> i64 {
    crate::time::now_ms() / 1000
}

/// Verifies tokens with keys fetched from auth (or given, inside auth).
#[derive(Debug, Clone)]
pub struct Verifier {
    inner: Arc<VerifierInner>,
}

#[derive(Debug)]
struct VerifierInner {
    issuer: String,
    keys: RwLock<HashMap<String, VerifyingKey>>,
    verified: Verified,
    auth: Option<AuthServiceClient<Channel>>,
    last_refresh: tokio::sync::Mutex<Option<Instant>>,
}

impl Verifier {
    /// Keys fetched from the auth service named in `config`.
    pub fn remote(config: &TokenConfig) -> Result<Self, crate::ConfigError> {
        let channel = Channel::from_shared(config.auth_endpoint.clone())
            .map_err(|e| crate::ConfigError::new("AUTH_ADDR", e.to_string()))?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .connect_lazy();
        Ok(Self::new(
            &config.issuer,
            HashMap::new(),
            Some(AuthServiceClient::new(channel)),
        ))
    }

    /// A fixed set of keys (auth verifies with its own).
    pub fn local(issuer: &str, keys: HashMap<String, VerifyingKey>) -> Self {
        Self::new(issuer, keys, None)
    }

    fn new(
        issuer: &str,
        keys: HashMap<String, VerifyingKey>,
        auth: Option<AuthServiceClient<Channel>>,
    ) -> Self {
        Self {
            inner: Arc::new(VerifierInner {
                issuer: issuer.to_owned(),
                keys: RwLock::new(keys),
                verified: Verified::default(),
                auth,
                last_refresh: tokio::sync::Mutex::new(None),
            }),
        }
    }

    pub async fn verify(&self, token: &str, audience: &str) -> Result<Claims, TokenError> {
        let expect = Expect {
            issuer: &self.inner.issuer,
            audience,
            now: now_secs(),
        };
        match self.verify_cached(token, expect) {
            Err(TokenError::UnknownKey) if self.inner.auth.is_some() => {
                self.refresh().await?;
                self.verify_cached(token, expect)
            }
            other => other,
        }
    }

    fn verify_cached(&self, token: &str, expect: Expect<'_>) -> Result<Claims, TokenError> {
        let generation = match self.inner.verified.get(token) {
            Ok(claims) => {
                check_claims(&claims, expect)?;
                return Ok(claims);
            }
            Err(generation) => generation,
        };
        let claims = {
            let keys = self
                .inner
                .keys
                .read()
                .map_err(|_| TokenError::KeysUnavailable)?;
            verify_signature(token, &keys)?
        };
        self.inner.verified.remember(token, &claims, generation);
        check_claims(&claims, expect)?;
        Ok(claims)
    }

    /// Fetches the key set unless another fetch happened within the cooldown.
    async fn refresh(&self) -> Result<(), TokenError> {
        let Some(auth) = &self.inner.auth else {
            return Ok(());
        };
        let mut last = self.inner.last_refresh.lock().await;
        if last.is_some_and(|at| at.elapsed() < REFRESH_COOLDOWN) {
            return Ok(());
        }
        let response = auth.clone().get_jwks(GetJwksRequest {}).await;
        let jwks = match response {
            Ok(r) => r.into_inner(),
            Err(status) => {
                tracing::warn!(error = %status.message(), "cannot fetch the token keys from auth");
                // A failed fetch does not start the cooldown: the next call tries again.
                return Err(TokenError::KeysUnavailable);
            }
        };
        *last = Some(Instant::now());
        let keys = keys_from_jwks(&jwks.keys);
        tracing::info!(keys = keys.len(), "fetched token keys");
        if let Ok(mut current) = self.inner.keys.write() {
            *current = keys;
            // A key that left the set must stop vouching for its tokens.
            self.inner.verified.forget_all();
        }
        Ok(())
    }
}

/// A service's own identity: client credentials exchanged with auth for a
/// short-lived internal token, cached until shortly before it expires.
#[derive(Debug, Clone)]
pub struct ServiceCredentials {
    client_id: String,
    client_secret: String,
    auth: AuthServiceClient<Channel>,
    cached: Arc<tokio::sync::Mutex<Option<(String, Instant)>>>,
}

impl ServiceCredentials {
    pub fn new(
        config: &TokenConfig,
        client_id: String,
        client_secret: String,
    ) -> Result<Self, crate::ConfigError> {
        let channel = Channel::from_shared(config.auth_endpoint.clone())
            .map_err(|e| crate::ConfigError::new("AUTH_ADDR", e.to_string()))?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .connect_lazy();
        Ok(Self {
            client_id,
            client_secret,
            auth: AuthServiceClient::new(channel),
            cached: Arc::new(tokio::sync::Mutex::new(None)),
        })
    }

    /// A valid bearer token, fetched anew when less than a minute is left.
    pub async fn token(&self) -> Result<String, tonic::Status> {
        let mut cached = self.cached.lock().await;
        if let Some((token, refresh_at)) = cached.as_ref()
            && Instant::now() < *refresh_at
        {
            return Ok(token.clone());
        }
        let response = self
            .auth
            .clone()
            .issue_service_token(IssueServiceTokenRequest {
                client_id: self.client_id.clone(),
                client_secret: self.client_secret.clone(),
            })
            .await
            .map_err(|status| {
                tonic::Status::unavailable(format!(
                    "cannot get a service token from auth: {}",
                    status.message()
                ))
            })?
            .into_inner();
        let lifetime = u64::try_from(response.expires_in).unwrap_or(0);
        let refresh_at = Instant::now() + Duration::from_secs(lifetime.saturating_sub(60).max(1));
        *cached = Some((response.access_token.clone(), refresh_at));
        Ok(response.access_token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(now: i64) -> Claims {
        Claims {
            iss: "iss".into(),
            sub: "usr_1".into(),
            aud: Audience::One("api".into()),
            exp: now + 600,
            nbf: now,
            iat: now,
            jti: "j1".into(),
            email: None,
            scope: None,
        }
    }

    fn forge(header: &str, claims: &Claims, signature: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("json")),
            URL_SAFE_NO_PAD.encode(signature)
        )
    }

    #[test]
    fn accepts_good_tokens_and_refuses_every_forgery() {
        let ring = KeyRing::generate();
        let keys = ring.public_keys();
        let now = 1_700_000_000;
        let expect = Expect {
            issuer: "iss",
            audience: "api",
            now,
        };
        let good = ring.sign(&claims(now)).expect("sign");
        assert_eq!(
            verify(&good, &keys, expect).map(|c| c.sub),
            Ok("usr_1".into())
        );

        let kid = ring.signing_kid();
        let cases: Vec<(String, TokenError)> = vec![
            (
                forge(r#"{"alg":"none"}"#, &claims(now), b""),
                TokenError::Algorithm("none".into()),
            ),
            (
                forge(
                    &format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#),
                    &claims(now),
                    &[0; 32],
                ),
                TokenError::Algorithm("HS256".into()),
            ),
            (
                forge(r#"{"alg":"EdDSA"}"#, &claims(now), &[0; 64]),
                TokenError::NoKeyId,
            ),
            (
                forge(r#"{"alg":"EdDSA","kid":"other"}"#, &claims(now), &[0; 64]),
                TokenError::UnknownKey,
            ),
            (
                forge(
                    &format!(r#"{{"alg":"EdDSA","kid":"{kid}"}}"#),
                    &claims(now),
                    &[0; 64],
                ),
                TokenError::Signature,
            ),
            (
                ring.sign(&Claims {
                    exp: now - 31,
                    ..claims(now)
                })
                .expect("sign"),
                TokenError::Expired,
            ),
            (
                ring.sign(&Claims {
                    nbf: now + 31,
                    ..claims(now)
                })
                .expect("sign"),
                TokenError::NotYetValid,
            ),
            (
                ring.sign(&Claims {
                    iss: "evil".into(),
                    ..claims(now)
                })
                .expect("sign"),
                TokenError::Issuer,
            ),
            (
                ring.sign(&Claims {
                    aud: Audience::One("internal".into()),
                    ..claims(now)
                })
                .expect("sign"),
                TokenError::Audience,
            ),
            ("a.b".into(), TokenError::Malformed),
            (format!("{good}.x"), TokenError::Malformed),
        ];
        for (token, want) in cases {
            assert_eq!(verify(&token, &keys, expect), Err(want.clone()), "{want}");
        }
        // A token signed by another key with the same kid fails the signature.
        let other = KeyRing::generate();
        let mut stolen_kid = other.sign(&claims(now)).expect("sign");
        stolen_kid = stolen_kid.replacen(
            stolen_kid.split('.').next().expect("header"),
            &URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"EdDSA","kid":"{kid}"}}"#)),
            1,
        );
        assert_eq!(
            verify(&stolen_kid, &keys, expect),
            Err(TokenError::Signature)
        );
    }

    #[tokio::test]
    async fn remembered_tokens_still_have_their_claims_checked() {
        let ring = KeyRing::generate();
        let verifier = Verifier::local("iss", ring.public_keys());
        let now = now_secs();
        let token = ring.sign(&claims(now)).expect("sign");
        for _ in 0..2 {
            assert!(verifier.verify(&token, "api").await.is_ok());
            assert_eq!(
                verifier.verify(&token, "other").await,
                Err(TokenError::Audience),
                "a remembered signature does not widen the audience"
            );
        }
        // Another signature over the same claims is verified on its own.
        let (signed, _) = token.rsplit_once('.').expect("jws");
        let forged = format!("{signed}.{}", URL_SAFE_NO_PAD.encode([7u8; 64]));
        assert_eq!(
            verifier.verify(&forged, "api").await,
            Err(TokenError::Signature)
        );
        // An expired token is refused though its signature is remembered.
        let mut old = claims(now);
        old.exp = now - LEEWAY_SECS - 1;
        let expired = ring.sign(&old).expect("sign");
        assert!(verifier.inner.verified.get(&expired).is_err());
        assert_eq!(
            verifier.verify(&expired, "api").await,
            Err(TokenError::Expired)
        );
        assert_eq!(
            verifier.verify(&expired, "api").await,
            Err(TokenError::Expired)
        );
        // A verification made with keys since replaced is not remembered.
        let memory = &verifier.inner.verified;
        let Err(generation) = memory.get("another.token.value") else {
            panic!("not remembered yet");
        };
        memory.forget_all();
        memory.remember("another.token.value", &claims(now), generation);
        assert!(memory.get("another.token.value").is_err());
        assert!(memory.get(&token).is_err(), "forgotten with the old keys");
    }

    #[test]
    fn pem_and_jwks_round_trip_with_rotation() {
        let old = KeyRing::generate();
        let new = KeyRing::generate();
        let pem = format!(
            "{}{}",
            new.to_pem().expect("pem"),
            old.to_pem().expect("pem")
        );
        let ring = KeyRing::from_pem(&pem).expect("parse");
        assert_eq!(ring.signing_kid(), new.signing_kid());
        let keys = keys_from_jwks(&ring.jwks());
        assert_eq!(keys.len(), 2);
        let now = 1_700_000_000;
        let expect = Expect {
            issuer: "iss",
            audience: "api",
            now,
        };
        let by_old = old.sign(&claims(now)).expect("sign");
        assert!(
            verify(&by_old, &keys, expect).is_ok(),
            "old tokens verify during rotation"
        );
        assert!(KeyRing::from_pem("nothing").is_err());
        assert!(
            KeyRing::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----")
                .is_err()
        );
    }
}
