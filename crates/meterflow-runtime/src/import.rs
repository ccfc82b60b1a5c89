//! Historical import into the store: CSV and line-protocol files streamed
//! through the counter normaliser in batches of `store.batch_rows`
//! readings, each batch one transaction; rejected lines become dead letters.

use meterflow_model::clock::now_ms;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use meterflow_import::{
    CsvReader, Format, ImportRow, LineProtocolReader, Precision, RejectReason, RowError,
};
use meterflow_model::{AnomalyKind, Reading, Site, TimeSource};
use meterflow_store::{Verdict, Writer};

/// Rejected lines kept with their details per file (all are counted and dead-lettered).
const KEEP_REJECTED: usize = 200;

/// Outcome of importing one file.
#[derive(Debug, Clone, Default)]
pub struct FileSummary {
    /// File.
    pub path: PathBuf,
    /// Values read (one per CSV row; one per numeric field of a line-protocol line).
    pub values: u64,
    /// Newly stored.
    pub stored: u64,
    /// Already stored with the same value.
    pub duplicates: u64,
    /// Rejected, by reason.
    pub rejected: BTreeMap<RejectReason, u64>,
    /// The first rejected lines, with details.
    pub rejected_lines: Vec<RowError>,
    /// Anomalies found, by kind.
    pub anomalies: BTreeMap<AnomalyKind, usize>,
    /// Wall time.
    pub elapsed: Duration,
}

impl FileSummary {
    /// Total rejected values.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Count and list a rejected line the store has already kept as a dead
    /// letter.
    fn note(&mut self, e: RowError) {
        *self.rejected.entry(e.reason).or_default() += 1;
        if self.rejected_lines.len() < KEEP_REJECTED {
            self.rejected_lines.push(e);
        }
    }

    fn reject(&mut self, e: RowError, writer: &mut Writer, now_ms: i64) {
        *self.rejected.entry(e.reason).or_default() += 1;
        let source = format!("import:{}", self.path.display());
        writer.dead_letter(
            now_ms,
            &source,
            &format!("line {}", e.line),
            &format!("{}: {}", e.reason.as_str(), e.detail),
            &e.raw,
        );
        if self.rejected_lines.len() < KEEP_REJECTED {
            self.rejected_lines.push(e);
        }
    }
}

/// Import options.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Force a format.
    pub format: Option<Format>,
    /// Line-protocol timestamp precision.
    pub precision: Precision,
    /// Show a progress bar (on a terminal only).
    pub progress: bool,
}

/// Import files into the site's store; returns one summary per file.
pub fn import_files(
    site: &Site,
    data: &[PathBuf],
    opts: Options,
) -> anyhow::Result<Vec<FileSummary>> {
    let mut writer = Writer::open(site)
        .with_context(|| format!("opening the store {}", site.store_path().display()))?;
    // Replacements already behind their meter's data go in now; the others
    // after the files, so history imported in time order is appended, not
    // re-folded over each replacement (docs/methodology.md §1).
    writer
        .sync_replacements_behind(site, now_ms())
        .context("storing configured meter replacements")?;
    writer
        .bulk_load(true)
        .context("setting up the store for a bulk load")?;
    let mut out = Vec::new();
    for path in data {
        out.push(
            import_file(site, &mut writer, path, opts)
                .with_context(|| format!("importing {}", path.display()))?,
        );
    }
    writer
        .sync_replacements(site, now_ms())
        .context("storing configured meter replacements")?;
    writer.bulk_load(false).context("ending the bulk load")?;
    if let Some(days) = site.store.raw_retention_days {
        writer
            .apply_retention(days, now_ms())
            .context("applying raw-reading retention")?;
    }
    Ok(out)
}

fn import_file(
    site: &Site,
    writer: &mut Writer,
    path: &Path,
    opts: Options,
) -> anyhow::Result<FileSummary> {
    let started = Instant::now();
    let file = File::open(path)?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let counter = Arc::new(AtomicU64::new(0));
    let mut reader = BufReader::with_capacity(
        1 << 16,
        Counting {
            inner: file,
            read: Arc::clone(&counter),
        },
    );
    let format = match opts.format {
        Some(f) => f,
        None => {
            let head = String::from_utf8_lossy(reader.fill_buf()?).into_owned();
            let first = head
                .lines()
                .find(|l| !l.trim().is_empty() && !l.starts_with('#'))
                .unwrap_or("");
            Format::detect(&path.to_string_lossy(), first)
        }
    };
    let rows: Box<dyn Iterator<Item = Result<ImportRow, RowError>> + Send> = match format {
        Format::Csv => Box::new(CsvReader::new(reader, site.tz)),
        Format::LineProtocol => Box::new(LineProtocolReader::new(reader, opts.precision)),
    };
    let bar = if opts.progress {
        indicatif::ProgressBar::new(len)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    bar.set_message(name.clone());

    let mut summary = FileSummary {
        path: path.to_path_buf(),
        ..FileSummary::default()
    };
    let batch_rows = site.store.batch_rows.max(1);
    let source = format!(
        "import:{}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    // Parsing runs on its own thread, one batch ahead of the store (it was
    // ~15 % of an import's time on the writer's thread). The channel holds
    // at most one parsed batch, so memory stays constant.
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Parsed>(1);
        let parser = std::thread::Builder::new()
            .name("meterflow-parse".into())
            .spawn_scoped(scope, move || parse(site, rows, batch_rows, &tx))
            .context("starting the parser thread")?;
        let stored = (|| -> anyhow::Result<()> {
            for mut p in rx {
                summary.values += p.values;
                let now = now_ms();
                for e in p.rejected {
                    summary.reject(e, writer, now);
                }
                flush(writer, &mut p.batch, &mut p.lines, &mut summary, &source)?;
                bar.set_position(counter.load(Ordering::Relaxed));
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                bar.set_message(format!(
                    "{name}: {} rows, {:.0} rows/s",
                    summary.values,
                    summary.values as f64 / secs
                ));
            }
            Ok(())
        })();
        // On a store error the receiver is gone by now, so the parser's next
        // send fails and it ends.
        parser
            .join()
            .map_err(|_| anyhow::anyhow!("the parser thread panicked"))?;
        stored
    })?;
    bar.finish_and_clear();
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// One batch of a file as parsed: its readings with their file lines, the
/// lines rejected while reading them, and how many values it read.
struct Parsed {
    batch: Vec<Reading>,
    lines: Vec<u64>,
    rejected: Vec<RowError>,
    values: u64,
}

/// Read `rows` into batches of `batch_rows` readings for the store; stops
/// early when the receiver is gone.
fn parse(
    site: &Site,
    rows: Box<dyn Iterator<Item = Result<ImportRow, RowError>> + Send + '_>,
    batch_rows: usize,
    tx: &std::sync::mpsc::SyncSender<Parsed>,
) {
    let empty = || Parsed {
        batch: Vec::with_capacity(batch_rows),
        // The file line of each reading (its text is made only for a
        // refused one).
        lines: Vec::with_capacity(batch_rows),
        rejected: Vec::new(),
        values: 0,
    };
    let mut p = empty();
    // Receive time: one clock read per batch (its rows are read within
    // milliseconds of each other).
    let mut now = now_ms();
    for row in rows {
        p.values += 1;
        match row {
            Err(e) => p.rejected.push(e),
            Ok(r) => match site.meter(&r.meter) {
                None => p.rejected.push(RowError {
                    line: r.line,
                    reason: RejectReason::UnknownMeter,
                    detail: format!("no meter `{}` in {}", r.meter, site.path.display()),
                    raw: format!("{},{},{}", r.meter, r.ts_ms, r.value),
                }),
                Some(m) => {
                    let quantity = r
                        .quantity
                        .unwrap_or_else(|| m.counter_quantity().to_string());
                    p.lines.push(r.line);
                    p.batch.push(Reading {
                        meter: r.meter,
                        quantity,
                        ts_ms: r.ts_ms,
                        value: r.value,
                        recv_ms: now,
                        time_source: TimeSource::Import,
                    });
                }
            },
        }
        if p.batch.len() >= batch_rows {
            if tx.send(std::mem::replace(&mut p, empty())).is_err() {
                return;
            }
            now = now_ms();
        }
    }
    let _ = tx.send(p);
}

fn flush(
    writer: &mut Writer,
    batch: &mut Vec<Reading>,
    lines: &mut Vec<u64>,
    summary: &mut FileSummary,
    source: &str,
) -> anyhow::Result<()> {
    // Series by series, in time order: each series' rows then land on the
    // same pages one after another (the file is usually in time order, all
    // meters interleaved). The normaliser's results do not depend on the
    // order of arrival; the lines follow their readings.
    // Series numbered by first appearance (their order does not matter,
    // only that each one's rows are together), then small keys sorted
    // instead of the readings (comparing meter names took ~4 % of an import).
    let mut series: std::collections::HashMap<(&str, &str), u32> = Default::default();
    let mut keys: Vec<(u32, i64, usize)> = Vec::with_capacity(batch.len());
    for (i, r) in batch.iter().enumerate() {
        let next = series.len() as u32;
        let s = *series
            .entry((r.meter.as_str(), r.quantity.as_str()))
            .or_insert(next);
        keys.push((s, r.ts_ms, i));
    }
    drop(series);
    // Index last: equal keys keep their file order.
    keys.sort_unstable();
    let mut taken: Vec<Option<(Reading, u64)>> =
        batch.drain(..).zip(lines.drain(..)).map(Some).collect();
    for (_, _, i) in keys {
        if let Some((r, line)) = taken[i].take() {
            batch.push(r);
            lines.push(line);
        }
    }
    let (verdicts, report) = writer.write_batch(batch, source)?;
    for (anomaly, n) in report.retracted {
        if let Some(total) = summary.anomalies.get_mut(&anomaly) {
            *total = total.saturating_sub(n);
        }
    }
    for (anomaly, n) in report.anomalies {
        *summary.anomalies.entry(anomaly).or_default() += n;
    }
    summary.anomalies.retain(|_, n| *n > 0);
    let now = now_ms();
    let mut refused = Vec::new();
    // Refusals are reported in file order.
    let mut outcome: Vec<(&Verdict, u64, &Reading)> = verdicts
        .iter()
        .zip(lines.drain(..))
        .zip(batch.iter())
        .map(|((v, l), r)| (v, l, r))
        .collect();
    outcome.sort_by_key(|(_, line, _)| *line);
    for (v, line, r) in outcome {
        let raw = || format!("{},{},{},{}", r.meter, r.ts_ms, r.value, r.quantity);
        match v {
            Verdict::Stored(_) => summary.stored += 1,
            Verdict::Duplicate => summary.duplicates += 1,
            Verdict::Conflict { existing } => refused.push(RowError {
                line,
                reason: RejectReason::Conflict,
                detail: format!(
                    "a different value ({}) is already stored for this meter and time",
                    existing.map_or("non-finite".to_string(), |e| e.to_string())
                ),
                raw: raw(),
            }),
            Verdict::TooOld => refused.push(RowError {
                line,
                reason: RejectReason::TooOld,
                detail: "older than the raw-retention horizon".to_string(),
                raw: raw(),
            }),
            // The store kept it as a dead letter already: count and list it.
            Verdict::ImplausibleTime { reason } => summary.note(RowError {
                line,
                reason: RejectReason::ImplausibleTime,
                detail: reason.clone(),
                raw: raw(),
            }),
            Verdict::UnknownMeter => refused.push(RowError {
                line,
                reason: RejectReason::UnknownMeter,
                detail: "meter not configured".to_string(),
                raw: raw(),
            }),
        }
    }
    for e in refused {
        summary.reject(e, writer, now);
    }
    batch.clear();
    Ok(())
}

struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}
