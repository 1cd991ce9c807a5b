//! The rollout console in a real headless Chromium, driven over the DevTools
//! protocol: it refuses a wrong token, shows a rollout started through the
//! admin API, and aborts it after an in-page confirmation; the admin API then
//! shows the baseline weights back and the release ended by the console.

#[path = "common/cdp.rs"]
mod cdp;
mod common;

use serde_json::{Value, json};

const ROLLOUT: &str = r#"{"to":"green","steps":[10,50,100],"interval_ms":600000,"thresholds":{"max_error_ratio":0.01,"max_p99_ms":500,"max_relative_error":2,"min_requests":10},"mirror_percent":0,"timeout_ms":600000,"controller":"console-test"}"#;

/// The orders card, as a JavaScript expression.
const CARD: &str = r#"document.querySelector('[data-service="orders"]')"#;

async fn routes(admin: &mut common::Client) -> Value {
    let bearer = format!("Bearer {}", common::ADMIN_TOKEN);
    let reply = admin
        .call("GET", "/admin/routes", &[("authorization", &bearer)], "")
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

/// Types `token` into the form and presses Connect.
async fn connect(page: &mut cdp::Page, token: &str) {
    page.eval(&format!(
        "document.getElementById('token').value = {}; document.getElementById('connect').click(); true",
        json!(token)
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_aborts_a_rollout_after_confirmation() {
    if !testkit::tool("chromium", "--version", "the browser check") {
        return;
    }
    let stack = common::Stack::start().await;
    let mut admin = stack.admin().await;
    let bearer = format!("Bearer {}", common::ADMIN_TOKEN);

    let page_reply = admin.call("GET", "/console", &[], "").await;
    assert_eq!(page_reply.status, 200);
    assert_eq!(
        page_reply.header("content-type"),
        "text/html; charset=utf-8"
    );
    assert!(
        page_reply
            .header("content-security-policy")
            .contains("frame-ancestors 'none'")
    );

    let started = admin
        .call(
            "POST",
            "/admin/routes/orders/rollout",
            &[
                ("authorization", &bearer),
                ("content-type", "application/json"),
            ],
            ROLLOUT,
        )
        .await;
    assert_eq!(started.status, 200, "{}", started.text());
    let weights = &routes(&mut admin).await["services"]["orders"]["weights"];
    assert_eq!(*weights, json!({"blue": 90, "green": 10}));

    let dir = tempfile::tempdir().expect("tempdir");
    let profile = dir.path().join("chromium");
    std::fs::create_dir(&profile).expect("profile dir");
    let mut browser = cdp::Browser::launch(&profile).await;
    let page = &mut browser.page;
    page.call("Runtime.enable", json!({})).await;
    page.call("Log.enable", json!({})).await;
    page.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1100, "height": 1000, "deviceScaleFactor": 1, "mobile": false}),
    )
    .await;
    let url = format!("http://{}/console", stack.gateway.admin_addr);
    page.navigate(&url).await;

    // A wrong token: the page says so and asks again.
    connect(page, "not-the-admin-token").await;
    page.wait_for(
        "the wrong token to be refused",
        "document.getElementById('message').textContent === 'wrong admin token' \
         && !document.getElementById('login').hidden",
    )
    .await;
    assert_eq!(
        page.eval("sessionStorage.getItem('admin-token')").await,
        Value::Null,
        "a refused token is not kept"
    );

    connect(page, common::ADMIN_TOKEN).await;
    page.wait_for(
        "the orders card to show the rollout's first step",
        &format!(
            "{CARD} && {CARD}.querySelector('[data-split]').textContent === 'blue 90% / green 10%' \
             && {CARD}.innerText.includes('step 1 of 3')"
        ),
    )
    .await;
    let enabled = page
        .eval(&format!(
            "[...{CARD}.querySelectorAll('[data-action]')].map(b => [b.dataset.action, !b.disabled])"
        ))
        .await;
    assert_eq!(
        enabled,
        json!([["promote", true], ["abort", true], ["rollback", true]])
    );
    let steady = page
        .eval(
            r#"[...document.querySelectorAll('[data-service="auth"] [data-action]')].map(b => b.disabled)"#,
        )
        .await;
    assert_eq!(
        steady,
        json!([true, true, true]),
        "nothing to do for a service with no rollout and no previous weights"
    );

    // Abort asks first, in the page, and changes nothing until Yes.
    page.eval(&format!(
        "{CARD}.querySelector('[data-action=abort]').click(); true"
    ))
    .await;
    let question = page
        .wait_for(
            "the confirmation",
            &format!(
                "{CARD}.querySelector('.confirm:not([hidden])')?.querySelector('p').textContent"
            ),
        )
        .await;
    assert_eq!(
        question,
        "Abort the rollout of orders? Traffic goes back to blue 100%."
    );
    assert_eq!(
        routes(&mut admin).await["services"]["orders"]["weights"],
        json!({"blue": 90, "green": 10}),
        "nothing changes before Yes"
    );

    page.eval(&format!("{CARD}.scrollIntoView(); true")).await;
    let png = page.screenshot().await;
    let shot = dir.path().join("console.png");
    std::fs::write(&shot, &png).expect("write the screenshot");
    eprintln!("screenshot: {}", shot.display());

    page.eval(&format!(
        "{CARD}.querySelector('[data-confirm=yes]').click(); true"
    ))
    .await;
    page.wait_for(
        "the split to go back to blue",
        &format!(
            "{CARD}.querySelector('[data-split]').textContent === 'blue 100% / green 0%' \
             && {CARD}.querySelector('[data-action=abort]').disabled"
        ),
    )
    .await;
    let message = page
        .eval("document.getElementById('message').textContent")
        .await;
    assert_eq!(message, "orders: abort done, now blue 100% / green 0%");

    let config = routes(&mut admin).await;
    let orders = &config["services"]["orders"];
    assert_eq!(orders["weights"], json!({"blue": 100, "green": 0}));
    assert!(orders.get("rollout").is_none_or(Value::is_null), "{orders}");
    let release = config["releases"]
        .as_array()
        .and_then(|r| r.last())
        .expect("a release");
    assert_eq!(release["service"], "orders");
    assert_eq!(release["outcome"], "aborted", "{release}");
    assert_eq!(release["detail"], "aborted from the console", "{release}");
    let change = config["changes"]
        .as_array()
        .and_then(|c| c.last())
        .expect("a change");
    assert_eq!(change["action"], "rollout-abort", "{change}");
    assert!(
        change["who"]
            .as_str()
            .is_some_and(|who| who.starts_with("console@")),
        "{change}"
    );

    // The page ran under its own content security policy without a violation
    // or an uncaught error.
    let problems: Vec<&Value> = page
        .events
        .iter()
        .filter(|e| {
            e["method"] == "Runtime.exceptionThrown"
                || (e["method"] == "Log.entryAdded" && e["params"]["entry"]["source"] == "security")
        })
        .collect();
    assert!(problems.is_empty(), "{problems:#?}");

    browser.close().await;
    stack.stop().await;
}
