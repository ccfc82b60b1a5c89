//! The alert lifecycle (pure): a rule's condition over a value, `for`
//! duration, hysteresis, and the transitions pending → firing → resolved, with
//! acknowledgement. An alert fires once per episode (deduplicated); the state
//! is plain data, so it can be persisted and resumed without re-firing.

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Informational.
    Info,
    /// Needs a look.
    Warning,
    /// Needs action now.
    Critical,
}

/// A rule's condition: `value > threshold` (or `<` when `above` is false).
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// Threshold, in the value's unit.
    pub threshold: f64,
    /// Fire when the value is above (true) or below (false) the threshold.
    pub above: bool,
    /// The condition must hold this long before the alert fires, ms.
    pub for_ms: i64,
    /// A firing alert resolves only once the value is this fraction back past
    /// the threshold (0.05 = 5 %), so a value hovering at the threshold does not flap.
    pub hysteresis: f64,
}

impl Condition {
    fn breached(&self, v: f64) -> bool {
        if self.above {
            v > self.threshold
        } else {
            v < self.threshold
        }
    }

    fn cleared(&self, v: f64) -> bool {
        let margin = self.threshold.abs() * self.hysteresis;
        if self.above {
            v <= self.threshold - margin
        } else {
            v >= self.threshold + margin
        }
    }
}

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum State {
    /// Condition false.
    Inactive,
    /// Condition true since `since_ms`, not yet for long enough.
    Pending {
        /// Since, ms.
        since_ms: i64,
    },
    /// Firing since `since_ms`.
    Firing {
        /// Since, ms.
        since_ms: i64,
        /// Acknowledged by an operator.
        acknowledged: bool,
    },
}

/// A change worth telling someone about.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transition {
    /// The alert started firing (notify).
    Fired {
        /// When the condition began, ms.
        since_ms: i64,
    },
    /// A firing alert resolved (notify).
    Resolved {
        /// When it had started firing, ms.
        fired_ms: i64,
    },
}

/// Evaluate `value` at `now_ms`; returns the transition to notify, if any.
pub fn evaluate(state: &mut State, c: &Condition, value: f64, now_ms: i64) -> Option<Transition> {
    if !value.is_finite() {
        return None; // no data is not a change of state
    }
    match *state {
        State::Inactive => {
            if c.breached(value) {
                *state = State::Pending { since_ms: now_ms };
                return evaluate(state, c, value, now_ms);
            }
            None
        }
        State::Pending { since_ms } => {
            if !c.breached(value) {
                *state = State::Inactive;
                None
            } else if now_ms - since_ms >= c.for_ms {
                *state = State::Firing {
                    since_ms,
                    acknowledged: false,
                };
                Some(Transition::Fired { since_ms })
            } else {
                None
            }
        }
        State::Firing { since_ms, .. } => {
            if c.cleared(value) {
                *state = State::Inactive;
                Some(Transition::Resolved { fired_ms: since_ms })
            } else {
                None
            }
        }
    }
}

/// Acknowledge a firing alert (it keeps firing until the condition clears).
pub fn acknowledge(state: &mut State) -> bool {
    if let State::Firing { acknowledged, .. } = state {
        *acknowledged = true;
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    fn night_flow() -> Condition {
        // Water night flow above 0.5 m³/h for 30 minutes; resolves at 5 % below.
        Condition {
            threshold: 0.5,
            above: true,
            for_ms: 30 * MIN,
            hysteresis: 0.05,
        }
    }

    fn run(c: &Condition, values: &[(i64, f64)]) -> (State, Vec<(i64, Transition)>) {
        let mut s = State::Inactive;
        let mut out = Vec::new();
        for &(t, v) in values {
            if let Some(tr) = evaluate(&mut s, c, v, t) {
                out.push((t, tr));
            }
        }
        (s, out)
    }

    #[test]
    fn fires_after_its_duration_once_and_resolves() {
        // Breach from 02:00; evaluated every 15 min; fires at 02:30 (30 min held),
        // stays firing without repeating, resolves at 05:00 when flow drops to 0.2.
        let t0 = 2 * 60 * MIN;
        let values: Vec<(i64, f64)> = (0..13)
            .map(|k| (t0 + k * 15 * MIN, if k < 12 { 0.9 } else { 0.2 }))
            .collect();
        let (s, tr) = run(&night_flow(), &values);
        assert_eq!(
            tr,
            vec![
                (t0 + 30 * MIN, Transition::Fired { since_ms: t0 }),
                (t0 + 180 * MIN, Transition::Resolved { fired_ms: t0 })
            ]
        );
        assert_eq!(s, State::Inactive);
    }

    #[test]
    fn a_short_breach_never_fires() {
        // 20 minutes above the threshold, then back: pending, cleared, nothing sent.
        let (s, tr) = run(
            &night_flow(),
            &[(0, 0.9), (10 * MIN, 0.9), (20 * MIN, 0.1), (40 * MIN, 0.1)],
        );
        assert!(tr.is_empty());
        assert_eq!(s, State::Inactive);
    }

    #[test]
    fn hysteresis_stops_flapping_at_the_threshold() {
        // Firing; then the value hovers between 0.49 and 0.51: 0.49 is not 5 % below
        // 0.5 (needs ≤ 0.475), so no resolve and no re-fire. 0.47 resolves.
        let values = [
            (0, 0.9),
            (30 * MIN, 0.9),
            (45 * MIN, 0.49),
            (60 * MIN, 0.51),
            (75 * MIN, 0.49),
            (90 * MIN, 0.47),
        ];
        let (_, tr) = run(&night_flow(), &values);
        assert_eq!(
            tr,
            vec![
                (30 * MIN, Transition::Fired { since_ms: 0 }),
                (90 * MIN, Transition::Resolved { fired_ms: 0 })
            ]
        );
    }

    #[test]
    fn acknowledgement_and_persisted_state_do_not_refire() {
        let c = night_flow();
        let mut s = State::Inactive;
        assert_eq!(evaluate(&mut s, &c, 0.9, 0), None);
        assert_eq!(
            evaluate(&mut s, &c, 0.9, 30 * MIN),
            Some(Transition::Fired { since_ms: 0 })
        );
        assert!(acknowledge(&mut s));
        // A restart resumes from the stored state: the same breach does not fire again.
        let mut resumed = s;
        assert_eq!(evaluate(&mut resumed, &c, 0.9, 45 * MIN), None);
        assert_eq!(
            resumed,
            State::Firing {
                since_ms: 0,
                acknowledged: true
            }
        );
        // Missing data changes nothing.
        assert_eq!(evaluate(&mut resumed, &c, f64::NAN, 50 * MIN), None);
        // A below-threshold rule (e.g. completeness under 90 %).
        let low = Condition {
            threshold: 90.0,
            above: false,
            for_ms: 0,
            hysteresis: 0.0,
        };
        let mut s = State::Inactive;
        assert_eq!(
            evaluate(&mut s, &low, 80.0, 0),
            Some(Transition::Fired { since_ms: 0 })
        );
        assert_eq!(
            evaluate(&mut s, &low, 95.0, MIN),
            Some(Transition::Resolved { fired_ms: 0 })
        );
        assert!(!acknowledge(&mut s));
    }
}
