//! A replaced meter's history imported in time order (issue 19): n
//! readings of one meter every 15 minutes, all before a replacement the
//! site file declares, imported from CSV; the same readings without the
//! replacement as the reference in the same run. Linear when the time per
//! reading stays flat as n doubles (it grew with n when the replacement was
//! stored first: every earlier reading re-folded it).
//!
//! `cargo run --release -p meterflow-benches --bin replacement-import`

use std::io::Write as _;
use std::time::Instant;

fn once(n: usize, replaced: bool) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    // Readings from 2025-01-01 00:00 +08:00 every 15 min; the replacement
    // a day after the last one.
    let end = chrono::NaiveDate::from_ymd_opt(2025, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .ok_or_else(|| anyhow::anyhow!("date"))?
        + chrono::Duration::minutes(15 * n as i64 + 24 * 60);
    let replacement = if replaced {
        format!(
            "[[replacement]]\nmeter = \"m\"\nat = {}\nold_final = {}\nnew_initial = 0\n",
            end.format("%Y-%m-%dT%H:%M:%S"),
            1000 + n
        )
    } else {
        String::new()
    };
    let src = format!(
        "[site]\nname = \"r\"\n[store]\npath = \"store.db\"\n[[building]]\nid = \"b\"\ntotal_area_m2 = 1\n[[meter]]\nid = \"m\"\nkind = \"electricity\"\nunit = \"kWh\"\nserves = {{ building = \"b\" }}\n{replacement}"
    );
    let config = dir.path().join("site.toml");
    std::fs::write(&config, src)?;
    let site = meterflow_model::Site::load(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let csv = dir.path().join("r.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&csv)?);
    writeln!(f, "meter_id,timestamp,value")?;
    let start = chrono::NaiveDate::from_ymd_opt(2025, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .ok_or_else(|| anyhow::anyhow!("date"))?;
    for i in 0..n {
        let t = start + chrono::Duration::minutes(15 * i as i64);
        writeln!(f, "m,{},{}", t.format("%Y-%m-%d %H:%M:%S"), 1000 + i)?;
    }
    drop(f);
    let t = Instant::now();
    let s = [meterflow_benches::import_csv(&site, &csv)?];
    let secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(s[0].stored == n as u64, "stored {} of {n}", s[0].stored);
    Ok(secs)
}

fn main() -> anyhow::Result<()> {
    println!("readings  replaced s  µs/reading  reference s  µs/reading  ratio");
    for n in [8_760usize, 17_520, 35_040] {
        let with = once(n, true)?;
        let without = once(n, false)?;
        println!(
            "{n:>8}  {with:>10.3}  {:>10.2}  {without:>11.3}  {:>10.2}  {:.2}",
            with * 1e6 / n as f64,
            without * 1e6 / n as f64,
            with / without
        );
    }
    Ok(())
}
