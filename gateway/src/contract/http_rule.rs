//! `google.api.http` path templates: parsing and matching.
//!
//! ```text
//! Template = "/" Segments [ ":" Verb ]
//! Segment  = "*" | "**" | LITERAL | "{" FieldPath [ "=" Segments ] "}"
//! ```

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// One segment (`*`).
    Any,
    /// The rest of the path (`**`), only last.
    Rest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Variable {
    field_path: Vec<String>,
    /// Index of the first segment the variable covers, and how many (None: to the end).
    start: usize,
    len: Option<usize>,
}

/// A parsed path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    source: String,
    parts: Vec<Part>,
    variables: Vec<Variable>,
    verb: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid path template {template:?}: {reason}")]
pub struct TemplateError {
    pub template: String,
    pub reason: String,
}

impl fmt::Display for PathTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl PathTemplate {
    pub fn parse(template: &str) -> Result<Self, TemplateError> {
        let fail = |reason: &str| TemplateError {
            template: template.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = template
            .strip_prefix('/')
            .ok_or_else(|| fail("must start with /"))?;
        // The verb follows the last ':' that is outside braces.
        let mut depth = 0usize;
        let mut verb_at = None;
        for (i, c) in rest.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth = depth.checked_sub(1).ok_or_else(|| fail("unbalanced }"))?,
                ':' if depth == 0 => verb_at = Some(i),
                _ => {}
            }
        }
        if depth != 0 {
            return Err(fail("unbalanced {"));
        }
        let (path, verb) = match verb_at {
            Some(i) => (&rest[..i], Some(rest[i + 1..].to_owned())),
            None => (rest, None),
        };
        if verb
            .as_deref()
            .is_some_and(|v| v.is_empty() || v.contains('/'))
        {
            return Err(fail("the verb after ':' must be a non-empty literal"));
        }
        let mut parts = Vec::new();
        let mut variables = Vec::new();
        for raw in split_outside_braces(path) {
            if let Some(inner) = raw.strip_prefix('{') {
                let inner = inner
                    .strip_suffix('}')
                    .ok_or_else(|| fail("a variable must be a whole segment"))?;
                let (field, pattern) = inner.split_once('=').unwrap_or((inner, "*"));
                let field_path: Vec<String> = field.split('.').map(str::to_owned).collect();
                if field_path.iter().any(|p| {
                    p.is_empty() || !p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                }) {
                    return Err(fail(
                        "a variable names a field path such as order_id or item.sku",
                    ));
                }
                let start = parts.len();
                let mut len = Some(0);
                for sub in pattern.split('/') {
                    let part = segment(sub).map_err(|r| fail(&r))?;
                    if part == Part::Rest {
                        len = None;
                    } else if let Some(n) = len.as_mut() {
                        *n += 1;
                    }
                    parts.push(part);
                }
                variables.push(Variable {
                    field_path,
                    start,
                    len,
                });
            } else {
                parts.push(segment(raw).map_err(|r| fail(&r))?);
            }
        }
        if parts.iter().rev().skip(1).any(|p| *p == Part::Rest) {
            return Err(fail("** may only be the last segment"));
        }
        Ok(Self {
            source: template.to_owned(),
            parts,
            variables,
            verb,
        })
    }

    /// Matches `path` (already split from the query); returns the variables'
    /// field paths and their percent-decoded values.
    pub fn matches(&self, path: &str) -> Option<Vec<(Vec<String>, String)>> {
        let path = path.strip_prefix('/')?;
        let path = match &self.verb {
            Some(verb) => path.strip_suffix(verb.as_str())?.strip_suffix(':')?,
            None => path,
        };
        let segments: Vec<&str> = if path.is_empty() {
            Vec::new()
        } else {
            path.split('/').collect()
        };
        let mut i = 0;
        for part in &self.parts {
            match part {
                Part::Literal(lit) => {
                    if segments.get(i) != Some(&lit.as_str()) {
                        return None;
                    }
                    i += 1;
                }
                Part::Any => {
                    if segments.get(i).is_none_or(|s| s.is_empty()) {
                        return None;
                    }
                    i += 1;
                }
                Part::Rest => i = segments.len(),
            }
        }
        if i != segments.len() {
            return None;
        }
        // With no verb in the template, a ':' in the last segment belongs to a
        // verb of another route, not to a variable.
        if self.verb.is_none()
            && segments.last().is_some_and(|s| s.contains(':'))
            && self.parts.last() != Some(&Part::Rest)
        {
            return None;
        }
        let mut values = Vec::with_capacity(self.variables.len());
        for var in &self.variables {
            let end = var.len.map_or(segments.len(), |n| var.start + n);
            let raw = segments.get(var.start..end)?.join("/");
            let decoded = percent_encoding::percent_decode_str(&raw)
                .decode_utf8()
                .ok()?
                .into_owned();
            values.push((var.field_path.clone(), decoded));
        }
        Some(values)
    }

    /// The fields bound by the path.
    pub fn variables(&self) -> impl Iterator<Item = &[String]> {
        self.variables.iter().map(|v| v.field_path.as_slice())
    }

    /// Literal segments first in matching precedence.
    pub fn literal_count(&self) -> usize {
        self.parts
            .iter()
            .filter(|p| matches!(p, Part::Literal(_)))
            .count()
    }

    /// Two templates with the same shape match exactly the same paths.
    pub fn same_shape(&self, other: &PathTemplate) -> bool {
        self.parts == other.parts && self.verb == other.verb
    }

    /// The template with `{var}` placeholders, as OpenAPI writes paths.
    pub fn openapi_path(&self) -> String {
        let mut out = String::new();
        let mut i = 0;
        while i < self.parts.len() {
            out.push('/');
            if let Some(var) = self.variables.iter().find(|v| v.start == i) {
                out.push('{');
                out.push_str(&var.field_path.join("."));
                out.push('}');
                i += var.len.unwrap_or(self.parts.len() - i).max(1);
                continue;
            }
            match &self.parts[i] {
                Part::Literal(l) => out.push_str(l),
                Part::Any => out.push('*'),
                Part::Rest => out.push_str("**"),
            }
            i += 1;
        }
        if let Some(verb) = &self.verb {
            out.push(':');
            out.push_str(verb);
        }
        out
    }
}

fn split_outside_braces(path: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in path.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            '/' if depth == 0 => {
                out.push(&path[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&path[start..]);
    out
}

fn segment(raw: &str) -> Result<Part, String> {
    match raw {
        "" => Err("empty segment".into()),
        "*" => Ok(Part::Any),
        "**" => Ok(Part::Rest),
        lit if lit.contains(['{', '}', '*', '=']) => Err(format!("invalid segment {lit:?}")),
        lit => Ok(Part::Literal(lit.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::PathTemplate;

    fn check(template: &str, path: &str, expect: Option<&[(&str, &str)]>) {
        let t = PathTemplate::parse(template).expect("valid template");
        let got = t.matches(path);
        let got: Option<Vec<(String, String)>> =
            got.map(|vars| vars.into_iter().map(|(f, v)| (f.join("."), v)).collect());
        let want: Option<Vec<(String, String)>> = expect.map(|e| {
            e.iter()
                .map(|(f, v)| ((*f).to_owned(), (*v).to_owned()))
                .collect()
        });
        assert_eq!(got, want, "{template} against {path}");
    }

    #[test]
    fn matches_paths() {
        check("/v1/orders", "/v1/orders", Some(&[]));
        check("/v1/orders", "/v1/orders/x", None);
        check(
            "/v1/orders/{order_id}",
            "/v1/orders/ord_1",
            Some(&[("order_id", "ord_1")]),
        );
        check("/v1/orders/{order_id}", "/v1/orders/", None);
        check(
            "/v1/orders/{order_id}",
            "/v1/orders/a%20b",
            Some(&[("order_id", "a b")]),
        );
        check("/v1/orders/{order_id}", "/v1/orders/ord_1:cancel", None);
        check(
            "/v1/orders/{order_id}:cancel",
            "/v1/orders/ord_1:cancel",
            Some(&[("order_id", "ord_1")]),
        );
        check("/v1/orders/{order_id}:cancel", "/v1/orders/ord_1", None);
        check(
            "/v1/orders/{order_id}:cancel",
            "/v1/orders/ord_1:refund",
            None,
        );
        check(
            "/v1/notifications:stream",
            "/v1/notifications:stream",
            Some(&[]),
        );
        check("/v1/notifications", "/v1/notifications:stream", None);
        check(
            "/v1/{name=shelves/*/books/*}",
            "/v1/shelves/1/books/2",
            Some(&[("name", "shelves/1/books/2")]),
        );
        check("/v1/{name=shelves/*/books/*}", "/v1/shelves/1/books", None);
        check(
            "/v1/{item.sku}/x",
            "/v1/abc/x",
            Some(&[("item.sku", "abc")]),
        );
        check(
            "/v1/files/{path=**}",
            "/v1/files/a/b/c.txt",
            Some(&[("path", "a/b/c.txt")]),
        );
        check("/v1/*/items", "/v1/anything/items", Some(&[]));
    }

    #[test]
    fn refuses_bad_templates() {
        for bad in [
            "v1/x",
            "/v1/{x",
            "/v1/x}",
            "/v1//x",
            "/v1/{a b}",
            "/v1/**/x",
            "/v1/x:",
            "/v1/a{b}",
        ] {
            assert!(PathTemplate::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn shapes_and_openapi_paths() {
        let a = PathTemplate::parse("/v1/orders/{order_id}").expect("valid");
        let b = PathTemplate::parse("/v1/orders/{id}").expect("valid");
        let c = PathTemplate::parse("/v1/orders/{order_id}:cancel").expect("valid");
        assert!(a.same_shape(&b));
        assert!(!a.same_shape(&c));
        assert_eq!(c.openapi_path(), "/v1/orders/{order_id}:cancel");
        assert_eq!(
            PathTemplate::parse("/v1/{name=shelves/*}")
                .expect("valid")
                .openapi_path(),
            "/v1/{name}"
        );
    }
}
