//! Logs and traces. Logs are JSON lines (or text for humans) that carry the
//! trace id of the request they belong to. Traces follow W3C trace context:
//! read from incoming metadata, injected into outgoing calls, and exported
//! over OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, ServiceConfig};

/// Keeps the trace pipeline alive; [`Telemetry::shutdown`] flushes it.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
}

/// What telemetry needs to know about the process.
#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    pub service: &'static str,
    pub version: String,
    /// None for processes that have no color (the gateway).
    pub color: Option<crate::Color>,
    pub otlp_endpoint: Option<String>,
    pub log_format: LogFormat,
    pub log_filter: String,
}

impl From<&ServiceConfig> for TelemetrySettings {
    fn from(config: &ServiceConfig) -> Self {
        Self {
            service: config.service,
            version: config.version.clone(),
            color: Some(config.color),
            otlp_endpoint: config.otlp_endpoint.clone(),
            log_format: config.log_format,
            log_filter: config.log_filter.clone(),
        }
    }
}

impl Telemetry {
    /// Installs the global subscriber; a second call in one process (tests
    /// that run several services) keeps the first subscriber.
    pub fn init(config: &TelemetrySettings) -> Result<Self, String> {
        let mut attributes = vec![
            KeyValue::new("service.version", config.version.clone()),
            KeyValue::new("platform.build", crate::version::build()),
        ];
        // No convention names a blue/green color, and `deployment.*`
        // belongs to OpenTelemetry's own attributes, so the color is in the
        // platform's namespace (ARCHITECTURE.md, "Telemetry").
        if let Some(color) = config.color {
            attributes.push(KeyValue::new("platform.color", color.as_str()));
        }
        let resource = Resource::builder()
            .with_service_name(config.service)
            .with_attributes(attributes)
            .build();
        // A process that exports no traces records none: its spans keep
        // their ids (for log lines and the traceparent it passes on) but
        // gather no attributes or events. One that exports follows its
        // caller's sampling decision.
        let sampler = if config.otlp_endpoint.is_some() {
            Sampler::ParentBased(Box::new(Sampler::AlwaysOn))
        } else {
            Sampler::AlwaysOff
        };
        let mut builder = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_sampler(sampler);
        if let Some(endpoint) = &config.otlp_endpoint {
            use opentelemetry_otlp::WithExportConfig;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .build()
                .map_err(|e| format!("invalid OTEL_EXPORTER_OTLP_ENDPOINT: {e}"))?;
            builder = builder.with_batch_exporter(exporter);
        }
        let provider = builder.build();
        let tracer = provider.tracer(config.service);
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

        let (targets, env_filter) = log_filter(&config.log_filter)?;
        // Only what a span says about the call: no thread, source location,
        // target, level or busy/idle timings on every span.
        let otel = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
            .with_target(false)
            .with_level(false)
            // Parents are taken from the tracing span itself
            // (`Span::context`), so no OpenTelemetry context is attached
            // to the thread on every poll of an instrumented future.
            .with_context_activation(false);
        let registry = tracing_subscriber::registry()
            .with(targets)
            .with(env_filter)
            .with(otel);
        let _ = match config.log_format {
            LogFormat::Json => registry.with(json_log_layer(std::io::stdout)).try_init(),
            LogFormat::Text => registry.with(tracing_subscriber::fmt::layer()).try_init(),
        };
        Ok(Self { provider })
    }

    pub fn shutdown(self) {
        let _ = self.provider.force_flush();
        let _ = self.provider.shutdown();
    }
}

/// `RUST_LOG` as a filter. Directives by target and level (`info`,
/// `orders=debug,info`) become a [`Targets`] filter, decided once per call
/// site; only directives that look into spans or fields (`[span{f=v}]=debug`)
/// need [`EnvFilter`], which keeps a table of live spans behind a lock and
/// consults it on every span enter and exit.
fn log_filter(directives: &str) -> Result<(Option<Targets>, Option<EnvFilter>), String> {
    match directives.parse::<Targets>() {
        Ok(targets) => Ok((Some(targets), None)),
        Err(_) => EnvFilter::try_new(directives)
            .map(|filter| (None, Some(filter)))
            .map_err(|e| format!("invalid RUST_LOG: {e}")),
    }
}

/// The JSON log line every process writes: one object per event, its
/// fields at the top level beside the current span's.
pub fn json_log_layer<S, W>(writer: W) -> impl tracing_subscriber::Layer<S> + Send + Sync + 'static
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(writer)
}

/// The trace context carried by incoming request headers.
pub fn extract(headers: &http::HeaderMap) -> Context {
    struct Headers<'a>(&'a http::HeaderMap);
    impl Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(|k| k.as_str()).collect()
        }
    }
    TraceContextPropagator::new().extract(&Headers(headers))
}

/// Renames `span` once what it should be called is known (a server span
/// named by its route). Recording `otel.name` does not do it once the
/// span's context exists, which is from the start for a span with a parent.
pub fn rename(span: &tracing::Span, name: String) {
    use opentelemetry::trace::TraceContextExt;
    span.context().span().update_name(name);
}

/// The trace id of a span, as logged.
pub fn trace_id(span: &tracing::Span) -> String {
    use opentelemetry::trace::TraceContextExt;
    span.context().span().span_context().trace_id().to_string()
}

/// Writes `span`'s trace context into outgoing HTTP headers.
pub fn inject_span_headers(span: &tracing::Span, headers: &mut http::HeaderMap) {
    struct Headers<'a>(&'a mut http::HeaderMap);
    impl Injector for Headers<'_> {
        fn set(&mut self, key: &str, value: String) {
            if let (Ok(key), Ok(value)) = (
                http::HeaderName::from_bytes(key.as_bytes()),
                http::HeaderValue::from_str(&value),
            ) {
                self.0.insert(key, value);
            }
        }
    }
    let context = span.context();
    TraceContextPropagator::new().inject_context(&context, &mut Headers(headers));
}

/// Makes `span` the child of the trace context in `headers` and records its trace id.
pub fn adopt_parent(span: &tracing::Span, headers: &http::HeaderMap) {
    let _ = span.set_parent(extract(headers));
    span.record("trace_id", trace_id(span));
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn plain_directives_need_no_span_table() {
        let (targets, env) = log_filter("info").expect("valid");
        assert!(targets.is_some() && env.is_none());
        let (targets, env) = log_filter("warn,orders=debug").expect("valid");
        assert!(targets.is_some() && env.is_none());
    }

    #[test]
    fn span_directives_keep_the_env_filter() {
        let (targets, env) = log_filter("info,[call{method=Charge}]=debug").expect("valid");
        assert!(targets.is_none() && env.is_some());
    }

    #[test]
    fn nonsense_is_refused_with_the_variable_named() {
        let error = log_filter("orders=loudest").expect_err("invalid");
        assert!(error.starts_with("invalid RUST_LOG"), "{error}");
    }
}
