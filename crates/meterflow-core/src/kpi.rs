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
    let total = electricity + gas + gasoline + diesel + heat;
    Ok(Energy {
        electricity,
        gas,
        gasoline,
        diesel,
        heat,
        total,
        factors: used,
    })
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
}
