//! `meterflow check`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

/// Validate and summarise a site file.
pub(crate) fn run(path: &Path) -> ExitCode {
    let site = match super::load_site(path) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let s = &site.site;
    println!("{}: valid", path.display());
    println!(
        "  site      {} ({}), factor set {}, grid {}, quota set {}",
        s.name,
        s.timezone,
        s.factor_set,
        s.grid_region,
        s.quota_set.as_deref().unwrap_or("none")
    );
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for m in &site.meters {
        *kinds.entry(m.kind.as_str()).or_default() += 1;
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!(
        "  contents  {} buildings, {} zones, {} agencies, {} meters ({}), {} replacements",
        site.buildings.len(),
        site.zones.len(),
        site.agencies.len(),
        site.meters.len(),
        kinds.join(", "),
        site.replacements.len()
    );
    println!("  store     {}", site.store_path().display());
    let mut warnings = Vec::new();
    if let Some(i) = &site.influx {
        match meterflow_runtime::sink::write_url(i) {
            Ok(url) => println!(
                "  influx    {url} (outbox bound {} MiB, when full: {:?})",
                i.outbox_max_mib, i.when_full
            ),
            Err(e) => warnings.push(format!("[influx]: {e:#}")),
        }
        let missing =
            |v: &Option<String>| v.as_ref().filter(|k| std::env::var(k).is_err()).cloned();
        for var in [missing(&i.token_env), missing(&i.password_env)]
            .into_iter()
            .flatten()
        {
            warnings.push(format!(
                "[influx]: environment variable {var} is not set here (`run` needs it)"
            ));
        }
    }
    let no_rate: Vec<&str> = site
        .meters
        .iter()
        .filter(|m| m.max_rate.is_none())
        .map(|m| m.id.as_str())
        .collect();
    if !no_rate.is_empty() {
        warnings.push(format!(
            "no max_rate (implausible deltas not detected): {}",
            no_rate.join(", ")
        ));
    }
    let no_rollover: Vec<&str> = site
        .meters
        .iter()
        .filter(|m| m.rollover.is_none())
        .map(|m| m.id.as_str())
        .collect();
    if !no_rollover.is_empty() {
        warnings.push(format!(
            "no rollover (a wrap would read as a counter reset): {}",
            no_rollover.join(", ")
        ));
    }
    for a in &site.agencies {
        if !site.headcounts.iter().any(|h| h.agency == a.id) {
            warnings.push(format!(
                "agency `{}` has no headcount: per-capita figures cannot be computed",
                a.id
            ));
        }
    }
    for w in &warnings {
        println!("  warning   {w}");
    }
    ExitCode::SUCCESS
}
