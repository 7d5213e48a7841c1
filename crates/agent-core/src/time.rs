//! Timestamps (`docs/reference/sessions.md#6-timestamps`): stored as ISO-8601 with a `+00:00`
//! offset, returned to clients with a trailing `Z`; microsecond precision, the fraction omitted
//! when it is zero.

use chrono::{DateTime, Datelike, SubsecRound, Timelike, Utc};

/// An instant in UTC with microsecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// Now, truncated to microseconds so that storage and API forms agree.
    pub fn now() -> Self {
        Self(Utc::now().trunc_subsecs(6))
    }

    pub fn from_datetime(dt: DateTime<Utc>) -> Self {
        Self(dt.trunc_subsecs(6))
    }

    pub fn as_datetime(&self) -> DateTime<Utc> {
        self.0
    }

    /// Adds a duration (saturating at the far future).
    pub fn plus(&self, d: std::time::Duration) -> Self {
        let delta = chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        Self(
            self.0
                .checked_add_signed(delta)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
        )
    }

    /// `YYYY-MM-DDTHH:MM:SS[.ffffff]`, with room for the suffix. Written digit by digit: every
    /// response and event carries timestamps, and chrono's format strings are parsed anew on
    /// each call (about 4,000 instructions per timestamp against a few hundred here).
    fn base(&self) -> String {
        let micros = self.0.timestamp_subsec_micros();
        let year = self.0.year();
        // Years beyond four digits and leap seconds (a sub-second part of one second or more)
        // keep chrono's exact rendering.
        if !(0..=9999).contains(&year) || micros >= 1_000_000 {
            return if micros == 0 {
                self.0.format("%Y-%m-%dT%H:%M:%S").to_string()
            } else {
                self.0.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
            };
        }
        let mut out = String::with_capacity(33);
        push_digits(&mut out, year as u32, 4);
        out.push('-');
        push_digits(&mut out, self.0.month(), 2);
        out.push('-');
        push_digits(&mut out, self.0.day(), 2);
        out.push('T');
        push_digits(&mut out, self.0.hour(), 2);
        out.push(':');
        push_digits(&mut out, self.0.minute(), 2);
        out.push(':');
        push_digits(&mut out, self.0.second(), 2);
        if micros != 0 {
            out.push('.');
            push_digits(&mut out, micros, 6);
        }
        out
    }

    /// The stored form, e.g. `2026-04-13T10:20:30.123456+00:00`.
    pub fn to_storage(&self) -> String {
        let mut s = self.base();
        s.push_str("+00:00");
        s
    }

    /// The client-facing form, e.g. `2026-04-13T10:20:30.123456Z`.
    pub fn to_api(&self) -> String {
        let mut s = self.base();
        s.push('Z');
        s
    }

    /// Parses any RFC 3339 form (both `+00:00` and `Z`, and naive `YYYY-MM-DD HH:MM:SS`).
    pub fn parse(text: &str) -> Option<Self> {
        if let Ok(dt) = DateTime::parse_from_rfc3339(text) {
            return Some(Self::from_datetime(dt.with_timezone(&Utc)));
        }
        chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
            .or_else(|_| chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f"))
            .ok()
            .map(|n| Self::from_datetime(n.and_utc()))
    }
}

/// Appends `value` as exactly `width` decimal digits (zero-padded; `value < 10^width`).
fn push_digits(out: &mut String, value: u32, width: u32) {
    let mut divisor = 10u32.pow(width - 1);
    while divisor > 0 {
        let digit = (value / divisor) % 10;
        out.push(char::from(b'0' + digit as u8));
        divisor /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn forms_match_the_reference() {
        let t = Timestamp::from_datetime(Utc.with_ymd_and_hms(2026, 4, 13, 10, 20, 30).unwrap());
        assert_eq!(t.to_storage(), "2026-04-13T10:20:30+00:00");
        assert_eq!(t.to_api(), "2026-04-13T10:20:30Z");
        let t = Timestamp::parse("2026-04-13T10:20:30.123456+00:00").unwrap();
        assert_eq!(t.to_api(), "2026-04-13T10:20:30.123456Z");
        assert_eq!(Timestamp::parse(&t.to_api()), Some(t));
        assert!(Timestamp::parse("2026-04-13 10:20:30").is_some());
        assert!(Timestamp::parse("garbage").is_none());
    }

    /// The hand-written forms are chrono's `%Y-%m-%dT%H:%M:%S[%.6f]`, byte for byte.
    #[test]
    fn forms_equal_chrono_formatting() {
        let chrono_form = |t: &Timestamp| {
            if t.0.timestamp_subsec_micros() == 0 {
                t.0.format("%Y-%m-%dT%H:%M:%S").to_string()
            } else {
                t.0.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
            }
        };
        let start = Utc.with_ymd_and_hms(1969, 12, 31, 23, 59, 59).unwrap();
        for i in 0..20_000i64 {
            // Steps of about 2.3 days plus an odd number of microseconds reach every field.
            let step = chrono::Duration::microseconds(i * 198_765_432_101 + (i % 7) * 1_000_000);
            let t = Timestamp::from_datetime(start + step);
            assert_eq!(t.base(), chrono_form(&t));
        }
        for dt in [
            Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(-1, 1, 1, 0, 0, 0).unwrap(),
            DateTime::<Utc>::MAX_UTC,
            Utc.with_ymd_and_hms(2016, 12, 31, 23, 59, 59)
                .unwrap()
                .with_nanosecond(1_500_000_000)
                .unwrap(),
        ] {
            let t = Timestamp(dt.trunc_subsecs(6));
            assert_eq!(t.base(), chrono_form(&t));
        }
    }

    #[test]
    fn storage_form_sorts_like_time() {
        let a = Timestamp::parse("2026-04-13T10:20:30+00:00").unwrap();
        let b = Timestamp::parse("2026-04-13T10:20:30.000001+00:00").unwrap();
        assert!(a < b);
        assert!(a.to_storage() < b.to_storage());
    }
}
