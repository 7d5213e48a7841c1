//! Order statistics over a set of timings.

use std::time::Duration;

/// Median, p90 and extremes of a sample (nearest-rank percentiles).
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub count: usize,
    pub min: Duration,
    pub median: Duration,
    pub p90: Duration,
    pub max: Duration,
}

impl Summary {
    /// `None` for an empty sample.
    pub fn of(samples: &[Duration]) -> Option<Self> {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let (first, last) = (*sorted.first()?, *sorted.last()?);
        Some(Self {
            count: sorted.len(),
            min: first,
            median: percentile(&sorted, 50),
            p90: percentile(&sorted, 90),
            max: last,
        })
    }
}

/// Nearest-rank percentile of a sorted, non-empty sample.
fn percentile(sorted: &[Duration], pct: usize) -> Duration {
    let rank = (pct * sorted.len()).div_ceil(100).max(1);
    sorted
        .get(rank - 1)
        .or(sorted.last())
        .copied()
        .unwrap_or_default()
}

/// Milliseconds with microsecond resolution.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let samples: Vec<Duration> = (1..=10).rev().map(Duration::from_millis).collect();
        let s = Summary::of(&samples).unwrap_or_else(|| unreachable!());
        assert_eq!(s.median, Duration::from_millis(5));
        assert_eq!(s.p90, Duration::from_millis(9));
        assert_eq!(s.min, Duration::from_millis(1));
        assert_eq!(s.max, Duration::from_millis(10));
        let one = Summary::of(&[Duration::from_millis(3)]).unwrap_or_else(|| unreachable!());
        assert_eq!(
            (one.median, one.p90),
            (Duration::from_millis(3), Duration::from_millis(3))
        );
        assert!(Summary::of(&[]).is_none());
    }
}
