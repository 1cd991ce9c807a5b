//! Wall-clock time as stored (milliseconds since the Unix epoch) and as sent
//! (`google.protobuf.Timestamp`).

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn converts_milliseconds() {
        let ts = super::timestamp(1_700_000_000_123);
        assert_eq!((ts.seconds, ts.nanos), (1_700_000_000, 123_000_000));
        let ts = super::timestamp(-1);
        assert_eq!((ts.seconds, ts.nanos), (-1, 999_000_000));
    }
}
