//! Configuration by environment alone (Compose): `ROUTES_INITIAL` becomes the
//! routing file the first time, and never overwrites it afterwards, so admin
//! changes survive a gateway restart.

mod common;

const INITIAL: &str = r#"{"services": {"orders": {
    "endpoints": {"blue": ["127.0.0.1:9"], "green": ["127.0.0.1:9"]},
    "weights": {"blue": 100, "green": 0}}}}"#;

async fn gateway(file: &std::path::Path) -> gateway::RunningGateway {
    common::start_gateway(
        &[
            ("ROUTES_FILE", file.to_str().expect("utf-8")),
            ("ROUTES_INITIAL", INITIAL),
            ("AUTH_ADDR", "http://127.0.0.1:9"),
        ],
        &[platform_proto::PLATFORM_DESCRIPTOR_SET],
    )
    .await
}

async fn weights(gateway: &gateway::RunningGateway) -> serde_json::Value {
    let mut admin = common::Client::connect(gateway.admin_addr).await;
    let bearer = format!("Bearer {}", common::ADMIN_TOKEN);
    let reply = admin
        .call("GET", "/admin/routes", &[("authorization", &bearer)], "")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["services"]["orders"]["weights"].clone()
}

#[tokio::test]
async fn initial_routes_seed_the_file_once_and_admin_changes_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("routes.json");

    let first = gateway(&file).await;
    assert!(
        file.exists(),
        "the routing file is created from ROUTES_INITIAL"
    );
    assert_eq!(weights(&first).await["blue"], 100);
    let mut admin = common::Client::connect(first.admin_addr).await;
    let bearer = format!("Bearer {}", common::ADMIN_TOKEN);
    let changed = admin
        .call(
            "PUT",
            "/admin/routes/orders/weights",
            &[("authorization", &bearer)],
            r#"{"blue": 10, "green": 90}"#,
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.text());
    first.stop().await;

    let second = gateway(&file).await;
    assert_eq!(
        weights(&second).await,
        serde_json::json!({"blue": 10, "green": 90}),
        "a restart keeps the admin change instead of going back to ROUTES_INITIAL"
    );
    second.stop().await;
}

#[test]
fn an_invalid_initial_document_is_a_config_error_naming_the_variable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("routes.json");
    let env = platform_runtime::Env::from_pairs([
        ("ADMIN_TOKEN", common::ADMIN_TOKEN),
        ("ROUTES_FILE", file.to_str().expect("utf-8")),
        (
            "ROUTES_INITIAL",
            r#"{"services": {"orders": {"weights": {"blue": 50}}}}"#,
        ),
    ]);
    let error = gateway::config::GatewayConfig::from_env(&env)
        .expect_err("an invalid document is refused")
        .to_string();
    assert!(error.contains("ROUTES_INITIAL"), "{error}");
    assert!(!file.exists(), "nothing is written from a refused document");

    let env = platform_runtime::Env::from_pairs([
        ("ADMIN_TOKEN", common::ADMIN_TOKEN),
        ("ROUTES_CONFIGMAP", "platform/gateway-routes"),
        ("KUBE_API_URL", "http://127.0.0.1:9"),
        ("ROUTES_INITIAL", INITIAL),
    ]);
    let error = gateway::config::GatewayConfig::from_env(&env)
        .expect_err("ROUTES_INITIAL without ROUTES_FILE is refused")
        .to_string();
    assert!(error.contains("needs ROUTES_FILE"), "{error}");
}
