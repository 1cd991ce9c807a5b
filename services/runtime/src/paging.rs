//! List pagination: `page_size` is capped, and `page_token` is an opaque
//! cursor (the sort key of the last item returned), so pages stay stable
//! while rows are added.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tonic::Status;

pub const DEFAULT_PAGE_SIZE: i64 = 20;
pub const MAX_PAGE_SIZE: i64 = 100;

/// A validated page request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub size: i64,
    /// The sort key of the last item of the previous page.
    pub after: Option<String>,
}

impl Page {
    pub fn parse(page_size: i32, page_token: &str) -> Result<Self, Status> {
        let size = match i64::from(page_size) {
            0 => DEFAULT_PAGE_SIZE,
            n if n < 0 => {
                return Err(Status::invalid_argument(
                    "page_size must not be negative (0 means the default of 20)",
                ));
            }
            n => n.min(MAX_PAGE_SIZE),
        };
        let after = if page_token.is_empty() {
            None
        } else {
            let bytes = URL_SAFE_NO_PAD.decode(page_token).map_err(|_| {
                Status::invalid_argument("page_token is not a token from a previous page")
            })?;
            Some(String::from_utf8(bytes).map_err(|_| {
                Status::invalid_argument("page_token is not a token from a previous page")
            })?)
        };
        Ok(Self { size, after })
    }

    /// How many rows to fetch: one more than the page, to know if another follows.
    pub fn fetch_limit(&self) -> i64 {
        self.size + 1
    }

    /// Cuts the extra row off and returns the token of the next page.
    pub fn finish<T>(&self, rows: &mut Vec<T>, key: impl Fn(&T) -> String) -> String {
        let size = usize::try_from(self.size).unwrap_or(usize::MAX);
        if rows.len() > size {
            rows.truncate(size);
            rows.last()
                .map(|last| URL_SAFE_NO_PAD.encode(key(last)))
                .unwrap_or_default()
        } else {
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Page;

    #[test]
    fn sizes_are_defaulted_and_capped() {
        assert_eq!(Page::parse(0, "").map(|p| p.size).ok(), Some(20));
        assert_eq!(Page::parse(1000, "").map(|p| p.size).ok(), Some(100));
        assert!(Page::parse(-1, "").is_err());
        assert!(Page::parse(5, "%%%").is_err());
    }

    #[test]
    fn tokens_round_trip() {
        let page = Page::parse(2, "").expect("valid");
        let mut rows = vec!["a", "b", "c"];
        let token = page.finish(&mut rows, |r| (*r).to_owned());
        assert_eq!(rows, ["a", "b"]);
        assert_eq!(
            Page::parse(2, &token).expect("valid").after.as_deref(),
            Some("b")
        );
        let mut last = vec!["c"];
        assert_eq!(page.finish(&mut last, |r| (*r).to_owned()), "");
    }
}
