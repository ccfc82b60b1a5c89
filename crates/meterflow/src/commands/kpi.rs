//! `meterflow kpi`: the KPI table of a period, printed per agency with a row
//! per building and one for the site.

use anyhow::Context;
use chrono::Duration;
use meterflow_kpi::{KpiContext, Scope, period_of};
use meterflow_store::Reader;

/// `meterflow kpi`: print the KPI table of every agency (or one).
pub(crate) fn run(
    config: &std::path::Path,
    year: i32,
    month: Option<u32>,
    agency: Option<&str>,
) -> anyhow::Result<std::process::ExitCode> {
    let site = match super::load_site(config) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    let Some(period) = period_of(year, month) else {
        eprintln!(
            "error: no such period: {year}{}",
            month.map(|m| format!("-{m}")).unwrap_or_default()
        );
        return Ok(std::process::ExitCode::from(crate::EXIT_CONFIG));
    };
    let path = site.store_path();
    if !path.exists() {
        eprintln!(
            "error: no store at {} yet: import or run first",
            path.display()
        );
        return Ok(std::process::ExitCode::FAILURE);
    }
    // Opening the writer brings the scope rollups up to date when the site
    // file's hierarchy changed since they were written (an agency moved).
    drop(
        meterflow_store::Writer::open(&site)
            .with_context(|| format!("opening {}", path.display()))?,
    );
    let reader = Reader::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let ids: Vec<String> = match agency {
        Some(a) if site.agencies.iter().any(|x| x.id == a) => vec![a.to_string()],
        Some(a) => {
            eprintln!("error: no agency `{a}` in {}", config.display());
            return Ok(std::process::ExitCode::from(crate::EXIT_CONFIG));
        }
        None => site.agencies.iter().map(|a| a.id.clone()).collect(),
    };
    println!(
        "{} to {} (factor set {}, grid {}), electricity kWh, water m³, gas m³, heat GJ",
        period.from,
        period.to - Duration::days(1),
        site.site.factor_set,
        site.site.grid_region
    );
    println!(
        "{:<8} {:>11} {:>9} {:>9} {:>8} {:>11} {:>8} {:>8} {:>12} {:>10} {:>9} {:>9} {:>7}",
        "scope",
        "electricity",
        "water",
        "gas",
        "heat",
        "kgce",
        "CO2 t",
        "persons",
        "kgce/person",
        "kgce/m2",
        "m3/person",
        "L/p·d",
        "compl%"
    );
    let f = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.3}"));
    let mut notes = Vec::new();
    let kpi = KpiContext::new(&site);
    let mut scopes: Vec<Scope> = ids.iter().map(|id| Scope::Agency(id.clone())).collect();
    if agency.is_none() {
        scopes.extend(site.buildings.iter().map(|b| Scope::Building(b.id.clone())));
        scopes.push(Scope::Site);
    }
    let mut rows = Vec::new();
    for scope in &scopes {
        rows.push(kpi.scope_kpis(&reader, scope, period)?);
    }
    for (scope, k) in scopes.iter().zip(&rows) {
        // The energy cost with the site's tariffs, and an agency's budget.
        if !site.tariffs.is_empty() {
            let c = kpi.cost(&reader, scope, period)?;
            let parts: Vec<String> = c
                .carriers
                .iter()
                .map(|x| {
                    let periods: Vec<String> = x
                        .periods
                        .iter()
                        .filter(|p| !p.period.is_empty())
                        .map(|p| format!("{} {:.1} kWh", p.period, p.quantity))
                        .collect();
                    let mut t = format!("{} {:.2}", x.carrier, x.cny());
                    if !periods.is_empty() {
                        t.push_str(&format!(" ({})", periods.join(", ")));
                    }
                    for f in &x.fixed {
                        t.push_str(&format!(
                            " ({} {} {}: {:.2} of {:.2})",
                            f.month, f.tariff, f.kind, f.cny, f.account_cny
                        ));
                    }
                    if x.surcharge_cny > 0.0 {
                        t.push_str(&format!(
                            " (surcharge above the quota {:.2})",
                            x.surcharge_cny
                        ));
                    }
                    t
                })
                .collect();
            notes.push(format!(
                "{}: energy cost {:.2} CNY: {}",
                k.agency,
                c.total_cny,
                parts.join("; ")
            ));
            for u in &c.unpriced {
                notes.push(format!("{}: not priced: {u}", k.agency));
            }
        }
        if let Scope::Agency(a) = scope
            && period.days() > 31
            && let Some(b) = kpi.budget(&reader, a, chrono::Datelike::year(&period.from))?
        {
            notes.push(format!(
                "{}: budget {:.0} CNY, {:.2} spent = {:.0} % of it pro-rated; {}",
                k.agency,
                b.budget_cny,
                b.to_date_cny,
                b.ratio_to_date * 100.0,
                match (b.projected_cny, b.projected_ratio) {
                    (Some(p), Some(r)) => format!("projected {p:.0} = {:.0} %", r * 100.0),
                    _ => "no projection yet".to_string(),
                }
            ));
        }
    }
    for k in &rows {
        let c = &k.carriers;
        println!(
            "{:<8} {:>11.1} {:>9.2} {:>9.2} {:>8.2} {:>11.1} {:>8.2} {:>8.1} {:>12} {:>10} {:>9} {:>9} {:>7.1}",
            k.agency,
            c.electricity_kwh,
            c.water_m3,
            c.gas_m3,
            c.heat_gj,
            k.energy_kgce,
            k.co2_t.unwrap_or(f64::NAN),
            k.persons,
            f(k.per_capita_energy),
            f(k.per_area_energy),
            f(k.water_per_capita),
            f(k.water_l_per_person_day),
            k.completeness_pct
        );
        for g in &k.grades {
            let stat = g.statistics_value.map_or(String::new(), |s| {
                format!(" ({s:.2} with the statistics factor)")
            });
            notes.push(format!(
                "{}: {} {:.2} {} at {} kgce/kWh{stat} → {}",
                k.agency, g.indicator, g.value, g.unit, g.electricity_factor, g.grade
            ));
        }
        for y in &k.yoy {
            notes.push(format!(
                "{}: {} {:+.1} % year on year ({:.3} vs {:.3})",
                k.agency, y.indicator, y.pct, y.now, y.before
            ));
        }
        if let Some(w) = &k.yoy_window
            && !k.yoy.is_empty()
        {
            notes.push(format!(
                "{}: year on year over {} – {} ({} days with data in both years)",
                k.agency, w.from, w.to, w.days
            ));
        }
        if let Some(t) = &k.tracking {
            let projection = match (t.projected, t.projected_ratio, t.method) {
                (Some(p), Some(r), Some(m)) => format!(
                    "projected year end {p:.2} = {:.0} % of it ({})",
                    r * 100.0,
                    m.as_str()
                ),
                _ => "no projection yet".to_string(),
            };
            notes.push(format!(
                "{}: year to {} ({} days with data): {:.2} kgce/person, {:.0} % of the 约束值 pro-rated; {projection}",
                k.agency,
                k.last_day.map(|d| d.to_string()).unwrap_or_default(),
                k.days_with_data,
                t.to_date,
                t.ratio_to_date * 100.0,
            ));
        }
        for r in &k.reductions {
            notes.push(format!(
                "{}: {} {:.3} vs {:.3} in {} ({}): {:.1} % reduction, plan requires {:.1} % by {} ({:.1} % on the linear path) → {}",
                k.agency,
                r.indicator,
                r.value,
                r.base,
                r.base_year,
                r.plan,
                r.reduction_pct,
                r.required_pct,
                r.target_year,
                r.path_pct,
                r.status.as_str()
            ));
        }
        let others: Vec<String> = [
            ("cooling GJ", c.cooling_gj),
            ("LPG kg", c.lpg_kg),
            ("coal kg", c.coal_kg),
            ("steam kg", c.steam_kg),
            ("fuel oil kg", c.fuel_oil_kg),
        ]
        .iter()
        .filter(|(_, v)| *v != 0.0)
        .map(|(n, v)| format!("{n} {v:.2}"))
        .collect();
        if !others.is_empty() {
            notes.push(format!("{}: also {}", k.agency, others.join(", ")));
        }
        if let Some(y) = k.carbon.grid_factor_year {
            notes.push(format!("{}: grid CO₂ factor of {y}", k.agency));
        }
        for w in &k.carbon.warnings {
            notes.push(format!("{}: {w}", k.agency));
        }
        for (meter, v) in &k.imbalance_clipped {
            notes.push(format!(
                "{}: sub-meters of {meter} read {v:.3} more than it: that negative remainder counts as zero",
                k.agency
            ));
        }
        for (figure, reason) in &k.withheld {
            notes.push(format!("{}: {figure} not given: {reason}", k.agency));
        }
        for u in &k.unverified {
            notes.push(format!(
                "{}: factor `{u}` is grade C (unverified)",
                k.agency
            ));
        }
    }
    for n in notes {
        println!("  {n}");
    }
    Ok(std::process::ExitCode::SUCCESS)
}
