//! Quota grades (`docs/methodology.md` §7).

use meterflow_model::factors::QuotaRow;

/// Grade of an energy indicator: ≤ guide 先进, ≤ baseline 合理, ≤ constraint 合格, above 超定额.
/// Water indicators (no baseline): ≤ 先进值 先进, ≤ 通用值 达标, above 超定额.
pub fn grade(value: f64, q: &QuotaRow) -> &'static str {
    match q.baseline {
        Some(baseline) => {
            if q.guide.is_some_and(|g| value <= g) {
                "先进"
            } else if value <= baseline {
                "合理"
            } else if value <= q.constraint {
                "合格"
            } else {
                "超定额"
            }
        }
        None => {
            if q.guide.is_some_and(|g| value <= g) {
                "先进"
            } else if value <= q.constraint {
                "达标"
            } else {
                "超定额"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meterflow_model::factors::FactorRegistry;

    #[test]
    fn grades_against_the_shipped_shandong_quotas() {
        let r = FactorRegistry::shipped();
        let q = |ind: &str| {
            r.quotas_of("shandong-db37")
                .find(|q| q.indicator == ind)
                .cloned()
                .unwrap_or_else(|| panic!("{ind}"))
        };
        // per-capita energy: guide 453.7, baseline 781.0, constraint 1197.8 kgce/person·a.
        let pc = q("per_capita_energy");
        assert_eq!(grade(400.0, &pc), "先进");
        assert_eq!(grade(781.0, &pc), "合理");
        assert_eq!(grade(797.87, &pc), "合格"); // the docs/methodology.md §5 worked example
        assert_eq!(grade(1200.0, &pc), "超定额");
        // water: 先进 10, 通用 25 m³/person·a; 22.5 (worked example) → 达标.
        let w = q("per_capita_water");
        assert_eq!(grade(9.0, &w), "先进");
        assert_eq!(grade(22.5, &w), "达标");
        assert_eq!(grade(26.0, &w), "超定额");
    }
}
