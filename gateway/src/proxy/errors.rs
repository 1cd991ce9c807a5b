//! The one table that turns every failure into an HTTP status and a gRPC
//! status, and the JSON body (`google.rpc.Status`) every error carries.

use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use crate::boxed::{BoxBody, full};

/// gRPC status codes, with the HTTP status each one maps to.
const TABLE: [(&str, u16); 17] = [
    ("OK", 200),
    ("CANCELLED", 499),
    ("UNKNOWN", 500),
    ("INVALID_ARGUMENT", 400),
    ("DEADLINE_EXCEEDED", 504),
    ("NOT_FOUND", 404),
    ("ALREADY_EXISTS", 409),
    ("PERMISSION_DENIED", 403),
    ("RESOURCE_EXHAUSTED", 429),
    ("FAILED_PRECONDITION", 400),
    ("ABORTED", 409),
    ("OUT_OF_RANGE", 400),
    ("UNIMPLEMENTED", 501),
    ("INTERNAL", 500),
    ("UNAVAILABLE", 503),
    ("DATA_LOSS", 500),
    ("UNAUTHENTICATED", 401),
];

pub const CANCELLED: i32 = 1;
pub const UNKNOWN: i32 = 2;
pub const INVALID_ARGUMENT: i32 = 3;
pub const DEADLINE_EXCEEDED: i32 = 4;
pub const NOT_FOUND: i32 = 5;
pub const UNIMPLEMENTED: i32 = 12;
pub const UNAVAILABLE: i32 = 14;
pub const UNAUTHENTICATED: i32 = 16;
pub const PERMISSION_DENIED: i32 = 7;
pub const INTERNAL: i32 = 13;
pub const RESOURCE_EXHAUSTED: i32 = 8;

pub fn code_name(code: i32) -> &'static str {
    usize::try_from(code)
        .ok()
        .and_then(|i| TABLE.get(i))
        .map_or("UNKNOWN", |(name, _)| name)
}

pub fn http_status(code: i32) -> StatusCode {
    let status = usize::try_from(code)
        .ok()
        .and_then(|i| TABLE.get(i))
        .map_or(500, |(_, s)| *s);
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Which side a failure came from. An answer made from a failure carries
/// it (as a response extension) to the access log's `failed_by`, so an
/// operator tells a client's mistake from a service's error at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client sent something wrong.
    Downstream,
    /// The service answered with an error, or could not be reached.
    Upstream,
    /// The gateway itself.
    Gateway,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Downstream => "client",
            Side::Upstream => "service",
            Side::Gateway => "gateway",
        }
    }
}

/// A failure on the request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: i32,
    pub message: String,
    pub side: Side,
    /// Extra headers, such as `Allow` on a 405 or `WWW-Authenticate` on a 401.
    pub headers: Vec<(http::HeaderName, HeaderValue)>,
    /// An HTTP status that differs from the code's (404 for an unknown path, 405, 413).
    pub http_override: Option<StatusCode>,
}

/// A message that does not fit its contract fails like this: the client's
/// as INVALID_ARGUMENT (400) or UNIMPLEMENTED, the service's or the
/// gateway's own as INTERNAL.
impl From<crate::contract::Mismatch> for Failure {
    fn from(mismatch: crate::contract::Mismatch) -> Self {
        use crate::contract::Fault;
        let (code, side) = match mismatch.fault {
            Fault::Request => (INVALID_ARGUMENT, Side::Downstream),
            Fault::Unsupported => (UNIMPLEMENTED, Side::Downstream),
            Fault::Response => (INTERNAL, Side::Upstream),
            Fault::Encoding => (INTERNAL, Side::Gateway),
        };
        Self::new(code, mismatch.message, side)
    }
}

impl Failure {
    pub fn new(code: i32, message: impl Into<String>, side: Side) -> Self {
        Self {
            code,
            message: message.into(),
            side,
            headers: Vec::new(),
            http_override: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(INVALID_ARGUMENT, message, Side::Downstream)
    }

    pub fn not_found(path: &str) -> Self {
        Self::new(NOT_FOUND, format!("no route for {path}"), Side::Downstream)
    }

    pub fn method_not_allowed(allowed: &[http::Method]) -> Self {
        let list = allowed
            .iter()
            .map(http::Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let mut failure = Self::new(
            UNIMPLEMENTED,
            format!("method not allowed; this path accepts {list}"),
            Side::Downstream,
        );
        failure.http_override = Some(StatusCode::METHOD_NOT_ALLOWED);
        if let Ok(value) = HeaderValue::from_str(&list) {
            failure.headers.push((http::header::ALLOW, value));
        }
        failure
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        let message = message.into();
        let mut failure = Self::new(UNAUTHENTICATED, message.clone(), Side::Downstream);
        let challenge = format!(
            "Bearer error=\"invalid_token\", error_description=\"{}\"",
            message.replace('"', "'")
        );
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            failure
                .headers
                .push((http::header::WWW_AUTHENTICATE, value));
        }
        failure
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(UNAVAILABLE, message, Side::Upstream)
    }

    pub fn http_status(&self) -> StatusCode {
        self.http_override.unwrap_or_else(|| http_status(self.code))
    }

    /// The JSON `google.rpc.Status` body.
    pub fn json(&self) -> Bytes {
        status_json(self.code, &self.message)
    }

    /// The HTTP response of a REST call that failed.
    pub fn into_http(self) -> http::Response<BoxBody> {
        let mut response = http::Response::new(full(self.json()));
        *response.status_mut() = self.http_status();
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response.extensions_mut().insert(self.side);
        response
    }

    /// The trailers-only response of a gRPC call that failed.
    pub fn into_grpc(self) -> http::Response<BoxBody> {
        let mut response = http::Response::new(full(Bytes::new()));
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert("grpc-status", HeaderValue::from(self.code));
        let message =
            percent_encoding::utf8_percent_encode(&self.message, GRPC_MESSAGE).to_string();
        if let Ok(value) = HeaderValue::from_str(&message) {
            headers.insert("grpc-message", value);
        }
        response.extensions_mut().insert(self.side);
        response
    }
}

/// Characters escaped in `grpc-message` (the gRPC spec: outside printable ASCII, and `%`).
const GRPC_MESSAGE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'%');

pub fn status_json(code: i32, message: &str) -> Bytes {
    let body = serde_json::json!({ "code": code, "message": message, "details": [] });
    Bytes::from(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_says_which_side_failed() {
        let client = Failure::bad_request("no");
        assert_eq!(
            client.clone().into_http().extensions().get::<Side>(),
            Some(&Side::Downstream)
        );
        let service = Failure::new(UNAVAILABLE, "down", Side::Upstream);
        assert_eq!(
            service
                .into_grpc()
                .extensions()
                .get::<Side>()
                .map(|s| s.as_str()),
            Some("service")
        );
    }

    #[test]
    fn a_contract_mismatch_fails_by_whose_fault_it_is() {
        use crate::contract::Mismatch;
        for (mismatch, code, http, side) in [
            (
                Mismatch::request("x"),
                INVALID_ARGUMENT,
                400,
                Side::Downstream,
            ),
            (
                Mismatch::unsupported("x"),
                UNIMPLEMENTED,
                501,
                Side::Downstream,
            ),
            (Mismatch::response("x"), INTERNAL, 500, Side::Upstream),
            (Mismatch::encoding("x"), INTERNAL, 500, Side::Gateway),
        ] {
            let failure = Failure::from(mismatch.clone());
            assert_eq!(
                (failure.code, failure.http_status().as_u16(), failure.side),
                (code, http, side),
                "{mismatch:?}"
            );
        }
    }

    #[tokio::test]
    async fn one_table_for_http_and_grpc() {
        use http_body_util::BodyExt;
        for (code, http) in [
            (3, 400),
            (16, 401),
            (7, 403),
            (5, 404),
            (6, 409),
            (8, 429),
            (14, 503),
            (4, 504),
            (13, 500),
            (99, 500),
        ] {
            assert_eq!(http_status(code).as_u16(), http, "code {code}");
        }
        let failure = Failure::method_not_allowed(&[http::Method::GET, http::Method::POST]);
        assert_eq!(failure.http_status(), StatusCode::METHOD_NOT_ALLOWED);
        let response = failure.into_http();
        assert_eq!(response.headers()[http::header::ALLOW], "GET, POST");
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(json["code"], 12);
        let grpc = Failure::unavailable("no endpoint").into_grpc();
        assert_eq!(grpc.headers()["grpc-status"], "14");
    }
}
