//! What a client's request carries on to a service: an allow-list of
//! headers, so credentials meant for the gateway (the preview token,
//! cookies) and anything else a client sends never leave it, within a size
//! budget, so the edge refuses (431) what a service would refuse with an
//! answer the client could not read; and the request id, bounded.

use http::{HeaderMap, HeaderValue, StatusCode};

use crate::proxy::errors::{Failure, RESOURCE_EXHAUSTED, Side};

/// The client headers a service may see.
const PASSED_ON: [&str; 6] = [
    "authorization",
    "x-request-id",
    "traceparent",
    "tracestate",
    "grpc-encoding",
    "grpc-accept-encoding",
];

/// Header bytes passed on, counted as HTTP/2 does (name + value + 32 per
/// field): the services take 16 KiB in all, and the gateway adds its own.
pub const UPSTREAM_HEADER_BUDGET: usize = 12 * 1024;

/// The longest client `x-request-id` kept; a longer or odd one is replaced.
const MAX_REQUEST_ID: usize = 128;

/// Copies the passed-on headers of `incoming` into `into`, or refuses the
/// request when they would not fit the services' limit.
pub fn pass_on(incoming: &HeaderMap, into: &mut HeaderMap) -> Result<(), Failure> {
    let mut size = 0;
    for name in PASSED_ON {
        for value in incoming.get_all(name) {
            size += name.len() + value.len() + 32;
            into.append(name, value.clone());
        }
    }
    if size > UPSTREAM_HEADER_BUDGET {
        return Err(headers_too_large(size));
    }
    Ok(())
}

pub fn headers_too_large(size: usize) -> Failure {
    let mut failure = Failure::new(
        RESOURCE_EXHAUSTED,
        format!(
            "the request's headers ({size} bytes with authorization and tracing) are larger than the {UPSTREAM_HEADER_BUDGET} bytes the services accept"
        ),
        Side::Downstream,
    );
    failure.http_override = Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    failure
}

/// The client's request id when it is short and plain; None means the
/// gateway makes one.
pub fn request_id(value: Option<&HeaderValue>) -> Option<HeaderValue> {
    let value = value?;
    let plain = !value.is_empty()
        && value.len() <= MAX_REQUEST_ID
        && value
            .as_bytes()
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b));
    plain.then(|| value.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_allow_list_is_passed_on() {
        let mut incoming = HeaderMap::new();
        for (name, value) in [
            ("authorization", "Bearer abc"),
            ("x-request-id", "req-1"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("cookie", "session=secret"),
            ("x-color-token", "preview-secret"),
            ("x-color", "green"),
            ("x-forwarded-for", "10.0.0.1"),
            ("grpc-timeout", "1S"),
        ] {
            incoming.insert(name, HeaderValue::from_static(value));
        }
        let mut out = HeaderMap::new();
        pass_on(&incoming, &mut out).expect("fits");
        let mut names: Vec<_> = out.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["authorization", "traceparent", "x-request-id"]);
    }

    #[test]
    fn headers_beyond_the_budget_are_refused_with_431() {
        let mut incoming = HeaderMap::new();
        let token = format!("Bearer {}", "a".repeat(26 * 1024));
        incoming.insert(
            "authorization",
            HeaderValue::from_str(&token).expect("value"),
        );
        let refused = pass_on(&incoming, &mut HeaderMap::new()).expect_err("too large");
        assert_eq!(refused.http_status().as_u16(), 431);
        assert_eq!(refused.code, RESOURCE_EXHAUSTED);
    }

    #[test]
    fn request_ids_are_bounded() {
        for (raw, kept) in [
            ("req-123", true),
            ("0af7651916cd43dd:b7ad6b71_69203331.1", true),
            ("", false),
            ("has space", false),
            ("<script>", false),
        ] {
            let value = HeaderValue::from_str(raw).expect("value");
            assert_eq!(request_id(Some(&value)).is_some(), kept, "{raw:?}");
        }
        let long = HeaderValue::from_str(&"x".repeat(20_000)).expect("value");
        assert!(request_id(Some(&long)).is_none());
        assert!(request_id(None).is_none());
    }
}
