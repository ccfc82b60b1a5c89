//! `[waste]`, `[office]` and `[fleet]`: settings of the ledgers, with
//! their checks.

use std::collections::BTreeMap;

use super::document::{Ctx, Located};
use serde::Deserialize;

/// `[waste]`: settings of the waste-sorting ledger (`domain.md` §10).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasteSettings {
    /// Incentive: CNY per kg by category (`recyclable`, `kitchen`, `hazardous`,
    /// `residual`); without it no points are computed.
    #[serde(default)]
    pub price_per_kg: BTreeMap<String, f64>,
    /// CNY per incentive point (default 0.1).
    #[serde(default = "default_point_value")]
    pub point_value_cny: f64,
    /// Target 回收利用率, % (default 35).
    #[serde(default = "default_recovery_target")]
    pub recovery_target_pct: f64,
}

impl Default for WasteSettings {
    fn default() -> Self {
        WasteSettings {
            price_per_kg: BTreeMap::new(),
            point_value_cny: default_point_value(),
            recovery_target_pct: default_recovery_target(),
        }
    }
}

const fn default_point_value() -> f64 {
    0.1
}
const fn default_recovery_target() -> f64 {
    35.0
}

/// `[office]`: settings of the office-space ledger (`domain.md` §9).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfficeSettings {
    /// Which table of the 2014 standard the occupants' ranks come from:
    /// `central`, `provincial`, `city` or `county`. No default: a wrong table
    /// would grade every room silently, so occupants are refused until it is set.
    #[serde(default)]
    pub level: Option<String>,
}

/// `[fleet]`: settings of the vehicle ledger (`domain.md` §8).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSettings {
    /// Routine check every this many km (default 2 500).
    #[serde(default = "default_routine_km")]
    pub routine_km: f64,
    /// Regular service every this many km (default 7 000).
    #[serde(default = "default_service_km")]
    pub service_km: f64,
    /// Tyres every this many km (default 70 000).
    #[serde(default = "default_tyres_km")]
    pub tyres_km: f64,
}

impl Default for FleetSettings {
    fn default() -> Self {
        FleetSettings {
            routine_km: default_routine_km(),
            service_km: default_service_km(),
            tyres_km: default_tyres_km(),
        }
    }
}

const fn default_routine_km() -> f64 {
    2_500.0
}
const fn default_service_km() -> f64 {
    7_000.0
}
const fn default_tyres_km() -> f64 {
    70_000.0
}

/// The ledgers' settings.
pub(crate) fn check_ledgers(
    ctx: &mut Ctx<'_>,
    fleet: Option<&Located<'_, FleetSettings>>,
    office: Option<&Located<'_, OfficeSettings>>,
    waste: Option<&Located<'_, WasteSettings>>,
) {
    if let Some(w) = waste {
        for (k, v) in &w.value.price_per_kg {
            if !matches!(
                k.as_str(),
                "recyclable" | "kitchen" | "hazardous" | "residual"
            ) {
                ctx.error(
                    w.span_of(&["price_per_kg", k]),
                    w.key(&format!("price_per_kg.{k}")),
                    "categories are recyclable, kitchen, hazardous, residual",
                );
            }
            if !(v.is_finite() && *v >= 0.0) {
                ctx.error(
                    w.span_of(&["price_per_kg", k]),
                    w.key(&format!("price_per_kg.{k}")),
                    format!("must be a number >= 0, got {v}"),
                );
            }
        }
        if !(w.value.point_value_cny.is_finite() && w.value.point_value_cny > 0.0) {
            ctx.error(
                w.span_of(&["point_value_cny"]),
                w.key("point_value_cny"),
                "must be a number > 0",
            );
        }
    }
    if let Some(o) = office
        && let Some(l) = &o.value.level
        && !matches!(l.as_str(), "central" | "provincial" | "city" | "county")
    {
        ctx.error(
            o.span_of(&["level"]),
            o.key("level"),
            format!("`{l}`: one of central, provincial, city, county (the 2014 standard's tables)"),
        );
    }
    if let Some(f) = fleet {
        for (k, v) in [
            ("routine_km", f.value.routine_km),
            ("service_km", f.value.service_km),
            ("tyres_km", f.value.tyres_km),
        ] {
            if !(v.is_finite() && v > 0.0) {
                ctx.error(
                    f.span_of(&[k]),
                    f.key(k),
                    format!("must be a distance in km > 0, got {v}"),
                );
            }
        }
    }
}
