//! Credentials a request carries: the one bearer-token parser of the
//! gateway and a comparison of secrets that tells nothing by its timing.

use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The token of an `Authorization: Bearer <token>` header. The scheme is
/// matched without regard to case (RFC 9110, section 11.1) and the token is
/// trimmed; `None` when there is no such header or no token in it.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Whether `given` is the secret `expected`, in a time that depends on
/// neither its content nor its length: both sides are hashed first, so the
/// comparison is always of 32 bytes. An empty `expected` matches nothing.
pub(crate) fn same_secret(given: &str, expected: &str) -> bool {
    if expected.is_empty() {
        return false;
    }
    let given = Sha256::digest(given.as_bytes());
    let expected = Sha256::digest(expected.as_bytes());
    bool::from(given.ct_eq(&expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_str(value).expect("header"),
        );
        headers
    }

    #[test]
    fn bearer_tokens_are_read_one_way() {
        let cases = [
            ("Bearer abc", Some("abc")),
            ("bearer abc", Some("abc")),
            ("BEARER  abc ", Some("abc")),
            ("Bearer", None),
            ("Bearer   ", None),
            ("Basic abc", None),
            ("Bearerabc", None),
        ];
        for (value, want) in cases {
            assert_eq!(bearer(&with(value)), want, "{value:?}");
        }
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    #[test]
    fn secrets_match_only_themselves() {
        assert!(same_secret("s3cret", "s3cret"));
        assert!(!same_secret("s3cre", "s3cret"));
        assert!(!same_secret("s3cret-and-more", "s3cret"));
        assert!(!same_secret("", ""));
        assert!(!same_secret("anything", ""));
    }
}
