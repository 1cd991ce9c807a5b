//! What `/metrics` answers: the exposition format the scraper asks for in
//! `Accept`, served under exactly the content type it is written in.
//! Prometheus asks for OpenMetrics first; a client that does not name it
//! (curl, the classic parsers) gets the classic text format 0.0.4, in which a
//! counter's family is named with its `_total` and there is no `# EOF`.

use prometheus_client::registry::Registry;

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The compiler that built this binary (`1.91.1`), for `build_info`.
pub const RUSTC_VERSION: &str = env!("PLATFORM_RUSTC_VERSION");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    Classic,
}

impl Format {
    /// The format an `Accept` header prefers: the acceptable media type with
    /// the highest quality; OpenMetrics on a tie with the classic text; the
    /// classic text when neither is named (no header, `*/*`).
    pub fn negotiate(accept: Option<&str>) -> Self {
        let mut openmetrics = None::<f32>;
        let mut classic = None::<f32>;
        for range in accept.unwrap_or("").split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let mut quality = 1.0f32;
            let mut version = None;
            for parameter in parts {
                let Some((name, value)) = parameter.split_once('=') else {
                    continue;
                };
                match name.trim().to_ascii_lowercase().as_str() {
                    "q" => quality = value.trim().parse().unwrap_or(0.0),
                    "version" => version = Some(value.trim().to_owned()),
                    _ => {}
                }
            }
            let slot = match media.as_str() {
                "application/openmetrics-text"
                    if version
                        .as_deref()
                        .is_none_or(|v| v == "1.0.0" || v == "0.0.1") =>
                {
                    &mut openmetrics
                }
                "text/plain" if version.as_deref().is_none_or(|v| v == "0.0.4") => &mut classic,
                _ => continue,
            };
            *slot = Some(slot.map_or(quality, |q| q.max(quality)));
        }
        match (openmetrics, classic) {
            (Some(om), Some(text)) if om >= text && om > 0.0 => Self::OpenMetrics,
            (Some(om), None) if om > 0.0 => Self::OpenMetrics,
            _ => Self::Classic,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => OPENMETRICS,
            Self::Classic => CLASSIC,
        }
    }
}

/// The registry in `format`.
pub fn encode(registry: &Registry, format: Format) -> String {
    let mut openmetrics = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut openmetrics, registry);
    match format {
        Format::OpenMetrics => openmetrics,
        Format::Classic => classic(&openmetrics),
    }
}

/// OpenMetrics text as the classic 0.0.4 text: families named as their
/// samples (`_total` for counters, `_info` for info, which becomes a gauge),
/// no `# UNIT`, no `# EOF`, no exemplars, no `_created` samples, and types
/// the classic format lacks declared `untyped`.
fn classic(openmetrics: &str) -> String {
    let kinds: std::collections::HashMap<&str, &str> = openmetrics
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.split_once(' '))
        .collect();
    let renamed = |name: &str| {
        let (suffix, kind) = match kinds.get(name).copied().unwrap_or("unknown") {
            "counter" => ("_total", "counter"),
            "info" => ("_info", "gauge"),
            kind @ ("gauge" | "histogram" | "summary") => ("", kind),
            _ => ("", "untyped"),
        };
        (format!("{name}{suffix}"), kind)
    };
    let mut out = String::with_capacity(openmetrics.len());
    let mut created = String::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split_once(' ').map_or(rest, |(name, _)| name);
            let (family, kind) = renamed(name);
            out.push_str(&format!("# TYPE {family} {kind}\n"));
            created = format!("{name}_created");
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.push_str(&format!("# HELP {} {help}\n", renamed(name).0));
        } else if line.starts_with('#') || line.starts_with(&created) && !created.is_empty() {
            // `# EOF`, `# UNIT` and `_created` samples have no classic form.
        } else {
            // An exemplar follows " # " after the value; the classic format has none.
            out.push_str(line.split_once(" # ").map_or(line, |(sample, _)| sample));
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::histogram::Histogram;

    #[test]
    fn accept_headers_choose_the_format() {
        let cases = [
            (None, Format::Classic),
            (Some("*/*"), Format::Classic),
            (Some("text/plain"), Format::Classic),
            (Some("application/openmetrics-text"), Format::OpenMetrics),
            // What Prometheus sends.
            (
                Some(
                    "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
                ),
                Format::OpenMetrics,
            ),
            (
                Some("application/openmetrics-text;q=0.2, text/plain;q=0.9"),
                Format::Classic,
            ),
            (
                Some("application/openmetrics-text;version=9.9.9"),
                Format::Classic,
            ),
            (Some("application/openmetrics-text;q=0"), Format::Classic),
            (Some("application/json"), Format::Classic),
        ];
        for (accept, format) in cases {
            assert_eq!(Format::negotiate(accept), format, "{accept:?}");
        }
    }

    #[test]
    fn the_classic_text_names_families_as_their_samples() {
        let mut registry = Registry::default();
        let calls = Counter::<u64>::default();
        calls.inc();
        registry.register("calls", "Calls made", calls);
        let latency = Histogram::new([0.1, 1.0]);
        latency.observe(0.5);
        registry.register("latency_seconds", "Time taken", latency);

        let openmetrics = encode(&registry, Format::OpenMetrics);
        assert!(
            openmetrics.contains("# TYPE calls counter\n"),
            "{openmetrics}"
        );
        assert!(openmetrics.ends_with("# EOF\n"), "{openmetrics}");

        let text = encode(&registry, Format::Classic);
        assert!(text.contains("# HELP calls_total Calls made.\n"), "{text}");
        assert!(
            text.contains("# TYPE calls_total counter\ncalls_total 1\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE latency_seconds histogram\n"),
            "{text}"
        );
        assert!(
            text.contains("latency_seconds_bucket{le=\"1.0\"} 1\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
    }
}
