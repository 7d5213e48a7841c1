//! Timestamps (`docs/reference/sessions.md#6-timestamps`): stored as ISO-8601 with a `+00:00`
//! offset, returned to clients with a trailing `Z`; microsecond precision, the fraction omitted
//! when it is zero.

use chrono::{DateTime, SubsecRound, Utc};

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

    /// `YYYY-MM-DDTHH:MM:SS[.ffffff]`: the fraction only when it is not zero.
    fn base(&self) -> String {
        if self.0.timestamp_subsec_micros() == 0 {
            self.0.format("%Y-%m-%dT%H:%M:%S").to_string()
        } else {
            self.0.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
        }
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
}
