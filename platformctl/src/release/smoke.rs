//! The smoke check before a switch: a short list of requests sent through
//! the gateway's public listener with the color header forcing the target,
//! each expected to answer one of a few statuses. Each service has a
//! default list; `--smoke-file` replaces it with a JSON list of
//! `{"method", "path", "body"?, "auth"?, "expect": [statuses], "repeat"?}`.

use http::Method;
use platform_runtime::Color;
use serde::Deserialize;
use serde_json::{Value, json};

use super::client::{Admin, Http};
use super::exit::{CtlError, UNHEALTHY, UNREACHABLE, USAGE};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub body: Option<Value>,
    /// Sent with the token of a throwaway user.
    #[serde(default)]
    pub auth: bool,
    pub expect: Vec<u16>,
    /// Sent this many times (a fault that hits one call in five shows).
    #[serde(default = "one")]
    pub repeat: u32,
}

fn one() -> u32 {
    1
}

fn check(method: &str, path: &str, auth: bool, expect: &[u16]) -> Check {
    Check {
        method: method.into(),
        path: path.into(),
        body: None,
        auth,
        expect: expect.to_vec(),
        repeat: 5,
    }
}

/// The checks of each service when no file is given: reads that reach the
/// service and prove it answers, with nothing written but a test user.
pub fn defaults(service: &str) -> Vec<Check> {
    match service {
        "auth" => vec![
            check("GET", "/v1/auth/jwks", false, &[200]),
            check("GET", "/v1/auth/me", true, &[200]),
        ],
        "orders" => vec![
            check("GET", "/v1/orders?pageSize=1", true, &[200]),
            check("GET", "/v1/orders/ord_smoke_missing", true, &[404]),
        ],
        "payments" => vec![check("GET", "/v1/payments/pay_smoke_missing", true, &[404])],
        "notifications" => vec![check("GET", "/v1/notifications?pageSize=1", true, &[200])],
        _ => Vec::new(),
    }
}

pub fn load(service: &str, file: Option<&std::path::Path>) -> Result<Vec<Check>, CtlError> {
    let checks = match file {
        Some(file) => {
            let text = std::fs::read_to_string(file).map_err(|e| {
                CtlError::usage(format!("cannot read --smoke-file {}: {e}", file.display()))
            })?;
            serde_json::from_str::<Vec<Check>>(&text).map_err(|e| {
                CtlError::usage(format!(
                    "--smoke-file {}: expected a JSON list of {{\"method\", \"path\", \"expect\": [statuses]}}: {e}",
                    file.display()
                ))
            })?
        }
        None => defaults(service),
    };
    for c in &checks {
        if c.method.parse::<Method>().is_err() || !c.path.starts_with('/') || c.expect.is_empty() {
            return Err(CtlError::new(
                USAGE,
                format!(
                    "smoke check {} {}: needs a method, a path starting with / and expected statuses",
                    c.method, c.path
                ),
            ));
        }
    }
    Ok(checks)
}

/// A user for the checks that need a token, registered through the gateway.
async fn user_token(
    http: &Http,
    gateway: &str,
    color_headers: &[(&str, String)],
) -> Result<String, CtlError> {
    let email = format!("smoke-{}@example.com", platform_runtime::ids::new_id("u"));
    let password = format!("Smoke-{}-pw", platform_runtime::ids::new_id("p"));
    let credentials = json!({ "email": email, "password": password });
    let unreachable =
        |e: String| CtlError::new(UNREACHABLE, format!("smoke check: {e}; set --gateway-url"));
    let register = http
        .send(
            Method::POST,
            &format!("{gateway}/v1/auth/register"),
            color_headers,
            Some(&credentials),
        )
        .await
        .map_err(unreachable)?;
    if !register.status.is_success() {
        return Err(CtlError::new(
            UNHEALTHY,
            format!(
                "smoke check: registering a test user answered {}: {}",
                register.status,
                register.message()
            ),
        ));
    }
    let login = http
        .send(
            Method::POST,
            &format!("{gateway}/v1/auth/login"),
            color_headers,
            Some(&credentials),
        )
        .await
        .map_err(unreachable)?;
    let token = login.json()["accessToken"].as_str().map(str::to_owned);
    match (login.status.is_success(), token) {
        (true, Some(token)) => Ok(token),
        _ => Err(CtlError::new(
            UNHEALTHY,
            format!(
                "smoke check: logging the test user in answered {}: {}",
                login.status,
                login.message()
            ),
        )),
    }
}

/// Runs every check against `color` of `service`; the first failure says
/// which request answered what.
pub async fn run(
    admin: &Admin,
    gateway: &str,
    service: &str,
    color: Color,
    checks: &[Check],
) -> Result<usize, CtlError> {
    let http = &admin.http;
    // The gateway says how a color is forced: its header, and the preview
    // credential (never the admin token) when one is needed.
    let preview = admin.get("/admin/preview").await?;
    let mut forced = vec![("x-color", color.to_string())];
    match preview["mode"].as_str() {
        Some("anyone") => {}
        Some("preview-token") => forced.push((
            "x-color-token",
            preview["token"].as_str().unwrap_or_default().to_owned(),
        )),
        _ => {
            return Err(CtlError::new(
                UNHEALTHY,
                format!(
                    "smoke check: the gateway allows no preview of a color (COLOR_OVERRIDE is nobody), so {color} cannot be checked before it takes traffic: set PREVIEW_TOKEN on the gateway"
                ),
            ));
        }
    }

    // The test user comes from auth as routed now, unless auth is the one
    // under test.
    let login_headers: &[(&str, String)] = if service == "auth" { &forced } else { &[] };
    let token = if checks.iter().any(|c| c.auth) {
        Some(user_token(http, gateway, login_headers).await?)
    } else {
        None
    };
    let mut sent = 0;
    for c in checks {
        let mut headers = forced.clone();
        if c.auth
            && let Some(token) = &token
        {
            headers.push(("authorization", format!("Bearer {token}")));
        }
        let method: Method = c
            .method
            .parse()
            .map_err(|_| CtlError::usage(format!("bad method {}", c.method)))?;
        for _ in 0..c.repeat.max(1) {
            let answer = http
                .send(
                    method.clone(),
                    &format!("{gateway}{}", c.path),
                    &headers,
                    c.body.as_ref(),
                )
                .await
                .map_err(|e| {
                    CtlError::new(UNREACHABLE, format!("smoke check: {e}; set --gateway-url"))
                })?;
            sent += 1;
            if !c.expect.contains(&answer.status.as_u16()) {
                return Err(CtlError::new(
                    UNHEALTHY,
                    format!(
                        "smoke check failed: {} {} through {color} answered {} (expected {:?}): {}",
                        c.method,
                        c.path,
                        answer.status.as_u16(),
                        c.expect,
                        answer.message()
                    ),
                ));
            }
        }
    }
    Ok(sent)
}
