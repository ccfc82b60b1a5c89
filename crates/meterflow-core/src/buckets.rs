//! Spreading a pair's consumption over fixed 15-minute buckets.

/// Bucket width: 15 minutes, in ms. Every IANA zone in use has an offset that
/// is a multiple of 15 minutes, so UTC-aligned buckets are also aligned to the
/// site's local clock (DST changes included).
pub const BUCKET_MS: i64 = 15 * 60 * 1000;

/// Start of the bucket containing `ts_ms`.
pub fn bucket_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(BUCKET_MS) * BUCKET_MS
}

/// What one pair of readings adds to one bucket. All fields are additive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BucketDelta {
    /// Bucket start, ms since the epoch.
    pub bucket_ms: i64,
    /// Consumption, micro-units.
    pub micro: i64,
    /// Time of the bucket covered by short-gap (measured) spreading, ms.
    pub measured_ms: i64,
    /// Time of the bucket covered by long-gap (estimated) spreading, ms.
    pub estimated_ms: i64,
}

impl BucketDelta {
    /// No contribution to `bucket_ms`.
    pub fn zero(bucket_ms: i64) -> BucketDelta {
        BucketDelta {
            bucket_ms,
            micro: 0,
            measured_ms: 0,
            estimated_ms: 0,
        }
    }

    /// Add another contribution to the same bucket.
    pub fn absorb(&mut self, other: &BucketDelta) {
        self.micro += other.micro;
        self.measured_ms += other.measured_ms;
        self.estimated_ms += other.estimated_ms;
    }

    /// Contributes nothing.
    pub fn is_zero(&self) -> bool {
        self.micro == 0 && self.measured_ms == 0 && self.estimated_ms == 0
    }

    /// The same contribution with the opposite sign (to retract it).
    pub fn negated(self) -> BucketDelta {
        BucketDelta {
            bucket_ms: self.bucket_ms,
            micro: -self.micro,
            measured_ms: -self.measured_ms,
            estimated_ms: -self.estimated_ms,
        }
    }
}

/// Spread `micro` (≥ 0) over `[from_ms, to_ms)` proportionally to time (linear
/// interpolation of the counter). Exact: the parts sum to `micro`, using
/// cumulative floor division so no unit is created or lost.
/// A zero-length span puts everything in the bucket of `to_ms`.
pub fn spread(from_ms: i64, to_ms: i64, micro: i64, estimated: bool, out: &mut Vec<BucketDelta>) {
    if to_ms <= from_ms {
        if micro != 0 {
            out.push(BucketDelta {
                bucket_ms: bucket_of(to_ms),
                micro,
                measured_ms: 0,
                estimated_ms: 0,
            });
        }
        return;
    }
    let total = i128::from(to_ms - from_ms);
    let mut bucket = bucket_of(from_ms);
    let mut covered: i128 = 0;
    let mut given: i64 = 0;
    while bucket < to_ms {
        let lo = bucket.max(from_ms);
        let hi = (bucket + BUCKET_MS).min(to_ms);
        let span = hi - lo;
        covered += i128::from(span);
        // floor(micro × covered / total) is monotone in `covered` and equals
        // `micro` at the end, so the differences are ≥ 0 and sum to `micro`.
        let upto = (i128::from(micro) * covered / total) as i64;
        let (measured_ms, estimated_ms) = if estimated { (0, span) } else { (span, 0) };
        out.push(BucketDelta {
            bucket_ms: bucket,
            micro: upto - given,
            measured_ms,
            estimated_ms,
        });
        given = upto;
        bucket += BUCKET_MS;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_proportionally_and_exactly() {
        // 10:05 → 10:35 (30 min) with 3.000000 units: buckets 10:00 (10 min),
        // 10:15 (15 min), 10:30 (5 min) get 1.0, 1.5 and 0.5.
        let t0 = 10 * 3_600_000 + 5 * 60_000;
        let mut out = Vec::new();
        spread(t0, t0 + 30 * 60_000, 3_000_000, false, &mut out);
        let got: Vec<_> = out
            .iter()
            .map(|d| (d.bucket_ms, d.micro, d.measured_ms))
            .collect();
        assert_eq!(
            got,
            vec![
                (36_000_000, 1_000_000, 600_000),
                (36_900_000, 1_500_000, 900_000),
                (37_800_000, 500_000, 300_000)
            ]
        );
    }

    #[test]
    fn indivisible_amounts_still_sum_exactly() {
        // 1 micro-unit over three buckets: floor(1×1/3)=0, floor(1×2/3)=0, 1.
        let mut out = Vec::new();
        spread(0, 3 * BUCKET_MS, 1, true, &mut out);
        assert_eq!(
            out.iter().map(|d| d.micro).collect::<Vec<_>>(),
            vec![0, 0, 1]
        );
        assert!(
            out.iter()
                .all(|d| d.estimated_ms == BUCKET_MS && d.measured_ms == 0)
        );
    }

    #[test]
    fn bucket_of_negative_times_floors() {
        assert_eq!(bucket_of(-1), -BUCKET_MS);
        assert_eq!(bucket_of(BUCKET_MS), BUCKET_MS);
    }
}
