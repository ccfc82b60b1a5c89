//! KPIs of a sharded site (ADR 0013). A shard's own rollups hold only its
//! meters, so its per-capita and per-area figures would be partial. Shard 0
//! sums every shard's `rollup` series in the shared InfluxDB into a local
//! rollup file (class totals, day grain over this year and the last, and
//! 15-minute grain over the last two days). It then runs the unchanged KPI
//! code on that file, with its own ledgers and the site's denominators.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use chrono::{Datelike, TimeZone};
use meterflow_core::aggregate::exponent;
use meterflow_model::config::InfluxApi;
use meterflow_model::{EnergyClass, Site};
use meterflow_store::{Reader, RollupFileRow};

/// The merged rollup file of shard 0, next to its store.
pub fn rollup_file(site: &Site) -> PathBuf {
    site.store_path().with_extension("shard-rollups.db")
}

/// Whether this instance computes the site's KPIs from the merged rollups.
pub fn merges(site: &Site) -> bool {
    site.shard.is_sharded() && site.shard.index == 0 && site.influx.is_some()
}

/// Open the store for KPIs. On shard 0 of a sharded site, first refresh the
/// merged rollups from InfluxDB and read the rollups from them.
pub fn kpi_reader(site: &Site, now_ms: i64) -> anyhow::Result<Reader> {
    let mut reader = Reader::open(&site.store_path())?;
    if merges(site) {
        // Without the merged rollups (InfluxDB unreachable), no KPI points
        // this round rather than partial ones; the ledger points still go.
        match refresh(site, now_ms) {
            Ok(n) => {
                tracing::debug!(rows = n, "Merged the shards' rollups from InfluxDB.");
                reader.attach_rollups(&rollup_file(site))?;
            }
            Err(e) => tracing::warn!("Sharded KPIs skipped this round: {e:#}"),
        }
    }
    Ok(reader)
}

fn queries(site: &Site, now_ms: i64) -> anyhow::Result<String> {
    let today = site
        .tz
        .timestamp_millis_opt(now_ms)
        .single()
        .map(|t| t.date_naive())
        .context("time out of range")?;
    let jan1 = chrono::NaiveDate::from_ymd_opt(today.year() - 1, 1, 1).context("date")?;
    let from = meterflow_core::time::day_start(jan1, site.tz);
    let to = now_ms + 86_400_000;
    let recent = now_ms - 2 * 86_400_000;
    let fields = r#"sum("value") AS "v", sum("measured") AS "m", sum("estimated") AS "e""#;
    let by = r#""level", "id", "class""#;
    Ok(format!(
        "SELECT {fields} FROM \"rollup\" WHERE \"grain\" = 'day' AND \"subitem\" = 'total' AND time >= {from}ms AND time < {to}ms GROUP BY time(1d), {by} fill(none) tz('{tz}'); \
         SELECT {fields} FROM \"rollup\" WHERE \"grain\" = '15m' AND \"subitem\" = 'total' AND time >= {recent}ms AND time < {to}ms GROUP BY time(15m), {by} fill(none)",
        tz = site.tz.name()
    ))
}

/// Query InfluxDB and rewrite the rollup file; the number of rows.
pub fn refresh(site: &Site, now_ms: i64) -> anyhow::Result<usize> {
    let cfg = site.influx.as_ref().context("no [influx] section")?;
    let q = queries(site, now_ms)?;
    let db = match cfg.api {
        InfluxApi::V1 => cfg.database.clone(),
        InfluxApi::V2 => cfg.bucket.clone(),
    }
    .unwrap_or_default();
    let url = reqwest::Url::parse_with_params(
        &format!("{}/query", cfg.url.trim_end_matches('/')),
        &[("db", db.as_str()), ("epoch", "ms"), ("q", q.as_str())],
    )
    .with_context(|| format!("[influx] url `{}`", cfg.url))?;
    let auth = crate::sink::auth(site, cfg)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("runtime for the InfluxDB query")?;
    let body: serde_json::Value = rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(cfg.timeout_s.max(5.0)))
            .build()?;
        let req = auth.apply(client.get(url));
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        anyhow::ensure!(
            status.is_success(),
            "InfluxDB query answered {status}: {}",
            text.chars().take(300).collect::<String>()
        );
        serde_json::from_str(&text).context("InfluxDB query answer is not JSON")
    })?;
    let rows = parse(&body)?;
    meterflow_store::write_rollup_file(&rollup_file(site), &rows)?;
    Ok(rows.len())
}

/// Rows of the two statements' answers (day, then 15-minute grain).
fn parse(body: &serde_json::Value) -> anyhow::Result<Vec<RollupFileRow>> {
    let mut out = Vec::new();
    let results = body["results"].as_array().context("no results")?;
    for (res, grain) in results.iter().zip(["day", "15m"]) {
        if let Some(e) = res.get("error") {
            anyhow::bail!("InfluxDB query: {e}");
        }
        for s in res["series"].as_array().into_iter().flatten() {
            let tag = |k: &str| s["tags"][k].as_str().unwrap_or_default().to_string();
            let (level, id, class) = (tag("level"), tag("id"), tag("class"));
            let Some(cls) = EnergyClass::ALL.into_iter().find(|c| c.as_str() == class) else {
                continue;
            };
            let scale = 10f64.powi(exponent(cls));
            for v in s["values"].as_array().into_iter().flatten() {
                let (Some(t), Some(x)) = (v[0].as_i64(), v[1].as_f64()) else {
                    continue;
                };
                out.push(RollupFileRow {
                    level: level.clone(),
                    id: id.clone(),
                    class: class.clone(),
                    grain: grain.to_string(),
                    start_ms: t,
                    raw: (x * scale).round() as i64,
                    measured: v[2].as_f64().unwrap_or(0.0).round() as i64,
                    estimated: v[3].as_f64().unwrap_or(0.0).round() as i64,
                });
            }
        }
    }
    Ok(out)
}
