//! Cell timestamps for people: microseconds since the Unix epoch as a UTC date and time
//! (`2026-11-26T19:40:00.123456Z`), computed here (proleptic Gregorian calendar, days to
//! civil date after Howard Hinnant's `civil_from_days`) since the binary carries no date
//! library. Pure.

/// Microseconds per day.
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// `micros` as an RFC 3339 UTC time with microseconds.
pub(crate) fn human(micros: i64) -> String {
    let days = micros.div_euclid(MICROS_PER_DAY);
    let in_day = micros.rem_euclid(MICROS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let secs = in_day / 1_000_000;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        in_day % 1_000_000
    )
}

/// The (year, month, day) of `days` since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants_format_as_utc() {
        assert_eq!(human(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(human(1), "1970-01-01T00:00:00.000001Z");
        assert_eq!(human(951_782_400_000_000), "2000-02-29T00:00:00.000000Z");
        assert_eq!(human(1_764_186_000_123_456), "2025-11-26T19:40:00.123456Z");
        assert_eq!(human(-1), "1969-12-31T23:59:59.999999Z");
    }
}
