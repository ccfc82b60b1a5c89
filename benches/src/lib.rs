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

/// Peak resident memory of this process, KiB (Linux `VmHWM`).
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time (user + system) of this process so far, seconds (Linux, USER_HZ = 100).
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
