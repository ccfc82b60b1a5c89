//! Gathers the year's figures from the store and the ledgers (through the
//! same KPI service the API and the dashboards use) into plain rows, and
//! hands them to this crate's table work and writers (ADR 0012).

use std::path::Path;

use crate::{CostRow, DayRow, Format, Input, Profile, ScopeRow, SourceRow, VehicleRow, WasteRow};
use anyhow::Context;
use chrono::Datelike;
use meterflow_core::aggregate::{Grain, Level};
use meterflow_core::kpi::{Carriers, comprehensive_energy};
use meterflow_core::time::day_start;
use meterflow_model::{EnergyClass, Site};
use meterflow_store::Reader;

use meterflow_kpi::{KpiContext, Scope, ScopeKpis, period_of};

/// What to export.
#[derive(Debug, Clone)]
pub struct Request {
    /// Calendar year.
    pub year: i32,
    /// One agency only (its row and its months); `None` = every scope.
    pub agency: Option<String>,
    /// Profile.
    pub profile: Profile,
}

#[allow(clippy::too_many_arguments)]
fn scope_row(
    site: &Site,
    kpi: &KpiContext,
    costs: &mut Vec<CostRow>,
    reader: &Reader,
    scope: &Scope,
    k: &ScopeKpis,
    year: i32,
    from: i64,
    to: i64,
) -> anyhow::Result<ScopeRow> {
    let c = &k.carriers;
    let vehicle = comprehensive_energy(
        &Carriers {
            gasoline_l: c.gasoline_l,
            diesel_l: c.diesel_l,
            ..Carriers::default()
        },
        &site.factors,
        &site.site.factor_set,
        year,
    )
    .map_or(0.0, |e| e.total);
    let (level, id, name) = match scope {
        Scope::Agency(a) => (
            Level::Agency,
            a.clone(),
            site.agencies
                .iter()
                .find(|x| &x.id == a)
                .map_or_else(|| a.clone(), |x| x.name.clone()),
        ),
        Scope::Building(b) => (
            Level::Building,
            b.clone(),
            site.buildings
                .iter()
                .find(|x| &x.id == b)
                .and_then(|x| x.name.clone())
                .unwrap_or_else(|| b.clone()),
        ),
        Scope::Site => (Level::Site, "site".to_string(), site.site.name.clone()),
    };
    // Estimated share from the day rollups' quality counts.
    let (mut measured, mut estimated) = (0i64, 0i64);
    for class in [
        EnergyClass::Electricity,
        EnergyClass::Water,
        EnergyClass::Gas,
        EnergyClass::Heat,
    ] {
        for r in reader.agg(level, &id, class, "", Grain::Day, from, to)? {
            measured += r.measured;
            estimated += r.estimated;
        }
    }
    // Anomalies of the meters whose data reaches the scope.
    let meters: Vec<&str> = site
        .meters
        .iter()
        .filter(|m| match scope {
            Scope::Agency(a) => meterflow_kpi::ownership::meter_of_agency(site, m, a),
            Scope::Building(b) => meter_in_building(site, m, b),
            Scope::Site => true,
        })
        .map(|m| m.id.as_str())
        .collect();
    let anomalies = reader
        .anomalies(None, from, to)?
        .iter()
        // A configured meter replacement is logged with the anomalies but is
        // planned work, not a data-quality finding.
        .filter(|a| a.kind != "replacement" && meters.contains(&a.meter.as_str()))
        .count() as i64;
    // The year's cost with the site's tariffs.
    let cost = if site.tariffs.is_empty() {
        None
    } else {
        let period = meterflow_kpi::period_of(year, None).context("no such year")?;
        Some(kpi.cost(reader, scope, period)?)
    };
    // The cost table: this scope's months by carrier.
    if let Some(c) = &cost {
        let (lv, sid) = match scope {
            Scope::Agency(a) => ("agency", a.clone()),
            Scope::Building(b) => ("building", b.clone()),
            Scope::Site => ("site", "site".to_string()),
        };
        for car in &c.carriers {
            for (month, cny) in &car.by_month {
                let m = month
                    .get(5..7)
                    .and_then(|m| m.parse::<i32>().ok())
                    .unwrap_or(0);
                costs.push(CostRow {
                    level: lv.to_string(),
                    id: sid.clone(),
                    month: m,
                    carrier: car.carrier.clone(),
                    cny: *cny,
                });
            }
        }
    }
    let part = |carrier: &str| {
        cost.as_ref().map(|c| {
            c.carriers
                .iter()
                .filter(|x| x.carrier == carrier)
                .map(|x| x.cny())
                .sum::<f64>()
        })
    };
    let peak_share_pct = cost.as_ref().and_then(|c| {
        let e = c.carriers.iter().find(|x| x.carrier == "electricity")?;
        (e.quantity > 0.0).then(|| {
            e.periods
                .iter()
                .filter(|p| p.period == "peak" || p.period == "critical")
                .map(|p| p.quantity)
                .sum::<f64>()
                / e.quantity
                * 100.0
        })
    });
    Ok(ScopeRow {
        cost_cny: cost.as_ref().map(|c| c.total_cny),
        electricity_cny: part("electricity"),
        water_cny: part("water"),
        peak_share_pct,
        level: level.as_str().to_string(),
        id,
        name,
        electricity_kwh: c.electricity_kwh,
        gas_m3: c.gas_m3,
        heat_gj: c.heat_gj,
        cooling_gj: c.cooling_gj,
        lpg_kg: c.lpg_kg,
        coal_kg: c.coal_kg,
        steam_kg: c.steam_kg,
        fuel_oil_kg: c.fuel_oil_kg,
        gasoline_l: c.gasoline_l,
        diesel_l: c.diesel_l,
        water_m3: c.water_m3,
        energy_kgce: k.energy_kgce,
        vehicle_kgce: vehicle,
        co2_t: k.co2_t,
        yoy: k.yoy.iter().map(|y| (y.indicator.clone(), y.pct)).collect(),
        water_days: k.water_days as f64,
        coverage_pct: k.coverage_pct,
        withheld: k.withheld.clone(),
        persons: k.persons,
        area_m2: k.area_m2,
        completeness_pct: k.completeness_pct,
        estimated_pct: (measured + estimated > 0)
            .then(|| estimated as f64 * 100.0 / (measured + estimated) as f64),
        anomalies,
        grades: k
            .grades
            .iter()
            .map(|g| (g.indicator.clone(), g.grade.to_string()))
            .collect(),
        reductions: k
            .reductions
            .iter()
            .map(|r| {
                (
                    r.indicator.clone(),
                    r.reduction_pct,
                    r.required_pct,
                    r.met(),
                )
            })
            .collect(),
    })
}

/// A meter reaches a building when it serves the building or one of its
/// zones, or serves an agency (directly or by shares) that occupies space
/// there at some time.
fn meter_in_building(site: &Site, m: &meterflow_model::config::Meter, b: &str) -> bool {
    let zone_in_b = |z: &str| site.zones.iter().any(|x| x.id == z && x.building == b);
    m.serves.building.as_deref() == Some(b)
        || m.serves.zone.as_deref().is_some_and(zone_in_b)
        || meterflow_kpi::ownership::meter_agencies(m).iter().any(|a| {
            site.spaces.iter().any(|s| {
                &s.agency == a
                    && (s.building.as_deref() == Some(b)
                        || s.zone.as_deref().is_some_and(zone_in_b))
            })
        })
}

/// Gather the export's input from the store. `progress` is told each step.
pub fn gather(
    site: &Site,
    reader: &Reader,
    req: &Request,
    progress: &dyn Fn(&str),
) -> anyhow::Result<Input> {
    let year = req.year;
    let period = period_of(year, None).context("no such year")?;
    let (from, to) = (
        day_start(period.from, site.tz),
        day_start(period.to, site.tz),
    );
    let kpi = KpiContext::new(site);
    let scopes: Vec<Scope> = match &req.agency {
        Some(a) => vec![Scope::Agency(a.clone())],
        None => meterflow_kpi::scopes(site),
    };
    let mut rows = Vec::new();
    let mut costs: Vec<CostRow> = Vec::new();
    let mut grid_year = None;
    let mut carbon_warnings = std::collections::BTreeSet::new();
    let mut unverified = std::collections::BTreeSet::new();
    let mut days = Vec::new();
    let mut last_day: Option<chrono::NaiveDate> = None;
    for (i, scope) in scopes.iter().enumerate() {
        progress(&format!("{} ({}/{})", scope.label(), i + 1, scopes.len()));
        let k = kpi.scope_kpis(reader, scope, period)?;
        unverified.extend(k.unverified.iter().cloned());
        last_day = last_day.max(k.last_day);
        grid_year = grid_year.or(k.carbon.grid_factor_year);
        carbon_warnings.extend(k.carbon.warnings.iter().cloned());
        rows.push(scope_row(
            site, &kpi, &mut costs, reader, scope, &k, year, from, to,
        )?);
        let (level, id) = match scope {
            Scope::Agency(a) => (Level::Agency, a.as_str()),
            Scope::Building(b) => (Level::Building, b.as_str()),
            Scope::Site => (Level::Site, "site"),
        };
        for (class, carrier, unit) in [
            (EnergyClass::Electricity, "electricity", "kWh"),
            (EnergyClass::Water, "water", "m³"),
            (EnergyClass::Gas, "gas", "m³"),
            (EnergyClass::Heat, "heat", "GJ"),
            (EnergyClass::Cooling, "cooling", "GJ"),
            (EnergyClass::Lpg, "lpg", "kg"),
            (EnergyClass::Coal, "coal", "kg"),
            (EnergyClass::Steam, "steam", "kg"),
            (EnergyClass::FuelOil, "fuel_oil", "kg"),
        ] {
            for r in reader.agg(level, id, class, "", Grain::Day, from, to)? {
                let day = meterflow_core::time::local_date(r.start_ms, site.tz);
                days.push(DayRow {
                    level: level.as_str().to_string(),
                    id: id.to_string(),
                    month: day.month() as i32,
                    carrier: carrier.to_string(),
                    unit: unit.to_string(),
                    quantity: r.value,
                });
            }
        }
    }
    progress("ledgers");
    let ledger = meterflow_store::LedgerDb::open(&site.store_path())?;
    let weigh_ins: Vec<meterflow_ledgers::waste::WeighIn> = ledger
        .effective("waste", "weigh_in", from, to)?
        .iter()
        .filter_map(|e| serde_json::from_str(&e.body).ok())
        .collect();
    let wanted = |a: &str| req.agency.as_deref().is_none_or(|x| x == a);
    let waste = meterflow_ledgers::waste::summarize(site, &weigh_ins)
        .into_iter()
        .filter(|s| wanted(&s.agency))
        .map(|s| {
            let kg = |c: &str| s.kg_by_category.get(c).copied().unwrap_or(0.0);
            WasteRow {
                agency: s.agency.clone(),
                kg: [
                    kg("recyclable"),
                    kg("kitchen"),
                    kg("hazardous"),
                    kg("residual"),
                ],
                total_kg: s.total_kg,
                recovery_rate_pct: s.recovery_rate_pct,
                points: s.points,
                veto: s.veto,
            }
        })
        .collect();
    let fleet = meterflow_ledgers::vehicles::summarize(
        site,
        &ledger.ledger_until("vehicles", i64::MAX)?,
        from,
        to,
    );
    let vehicles = site
        .agencies
        .iter()
        .filter(|a| wanted(&a.id))
        .map(|a| {
            let mine: Vec<_> = fleet.vehicles.iter().filter(|v| v.agency == a.id).collect();
            VehicleRow {
                agency: a.id.clone(),
                vehicles: mine.len() as i64,
                // `+ 0.0`: an empty f64 sum is −0.0, which a CSV would show.
                km: mine.iter().map(|v| v.km).sum::<f64>() + 0.0,
                litres: mine.iter().map(|v| v.litres).sum::<f64>() + 0.0,
                cost_cny: mine.iter().map(|v| v.total_cny).sum::<f64>() + 0.0,
            }
        })
        .collect();

    // Factors in force for the year, the quota set and the plan targets.
    let set = &site.site.factor_set;
    let mut sources = Vec::new();
    let grid = format!("co2.grid.{}", site.site.grid_region);
    for ind in [
        "kgce.electricity",
        "kgce.natural_gas",
        "kgce.gasoline",
        "kgce.diesel",
        "kgce.heat",
        "density.gasoline",
        "density.diesel",
        grid.as_str(),
        "co2.natural_gas",
        "co2.gasoline",
        "co2.diesel",
        "co2.heat",
    ] {
        let row = if ind == grid {
            meterflow_core::kpi::factor_nearest_year(
                &site.factors,
                set,
                ind,
                year,
                site.site.carbon_factor_year,
            )
            .map(|(f, _)| f)
        } else {
            site.factors.factor_for_year(set, ind, year)
        };
        if let Some(f) = row {
            sources.push(SourceRow {
                kind: "factor".into(),
                name: f.indicator.clone(),
                value: f.value,
                unit: format!("{}/{}", f.unit_out, f.unit_in),
                source: f.source.clone(),
                grade: format!("{:?}", f.confidence),
            });
        }
    }
    if let Some(qs) = site.site.quota_set.as_deref() {
        for q in site.factors.quotas_of(qs) {
            sources.push(SourceRow {
                kind: "quota".into(),
                name: format!("{} ({})", q.indicator, q.quota_set),
                value: q.constraint,
                unit: q.unit.clone(),
                source: q.source.clone(),
                grade: format!("{:?}", q.confidence),
            });
        }
    }
    for t in site
        .factors
        .targets
        .iter()
        .filter(|t| t.base_year < year && year <= t.target_year)
    {
        sources.push(SourceRow {
            kind: "target".into(),
            name: format!("{} {} (base {})", t.plan, t.indicator, t.base_year),
            value: t.reduction_pct,
            unit: "%".into(),
            source: t.source.clone(),
            grade: format!("{:?}", t.confidence),
        });
    }
    let mut warnings: Vec<String> = unverified
        .iter()
        .map(|f| format!("factor {f} is grade C (unverified): check it before filing"))
        .collect();
    warnings.extend(carbon_warnings);
    let threshold = site.site.completeness_threshold_pct;
    for r in &rows {
        if r.coverage_pct < threshold {
            warnings.push(format!(
                "{} {}: data coverage {:.2} % below the {threshold} % threshold (missing buckets)",
                r.level, r.id, r.coverage_pct
            ));
        }
        for (figure, reason) in &r.withheld {
            warnings.push(format!(
                "{} {}: {figure} not given: {reason}",
                r.level, r.id
            ));
        }
    }
    let conventions = conventions(site, req.profile);
    let data_through = last_day.map(|d| d.to_string());
    let days_in_year = f64::from(period.days() as u32);
    Ok(Input {
        site: site.site.name.clone(),
        year,
        profile: req.profile,
        factor_set: set.clone(),
        grid_factor_year: grid_year,
        water_days: match req.profile {
            Profile::National => days_in_year,
            Profile::QuotaStandard => 250.0,
        },
        data_through,
        scopes: rows,
        costs,
        conventions,
        days,
        waste,
        vehicles,
        sources,
        warnings,
    })
}

/// The conventions the export's figures follow, for its cover.
fn conventions(site: &Site, profile: Profile) -> Vec<(String, String)> {
    let threshold = site.site.completeness_threshold_pct;
    let remainders: Vec<String> = site
        .meters
        .iter()
        .filter(|m| m.remainder != meterflow_model::config::Remainder::AreaShare)
        .map(|m| format!("{} {:?}", m.id, m.remainder))
        .collect();
    vec![
        (
            "同比口径 YoY window".to_string(),
            format!(
                "同期有数据的日历日 (same calendar days with data in both years, 29 Feb left out); withheld below {threshold} % coverage"
            ),
        ),
        (
            "下降率口径 Reductions".to_string(),
            format!(
                "完整自然年 (complete calendar years only, this year and the base year ≥ {threshold} % coverage); a running year is tracked, never met"
            ),
        ),
        (
            "分摊口径 Allocation".to_string(),
            if remainders.is_empty() {
                "按面积分摊 (area share); agency area = occupied + same share of common area (公摊)"
                    .to_string()
            } else {
                format!(
                    "按面积分摊 (area share), except remainders: {}; agency area = occupied + common area by the building main meter's key",
                    remainders.join(", ")
                )
            },
        ),
        (
            "碳排放因子口径 Grid CO₂ factor".to_string(),
            site.site.carbon_factor_year.map_or_else(
                || "最近发布年份 (nearest published data year; earlier on a tie)".to_string(),
                |y| format!("固定 {y} 年 (fixed data year {y} for every year)"),
            ),
        ),
        (
            "人均日用水口径 Water per person-day".to_string(),
            match profile {
                Profile::National => "有用水数据的天数 (days with water data)".to_string(),
                Profile::QuotaStandard => "250 个工作日 (250 working days)".to_string(),
            },
        ),
    ]
}

/// Export to `out` in `format`; the files written.
pub fn export(
    site: &Site,
    req: &Request,
    format: Format,
    out: &Path,
    progress: &dyn Fn(&str),
) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let path = site.store_path();
    anyhow::ensure!(
        path.exists(),
        "no store at {} yet: import or run first",
        path.display()
    );
    let reader = Reader::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let input = gather(site, &reader, req, progress)?;
    progress("tables");
    let tables = crate::build(&input)?;
    progress("writing");
    crate::write(&tables, format, out)
}
