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

/// An estimated spread longer than this many whole buckets keeps them as
/// one [`Span`] (a day: a gap of a day or less is stored bucket by bucket).
pub const SPAN_MIN_BUCKETS: i64 = 96;

/// The whole buckets `[lo_ms, hi_ms)` inside a long estimated gap between
/// two readings at `from_ms` and `to_ms` with `micro` between them: stored
/// as one row and expanded where buckets are read, so a reading's cost does
/// not grow with the length of the gap before it. Each bucket holds exactly
/// what [`spread`] bucket by bucket would give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    /// The earlier reading, ms.
    pub from_ms: i64,
    /// The later reading, ms.
    pub to_ms: i64,
    /// Consumption between them, micro-units.
    pub micro: i64,
    /// First whole bucket kept in the span.
    pub lo_ms: i64,
    /// End of the last whole bucket kept in the span.
    pub hi_ms: i64,
}

impl Span {
    /// Of `micro`, the part before `t` (cumulative floor, as [`spread`]).
    fn upto(&self, t: i64) -> i64 {
        let total = i128::from(self.to_ms - self.from_ms);
        let covered = i128::from(t.clamp(self.from_ms, self.to_ms) - self.from_ms);
        (i128::from(self.micro) * covered / total) as i64
    }

    /// The consumption of bucket `b` (a bucket of the span).
    pub fn bucket(&self, b: i64) -> i64 {
        self.upto(b + BUCKET_MS) - self.upto(b)
    }

    /// The consumption of the span's buckets in `[a, b)` (clamped to the span).
    pub fn between(&self, a: i64, b: i64) -> i64 {
        let (a, b) = (
            a.clamp(self.lo_ms, self.hi_ms),
            b.clamp(self.lo_ms, self.hi_ms),
        );
        if b <= a {
            return 0;
        }
        self.upto(b) - self.upto(a)
    }

    /// The span's buckets in `[a, b)`, with their consumption.
    pub fn buckets(&self, a: i64, b: i64) -> impl Iterator<Item = BucketDelta> + '_ {
        let start = bucket_of(a.max(self.lo_ms).saturating_add(BUCKET_MS - 1)).max(self.lo_ms);
        let end = b.min(self.hi_ms);
        let n = if end > start {
            (end - start).div_euclid(BUCKET_MS)
        } else {
            0
        };
        (0..n).map(move |k| {
            let bucket = start + k * BUCKET_MS;
            BucketDelta {
                bucket_ms: bucket,
                micro: self.bucket(bucket),
                measured_ms: 0,
                estimated_ms: BUCKET_MS,
            }
        })
    }

    /// Number of whole buckets.
    pub fn len(&self) -> i64 {
        (self.hi_ms - self.lo_ms) / BUCKET_MS
    }

    /// No bucket (never built so).
    pub fn is_empty(&self) -> bool {
        self.hi_ms <= self.lo_ms
    }
}

/// Spread `micro` (≥ 0) over `[from_ms, to_ms)` proportionally to time (linear
/// interpolation of the counter). Exact: the parts sum to `micro`, using
/// cumulative floor division so no unit is created or lost.
/// A zero-length span puts everything in the bucket of `to_ms`. An
/// estimated spread of more than [`SPAN_MIN_BUCKETS`] whole buckets puts
/// them in one [`Span`] (the partial buckets at its ends stay deltas).
pub fn spread_or_span(
    from_ms: i64,
    to_ms: i64,
    micro: i64,
    estimated: bool,
    out: &mut Vec<BucketDelta>,
    spans: &mut Vec<Span>,
) {
    if estimated && to_ms > from_ms {
        let lo = bucket_of(from_ms.saturating_add(BUCKET_MS - 1));
        let hi = bucket_of(to_ms);
        if (hi - lo) / BUCKET_MS > SPAN_MIN_BUCKETS {
            let span = Span {
                from_ms,
                to_ms,
                micro,
                lo_ms: lo,
                hi_ms: hi,
            };
            if from_ms < lo {
                out.push(BucketDelta {
                    bucket_ms: bucket_of(from_ms),
                    micro: span.upto(lo),
                    measured_ms: 0,
                    estimated_ms: lo - from_ms,
                });
            }
            spans.push(span);
            if hi < to_ms {
                out.push(BucketDelta {
                    bucket_ms: hi,
                    micro: micro - span.upto(hi),
                    measured_ms: 0,
                    estimated_ms: to_ms - hi,
                });
            }
            return;
        }
    }
    spread(from_ms, to_ms, micro, estimated, out);
}

/// Spread `micro` (≥ 0) over `[from_ms, to_ms)` proportionally to time, one
/// delta per bucket (see [`spread_or_span`]).
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
    fn a_long_gap_is_one_span_with_the_same_buckets() {
        // 10:05 on day 0 to 10:35 three days later, 1 000 001 micro-units:
        // the partial buckets at both ends are deltas, the 287 whole ones
        // between are one span, and every bucket equals the eager spread.
        let from = 10 * 3_600_000 + 5 * 60_000;
        let to = from + 3 * 86_400_000 + 30 * 60_000;
        let micro = 1_000_001;
        let mut eager = Vec::new();
        spread(from, to, micro, true, &mut eager);
        let (mut edges, mut spans) = (Vec::new(), Vec::new());
        spread_or_span(from, to, micro, true, &mut edges, &mut spans);
        assert_eq!(spans.len(), 1);
        let s = spans[0];
        assert_eq!(edges.len(), 2);
        assert_eq!(s.len() as usize, eager.len() - 2);
        let mut lazy: Vec<BucketDelta> = edges.clone();
        lazy.extend(s.buckets(i64::MIN / 2, i64::MAX / 2));
        lazy.sort_by_key(|d| d.bucket_ms);
        assert_eq!(lazy, eager);
        assert_eq!(
            s.between(s.lo_ms, s.hi_ms) + edges[0].micro + edges[1].micro,
            micro
        );
        // A part of the span: the sum of its buckets.
        let (a, b) = (s.lo_ms + 7 * BUCKET_MS, s.lo_ms + 100 * BUCKET_MS);
        let part: i64 = eager
            .iter()
            .filter(|d| d.bucket_ms >= a && d.bucket_ms < b)
            .map(|d| d.micro)
            .sum();
        assert_eq!(s.between(a, b), part);
        assert_eq!(s.buckets(a, b).map(|d| d.micro).sum::<i64>(), part);
        // A measured spread, or a short estimated one, stays bucket by bucket.
        let (mut out, mut spans) = (Vec::new(), Vec::new());
        spread_or_span(from, to, micro, false, &mut out, &mut spans);
        assert!(spans.is_empty() && out.len() == eager.len());
        let (mut out, mut spans) = (Vec::new(), Vec::new());
        spread_or_span(0, 86_400_000, micro, true, &mut out, &mut spans);
        assert!(spans.is_empty() && out.len() == 96);
    }

    #[test]
    fn bucket_of_negative_times_floors() {
        assert_eq!(bucket_of(-1), -BUCKET_MS);
        assert_eq!(bucket_of(BUCKET_MS), BUCKET_MS);
    }
}
