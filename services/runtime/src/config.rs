//! Typed configuration read from the environment. A bad value is a
//! [`ConfigError`] naming the variable and what it allows; binaries print it
//! as one line and exit with [`EXIT_CONFIG`].

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Exit code of a process whose configuration is invalid (sysexits EX_CONFIG).
pub const EXIT_CONFIG: i32 = 78;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub var: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.var, self.message)
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    pub fn new(var: &str, message: impl Into<String>) -> Self {
        Self {
            var: var.to_owned(),
            message: message.into(),
        }
    }
}

/// Where configuration values come from: the process environment, or a map in tests.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    pub fn from_process() -> Self {
        Self {
            vars: std::env::vars().collect(),
        }
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }

    pub fn set(&mut self, var: &str, value: impl Into<String>) {
        self.vars.insert(var.to_owned(), value.into());
    }

    /// The value of `var`, if set and not empty.
    pub fn string(&self, var: &str) -> Option<String> {
        self.vars
            .get(var)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    pub fn string_or(&self, var: &str, default: &str) -> String {
        self.string(var).unwrap_or_else(|| default.to_owned())
    }

    /// Parses `var` when set; `allowed` says what it accepts in the error.
    pub fn parse<T: FromStr>(&self, var: &str, allowed: &str) -> Result<Option<T>, ConfigError> {
        match self.string(var) {
            None => Ok(None),
            Some(raw) => raw
                .parse()
                .map(Some)
                .map_err(|_| ConfigError::new(var, format!("expected {allowed}, got {raw:?}"))),
        }
    }

    /// A fraction in [0, 1], 0 when unset.
    pub fn fraction(&self, var: &str) -> Result<f64, ConfigError> {
        let allowed = "a number from 0 to 1";
        let value = self.parse::<f64>(var, allowed)?.unwrap_or(0.0);
        if (0.0..=1.0).contains(&value) {
            Ok(value)
        } else {
            Err(ConfigError::new(
                var,
                format!("expected {allowed}, got {value}"),
            ))
        }
    }

    /// A duration in whole milliseconds, at most `max`.
    pub fn millis(
        &self,
        var: &str,
        default: Duration,
        max: Duration,
    ) -> Result<Duration, ConfigError> {
        let allowed = format!("whole milliseconds from 0 to {}", max.as_millis());
        match self.parse::<u64>(var, &allowed)? {
            None => Ok(default),
            Some(ms) if u128::from(ms) <= max.as_millis() => Ok(Duration::from_millis(ms)),
            Some(ms) => Err(ConfigError::new(
                var,
                format!("expected {allowed}, got {ms}"),
            )),
        }
    }

    pub fn socket_addr(&self, var: &str, default: SocketAddr) -> Result<SocketAddr, ConfigError> {
        Ok(self
            .parse(var, "a socket address such as 0.0.0.0:50051")?
            .unwrap_or(default))
    }

    /// An `http://host:port` address of another service.
    pub fn endpoint(&self, var: &str, default: &str) -> Result<String, ConfigError> {
        let value = self.string_or(var, default);
        if (value.starts_with("http://") || value.starts_with("https://"))
            && value.parse::<http::Uri>().is_ok()
        {
            Ok(value)
        } else {
            Err(ConfigError::new(
                var,
                format!("expected a URL such as http://127.0.0.1:50053, got {value:?}"),
            ))
        }
    }
}

/// Which of the two releases of a service this process is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Color {
    Blue,
    Green,
}

impl Color {
    pub const ALL: [Color; 2] = [Color::Blue, Color::Green];

    pub fn as_str(self) -> &'static str {
        match self {
            Color::Blue => "blue",
            Color::Green => "green",
        }
    }

    pub fn other(self) -> Color {
        match self {
            Color::Blue => Color::Green,
            Color::Green => Color::Blue,
        }
    }
}

impl fmt::Display for Color {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Color {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "blue" => Ok(Color::Blue),
            "green" => Ok(Color::Green),
            _ => Err(()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// Where a service keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseConfig {
    /// A SQLite file, shared by both colors on one machine.
    Sqlite(PathBuf),
    /// A PostgreSQL URL, shared by both colors in production.
    Postgres(String),
}

impl DatabaseConfig {
    /// The database a `DATABASE_URL` names.
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(DatabaseConfig::Postgres(url.to_owned()))
        } else if url.starts_with("sqlite:") {
            Ok(DatabaseConfig::Sqlite(PathBuf::from(
                url.trim_start_matches("sqlite://")
                    .trim_start_matches("sqlite:"),
            )))
        } else {
            Err(ConfigError::new(
                "DATABASE_URL",
                "expected postgres://user:password@host/db or sqlite:path/to/file.db",
            ))
        }
    }

    /// The SQLite file `service` keeps in its data directory when no
    /// `DATABASE_URL` is set.
    pub fn in_dir(data_dir: &std::path::Path, service: &str) -> Self {
        DatabaseConfig::Sqlite(data_dir.join(format!("{service}.db")))
    }

    /// A URL to connect to it that never creates a SQLite file.
    pub fn existing_url(&self) -> String {
        match self {
            DatabaseConfig::Sqlite(path) => format!("sqlite://{}?mode=rw", path.display()),
            DatabaseConfig::Postgres(url) => url.clone(),
        }
    }
}

/// Injected faults, for demos of a bad release and for chaos tests.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FaultConfig {
    pub error_rate: f64,
    pub latency: Duration,
    /// The share of calls `latency` is added to (1 = every call).
    pub latency_share: f64,
    /// When set, the faults apply only while this file exists (a release
    /// that goes bad after a while, for drills).
    pub only_with_file: Option<std::path::PathBuf>,
}

/// How access tokens are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenConfig {
    pub issuer: String,
    /// Audience of user tokens.
    pub audience: String,
    /// Audience of service-to-service tokens.
    pub internal_audience: String,
    /// The auth service, whose key set verifies tokens.
    pub auth_endpoint: String,
}

/// What every service reads from the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceConfig {
    pub service: &'static str,
    pub color: Color,
    pub version: String,
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database: DatabaseConfig,
    pub otlp_endpoint: Option<String>,
    pub log_format: LogFormat,
    pub log_filter: String,
    pub drain_delay: Duration,
    pub shutdown_timeout: Duration,
    pub faults: FaultConfig,
    pub tokens: TokenConfig,
}

impl ServiceConfig {
    /// Reads the common settings of `service`, whose gRPC port is `port` unless
    /// `LISTEN_ADDR` says otherwise; metrics listen on that port + 1000.
    pub fn from_env(service: &'static str, port: u16, env: &Env) -> Result<Self, ConfigError> {
        let color = env
            .parse::<Color>("COLOR", "blue or green")?
            .unwrap_or(Color::Blue);
        let listen = env.socket_addr("LISTEN_ADDR", SocketAddr::from(([0, 0, 0, 0], port)))?;
        let metrics_port = listen.port().checked_add(1000).ok_or_else(|| {
            ConfigError::new(
                "LISTEN_ADDR",
                "the port must be at most 64535 (metrics use port + 1000)",
            )
        })?;
        let metrics_listen = env.socket_addr(
            "METRICS_ADDR",
            SocketAddr::new(
                listen.ip(),
                if listen.port() == 0 { 0 } else { metrics_port },
            ),
        )?;
        let data_dir = PathBuf::from(env.string_or("DATA_DIR", &format!(".data/{service}")));
        let database = match env.string("DATABASE_URL") {
            None => DatabaseConfig::in_dir(&data_dir, service),
            Some(url) => DatabaseConfig::from_url(&url)?,
        };
        let log_format = match env.string_or("LOG_FORMAT", "json").as_str() {
            "json" => LogFormat::Json,
            "text" => LogFormat::Text,
            other => {
                return Err(ConfigError::new(
                    "LOG_FORMAT",
                    format!("expected json or text, got {other:?}"),
                ));
            }
        };
        let otlp_endpoint = match env.string("OTEL_EXPORTER_OTLP_ENDPOINT") {
            None => None,
            Some(_) => Some(env.endpoint("OTEL_EXPORTER_OTLP_ENDPOINT", "")?),
        };
        Ok(Self {
            service,
            color,
            version: env.string_or("VERSION", env!("CARGO_PKG_VERSION")),
            listen,
            metrics_listen,
            data_dir,
            database,
            otlp_endpoint,
            log_format,
            log_filter: env.string_or("RUST_LOG", "info"),
            drain_delay: env.millis(
                "DRAIN_DELAY_MS",
                Duration::from_secs(5),
                Duration::from_secs(300),
            )?,
            shutdown_timeout: env.millis(
                "SHUTDOWN_TIMEOUT_MS",
                Duration::from_secs(20),
                Duration::from_secs(600),
            )?,
            faults: FaultConfig {
                error_rate: env.fraction("FAULT_ERROR_RATE")?,
                latency: env.millis("FAULT_LATENCY_MS", Duration::ZERO, Duration::from_secs(60))?,
                latency_share: match env.string_or("FAULT_LATENCY_SHARE", "").as_str() {
                    "" => 1.0,
                    _ => env.fraction("FAULT_LATENCY_SHARE")?,
                },
                only_with_file: Some(env.string_or("FAULT_FILE", ""))
                    .filter(|f| !f.is_empty())
                    .map(std::path::PathBuf::from),
            },
            tokens: TokenConfig {
                issuer: env.string_or("AUTH_ISSUER", "platform-auth"),
                audience: env.string_or("AUTH_AUDIENCE", "platform-api"),
                internal_audience: env.string_or("AUTH_INTERNAL_AUDIENCE", "platform-internal"),
                auth_endpoint: env.endpoint("AUTH_ADDR", "http://127.0.0.1:50051")?,
            },
        })
    }
}

/// Prints a configuration error as one line and exits with [`EXIT_CONFIG`].
pub fn exit_on_error<T>(result: Result<T, ConfigError>) -> T {
    match result {
        Ok(value) => value,
        Err(err) => {
            eprintln!("error: {err}");
            std::process::exit(EXIT_CONFIG);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pairs: &[(&str, &str)], expect: Result<(), &str>) {
        let got = ServiceConfig::from_env("orders", 50052, &Env::from_pairs(pairs.iter().copied()));
        match (got, expect) {
            (Ok(_), Ok(())) => {}
            (Err(err), Err(want)) => assert_eq!(err.to_string(), want),
            (got, want) => panic!("{pairs:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn validates_each_variable() {
        check(&[], Ok(()));
        check(&[("COLOR", "green"), ("FAULT_ERROR_RATE", "0.2")], Ok(()));
        check(
            &[("COLOR", "red")],
            Err("invalid COLOR: expected blue or green, got \"red\""),
        );
        check(
            &[("FAULT_ERROR_RATE", "1.5")],
            Err("invalid FAULT_ERROR_RATE: expected a number from 0 to 1, got 1.5"),
        );
        check(
            &[("FAULT_LATENCY_MS", "-3")],
            Err(
                "invalid FAULT_LATENCY_MS: expected whole milliseconds from 0 to 60000, got \"-3\"",
            ),
        );
        check(
            &[("LISTEN_ADDR", "localhost")],
            Err(
                "invalid LISTEN_ADDR: expected a socket address such as 0.0.0.0:50051, got \"localhost\"",
            ),
        );
        check(
            &[("DATABASE_URL", "mysql://x")],
            Err(
                "invalid DATABASE_URL: expected postgres://user:password@host/db or sqlite:path/to/file.db",
            ),
        );
        check(
            &[("AUTH_ADDR", "127.0.0.1:50051")],
            Err(
                "invalid AUTH_ADDR: expected a URL such as http://127.0.0.1:50053, got \"127.0.0.1:50051\"",
            ),
        );
    }

    #[test]
    fn metrics_port_is_grpc_port_plus_1000() {
        let env = Env::from_pairs([("LISTEN_ADDR", "127.0.0.1:50151"), ("COLOR", "green")]);
        let config = ServiceConfig::from_env("auth", 50051, &env).expect("valid");
        assert_eq!(
            config.metrics_listen,
            "127.0.0.1:51151".parse().expect("addr")
        );
        assert_eq!(config.color, Color::Green);
        assert_eq!(
            config.database,
            DatabaseConfig::Sqlite(".data/auth/auth.db".into())
        );
    }
}
