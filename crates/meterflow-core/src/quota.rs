//! Quota tracking while a period runs (`docs/methodology.md` §7): period-to-date
//! consumption against the quota pro-rated to elapsed time, and a projection
//! of the period end, so an overrun is seen before it happens.

/// How the period end was projected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projection {
    /// To date ÷ elapsed × period length.
    RunRate,
    /// To date × (last year's whole period ÷ last year's same window): keeps the season's shape.
    SamePeriodLastYear,
}

impl Projection {
    /// Text form for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Projection::RunRate => "run-rate",
            Projection::SamePeriodLastYear => "same period last year",
        }
    }
}

/// Where a running period stands against its quota.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracking {
    /// Consumption (or indicator numerator) so far.
    pub to_date: f64,
    /// The quota pro-rated to the elapsed share of the period.
    pub quota_to_date: f64,
    /// `to_date / quota_to_date` (1.0 = exactly on quota).
    pub ratio_to_date: f64,
    /// Projected value at the period end; `None` below the minimum window
    /// (`insufficient data`).
    pub projected: Option<f64>,
    /// Method of the projection.
    pub method: Option<Projection>,
    /// `projected / quota`.
    pub projected_ratio: Option<f64>,
    /// Days with data the tracking is based on.
    pub days_with_data: f64,
}

impl Tracking {
    /// The same tracking without a projection (too few days to project).
    pub fn without_projection(self) -> Tracking {
        Tracking {
            projected: None,
            method: None,
            projected_ratio: None,
            ..self
        }
    }
}

/// Track `to_date` after `elapsed_days` of a `period_days` period whose quota is
/// `quota` (same unit). With last year's same window and whole period
/// (`last_year = Some((window, whole))`, both > 0), the projection follows
/// last year's shape; otherwise the run-rate.
pub fn track(
    to_date: f64,
    elapsed_days: f64,
    period_days: f64,
    quota: f64,
    last_year: Option<(f64, f64)>,
) -> Option<Tracking> {
    if elapsed_days <= 0.0 || period_days <= 0.0 || quota <= 0.0 {
        return None;
    }
    let share = (elapsed_days / period_days).min(1.0);
    let quota_to_date = quota * share;
    let (projected, method) = match last_year {
        Some((window, whole)) if window > 0.0 && whole > 0.0 => {
            (to_date * whole / window, Projection::SamePeriodLastYear)
        }
        _ => (to_date / share, Projection::RunRate),
    };
    Some(Tracking {
        to_date,
        quota_to_date,
        ratio_to_date: to_date / quota_to_date,
        projected: Some(projected),
        method: Some(method),
        projected_ratio: Some(projected / quota),
        days_with_data: elapsed_days,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn run_rate_pro_rates_and_projects() {
        // Quota 781 kgce/person·a; after 73 of 365 days (20 %), 180 kgce/person so far.
        // Quota to date 781 × 0.2 = 156.2 → ratio 1.1524; run-rate 180 / 0.2 = 900 → 900 / 781 = 1.1524.
        let t = track(180.0, 73.0, 365.0, 781.0, None).expect("tracked");
        assert!(
            close(t.quota_to_date, 156.2)
                && t.projected.is_some_and(|p| close(p, 900.0))
                && t.method == Some(Projection::RunRate)
        );
        assert!(close(t.ratio_to_date, 180.0 / 156.2));
        assert!(t.projected_ratio.is_some_and(|r| close(r, 900.0 / 781.0)));
    }

    #[test]
    fn last_year_shape_changes_the_projection() {
        // A winter-heavy site: last year the first 73 days used 250 of a 700 total.
        // This year 180 so far → 180 × 700 / 250 = 504 (under quota), where the
        // run-rate would have said 900 (over).
        let t = track(180.0, 73.0, 365.0, 781.0, Some((250.0, 700.0))).expect("tracked");
        assert!(t.projected.is_some_and(|p| close(p, 504.0)));
        assert_eq!(t.method, Some(Projection::SamePeriodLastYear));
        assert!(t.projected_ratio.is_some_and(|r| r < 1.0));
        // Without usable last-year data, run-rate.
        assert_eq!(
            track(180.0, 73.0, 365.0, 781.0, Some((0.0, 700.0))).and_then(|t| t.method),
            Some(Projection::RunRate)
        );
        assert_eq!(track(1.0, 0.0, 365.0, 781.0, None), None);
    }
}
