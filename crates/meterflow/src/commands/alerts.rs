//! `meterflow alerts`: evaluate the rules once, deliver due notifications,
//! acknowledge, and print firing alerts and the history.

use std::process::ExitCode;

pub(crate) fn run(
    config: &std::path::Path,
    at: Option<&str>,
    ack: Option<&str>,
    history: usize,
    record: bool,
) -> anyhow::Result<ExitCode> {
    let (site, now) = match super::site_at(config, at) {
        Ok(x) => x,
        Err(code) => return Ok(code),
    };
    // Opening the writer migrates the store and brings rollups up to date.
    drop(meterflow_store::Writer::open(&site)?);
    let mut ev = meterflow_runtime::alerting::Evaluator::open(&site)?;
    if let Some(a) = ack {
        let Some((rule, target)) = a.split_once(':') else {
            eprintln!("error: --ack takes RULE:TARGET, got `{a}`");
            return Ok(ExitCode::from(crate::EXIT_CONFIG));
        };
        if ev.acknowledge(rule, target, now)? {
            println!("acknowledged {rule} on {target}");
        } else {
            eprintln!("error: {rule} on {target} is not firing");
            return Ok(ExitCode::FAILURE);
        }
    }
    // An evaluation at another time is a dry run unless told otherwise: its
    // transitions would otherwise enter the lasting history out of order.
    let dry = at.is_some() && !record;
    if dry {
        println!(
            "dry run as of {}: nothing is recorded (--record keeps it)",
            meterflow_core::time::local_text(now, site.tz)
        );
        ev.db_mut().begin_dry_run()?;
    }
    let reader = meterflow_store::Reader::open(&site.store_path())?;
    for e in ev.evaluate(
        &site,
        &reader,
        now,
        &meterflow_runtime::alerting::LiveMetrics::default(),
    )? {
        println!("{} {}", e.event, e.message);
    }
    if !site.notifiers.is_empty() && !dry {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut worker = meterflow_runtime::notify::Worker::new(std::sync::Arc::new(site.clone()))?;
        let (ok, bad) =
            rt.block_on(worker.deliver_due(ev.db(), meterflow_model::clock::now_ms()))?;
        if ok + bad > 0 {
            println!("notifications: {ok} delivered, {bad} failed (retried later)");
        }
    }
    let firing = ev.db().firing()?;
    println!("{} alert(s) firing", firing.len());
    for (rule, target, since, acked, value) in firing {
        println!(
            "  {rule} on {target} since {}{}{}",
            chrono::DateTime::from_timestamp_millis(since)
                .map(|t| t.with_timezone(&site.tz).to_rfc3339())
                .unwrap_or_default(),
            value.map(|v| format!(", value {v:.3}")).unwrap_or_default(),
            if acked { ", acknowledged" } else { "" }
        );
    }
    if history > 0 {
        println!("history:");
        for e in ev.db().events(history)? {
            println!(
                "  #{} {} {}: {}",
                e.id,
                chrono::DateTime::from_timestamp_millis(e.ts_ms)
                    .map(|t| t.with_timezone(&site.tz).to_rfc3339())
                    .unwrap_or_default(),
                e.event,
                e.message
            );
        }
    }
    if dry {
        ev.db_mut().end_dry_run()?;
    }
    Ok(ExitCode::SUCCESS)
}
