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

/// `YYYY-MM-DD HH:MM:SS` of a Unix time in milliseconds.
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The Unix time in milliseconds of `YYYY-MM-DD HH:MM[:SS[.fff]]` in UTC
/// (a `T` may stand for the space, and a trailing `Z` or `+00:00` is
/// allowed); None when it is not such a time.
pub fn parse_utc(text: &str) -> Option<i64> {
    let text = text.trim();
    let text = text
        .strip_suffix('Z')
        .or_else(|| text.strip_suffix("+00:00"))
        .or_else(|| text.strip_suffix("+00"))
        .unwrap_or(text)
        .trim_end();
    let (date, clock) = text.split_once([' ', 'T'])?;
    let mut date = date.splitn(3, '-').map(str::parse::<i64>);
    let (year, month, day) = (date.next()?.ok()?, date.next()?.ok()?, date.next()?.ok()?);
    let (clock, millis) = match clock.split_once('.') {
        Some((clock, fraction)) => {
            let digits: String = fraction.chars().chain("000".chars()).take(3).collect();
            (clock, digits.parse::<i64>().ok()?)
        }
        None => (clock, 0),
    };
    let parts: Vec<i64> = clock
        .split(':')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let (hour, minute, second) = match parts[..] {
        [h, m] => (h, m, 0),
        [h, m, s] => (h, m, s),
        _ => return None,
    };
    let valid = (1970..=9999).contains(&year)
        && (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && (0..24).contains(&hour)
        && (0..60).contains(&minute)
        && (0..60).contains(&second);
    if !valid {
        return None;
    }
    // Days since 1970-01-01 of a civil date (the inverse of `utc`).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let ms = ((days * 86_400 + hour * 3600 + minute * 60 + second) * 1000) + millis;
    // A day that the month does not have (2026-02-30) comes back different.
    (utc(ms)[..10] == format!("{year:04}-{month:02}-{day:02}")).then_some(ms)
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

    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc(1_795_000_000_000), "2026-11-18 11:06:40");
        assert_eq!(super::utc(951_782_400_000), "2000-02-29 00:00:00");
    }

    #[test]
    fn parses_utc_times() {
        use super::parse_utc;
        assert_eq!(parse_utc("2026-11-18 11:06:40"), Some(1_795_000_000_000));
        assert_eq!(
            parse_utc("2026-11-18T11:06:40.25Z"),
            Some(1_795_000_000_250)
        );
        assert_eq!(parse_utc("2000-02-29 00:00"), Some(951_782_400_000));
        assert_eq!(parse_utc("1970-01-01 00:00:00+00:00"), Some(0));
        for bad in [
            "2026-02-30 00:00:00",
            "2026-13-01 00:00",
            "yesterday",
            "2026-01-01",
            "2026-01-01 25:00",
        ] {
            assert_eq!(parse_utc(bad), None, "{bad}");
        }
    }
}
