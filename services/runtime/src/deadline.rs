//! A call's deadline, as gRPC carries it (`grpc-timeout`), enforced the way
//! the gRPC spec says: when it passes, the call ends with
//! DEADLINE_EXCEEDED, whether the answer has not started (a trailers-only
//! response) or is a stream still flowing (its trailers end it). The
//! framework's own timer answers CANCELLED ("Timeout expired") and only
//! covers the response head, so this layer fires a millisecond before it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use http_body::{Body, Frame};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

/// `grpc-timeout`: an integer of at most 8 digits and a unit (H M S m u n).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if !value.is_ascii() {
        return None;
    }
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// `timeout` as a `grpc-timeout` value: the finest unit that holds it in
/// 8 digits.
pub fn grpc_timeout_value(timeout: Duration) -> String {
    if timeout.as_micros() <= 99_999_999 {
        format!("{}u", timeout.as_micros())
    } else if timeout.as_millis() <= 99_999_999 {
        format!("{}m", timeout.as_millis())
    } else {
        format!("{}S", timeout.as_secs().min(99_999_999))
    }
}

/// How much earlier than the framework's timer this layer's fires, so the
/// answer is DEADLINE_EXCEEDED rather than the framework's CANCELLED.
const AHEAD: Duration = Duration::from_millis(1);

fn deadline_exceeded(timeout: Duration) -> HeaderMap {
    let mut status = HeaderMap::new();
    status.insert("grpc-status", HeaderValue::from_static("4"));
    if let Ok(message) = HeaderValue::from_str(&format!(
        "deadline exceeded: the call's {} ms ran out",
        timeout.as_millis()
    )) {
        status.insert("grpc-message", message);
    }
    status
}

#[derive(Debug, Clone, Copy, Default)]
pub struct DeadlineLayer;

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;
    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline { inner }
    }
}

#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
}

impl<S, B, RB> Service<http::Request<B>> for Deadline<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    RB: Default,
{
    type Response = http::Response<DeadlineBody<RB>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let timeout = request
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        let future = self.inner.call(request);
        let Some(timeout) = timeout else {
            return Box::pin(async move {
                let response = future.await?;
                Ok(response.map(|inner| DeadlineBody::new(inner, None)))
            });
        };
        let deadline = Instant::now() + timeout.saturating_sub(AHEAD);
        Box::pin(async move {
            match tokio::time::timeout_at(deadline, future).await {
                Ok(response) => {
                    let response = response?;
                    let timer = (timeout, Box::pin(tokio::time::sleep_until(deadline)));
                    Ok(response.map(|inner| DeadlineBody::new(inner, Some(timer))))
                }
                Err(_) => {
                    // Trailers-only: the status in the response head.
                    let mut response = http::Response::new(DeadlineBody::new(RB::default(), None));
                    response.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        HeaderValue::from_static("application/grpc"),
                    );
                    response.headers_mut().extend(deadline_exceeded(timeout));
                    Ok(response)
                }
            }
        })
    }
}

pin_project! {
    /// A response body that ends with DEADLINE_EXCEEDED in its trailers when
    /// the deadline passes before it ended.
    pub struct DeadlineBody<B> {
        #[pin]
        inner: B,
        timer: Option<(Duration, Pin<Box<Sleep>>)>,
        ended: bool,
    }
}

impl<B> DeadlineBody<B> {
    fn new(inner: B, timer: Option<(Duration, Pin<Box<Sleep>>)>) -> Self {
        Self {
            inner,
            timer,
            ended: false,
        }
    }
}

impl<B: Body> Body for DeadlineBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        if *this.ended {
            return Poll::Ready(None);
        }
        let polled = this.inner.poll_frame(cx);
        if polled.is_pending()
            && let Some((timeout, sleep)) = this.timer.as_mut()
            && sleep.as_mut().poll(cx).is_ready()
        {
            // The stream is cut here; the inner body is dropped with us.
            *this.ended = true;
            return Poll::Ready(Some(Ok(Frame::trailers(deadline_exceeded(*timeout)))));
        }
        if matches!(polled, Poll::Ready(None)) {
            *this.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_writes_grpc_timeouts() {
        for (raw, want) in [
            ("5S", Some(Duration::from_secs(5))),
            ("250m", Some(Duration::from_millis(250))),
            ("1H", Some(Duration::from_secs(3600))),
            ("7u", Some(Duration::from_micros(7))),
            ("123456789S", None),
            ("S", None),
            ("5x", None),
            ("", None),
        ] {
            assert_eq!(parse_grpc_timeout(raw), want, "{raw}");
        }
        for (timeout, written) in [
            (Duration::from_millis(95), "95000u"),
            (Duration::from_secs(24 * 3600), "86400000m"),
            (Duration::from_secs(400 * 24 * 3600), "34560000S"),
        ] {
            let value = grpc_timeout_value(timeout);
            assert_eq!(value, written);
            assert_eq!(parse_grpc_timeout(&value), Some(timeout));
        }
    }
}
