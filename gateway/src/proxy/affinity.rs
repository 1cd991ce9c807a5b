//! Sticky canary: who a request comes from, so the same caller gets the
//! same color while the weights stay (the pick itself is
//! `routing::sticky_color`). A caller is the subject of its verified
//! bearer token, else (REST only) the gateway's affinity cookie, which the
//! gateway sets on an answer to a REST caller that has neither. Nobody else
//! can be told apart (native gRPC without a token, east-west calls, whose
//! token names a service), so their color is drawn per request.

use http::{HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};

use crate::proxy::errors::Failure;

/// The cookie that makes an anonymous REST client sticky.
pub const COOKIE: &str = "platform-affinity";

/// How long a browser keeps the cookie: longer than a release takes.
const MAX_AGE_SECS: u32 = 24 * 3600;

/// The longest cookie value accepted (the gateway's own are 30 characters).
const MAX_COOKIE_LEN: usize = 64;

/// Who a request comes from, as far as the color is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Affinity {
    /// The subject of the verified bearer token.
    User(String),
    /// The value of the affinity cookie.
    Cookie(String),
}

impl Affinity {
    /// This caller's point for `service`: a stable hash (the same in every
    /// gateway replica and build) of the service and the caller, so one
    /// user is not in the canary of every service at once.
    pub fn point(&self, service: &str) -> u64 {
        let (kind, id) = match self {
            Affinity::User(subject) => ("user", subject),
            Affinity::Cookie(value) => ("cookie", value),
        };
        let digest = Sha256::new()
            .chain_update(service.as_bytes())
            .chain_update([0])
            .chain_update(kind.as_bytes())
            .chain_update([0])
            .chain_update(id.as_bytes())
            .finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first)
    }
}

/// The affinity of a REST request and, when it has none yet, the
/// `Set-Cookie` value that gives it one. A token's subject comes first;
/// else the cookie; else a new cookie, whose id already picks this
/// request's color, so the first answer and the next ones agree (a client
/// that keeps no cookies is drawn anew each time, as without stickiness).
/// `secure` marks the cookie for HTTPS only (the public listener has TLS).
pub fn of_rest(
    subject: Option<&str>,
    headers: &HeaderMap,
    secure: bool,
) -> Result<(Affinity, Option<HeaderValue>), Failure> {
    // Checked even when a token decides, so a bad cookie is one answer.
    let cookie = cookie(headers)?;
    if let Some(subject) = subject {
        return Ok((Affinity::User(subject.to_owned()), None));
    }
    if let Some(value) = cookie {
        return Ok((Affinity::Cookie(value), None));
    }
    let id = platform_runtime::ids::new_id("aff");
    let set = HeaderValue::from_str(&set_cookie(&id, secure)).ok();
    Ok((Affinity::Cookie(id), set))
}

/// The value of the first affinity cookie among the request's `Cookie`
/// headers (HTTP/2 may split them), or a 400 saying what is wrong with it.
/// Other cookies are not the gateway's business and are not read.
pub fn cookie(headers: &HeaderMap) -> Result<Option<String>, Failure> {
    let found = headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|header| header.as_bytes().split(|b| *b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let at = pair.iter().position(|b| *b == b'=')?;
            (pair[..at].trim_ascii() == COOKIE.as_bytes()).then(|| pair[at + 1..].trim_ascii())
        });
    let Some(value) = found else {
        return Ok(None);
    };
    let plain = !value.is_empty()
        && value.len() <= MAX_COOKIE_LEN
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-');
    if !plain {
        return Err(Failure::bad_request(format!(
            "the {COOKIE} cookie must be 1 to {MAX_COOKIE_LEN} letters, digits, '_' or '-'; \
             send the one the gateway set, or none and it sets a new one"
        )));
    }
    Ok(Some(String::from_utf8_lossy(value).into_owned()))
}

/// The `Set-Cookie` value for affinity id `id`: sent back on every request
/// to this site for a day, never readable by scripts.
fn set_cookie(id: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={id}; Path=/; Max-Age={MAX_AGE_SECS}; HttpOnly; SameSite=Lax{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::{ColorWeights, sticky_color};
    use platform_runtime::Color;

    fn green(percent: u32) -> ColorWeights {
        ColorWeights {
            blue: 100 - percent,
            green: percent,
        }
    }

    fn users(n: usize) -> Vec<Affinity> {
        (0..n).map(|i| Affinity::User(format!("usr_{i}"))).collect()
    }

    #[test]
    fn the_same_caller_gets_the_same_point_and_color() {
        for who in users(200) {
            let again = who.clone();
            assert_eq!(who.point("orders"), again.point("orders"));
            assert_eq!(
                sticky_color(green(50), who.point("orders")),
                sticky_color(green(50), again.point("orders"))
            );
        }
        // A cookie and a subject with the same text are different callers.
        assert_ne!(
            Affinity::User("x".into()).point("orders"),
            Affinity::Cookie("x".into()).point("orders")
        );
    }

    #[test]
    fn shares_follow_the_weights_over_many_callers() {
        let callers = users(20_000);
        for percent in [1, 5, 25, 50, 75, 99] {
            let on_green = callers
                .iter()
                .filter(|who| sticky_color(green(percent), who.point("orders")) == Color::Green)
                .count();
            let share = on_green as f64 / callers.len() as f64 * 100.0;
            // Four standard deviations at 50% are 1.4 points.
            assert!(
                (share - f64::from(percent)).abs() < 1.5,
                "green at {percent}% got {share:.2}% of callers"
            );
        }
    }

    #[test]
    fn raising_a_share_keeps_every_caller_it_had() {
        let callers = users(2_000);
        for who in &callers {
            let point = who.point("orders");
            let colors: Vec<Color> = (0..=100).map(|p| sticky_color(green(p), point)).collect();
            assert_eq!(colors[0], Color::Blue, "at 0% nobody is on green");
            assert_eq!(colors[100], Color::Green, "at 100% everybody is");
            // Green for every share from the first that takes the caller on.
            let first = colors.iter().position(|c| *c == Color::Green);
            let first = first.expect("green at 100%");
            assert!(
                colors[first..].iter().all(|c| *c == Color::Green),
                "{who:?} left green when its share grew"
            );
        }
    }

    #[test]
    fn each_service_draws_its_own_canary() {
        let callers = users(10_000);
        let both = callers
            .iter()
            .filter(|who| {
                sticky_color(green(10), who.point("orders")) == Color::Green
                    && sticky_color(green(10), who.point("payments")) == Color::Green
            })
            .count();
        // Independent draws: about 10% of 10% of the callers, not 10%.
        assert!(
            (50..=160).contains(&both),
            "{both} of 10000 in both canaries"
        );
    }

    fn with_cookies(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                http::header::COOKIE,
                HeaderValue::from_bytes(value.as_bytes()).expect("header"),
            );
        }
        headers
    }

    #[test]
    fn the_affinity_cookie_is_read_among_others() {
        // The value read, or Err for a cookie refused with a 400.
        type Read = Result<Option<&'static str>, ()>;
        let cases: [(&[&str], Read); 11] = [
            (&[], Ok(None)),
            (&["session=abc"], Ok(None)),
            (&["platform-affinity=aff_01"], Ok(Some("aff_01"))),
            (&["a=1; platform-affinity=aff_02 ; b=2"], Ok(Some("aff_02"))),
            (&["a=1", "platform-affinity=aff_03"], Ok(Some("aff_03"))),
            (
                &["platform-affinity=first; platform-affinity=second"],
                Ok(Some("first")),
            ),
            (&["platform-affinity-x=1; xplatform-affinity=2"], Ok(None)),
            (&["platform-affinity="], Err(())),
            (&["platform-affinity=a b"], Err(())),
            (&["platform-affinity=\"quoted\""], Err(())),
            (&[&format!("platform-affinity={}", "a".repeat(65))], Err(())),
        ];
        for (headers, want) in cases {
            let got = cookie(&with_cookies(headers));
            match (got, want) {
                (Ok(got), Ok(want)) => assert_eq!(got.as_deref(), want, "{headers:?}"),
                (Err(failure), Err(())) => {
                    assert_eq!(failure.http_status(), http::StatusCode::BAD_REQUEST);
                    assert!(failure.message.contains(COOKIE), "{}", failure.message);
                }
                (got, want) => panic!("{headers:?}: got {got:?}, want {want:?}"),
            }
        }
        // Bytes that are not UTF-8 in someone else's cookie are not ours to judge.
        let mut odd = HeaderMap::new();
        odd.insert(
            http::header::COOKIE,
            HeaderValue::from_bytes(b"other=\xff\xfe; platform-affinity=aff_04").expect("header"),
        );
        assert_eq!(cookie(&odd).expect("valid").as_deref(), Some("aff_04"));
    }

    #[test]
    fn a_rest_caller_is_its_token_else_its_cookie_else_a_new_cookie() {
        let none = HeaderMap::new();
        let (who, set) = of_rest(Some("usr_1"), &none, false).expect("ok");
        assert_eq!((who, set), (Affinity::User("usr_1".into()), None));

        let cookie = with_cookies(&["platform-affinity=aff_known"]);
        let (who, set) = of_rest(None, &cookie, false).expect("ok");
        assert_eq!((who, set), (Affinity::Cookie("aff_known".into()), None));
        let (who, _) = of_rest(Some("usr_1"), &cookie, false).expect("ok");
        assert_eq!(who, Affinity::User("usr_1".into()), "the token decides");

        let (who, set) = of_rest(None, &none, true).expect("ok");
        let set = set.expect("a new cookie");
        let set = set.to_str().expect("ascii");
        let Affinity::Cookie(id) = who else {
            panic!("{who:?}")
        };
        assert_eq!(
            set,
            format!(
                "platform-affinity={id}; Path=/; Max-Age=86400; HttpOnly; SameSite=Lax; Secure"
            )
        );
        // The cookie it sets is one it accepts back.
        let back = with_cookies(&[&format!("platform-affinity={id}")]);
        assert_eq!(super::cookie(&back).expect("valid"), Some(id));

        let bad = with_cookies(&["platform-affinity=no;way=1", "platform-affinity=%%"]);
        assert!(of_rest(None, &bad, false).is_ok(), "the first one counts");
        let bad = with_cookies(&["platform-affinity=%%"]);
        assert!(of_rest(Some("usr_1"), &bad, false).is_err());
    }
}
