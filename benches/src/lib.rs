//! Benchmark fixtures: synthetic sites of any size.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Write a synthetic site with `meters` meters spread over buildings of 10
/// meters each (70 % electricity, 20 % water, 5 % gas, 5 % heat); its store
/// goes to `dir/store.db`. Returns the config path.
pub fn synthetic_site(dir: &Path, meters: usize, batch_rows: usize) -> anyhow::Result<PathBuf> {
    let mut s = String::new();
    writeln!(
        s,
        "[site]\nname = \"synthetic {meters}\"\ntimezone = \"Asia/Shanghai\"\n"
    )?;
    writeln!(
        s,
        "[store]\npath = \"store.db\"\nbatch_rows = {batch_rows}\ncache_mib = 256\n"
    )?;
    let buildings = meters.div_ceil(10).max(1);
    for b in 0..buildings {
        writeln!(s, "[[building]]\nid = \"b{b}\"\ntotal_area_m2 = 10000\n")?;
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
            "[[meter]]\nid = \"m{i:04}\"\nkind = \"{kind}\"\nunit = \"{unit}\"\nserves = {{ building = \"b{}\" }}\nmax_rate = {rate}\nrollover = 100000000\n",
            i / 10
        )?;
    }
    let path = dir.join("site.toml");
    std::fs::write(&path, s)?;
    Ok(path)
}

/// `days` of 15-minute readings of every meter of `site` from 2025-01-01
/// (local) written as an import CSV at `csv`; the number of rows.
pub fn year_csv(site: &meterflow_model::Site, csv: &Path, days: u32) -> anyhow::Result<u64> {
    let from =
        chrono::NaiveDate::from_ymd_opt(2025, 1, 1).ok_or_else(|| anyhow::anyhow!("date"))?;
    days_csv(site, csv, from, days)
}

/// `days` of 15-minute readings of every meter of `site` from the local
/// day `from`, written as an import CSV at `csv`; the number of rows.
pub fn days_csv(
    site: &meterflow_model::Site,
    csv: &Path,
    from: chrono::NaiveDate,
    days: u32,
) -> anyhow::Result<u64> {
    let from = meterflow_core::time::day_start(from, site.tz);
    meterflow_sim::site::write_csv(
        site,
        from,
        days,
        15,
        false,
        &mut std::io::BufWriter::new(std::fs::File::create(csv)?),
    )
}

/// Peak resident memory of this process, KiB (Linux `VmHWM`).
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Two `/proc/self/stat` clock-tick fields (counted after the command name,
/// which is in parentheses and may contain spaces), added, in seconds
/// (Linux, USER_HZ = 100).
fn stat_ticks_s(a: usize, b: usize) -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some((f.get(a)?.parse::<f64>().ok()? + f.get(b)?.parse::<f64>().ok()?) / 100.0)
}

/// CPU time (user + system) of this process so far, seconds.
pub fn cpu_seconds() -> Option<f64> {
    stat_ticks_s(11, 12)
}

/// CPU time (user + system) of this process's waited-for children so far,
/// seconds (`cutime` + `cstime`).
pub fn children_cpu_seconds() -> Option<f64> {
    stat_ticks_s(13, 14)
}

pub mod api_fixture;

/// The assessment-scale site: 5 000 meters, 200 agencies, 20 buildings,
/// shared by the aggregator and export benchmarks.
pub mod assessment_site {
    use std::fmt::Write as _;

    /// Meters.
    pub const METERS: usize = 5_000;
    /// Agencies.
    pub const AGENCIES: usize = 200;
    /// Buildings.
    pub const BUILDINGS: usize = 20;
    /// Zones (five per building).
    pub const ZONES: usize = 100;

    /// The site: 20 buildings × 5 zones; each agency has a space in a zone (two
    /// agencies per zone); from 2025-07-01 every tenth agency moves to the next
    /// zone (share timelines with two steps). Meters: 100 building mains, 1 900
    /// zone meters (area-shared, parent = building main, sub-items A1/B2/C1),
    /// 2 000 direct agency meters, 1 000 water meters on zones.
    pub fn site_toml(dir: &std::path::Path) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "[site]\nname = \"bench\"\n\n[store]\npath = \"{}\"\n",
            dir.join("store.db").display()
        );
        for b in 0..BUILDINGS {
            let _ = writeln!(s, "[[building]]\nid = \"b{b}\"\ntotal_area_m2 = 10000\n");
        }
        for z in 0..ZONES {
            let _ = writeln!(
                s,
                "[[zone]]\nid = \"z{z}\"\nbuilding = \"b{}\"\narea_m2 = 2000\n",
                z % BUILDINGS
            );
        }
        for a in 0..AGENCIES {
            let z = a % ZONES;
            let _ = writeln!(s, "[[agency]]\nid = \"a{a}\"\nname = \"agency {a}\"\n");
            let _ = writeln!(
                s,
                "[[headcount]]\nagency = \"a{a}\"\nfrom = 2025-01-01\npersons = {}\n",
                20 + a % 50
            );
            if a % 10 == 0 {
                let _ = writeln!(
                    s,
                    "[[space]]\nagency = \"a{a}\"\nzone = \"z{z}\"\nfrom = 2025-01-01\nto = 2025-06-30\narea_m2 = {}\n",
                    300 + a
                );
                let _ = writeln!(
                    s,
                    "[[space]]\nagency = \"a{a}\"\nzone = \"z{}\"\nfrom = 2025-07-01\narea_m2 = {}\n",
                    (z + 1) % ZONES,
                    300 + a
                );
            } else {
                let _ = writeln!(
                    s,
                    "[[space]]\nagency = \"a{a}\"\nzone = \"z{z}\"\nfrom = 2025-01-01\narea_m2 = {}\n",
                    300 + a
                );
            }
        }
        for m in 0..METERS {
            let _ = write!(s, "[[meter]]\nid = \"m{m}\"\ninterval_s = 900\n");
            match m {
                0..100 => {
                    let _ = writeln!(
                        s,
                        "kind = \"electricity\"\nunit = \"kWh\"\nserves = {{ building = \"b{}\" }}\n",
                        m % BUILDINGS
                    );
                }
                100..2000 => {
                    let z = m % ZONES;
                    let sub = ["A1", "B2", "C1"][m % 3];
                    let _ = writeln!(
                        s,
                        "kind = \"electricity\"\nunit = \"kWh\"\nsubitem = \"{sub}\"\nparent = \"m{}\"\nserves = {{ zone = \"z{z}\" }}\n",
                        z % BUILDINGS
                    );
                }
                2000..4000 => {
                    let _ = writeln!(
                        s,
                        "kind = \"electricity\"\nunit = \"kWh\"\nserves = {{ agency = \"a{}\" }}\n",
                        m % AGENCIES
                    );
                }
                _ => {
                    let _ = writeln!(
                        s,
                        "kind = \"water\"\nunit = \"m3\"\nserves = {{ zone = \"z{}\" }}\n",
                        m % ZONES
                    );
                }
            }
        }
        s
    }
}

/// Import one CSV file into `site`'s store the way `meterflow import` does
/// (no progress bar); its summary.
pub fn import_csv(
    site: &meterflow_model::Site,
    csv: &Path,
) -> anyhow::Result<meterflow_runtime::import::FileSummary> {
    let mut summaries = meterflow_runtime::import::import_files(
        site,
        &[csv.to_path_buf()],
        meterflow_runtime::import::Options {
            format: None,
            precision: meterflow_import::Precision::Ns,
            progress: false,
        },
    )?;
    summaries
        .pop()
        .ok_or_else(|| anyhow::anyhow!("no summary for {}", csv.display()))
}
