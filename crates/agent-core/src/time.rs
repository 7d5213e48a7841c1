//! Timestamps (`docs/reference/sessions.md#6-timestamps`): stored as ISO-8601 with a `+00:00`
//! offset, returned to clients with a trailing `Z`; microsecond precision, the fraction omitted
//! when it is zero.

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};

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

    /// RFC 3339 with the fraction only when it is not zero, ending `Z` or `+00:00`. chrono's
    /// `to_rfc3339_opts` writes it directly; a format string is parsed anew on each call, and
    /// every response and event carries timestamps (`docs/performance.md`).
    fn render(&self, use_z: bool) -> String {
        let precision = if self.0.timestamp_subsec_micros() == 0 {
            SecondsFormat::Secs
        } else {
            SecondsFormat::Micros
        };
        self.0.to_rfc3339_opts(precision, use_z)
    }

    /// The stored form, e.g. `2026-04-13T10:20:30.123456+00:00`.
    pub fn to_storage(&self) -> String {
        self.render(false)
    }

    /// The client-facing form, e.g. `2026-04-13T10:20:30.123456Z`.
    pub fn to_api(&self) -> String {
        self.render(true)
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

    #[test]
    fn storage_form_sorts_like_time() {
        let a = Timestamp::parse("2026-04-13T10:20:30+00:00").unwrap();
        let b = Timestamp::parse("2026-04-13T10:20:30.000001+00:00").unwrap();
        assert!(a < b);
        assert!(a.to_storage() < b.to_storage());
    }

    /// The direct rendering agrees with the format-string one it replaced, on edge cases too:
    /// a small fraction, years outside four digits, a leap second.
    #[test]
    fn direct_rendering_matches_the_format_strings() {
        use chrono::NaiveDate;
        let reference = |t: &Timestamp| {
            let dt = t.as_datetime();
            let base = if dt.timestamp_subsec_micros() == 0 {
                dt.format("%Y-%m-%dT%H:%M:%S").to_string()
            } else {
                dt.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
            };
            (format!("{base}+00:00"), format!("{base}Z"))
        };
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        let cases = [
            day(2026, 4, 13).and_hms_micro_opt(10, 20, 30, 100).unwrap(),
            day(2026, 12, 31)
                .and_hms_micro_opt(23, 59, 59, 999_999)
                .unwrap(),
            day(1, 1, 1).and_hms_opt(0, 0, 0).unwrap(),
            day(10_000, 1, 1).and_hms_micro_opt(0, 0, 0, 5).unwrap(),
            day(2016, 12, 31)
                .and_hms_micro_opt(23, 59, 59, 1_500_000)
                .unwrap(),
        ];
        for naive in cases {
            let t = Timestamp::from_datetime(naive.and_utc());
            let (storage, api) = reference(&t);
            assert_eq!(t.to_storage(), storage, "{naive}");
            assert_eq!(t.to_api(), api, "{naive}");
        }
    }
}
