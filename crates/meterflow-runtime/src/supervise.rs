//! Background threads that cannot die silently: a panic in the alerting,
//! notification or points thread is logged at ERROR, counted, and the
//! thread's work restarts after a back-off. While a component waits to
//! restart it is down, and `/readyz` says so.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

/// The state of one supervised component.
#[derive(Debug, Default)]
pub struct Component {
    /// Panics so far.
    pub panics: AtomicU64,
    /// Down: it panicked and has not restarted yet.
    pub down: AtomicBool,
}

/// Every supervised component of a run, by name.
#[derive(Debug, Default)]
pub struct Supervision {
    components: Mutex<BTreeMap<&'static str, std::sync::Arc<Component>>>,
}

impl Supervision {
    /// The component called `name` (created on first use).
    pub fn component(&self, name: &'static str) -> std::sync::Arc<Component> {
        let mut m = self.components.lock().unwrap_or_else(|e| e.into_inner());
        std::sync::Arc::clone(m.entry(name).or_default())
    }

    /// `(name, panics, down)` of every component.
    pub fn snapshot(&self) -> Vec<(&'static str, u64, bool)> {
        let m = self.components.lock().unwrap_or_else(|e| e.into_inner());
        m.iter()
            .map(|(n, c)| {
                (
                    *n,
                    c.panics.load(Ordering::Relaxed),
                    c.down.load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// The components that are down now.
    pub fn down(&self) -> Vec<&'static str> {
        self.snapshot()
            .into_iter()
            .filter(|(_, _, d)| *d)
            .map(|(n, _, _)| n)
            .collect()
    }
}

/// A fire drill: `METERFLOW_DRILL_PANIC=alerting:3` makes the first 3 runs
/// of the component `alerting` panic at their start, so an operator (or a
/// test) can see that `/readyz`, `/metrics` and the log report it and that
/// it comes back. Unset in normal operation.
fn drill(name: &str, runs: u32) -> bool {
    std::env::var("METERFLOW_DRILL_PANIC").is_ok_and(|v| {
        v.split(',').any(|item| {
            item.split_once(':').is_some_and(|(n, k)| {
                n.trim() == name && k.trim().parse::<u32>().is_ok_and(|k| runs < k)
            })
        })
    })
}

/// Run `body` until it returns; when it panics, log, count, wait (1 s,
/// doubling to `max_backoff`, cut short by `stop`) and run it again.
pub fn supervise(
    name: &'static str,
    sup: &Supervision,
    stop: &watch::Receiver<bool>,
    max_backoff: Duration,
    mut body: impl FnMut(),
) {
    let c = sup.component(name);
    let mut backoff = meterflow_core::backoff::Backoff::new(Duration::from_secs(1), max_backoff);
    let mut runs = 0u32;
    loop {
        let drilled = drill(name, runs);
        runs = runs.saturating_add(1);
        match catch_unwind(AssertUnwindSafe(|| {
            if drilled {
                panic!("fire drill (METERFLOW_DRILL_PANIC)");
            }
            body()
        })) {
            Ok(()) => return,
            Err(p) => {
                let what = p
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into());
                let n = c.panics.fetch_add(1, Ordering::Relaxed) + 1;
                c.down.store(true, Ordering::Relaxed);
                tracing::error!(
                    component = name,
                    panics = n,
                    "{name} stopped: {what}; restarting in {} s",
                    backoff.peek().as_secs_f64()
                );
                let until = std::time::Instant::now() + backoff.next_delay();
                while std::time::Instant::now() < until {
                    if *stop.borrow() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                c.down.store(false, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_body_is_restarted_counted_and_then_finishes() {
        let sup = Supervision::default();
        let (_tx, rx) = watch::channel(false);
        let mut runs = 0;
        supervise("t", &sup, &rx, Duration::from_millis(10), || {
            runs += 1;
            if runs < 3 {
                panic!("run {runs} fails");
            }
        });
        assert_eq!(runs, 3);
        assert_eq!(sup.snapshot(), vec![("t", 2, false)]);
        assert!(sup.down().is_empty());
    }

    #[test]
    fn a_stop_during_the_back_off_ends_it_down() {
        let sup = Supervision::default();
        let (tx, rx) = watch::channel(false);
        let _ = tx.send(true);
        supervise("t", &sup, &rx, Duration::from_secs(60), || panic!("always"));
        assert_eq!(sup.down(), vec!["t"]);
    }
}
