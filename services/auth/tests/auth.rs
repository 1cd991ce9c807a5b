//! Auth over a real socket, on every storage backend.

use platform_proto::auth::v1::{
    GetJwksRequest, GetMeRequest, IssueServiceTokenRequest, LoginRequest, RegisterRequest,
    auth_service_client::AuthServiceClient,
};
use platform_runtime::tokens::{Expect, keys_from_jwks, verify};
use testkit::{Platform, authed, backends, channel};
use tonic::Code;

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
