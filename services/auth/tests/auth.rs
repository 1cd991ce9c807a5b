//! Auth over a real socket, on every storage backend.

use platform_proto::auth::v1::{
    GetJwksRequest, GetMeRequest, IssueServiceTokenRequest, LoginRequest, RegisterRequest,
    auth_service_client::AuthServiceClient,
};
use std::net::SocketAddr;

use platform_runtime::RunningService;
use platform_runtime::tokens::{Expect, keys_from_jwks, verify};
use testkit::{Backend, Platform, authed, backends, channel};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

const PASSWORD: &str = "correct horse battery";

/// Auth alone on SQLite, with `extra` settings.
async fn auth_alone(extra: &[(&str, &str)]) -> (RunningService, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = testkit::database(&Backend::Sqlite, dir.path(), "auth").await;
    let extra: Vec<(&str, String)> = extra.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    let auth = testkit::start_service("auth", testkit::env(dir.path(), &db, &extra)).await;
    (auth, dir)
}

/// The value of the metric `name` on the `/metrics` endpoint at `addr`.
async fn metric(addr: SocketAddr, name: &str) -> f64 {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: auth\r\nconnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut text = String::new();
    stream.read_to_string(&mut text).await.expect("response");
    text.lines()
        .find(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{'))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

async fn login(addr: SocketAddr, email: &str, password: &str) -> Result<(), tonic::Status> {
    AuthServiceClient::new(channel(addr))
        .login(LoginRequest {
            email: email.into(),
            password: password.into(),
        })
        .await
        .map(|_| ())
}

async fn register(addr: SocketAddr, email: &str, password: &str) -> Result<(), tonic::Status> {
    AuthServiceClient::new(channel(addr))
        .register(RegisterRequest {
            email: email.into(),
            password: password.into(),
        })
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_tokens_and_keys() {
    for backend in backends() {
        let platform = Platform::start(&backend).await;
        let mut auth = AuthServiceClient::new(channel(platform.auth.addr));
        let register = |email: &str, password: &str| RegisterRequest {
            email: email.into(),
            password: password.into(),
        };

        let user = auth
            .register(register("  Alice@Example.com ", "correct horse battery"))
            .await
            .expect("register")
            .into_inner()
            .user
            .expect("user");
        assert_eq!(user.email, "alice@example.com", "{}", backend.name());
        assert!(user.id.starts_with("usr_"));

        let duplicate = auth
            .register(register("alice@EXAMPLE.com", "another good one"))
            .await;
        assert_eq!(
            duplicate.map(|_| ()).map_err(|s| s.code()),
            Err(Code::AlreadyExists)
        );
        let weak = auth
            .register(register("bob@example.com", "short"))
            .await
            .expect_err("weak");
        assert_eq!(weak.code(), Code::InvalidArgument);
        assert_eq!(weak.message(), "password must be at least 8 characters");
        let bad_email = auth
            .register(register("bob", "long enough pw"))
            .await
            .expect_err("email");
        assert_eq!(bad_email.code(), Code::InvalidArgument);

        let wrong = auth
            .login(LoginRequest {
                email: "alice@example.com".into(),
                password: "wrong password".into(),
            })
            .await
            .expect_err("wrong password");
        let unknown = auth
            .login(LoginRequest {
                email: "nobody@example.com".into(),
                password: "wrong password".into(),
            })
            .await
            .expect_err("unknown user");
        assert_eq!(
            (wrong.code(), wrong.message()),
            (unknown.code(), unknown.message())
        );
        assert_eq!(wrong.code(), Code::Unauthenticated);

        let login = auth
            .login(LoginRequest {
                email: "ALICE@example.com".into(),
                password: "correct horse battery".into(),
            })
            .await
            .expect("login")
            .into_inner();
        assert_eq!(
            (login.token_type.as_str(), login.expires_in),
            ("Bearer", 900)
        );

        // Anyone can verify the token with the published keys.
        let jwks = auth
            .get_jwks(GetJwksRequest {})
            .await
            .expect("jwks")
            .into_inner();
        assert_eq!(jwks.keys.len(), 1);
        assert_eq!(
            (jwks.keys[0].kty.as_str(), jwks.keys[0].alg.as_str()),
            ("OKP", "EdDSA")
        );
        let now = platform_runtime::time::now_ms() / 1000;
        let claims = verify(
            &login.access_token,
            &keys_from_jwks(&jwks.keys),
            Expect {
                issuer: "platform-auth",
                audience: "platform-api",
                now,
            },
        )
        .expect("token verifies");
        assert_eq!(claims.sub, user.id);
        assert!(claims.exp - claims.iat == 900 && !claims.jti.is_empty());

        let me = auth
            .get_me(authed(GetMeRequest {}, &login.access_token))
            .await
            .expect("me")
            .into_inner();
        assert_eq!(me.id, user.id);
        let anonymous = auth.get_me(GetMeRequest {}).await.expect_err("no token");
        assert_eq!(anonymous.code(), Code::Unauthenticated);

        // Service credentials give an internal token, never a user one.
        let bad = auth
            .issue_service_token(IssueServiceTokenRequest {
                client_id: "orders".into(),
                client_secret: "guess".into(),
            })
            .await
            .expect_err("bad secret");
        assert_eq!(bad.code(), Code::Unauthenticated);
        let service = platform.orders_token().await;
        let as_user = auth
            .get_me(authed(GetMeRequest {}, &service))
            .await
            .expect_err("service token");
        assert_eq!(as_user.code(), Code::Unauthenticated);
        platform.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_and_green_share_keys_and_accounts() {
    // Two auth processes on one data directory and database, as blue and green
    // run: a token from one is accepted by the other.
    let backend = &backends()[backends().len() - 1];
    let dir = tempfile::tempdir().expect("tempdir");
    let db = testkit::database(backend, dir.path(), "auth").await;
    let blue = testkit::start_service(
        "auth",
        testkit::env(dir.path(), &db, &[("COLOR", "blue".into())]),
    )
    .await;
    let green = testkit::start_service(
        "auth",
        testkit::env(dir.path(), &db, &[("COLOR", "green".into())]),
    )
    .await;
    let (user_id, token) = testkit::register_and_login(blue.addr, "carol@example.com").await;
    let me = AuthServiceClient::new(channel(green.addr))
        .get_me(authed(GetMeRequest {}, &token))
        .await
        .expect("green accepts blue's token")
        .into_inner();
    assert_eq!(me.id, user_id);
    blue.stop().await;
    green.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_the_hash_pool_is_refused_and_never_hashes_more_than_its_size() {
    let (auth, _dir) = auth_alone(&[
        ("AUTH_PASSWORD_HASH_CONCURRENCY", "2"),
        ("AUTH_PASSWORD_HASH_QUEUE", "3"),
    ])
    .await;
    // Unknown emails: each login still costs a verification, on distinct accounts.
    let client = AuthServiceClient::new(channel(auth.addr));
    let burst: Vec<_> = (0..40)
        .map(|i| {
            let mut client = client.clone();
            tokio::spawn(async move {
                client
                    .login(LoginRequest {
                        email: format!("burst{i}@example.com"),
                        password: PASSWORD.into(),
                    })
                    .await
            })
        })
        .collect();
    let (mut refused, mut answered) = (0, 0);
    for call in burst {
        let status = call.await.expect("task").expect_err("unknown emails");
        match status.code() {
            Code::ResourceExhausted => {
                assert_eq!(
                    status.message(),
                    "too many logins in progress; retry in a moment"
                );
                refused += 1;
            }
            Code::Unauthenticated => answered += 1,
            other => panic!("{other:?}: {}", status.message()),
        }
    }
    assert!(
        refused > 0 && answered >= 5,
        "{refused} refused, {answered} answered"
    );
    assert_eq!(
        metric(auth.metrics_addr, "auth_password_hashes_in_flight_max").await,
        2.0
    );
    assert_eq!(
        metric(auth.metrics_addr, "auth_password_hashes_refused_total").await,
        f64::from(refused)
    );
    auth.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_five_wrong_passwords_the_account_is_locked_even_for_the_right_one() {
    let (auth, _dir) = auth_alone(&[]).await;
    register(auth.addr, "dana@example.com", PASSWORD)
        .await
        .expect("register");
    for i in 1..=5 {
        let wrong = login(auth.addr, "dana@example.com", "not the password")
            .await
            .expect_err("wrong");
        assert_eq!(
            (wrong.code(), wrong.message()),
            (Code::Unauthenticated, "wrong email or password"),
            "attempt {i}"
        );
    }
    let hashes = metric(auth.metrics_addr, "auth_password_hashes_total").await;
    for (attempt, password) in [(6, "not the password"), (7, PASSWORD)] {
        let locked = login(auth.addr, "DANA@example.com", password)
            .await
            .expect_err("locked");
        assert_eq!(locked.code(), Code::ResourceExhausted, "attempt {attempt}");
        let seconds: u64 = locked
            .message()
            .strip_prefix("too many failed logins for this account; retry in ")
            .and_then(|rest| rest.strip_suffix(" s"))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{}", locked.message()));
        assert!((1..=30).contains(&seconds), "{seconds}");
    }
    // Refused without computing a hash.
    assert_eq!(
        metric(auth.metrics_addr, "auth_password_hashes_total").await,
        hashes
    );
    assert_eq!(
        metric(auth.metrics_addr, "auth_account_attempts_refused_total").await,
        2.0
    );
    // Other accounts are not affected.
    register(auth.addr, "erin@example.com", PASSWORD)
        .await
        .expect("register");
    login(auth.addr, "erin@example.com", PASSWORD)
        .await
        .expect("login");
    auth.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn common_passwords_are_refused_at_register() {
    let (auth, _dir) = auth_alone(&[]).await;
    for password in [
        "12345678",
        "Password123",
        "qwertyuiop",
        "aaaaaaaaaa",
        "98765432",
    ] {
        let refused = register(auth.addr, "gus@example.com", password)
            .await
            .expect_err(password);
        assert_eq!(
            (refused.code(), refused.message()),
            (
                Code::InvalidArgument,
                "this password is too common; choose another"
            ),
            "{password}"
        );
    }
    register(auth.addr, "gus@example.com", PASSWORD)
        .await
        .expect("a good password");
    auth.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_of_a_taken_email_costs_a_hash_and_is_throttled() {
    let (auth, _dir) = auth_alone(&[]).await;
    register(auth.addr, "frank@example.com", PASSWORD)
        .await
        .expect("register");
    let hashes = metric(auth.metrics_addr, "auth_password_hashes_total").await;
    for i in 1..=5 {
        let taken = register(auth.addr, "Frank@example.com", "another good one")
            .await
            .expect_err("taken");
        assert_eq!(taken.code(), Code::AlreadyExists, "attempt {i}");
    }
    // Each answer cost a hash, as a new account would.
    assert_eq!(
        metric(auth.metrics_addr, "auth_password_hashes_total").await,
        hashes + 5.0
    );
    let throttled = register(auth.addr, "frank@example.com", "another good one")
        .await
        .expect_err("throttled");
    assert_eq!(throttled.code(), Code::ResourceExhausted);
    assert!(
        throttled
            .message()
            .starts_with("too many failed logins for this account; retry in "),
        "{}",
        throttled.message()
    );
    assert_eq!(
        metric(auth.metrics_addr, "auth_password_hashes_total").await,
        hashes + 5.0
    );
    register(auth.addr, "grace@example.com", PASSWORD)
        .await
        .expect("another email");
    auth.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_registrations_all_succeed_with_the_defaults() {
    let (auth, _dir) = auth_alone(&[]).await;
    let calls: Vec<_> = (0..50)
        .map(|i| {
            let addr = auth.addr;
            tokio::spawn(
                async move { register(addr, &format!("user{i}@example.com"), PASSWORD).await },
            )
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        call.await
            .expect("task")
            .unwrap_or_else(|s| panic!("registration {i}: {s:?}"));
    }
    assert!(metric(auth.metrics_addr, "auth_password_hashes_in_flight_max").await <= 4.0);
    auth.stop().await;
}
