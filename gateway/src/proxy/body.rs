//! Reading a client's request body: within its size limit (413) and its
//! deadline (408), so a client that sends a body slowly, or announces one
//! and never sends it, holds nothing for long.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Limited};

use crate::proxy::errors::{
    DEADLINE_EXCEEDED, Failure, INVALID_ARGUMENT, RESOURCE_EXHAUSTED, Side,
};

pub async fn read<B>(body: B, limit: usize, deadline: Duration) -> Result<Bytes, Failure>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match tokio::time::timeout(deadline, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(err))
            if err
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large(limit))
        }
        Ok(Err(_)) => Err(Failure::new(
            INVALID_ARGUMENT,
            "the request body could not be read",
            Side::Downstream,
        )),
        Err(_) => Err(too_slow(deadline)),
    }
}

pub fn too_large(limit: usize) -> Failure {
    let mut failure = Failure::new(
        RESOURCE_EXHAUSTED,
        format!("the request body is larger than {limit} bytes"),
        Side::Downstream,
    );
    failure.http_override = Some(StatusCode::PAYLOAD_TOO_LARGE);
    failure
}

fn too_slow(deadline: Duration) -> Failure {
    let mut failure = Failure::new(
        DEADLINE_EXCEEDED,
        format!(
            "the request body did not arrive within {} ms",
            deadline.as_millis()
        ),
        Side::Downstream,
    );
    failure.http_override = Some(StatusCode::REQUEST_TIMEOUT);
    failure
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    #[tokio::test]
    async fn bodies_are_bounded_in_size_and_time() {
        let ok = read(
            Full::new(Bytes::from_static(b"{}")),
            10,
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(ok.expect("read"), Bytes::from_static(b"{}"));
        let big = read(
            Full::new(Bytes::from(vec![0; 11])),
            10,
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(big.expect_err("too large").http_status().as_u16(), 413);
        // A body announced and never sent.
        let never = StreamBody::new(futures_util::stream::pending::<
            Result<http_body::Frame<Bytes>, std::convert::Infallible>,
        >());
        let slow = read(never, 10, Duration::from_millis(50)).await;
        let slow = slow.expect_err("too slow");
        assert_eq!(
            (slow.http_status().as_u16(), slow.code),
            (408, DEADLINE_EXCEEDED)
        );
    }
}
