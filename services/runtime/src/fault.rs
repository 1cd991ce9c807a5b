//! Fault injection, off by default: a share of the service's own calls is
//! answered UNAVAILABLE or INTERNAL, and every call (or a share of them)
//! can be slowed down; with `FAULT_FILE`, only while that file exists. Health
//! and reflection are never touched, so a faulty release still looks alive,
//! as a real bad release would.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rand_core::{OsRng, RngCore};
use tonic::Status;
use tower::{Layer, Service};

use crate::config::FaultConfig;

#[derive(Debug, Clone)]
pub struct FaultLayer {
    config: Arc<FaultConfig>,
}

impl FaultLayer {
    pub fn new(config: FaultConfig) -> Self {
        Self {
            config: Arc::new(config),
        }
    }
}

impl<S> Layer<S> for FaultLayer {
    type Service = Fault<S>;
    fn layer(&self, inner: S) -> Fault<S> {
        Fault {
            inner,
            config: self.config.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Fault<S> {
    inner: S,
    config: Arc<FaultConfig>,
}

impl<S, B> Service<http::Request<B>> for Fault<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let config = &self.config;
        let exempt = request.uri().path().starts_with("/grpc.")
            || config.only_with_file.as_ref().is_some_and(|f| !f.exists());
        let fail = !exempt && config.error_rate > 0.0 && draw() < config.error_rate;
        let slowed = config.latency_share >= 1.0 || draw() < config.latency_share;
        let latency = if exempt || !slowed {
            std::time::Duration::ZERO
        } else {
            config.latency
        };
        if fail {
            return Box::pin(async move {
                if !latency.is_zero() {
                    tokio::time::sleep(latency).await;
                }
                let status = if OsRng.next_u32().is_multiple_of(2) {
                    Status::unavailable("injected fault (FAULT_ERROR_RATE)")
                } else {
                    Status::internal("injected fault (FAULT_ERROR_RATE)")
                };
                Ok(status.into_http())
            });
        }
        let future = self.inner.call(request);
        Box::pin(async move {
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            future.await
        })
    }
}

/// A uniform draw from [0, 1).
fn draw() -> f64 {
    (OsRng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}
