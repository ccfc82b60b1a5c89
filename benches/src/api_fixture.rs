//! The API benches' site: 1 000 meters in 100 buildings shared by 20
//! agencies by area, half the headcounts from the office-space ledger, and
//! `days` of 15-minute readings imported from a date.

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::Context;
use meterflow_model::Site;

/// Agencies of the site.
pub const AGENCIES: usize = 20;

/// The site file in `dir` (API on `port`, a manager with `token`).
pub fn site_file(
    dir: &std::path::Path,
    meters: usize,
    port: u16,
    token: &str,
) -> anyhow::Result<std::path::PathBuf> {
    let mut s = String::new();
    writeln!(
        s,
        "[site]\nname = \"api bench\"\ntimezone = \"Asia/Shanghai\"\n\n[store]\npath = \"store.db\"\nbatch_rows = 50000\ncache_mib = 256\n"
    )?;
    writeln!(
        s,
        "[api]\nlisten = \"127.0.0.1:{port}\"\ntokens_file = \"tokens\"\npublic_overview = true\nmax_auth_failures = 1000000\n"
    )?;
    let buildings = meters.div_ceil(10).max(1);
    for b in 0..buildings {
        writeln!(
            s,
            "[[building]]\nid = \"b{b}\"\ntotal_area_m2 = 10000\noffice_area_m2 = 8000\n"
        )?;
    }
    for a in 0..AGENCIES {
        writeln!(s, "[[agency]]\nid = \"a{a}\"\nname = \"agency {a}\"\n")?;
        // Half the agencies' headcounts come from the ledger (entered below).
        if a % 2 == 0 {
            writeln!(
                s,
                "[[headcount]]\nagency = \"a{a}\"\nfrom = 2024-01-01\npersons = {}\n",
                100 + a
            )?;
        }
    }
    // Each building is shared by two agencies, by area.
    for b in 0..buildings {
        for (k, area) in [(b % AGENCIES, 5000), ((b + 7) % AGENCIES, 3000)] {
            writeln!(
                s,
                "[[space]]\nagency = \"a{k}\"\nbuilding = \"b{b}\"\nfrom = 2024-01-01\narea_m2 = {area}\n"
            )?;
        }
    }
    for i in 0..meters {
        let (kind, unit, rate) = match i % 20 {
            0..=13 => ("electricity", "kWh", 200.0),
            14..=17 => ("water", "m3", 20.0),
            18 => ("gas", "m3", 40.0),
            _ => ("heat", "GJ", 3.0),
        };
        writeln!(
            s,
            "[[meter]]\nid = \"m{i:04}\"\nkind = \"{kind}\"\nunit = \"{unit}\"\nserves = {{ building = \"b{}\" }}\nallocation = \"area_share\"\nmax_rate = {rate}\nrollover = 100000000\n",
            i / 10
        )?;
    }
    // Prices (issue 22): a time-of-use tariff with 尖峰, water with the
    // surcharge, gas and heat; a budget for the first agency. Pricing is
    // done where figures are read, so the store is the same with or without.
    writeln!(
        s,
        "[[tariff]]\nid = \"e\"\ncarrier = \"electricity\"\nfrom = 2024-01-01\nsource = \"bench\"\n\
periods = {{ valley = [\"23:00-07:00\"], flat = [\"07:00-08:00\", \"11:00-18:00\"], peak = [\"08:00-11:00\", \"18:00-23:00\"] }}\n\
prices = {{ critical = 1.25, peak = 0.98, flat = 0.65, valley = 0.32 }}\n\
critical = {{ months = [1, 7, 8, 12], hours = [\"10:00-11:00\", \"19:00-21:00\"] }}\n\n\
[[tariff]]\nid = \"w\"\ncarrier = \"water\"\nfrom = 2024-01-01\nsource = \"bench\"\nprice = 5.0\n\
surcharge = [{{ above_pct = 0, factor = 0.5 }}, {{ above_pct = 20, factor = 1.0 }}]\n\n\
[[tariff]]\nid = \"g\"\ncarrier = \"gas\"\nfrom = 2024-01-01\nsource = \"bench\"\nprice = 3.5\n\n\
[[tariff]]\nid = \"h\"\ncarrier = \"heat\"\nfrom = 2024-01-01\nsource = \"bench\"\nprice = 60.0\n\n\
[[budget]]\nagency = \"a0\"\nyear = 2026\ncny = 2000000\n"
    )?;
    std::fs::write(
        dir.join("tokens"),
        format!("manager sha256:{}\n", meterflow_http::hash_token(token)),
    )?;
    let path = dir.join("site.toml");
    std::fs::write(&path, s)?;
    Ok(path)
}

/// Import `days` of readings from `from` into the site's store, and the
/// ledger's headcounts.
pub fn build(
    dir: &std::path::Path,
    site: &Site,
    days: u32,
    from: chrono::NaiveDate,
) -> anyhow::Result<()> {
    let meters = site.meters.len();
    let t = Instant::now();
    let csv = dir.join("year.csv");
    let rows = crate::days_csv(site, &csv, from, days)?;
    let summaries = [crate::import_csv(site, &csv)?];
    anyhow::ensure!(
        summaries[0].stored == rows,
        "import stored {} of {rows}",
        summaries[0].stored
    );
    std::fs::remove_file(&csv)?;
    // The odd agencies' headcounts through the office-space ledger.
    let mut db = meterflow_store::LedgerDb::open(&site.store_path())?;
    for a in (1..AGENCIES).step_by(2) {
        let body = format!(r#"{{"agency":"a{a}","persons":{}}}"#, 100 + a);
        db.append(
            &meterflow_store::NewLedgerEvent {
                ledger: "space",
                kind: "headcount",
                agency: Some(&format!("a{a}")),
                ts_ms: meterflow_core::time::day_start(
                    chrono::NaiveDate::from_ymd_opt(2024, 1, 1).context("date")?,
                    site.tz,
                ),
                body: &body,
                corrects: None,
                void: false,
                author: "bench",
            },
            meterflow_model::clock::now_ms(),
        )?;
    }
    drop(db);
    println!(
        "fixture: {meters} meters x {days} days = {rows} readings, imported in {:.0} s; store {:.0} MiB",
        t.elapsed().as_secs_f64(),
        std::fs::metadata(site.store_path())?.len() as f64 / 1048576.0
    );
    Ok(())
}
