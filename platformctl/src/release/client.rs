//! HTTP/1.1 to the gateway: its admin API (with the admin token), its
//! public listener (smoke checks) and Prometheus' query API.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::exit::{CtlError, REFUSED, UNREACHABLE};

/// One answer: status and body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The `error` of a JSON error body, or the body as text.
    pub fn message(&self) -> String {
        let json = self.json();
        json["error"]
            .as_str()
            .or_else(|| json["message"].as_str())
            .map_or_else(
                || String::from_utf8_lossy(&self.body).trim().to_owned(),
                str::to_owned,
            )
    }
}

#[derive(Debug, Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for Http {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(3)));
        connector.set_nodelay(true);
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }
}

impl Http {
    /// Sends one request; the error says what could not be reached.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Answer, String> {
        let mut builder = Request::builder().method(method).uri(url);
        for (name, value) in headers {
            builder = builder.header(*name, value);
        }
        let bytes = match body {
            Some(json) => {
                builder = builder.header("content-type", "application/json");
                Bytes::from(json.to_string())
            }
            None => Bytes::new(),
        };
        let request = builder
            .body(Full::new(bytes))
            .map_err(|e| format!("bad URL {url:?}: {e}"))?;
        let answer = tokio::time::timeout(Duration::from_secs(15), async {
            let response = self.client.request(request).await.map_err(|e| {
                let mut cause: &dyn std::error::Error = &e;
                while let Some(next) = cause.source() {
                    cause = next;
                }
                format!("cannot reach {url}: {cause}")
            })?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("{url}: the answer broke: {e}"))?
                .to_bytes();
            Ok::<_, String>(Answer { status, body })
        })
        .await
        .map_err(|_| format!("{url} did not answer within 15s"))??;
        Ok(answer)
    }
}

/// The gateway's admin API.
#[derive(Debug, Clone)]
pub struct Admin {
    pub http: Http,
    pub base: String,
    token: String,
    operator: String,
}

impl Admin {
    /// `token` wins; else the file `platformctl up` wrote in `data_dir`.
    pub fn new(base: &str, token: Option<String>, data_dir: &Path) -> Result<Self, CtlError> {
        let token = match token {
            Some(token) => token,
            None => {
                let file = data_dir.join("admin-token");
                std::fs::read_to_string(&file)
                    .map(|t| t.trim().to_owned())
                    .map_err(|_| {
                        CtlError::new(
                            REFUSED,
                            format!(
                                "no admin token: set ADMIN_TOKEN or --admin-token (or --data-dir to where `platformctl up` wrote admin-token; {} does not exist)",
                                file.display()
                            ),
                        )
                    })?
            }
        };
        let operator = std::env::var("PLATFORM_OPERATOR")
            .or_else(|_| std::env::var("USER"))
            .unwrap_or_else(|_| "platformctl".into());
        Ok(Self {
            http: Http::default(),
            base: base.trim_end_matches('/').to_owned(),
            token,
            operator,
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, CtlError> {
        let url = format!("{}{path}", self.base);
        let headers = [
            ("authorization", format!("Bearer {}", self.token)),
            ("x-operator", self.operator.clone()),
        ];
        let answer = self
            .http
            .send(method, &url, &headers, body)
            .await
            .map_err(|e| {
                CtlError::new(
                    UNREACHABLE,
                    format!("{e}; is the gateway running (`platformctl up`)? set --admin-url"),
                )
            })?;
        match answer.status {
            s if s.is_success() => Ok(answer.json()),
            StatusCode::UNAUTHORIZED => Err(CtlError::new(
                REFUSED,
                "the gateway refused the admin token: set ADMIN_TOKEN or --admin-token to the gateway's token",
            )),
            s if s.is_server_error() => Err(CtlError::new(
                UNREACHABLE,
                format!("the gateway failed ({s}): {}", answer.message()),
            )),
            _ => Err(CtlError::new(REFUSED, answer.message())),
        }
    }

    pub async fn get(&self, path: &str) -> Result<Value, CtlError> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, CtlError> {
        self.call(Method::POST, path, Some(body)).await
    }

    /// `GET path`, read as a `T`.
    pub async fn get_as<T: DeserializeOwned>(&self, path: &str) -> Result<T, CtlError> {
        typed(path, self.get(path).await?)
    }

    /// `POST path`, its answer read as a `T`.
    pub async fn post_as<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<T, CtlError> {
        typed(path, self.post(path, body).await?)
    }
}

/// Reads the answer to `path` as a `T`; an answer of another shape is an
/// error that names the path and what is wrong with it.
fn typed<T: DeserializeOwned>(path: &str, answer: Value) -> Result<T, CtlError> {
    serde_json::from_value(answer).map_err(|e| {
        CtlError::new(
            UNREACHABLE,
            format!("{path}: the gateway's answer is not one this platformctl reads: {e}"),
        )
    })
}
