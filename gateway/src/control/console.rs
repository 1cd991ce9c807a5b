//! `GET /console` on the admin port: the rollout console, one page that shows
//! each service's traffic split, colors and rollout in progress, and promotes,
//! aborts or rolls back. The page itself holds no data and needs no token;
//! everything it shows and does goes through the admin API with the token
//! the operator types in, so it is exactly as powerful as `curl`.

use http::{HeaderValue, Response, header};

use crate::boxed::{BoxBody, full};

const PAGE: &str = include_str!("console.html");

/// Scripts and styles only from the page itself, calls only to this origin,
/// and never inside a frame (the buttons change production traffic).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; \
     style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'";

/// The console page.
pub fn page() -> Response<BoxBody> {
    let mut response = Response::new(full(PAGE));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_the_page_locked_down() {
        let response = page();
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        assert_eq!(header(header::CONTENT_TYPE), "text/html; charset=utf-8");
        assert_eq!(header(header::CACHE_CONTROL), "no-store");
        assert_eq!(header(header::X_FRAME_OPTIONS), "DENY");
        let csp = header(header::CONTENT_SECURITY_POLICY);
        for directive in [
            "default-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{directive} missing from {csp}");
        }
        // Self-contained: nothing loaded from anywhere else.
        for external in ["http://", "https://", "//cdn", "@import"] {
            assert!(!PAGE.contains(external), "the page refers to {external}");
        }
    }
}
