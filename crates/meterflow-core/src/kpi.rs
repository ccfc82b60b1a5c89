//! KPI maths of `docs/methodology.md` §4–§5 (the annual indicators). Factors come from
//! the registry; nothing here hard-codes a coefficient.

use meterflow_model::factors::{FactorRegistry, FactorRow, Grade};

/// Annual quantities by carrier for one entity.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Carriers {
    /// Electricity, kWh.
    pub electricity_kwh: f64,
    /// Natural gas, m³.
    pub gas_m3: f64,
    /// Vehicle gasoline, L.
    pub gasoline_l: f64,
    /// Vehicle diesel, L.
    pub diesel_l: f64,
    /// District heat, GJ.
    pub heat_gj: f64,
    /// Water, m³ (not energy).
    pub water_m3: f64,
    /// District cooling, GJ (energy only where the factor set has
    /// `kgce.cooling`; GB/T 2589 gives none).
    pub cooling_gj: f64,
    /// LPG, kg.
    pub lpg_kg: f64,
    /// Raw coal, kg.
    pub coal_kg: f64,
    /// Purchased low-pressure steam, kg.
    pub steam_kg: f64,
    /// Fuel oil, kg.
    pub fuel_oil_kg: f64,
}

/// Comprehensive energy with its parts, kgce.
#[derive(Debug, Clone)]
pub struct Energy {
    /// Electricity part.
    pub electricity: f64,
    /// Gas part.
    pub gas: f64,
    /// Gasoline part.
    pub gasoline: f64,
    /// Diesel part.
    pub diesel: f64,
    /// Heat part.
    pub heat: f64,
    /// LPG, coal, steam, fuel oil and (with a factor) cooling.
    pub other: f64,
    /// Carriers with a quantity left out of `total` for want of a factor
    /// (only cooling, whose coefficient no standard gives).
    pub unconverted: Vec<String>,
    /// E = Σ qᵢ × kᵢ (water excluded).
    pub total: f64,
    /// Factors used (for the export's factor sheet and grade-C warnings).
    pub factors: Vec<FactorRow>,
}

impl Energy {
    /// Vehicle fuel part (gasoline + diesel).
    pub fn vehicle_fuel(&self) -> f64 {
        self.gasoline + self.diesel
    }

    /// Indicators of factors used that are unverified (grade C).
    pub fn unverified(&self) -> Vec<&str> {
        self.factors
            .iter()
            .filter(|f| f.confidence == Grade::C)
            .map(|f| f.indicator.as_str())
            .collect()
    }
}

/// A factor the registry does not have.
#[derive(Debug, Clone, PartialEq)]
pub struct MissingFactor {
    /// Factor set searched.
    pub factor_set: String,
    /// Indicator missing.
    pub indicator: String,
    /// Year searched.
    pub year: i32,
}

/// Comprehensive energy of `year` in kgce (`docs/methodology.md` §4–§5): E = Σ qᵢ × kᵢ;
/// fuel litres become kg through the registry's densities.
pub fn comprehensive_energy(
    q: &Carriers,
    reg: &FactorRegistry,
    factor_set: &str,
    year: i32,
) -> Result<Energy, MissingFactor> {
    let mut used = Vec::new();
    let mut f = |indicator: &str| -> Result<f64, MissingFactor> {
        let row = reg
            .factor_for_year(factor_set, indicator, year)
            .ok_or_else(|| MissingFactor {
                factor_set: factor_set.to_string(),
                indicator: indicator.to_string(),
                year,
            })?;
        used.push(row.clone());
        Ok(row.value)
    };
    let electricity = q.electricity_kwh * f("kgce.electricity")?;
    let gas = q.gas_m3 * f("kgce.natural_gas")?;
    let gasoline = if q.gasoline_l != 0.0 {
        q.gasoline_l * f("density.gasoline")? * f("kgce.gasoline")?
    } else {
        0.0
    };
    let diesel = if q.diesel_l != 0.0 {
        q.diesel_l * f("density.diesel")? * f("kgce.diesel")?
    } else {
        0.0
    };
    // The registry states heat per MJ; 1 GJ = 1000 MJ.
    let heat = q.heat_gj * 1000.0 * f("kgce.heat")?;
    let mut other = 0.0;
    for (qty, indicator) in [
        (q.lpg_kg, "kgce.lpg"),
        (q.coal_kg, "kgce.raw_coal"),
        (q.steam_kg, "kgce.steam_lp"),
        (q.fuel_oil_kg, "kgce.fuel_oil"),
    ] {
        if qty != 0.0 {
            other += qty * f(indicator)?;
        }
    }
    let mut unconverted = Vec::new();
    if q.cooling_gj != 0.0 {
        match reg.factor_for_year(factor_set, "kgce.cooling", year) {
            Some(row) => {
                other += q.cooling_gj * row.value;
                used.push(row.clone());
            }
            None => unconverted.push("cooling".to_string()),
        }
    }
    let total = electricity + gas + gasoline + diesel + heat + other;
    Ok(Energy {
        electricity,
        gas,
        gasoline,
        diesel,
        heat,
        other,
        unconverted,
        total,
        factors: used,
    })
}

/// CO₂ of one carrier.
#[derive(Debug, Clone, PartialEq)]
pub struct CarbonPart {
    /// `electricity`, `gas`, `gasoline`, `diesel` or `heat`.
    pub carrier: &'static str,
    /// kg CO₂.
    pub kg: f64,
    /// Factor row indicator used.
    pub indicator: String,
    /// Factor value (kg CO₂ per unit of the row).
    pub factor: f64,
    /// Data year of a year-specific factor (the grid's); `None` for the others.
    pub factor_year: Option<i32>,
}

/// CO₂ of a scope's carriers in one year (`docs/methodology.md` §6).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Carbon {
    /// kg CO₂ of every carrier; `None` when a carrier with a quantity has no
    /// factor (never counted as zero: see `missing`).
    pub total_kg: Option<f64>,
    /// Per carrier with a quantity and a factor.
    pub parts: Vec<CarbonPart>,
    /// Data year of the grid factor used, when electricity was converted.
    pub grid_factor_year: Option<i32>,
    /// Factors missing for carriers that have a quantity.
    pub missing: Vec<String>,
    /// Notes for the reader, e.g. a grid factor of another year than the data.
    pub warnings: Vec<String>,
    /// Factor rows used.
    pub factors: Vec<FactorRow>,
}

/// Data year of a year-specific factor row (the year its range starts).
fn data_year(r: &FactorRow) -> Option<i32> {
    use chrono::Datelike;
    r.effective_from
        .as_ref()
        .and_then(meterflow_model::factors::to_date)
        .map(|d| d.year())
}

/// The row of `indicator` for data year `year`: a row without dates serves
/// every year; among year-specific rows, the one of `fixed` (when the site
/// pins a year) or of `year`, else the published year nearest to it, the
/// earlier on a tie. Returns the row and its data year.
pub fn factor_nearest_year<'a>(
    reg: &'a FactorRegistry,
    factor_set: &str,
    indicator: &str,
    year: i32,
    fixed: Option<i32>,
) -> Option<(&'a FactorRow, Option<i32>)> {
    let rows: Vec<&FactorRow> = reg
        .factors
        .iter()
        .filter(|r| r.factor_set == factor_set && r.indicator == indicator)
        .collect();
    if let Some(r) = rows
        .iter()
        .find(|r| r.effective_from.is_none() && r.effective_to.is_none())
    {
        return Some((r, None));
    }
    let want = fixed.unwrap_or(year);
    if let Some(r) = reg.factor_for_year(factor_set, indicator, want) {
        return Some((r, data_year(r).or(Some(want))));
    }
    rows.into_iter()
        .filter_map(|r| data_year(r).map(|y| (r, y)))
        .min_by_key(|(_, y)| ((*y - want).abs(), *y))
        .map(|(r, y)| (r, Some(y)))
}

/// CO₂ of `q` in data year `year`: grid electricity with the `grid`
/// indicator's factor of the nearest published year (or `fixed`), natural
/// gas, vehicle gasoline and diesel (litres through the registry's
/// densities), purchased heat. A carrier with a quantity and no factor makes
/// the total absent, never zero.
pub fn carbon(
    q: &Carriers,
    reg: &FactorRegistry,
    factor_set: &str,
    grid: &str,
    year: i32,
    fixed: Option<i32>,
) -> Carbon {
    let mut out = Carbon::default();
    let mut total = 0.0;
    let density = |ind: &str, out: &mut Carbon| -> Option<f64> {
        let r = reg.factor_for_year(factor_set, ind, year)?;
        out.factors.push(r.clone());
        Some(r.value)
    };
    let lines: [(&'static str, &str, f64, Option<&str>); 10] = [
        ("electricity", grid, q.electricity_kwh, None),
        ("gas", "co2.natural_gas", q.gas_m3, None),
        (
            "gasoline",
            "co2.gasoline",
            q.gasoline_l,
            Some("density.gasoline"),
        ),
        ("diesel", "co2.diesel", q.diesel_l, Some("density.diesel")),
        ("heat", "co2.heat", q.heat_gj, None),
        ("lpg", "co2.lpg", q.lpg_kg, None),
        ("coal", "co2.raw_coal", q.coal_kg, None),
        ("steam", "co2.steam_lp", q.steam_kg, None),
        ("fuel_oil", "co2.fuel_oil", q.fuel_oil_kg, None),
        ("cooling", "co2.cooling", q.cooling_gj, None),
    ];
    for (carrier, indicator, qty, dens) in lines {
        if qty == 0.0 {
            continue;
        }
        let amount = match dens {
            Some(d) => match density(d, &mut out) {
                Some(k) => qty * k,
                None => {
                    out.missing.push(d.to_string());
                    continue;
                }
            },
            None => qty,
        };
        let Some((row, fy)) = factor_nearest_year(reg, factor_set, indicator, year, fixed) else {
            out.missing.push(indicator.to_string());
            continue;
        };
        if let Some(fy) = fy {
            out.grid_factor_year = out.grid_factor_year.or(Some(fy));
            if fy != year {
                out.warnings.push(format!(
                    "{indicator}: no factor published for {year}; the {fy} factor ({}) is used",
                    row.value
                ));
            }
        }
        let kg = amount * row.value;
        total += kg;
        out.factors.push(row.clone());
        out.parts.push(CarbonPart {
            carrier,
            kg,
            indicator: indicator.to_string(),
            factor: row.value,
            factor_year: fy,
        });
    }
    out.total_kg = out.missing.is_empty().then_some(total);
    out
}

/// A ratio, `None` when the denominator is not positive.
pub fn per(numerator: f64, denominator: f64) -> Option<f64> {
    (denominator > 0.0).then(|| numerator / denominator)
}

/// Water per person-day, L/person·d: W × 1000 / (P × D).
pub fn water_l_per_person_day(water_m3: f64, persons: f64, days: f64) -> Option<f64> {
    per(water_m3 * 1000.0, persons * days)
}

/// Year-on-year change, %: (X_y − X_{y−1}) / X_{y−1} × 100.
pub fn yoy_pct(this: f64, last: f64) -> Option<f64> {
    per((this - last) * 100.0, last)
}

/// Cumulative reduction against a base year, %: (X_base − X_y) / X_base × 100.
pub fn cumulative_reduction_pct(base: f64, this: f64) -> Option<f64> {
    per((base - this) * 100.0, base)
}

/// Average annual reduction, %: (1 − (X_y / X_base)^(1/(y − base))) × 100.
pub fn annual_reduction_pct(base: f64, this: f64, years: i32) -> Option<f64> {
    if years <= 0 || base <= 0.0 || this < 0.0 {
        return None;
    }
    Some((1.0 - (this / base).powf(1.0 / f64::from(years))) * 100.0)
}

impl std::fmt::Display for MissingFactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "factor set `{}` has no `{}` for {}",
            self.factor_set, self.indicator, self.year
        )
    }
}

impl std::error::Error for MissingFactor {}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    /// The worked example of docs/methodology.md §5.
    #[test]
    fn worked_example() {
        let reg = FactorRegistry::shipped();
        let q = Carriers {
            electricity_kwh: 1_200_000.0,
            gas_m3: 50_000.0,
            gasoline_l: 8_000.0,
            diesel_l: 0.0,
            heat_gj: 3_000.0,
            water_m3: 9_000.0,
            ..Carriers::default()
        };
        let e = comprehensive_energy(&q, &reg, "cn-public-institution", 2025)
            .expect("shipped registry has every factor");
        // 1 200 000 × 0.1229 = 147 480
        assert!(close(e.electricity, 147_480.0, 1e-6), "{}", e.electricity);
        // 50 000 × 1.2143 = 60 715
        assert!(close(e.gas, 60_715.0, 1e-6), "{}", e.gas);
        // 8 000 × 0.73 × 1.4714 = 8 592.976
        assert!(close(e.gasoline, 8_592.976, 1e-6), "{}", e.gasoline);
        // 3 000 GJ × 34.12 = 102 360
        assert!(close(e.heat, 102_360.0, 1e-6), "{}", e.heat);
        // E = 147 480 + 60 715 + 8 592.976 + 102 360 = 319 147.976 ≈ 319 148
        assert!(close(e.total, 319_147.976, 1e-6), "{}", e.total);
        // 319 147.976 / 400 = 797.87
        assert!(close(per(e.total, 400.0).unwrap_or(0.0), 797.87, 0.005));
        // 319 147.976 / 20 000 = 15.957 → 15.96; without gasoline 310 555 / 20 000 = 15.53
        assert!(close(per(e.total, 20_000.0).unwrap_or(0.0), 15.96, 0.005));
        assert!(close(
            per(e.total - e.vehicle_fuel(), 20_000.0).unwrap_or(0.0),
            15.53,
            0.005
        ));
        // 9 000 / 400 = 22.5 m³/person; ×1000 / (400 × 250) = 90; / (400 × 365) = 61.6
        assert!(close(per(q.water_m3, 400.0).unwrap_or(0.0), 22.5, 1e-9));
        assert!(close(
            water_l_per_person_day(q.water_m3, 400.0, 250.0).unwrap_or(0.0),
            90.0,
            1e-9
        ));
        assert!(close(
            water_l_per_person_day(q.water_m3, 400.0, 365.0).unwrap_or(0.0),
            61.6,
            0.05
        ));
        // The gasoline density is grade C: the export must warn about it.
        assert_eq!(e.unverified(), vec!["density.gasoline"]);
    }

    #[test]
    fn reductions() {
        // 18.48 → 17.556 is exactly −5 %.
        assert!(close(
            cumulative_reduction_pct(18.48, 17.556).unwrap_or(0.0),
            5.0,
            1e-9
        ));
        // 100 → 81 over 2 years: 1 − 0.9 = 10 % a year.
        assert!(close(
            annual_reduction_pct(100.0, 81.0, 2).unwrap_or(0.0),
            10.0,
            1e-9
        ));
        assert!(close(yoy_pct(110.0, 100.0).unwrap_or(0.0), 10.0, 1e-9));
        assert_eq!(per(1.0, 0.0), None);
    }

    /// The figures' issue: a 2020 base year and a 2025 report year, every carrier.
    #[test]
    fn carbon_of_every_carrier_with_the_nearest_published_grid_year() {
        let reg = FactorRegistry::shipped();
        let q = Carriers {
            electricity_kwh: 100_000.0,
            gas_m3: 1_000.0,
            gasoline_l: 1_000.0,
            diesel_l: 100.0,
            heat_gj: 100.0,
            water_m3: 50.0,
            ..Carriers::default()
        };
        let set = "cn-public-institution";
        let c25 = carbon(&q, &reg, set, "co2.grid.national", 2025, None);
        // Grid 2025: nearest published is 2023 (0.5306): 100 000 × 0.5306 = 53 060 kg.
        // Gas 1 000 × 2.162 = 2 162. Gasoline 1 000 L × 0.73 × 2.925 = 2 135.25 (+2.135 t).
        // Diesel 100 × 0.85 × 3.096 = 263.16. Heat 100 GJ × 110 = 11 000.
        // Σ = 53 060 + 2 162 + 2 135.25 + 263.16 + 11 000 = 68 620.41 kg.
        let total = c25.total_kg.expect("every factor ships");
        assert!(close(total, 68_620.41, 1e-6), "{total}");
        let part = |c: &Carbon, k: &str| c.parts.iter().find(|p| p.carrier == k).map(|p| p.kg);
        assert!(close(part(&c25, "gasoline").unwrap_or(0.0), 2_135.25, 1e-9));
        assert!(close(part(&c25, "heat").unwrap_or(0.0), 11_000.0, 1e-9));
        assert_eq!(c25.grid_factor_year, Some(2023));
        assert!(
            c25.warnings
                .iter()
                .any(|w| w.contains("2025") && w.contains("2023"))
        );
        // 2020 (the base year, before the series starts): nearest is 2021, 0.5568:
        // 100 000 × 0.5568 = 55 680 kg, never zero.
        let c20 = carbon(&q, &reg, set, "co2.grid.national", 2020, None);
        assert_eq!(c20.grid_factor_year, Some(2021));
        assert!(close(
            part(&c20, "electricity").unwrap_or(0.0),
            55_680.0,
            1e-6
        ));
        // A data year with its own factor: 2022 → 0.5366, no warning.
        let c22 = carbon(&q, &reg, set, "co2.grid.national", 2022, None);
        assert_eq!(c22.grid_factor_year, Some(2022));
        assert!(c22.warnings.is_empty(), "{:?}", c22.warnings);
        // A fixed year for every year: 2022's factor for 2020 too.
        let fixed = carbon(&q, &reg, set, "co2.grid.national", 2020, Some(2022));
        assert!(close(
            part(&fixed, "electricity").unwrap_or(0.0),
            53_660.0,
            1e-6
        ));
        // A region without any factor: absent with the reason, never zero.
        let none = carbon(&q, &reg, set, "co2.grid.nowhere", 2025, None);
        assert_eq!(none.total_kg, None);
        assert_eq!(none.missing, vec!["co2.grid.nowhere".to_string()]);
    }

    /// LPG, coal, steam and fuel oil join comprehensive energy and CO₂ with
    /// the registry's rows; cooling, which no standard converts, is left
    /// out of both with its name, never counted as zero.
    #[test]
    fn the_other_carriers() {
        let reg = FactorRegistry::shipped();
        let set = "cn-public-institution";
        let q = Carriers {
            lpg_kg: 100.0,
            coal_kg: 1_000.0,
            steam_kg: 2_000.0,
            fuel_oil_kg: 50.0,
            ..Carriers::default()
        };
        let e = comprehensive_energy(&q, &reg, set, 2025).expect("factors ship");
        // 100 × 1.7143 + 1 000 × 0.7143 + 2 000 × 0.1286 + 50 × 1.4286
        // = 171.43 + 714.3 + 257.2 + 71.43 = 1 214.36 kgce.
        assert!(close(e.total, 1_214.36, 1e-9), "{}", e.total);
        assert!(e.unconverted.is_empty());
        // CO₂: LPG 100 × 3.101 = 310.1 kg ships; coal, steam and fuel oil have
        // no shipped CO₂ row: the total is absent and names them.
        let c = carbon(&q, &reg, set, "co2.grid.national", 2025, None);
        assert_eq!(c.total_kg, None);
        assert_eq!(
            c.missing,
            vec!["co2.raw_coal", "co2.steam_lp", "co2.fuel_oil"]
        );
        let lpg = carbon(
            &Carriers {
                lpg_kg: 100.0,
                ..Carriers::default()
            },
            &reg,
            set,
            "co2.grid.national",
            2025,
            None,
        );
        assert!(close(lpg.total_kg.unwrap_or(f64::NAN), 310.1, 1e-9));
        // Cooling: no kgce row: out of E, named.
        let cool = comprehensive_energy(
            &Carriers {
                cooling_gj: 10.0,
                electricity_kwh: 100.0,
                ..Carriers::default()
            },
            &reg,
            set,
            2025,
        )
        .expect("energy");
        assert!(close(cool.total, 12.29, 1e-9) && cool.unconverted == vec!["cooling"]);
    }
}
