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
    // Every secret the site names must be there for `run`: an unset
    // variable or an unreadable file is an error here (exit 2), so a
    // systemd pre-start check stops a start that would fail.
    let missing = missing_secrets(&site);
    if !missing.is_empty() {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        for (key, what, needle) in &missing {
            let line = text
                .lines()
                .position(|l| l.contains(needle.as_str()))
                .map_or(String::new(), |i| format!("{}: ", i + 1));
            eprintln!("{}:{line}{key}: {what}", path.display());
        }
        eprintln!(
            "{} secret{} missing for `run` in {}",
            missing.len(),
            if missing.len() == 1 { "" } else { "s" },
            path.display()
        );
        return ExitCode::from(crate::EXIT_CONFIG);
    }
    let mut warnings = Vec::new();
    if let Some(i) = &site.influx {
        match meterflow_runtime::sink::write_url(i) {
            Ok(url) => println!(
                "  influx    {url} (outbox bound {} MiB, when full: {:?})",
                i.outbox_max_mib, i.when_full
            ),
            Err(e) => warnings.push(format!("[influx]: {e:#}")),
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
    for m in &site.meters {
        if let (Some(i), Some(p)) = (m.interval_s, m.poll_s())
            && i != p
        {
            warnings.push(format!(
                "meter `{}`: interval_s = {i} but it is polled every {p} s; gaps and silence are judged by interval_s (leave it out to use the poll period)",
                m.id
            ));
        }
    }
    for a in &site.agencies {
        if !site.headcounts.iter().any(|h| h.agency == a.id) {
            warnings.push(format!(
                "agency `{}` has no headcount: per-capita figures cannot be computed",
                a.id
            ));
        }
    }
    // Days with no tariff in force between two tariffs of a carrier (their
    // consumption is not priced, and the cost says so).
    for class in [
        meterflow_model::EnergyClass::Electricity,
        meterflow_model::EnergyClass::Water,
        meterflow_model::EnergyClass::Gas,
        meterflow_model::EnergyClass::Heat,
    ] {
        // Per whom the tariffs price (the default, or the same meters,
        // agencies or buildings).
        let mut groups: std::collections::BTreeMap<String, Vec<_>> = Default::default();
        for t in site.tariffs.iter().filter(|t| t.carrier == class) {
            let key = format!("{:?}{:?}{:?}", t.meters, t.agencies, t.buildings);
            if let Some(from) = t.days().0 {
                groups
                    .entry(key)
                    .or_default()
                    .push((from, t.days().1, t.id.as_str()));
            }
        }
        for ts in groups.values_mut() {
            ts.sort_by_key(|t| t.0);
            for w in ts.windows(2) {
                if let Some(end) = w[0].1
                    && (w[1].0 - end).num_days() > 1
                {
                    warnings.push(format!(
                    "tariffs `{}` and `{}` leave {} to {} without a {} price: that consumption will not be priced",
                    w[0].2,
                    w[1].2,
                    end.succ_opt().unwrap_or(end),
                    w[1].0.pred_opt().unwrap_or(w[1].0),
                    class.as_str()
                ));
                }
            }
        }
    }
    // The working calendar of the off-hours rule: a year without the State
    // Council's notice knows weekends but no holidays or make-up days.
    let year = chrono::Datelike::year(&chrono::Utc::now().with_timezone(&site.tz));
    let cal = meterflow_model::calendar::Calendar::shipped();
    if !site.alert_rules.is_empty() && cal.source(year).is_none() {
        warnings.push(format!(
            "the working calendar has no holiday notice for {year} (it has {}): rules without their own workdays treat Monday to Friday as worked; update meterflow or set workdays and holidays on the rules",
            cal.years()
                .iter()
                .map(i32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for w in &warnings {
        println!("  warning   {w}");
    }
    ExitCode::SUCCESS
}

/// `(key, what is wrong, text to find its line by)` for every secret the
/// site names that `run` could not read here: an unset environment
/// variable, or a secret file that cannot be read.
fn missing_secrets(site: &meterflow_model::Site) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut env = |key: String, var: &str| {
        if std::env::var_os(var).is_none() {
            out.push((
                key,
                format!("environment variable {var} is not set (`run` needs it)"),
                format!("\"{var}\""),
            ));
        }
    };
    if let Some(i) = &site.influx {
        for v in [&i.token_env, &i.password_env].into_iter().flatten() {
            let key = if Some(v) == i.token_env.as_ref() {
                "token_env"
            } else {
                "password_env"
            };
            env(format!("influx.{key}"), v);
        }
    }
    for (n, b) in site.mqtt.iter().enumerate() {
        if let Some(v) = &b.password_env {
            env(format!("mqtt[{n}].password_env"), v);
        }
    }
    if let Some(h) = &site.http {
        env("http.token_env".into(), &h.token_env);
    }
    if let Some(a) = &site.api
        && let Some(v) = &a.tokens_env
    {
        env("api.tokens_env".into(), v);
    }
    for (n, x) in site.notifiers.iter().enumerate() {
        for (key, v) in [("url_env", &x.url_env), ("secret_env", &x.secret_env)] {
            if let Some(v) = v {
                env(format!("notifier[{n}].{key}"), v);
            }
        }
    }
    let mut file = |key: String, f: &std::path::Path| {
        let p = site.relative(f);
        if let Err(e) = std::fs::File::open(&p) {
            out.push((
                key,
                format!("cannot read {}: {e} (`run` needs it)", p.display()),
                f.display().to_string(),
            ));
        }
    };
    if let Some(i) = &site.influx {
        for (key, f) in [
            ("token_file", &i.token_file),
            ("password_file", &i.password_file),
        ] {
            if let Some(f) = f {
                file(format!("influx.{key}"), f);
            }
        }
    }
    for (n, b) in site.mqtt.iter().enumerate() {
        if let Some(f) = &b.password_file {
            file(format!("mqtt[{n}].password_file"), f);
        }
    }
    if let Some(a) = &site.api
        && let Some(f) = &a.tokens_file
    {
        file("api.tokens_file".into(), f);
    }
    for (n, x) in site.notifiers.iter().enumerate() {
        if let Some(f) = &x.secret_file {
            file(format!("notifier[{n}].secret_file"), f);
        }
    }
    out
}
