//! `[[factor]]`, `[[target]]` and `[[quota]]`: override rows of the factor
//! registry, the registry-only file of the shipped defaults, and the
//! site's factor and quota sets.

use std::collections::BTreeSet;
use std::path::Path;

use super::checks::*;
use super::document::{Ctx, Located, suggest};
use super::*;
use crate::factors::{FactorRow, QuotaRow, SHIPPED_TOML, TargetRow};

/// Parse a registry-only file (the shipped defaults).
pub(crate) fn parse_registry(src: &str, path: &Path) -> Result<FactorRegistry, ConfigErrors> {
    let mut ctx = Ctx::new(src, path);
    let doc = read_document(&mut ctx);
    let mut reg = FactorRegistry::default();
    if let Some(doc) = doc {
        check_registry_rows(&mut ctx, &doc.factors, &doc.quotas, &doc.targets);
        reg.factors = doc.factors.into_iter().map(|l| l.value).collect();
        reg.targets = doc.targets.into_iter().map(|l| l.value).collect();
        reg.quotas = doc.quotas.into_iter().map(|l| l.value).collect();
    }
    if ctx.errors.is_empty() {
        Ok(reg)
    } else {
        Err(ConfigErrors(ctx.errors))
    }
}

/// The site's overrides applied to the shipped registry, and the site's
/// factor set and quota set looked up in it.
pub(crate) fn apply_site_rows(
    ctx: &mut Ctx<'_>,
    factors: &[Located<'_, FactorRow>],
    quotas: &[Located<'_, QuotaRow>],
    targets: &[Located<'_, TargetRow>],
    mut registry: FactorRegistry,
    site: &Located<'_, SiteSection>,
) -> FactorRegistry {
    check_registry_rows(ctx, factors, quotas, targets);
    let overrides = (
        factors.iter().map(|l| l.value.clone()).collect(),
        targets.iter().map(|l| l.value.clone()).collect(),
        quotas.iter().map(|l| l.value.clone()).collect(),
    );
    registry.apply_overrides(overrides.0, overrides.1, overrides.2);
    if !registry
        .factors
        .iter()
        .any(|f| f.factor_set == site.value.factor_set)
    {
        let sets: BTreeSet<&str> = registry
            .factors
            .iter()
            .map(|f| f.factor_set.as_str())
            .collect();
        let sets: Vec<&str> = sets.into_iter().collect();
        let hint = suggest(&site.value.factor_set, sets.iter());
        ctx.error(
            site.span_of(&["factor_set"]),
            site.key("factor_set"),
            format!(
                "no factor set `{}` in the registry{hint}",
                site.value.factor_set
            ),
        );
    }
    if let Some(qs) = site.value.quota_set.as_ref()
        && registry.quotas_of(qs).next().is_none()
    {
        let sets: BTreeSet<&str> = registry
            .quotas
            .iter()
            .map(|q| q.quota_set.as_str())
            .collect();
        let sets: Vec<&str> = sets.into_iter().collect();
        let hint = suggest(qs, sets.iter());
        ctx.error(
            site.span_of(&["quota_set"]),
            site.key("quota_set"),
            format!("no quota set `{qs}` in the registry{hint}"),
        );
    }

    registry
}

pub(crate) fn check_registry_rows(
    ctx: &mut Ctx<'_>,
    factors: &[Located<'_, FactorRow>],
    quotas: &[Located<'_, QuotaRow>],
    targets: &[Located<'_, TargetRow>],
) {
    for f in factors {
        if !f.value.value.is_finite() || f.value.value <= 0.0 {
            ctx.error(
                f.span_of(&["value"]),
                f.key("value"),
                format!("a factor must be > 0, got {}", f.value.value),
            );
        }
        let from = f
            .value
            .effective_from
            .as_ref()
            .and_then(|d| date(ctx, f, "effective_from", d));
        let to = f
            .value
            .effective_to
            .as_ref()
            .and_then(|d| date(ctx, f, "effective_to", d));
        if let (Some(a), Some(b)) = (from, to)
            && b < a
        {
            ctx.error(
                f.span_of(&["effective_to"]),
                f.key("effective_to"),
                format!("ends ({b}) before it starts ({a})"),
            );
        }
    }
    for t in targets {
        if t.value.target_year <= t.value.base_year {
            ctx.error(
                t.span_of(&["target_year"]),
                t.key("target_year"),
                "target year must come after the base year",
            );
        }
        if !(0.0..100.0).contains(&t.value.reduction_pct) {
            ctx.error(
                t.span_of(&["reduction_pct"]),
                t.key("reduction_pct"),
                "a reduction is a percentage in [0, 100)",
            );
        }
    }
    for q in quotas {
        let v = &q.value;
        let ordered = v
            .guide
            .is_none_or(|g| g <= v.baseline.unwrap_or(v.constraint))
            && v.baseline.is_none_or(|b| b <= v.constraint);
        if !ordered {
            ctx.error(
                q.span_of(&["constraint"]),
                q.key("constraint"),
                "quota levels must satisfy guide <= baseline <= constraint",
            );
        }
        if let Some(b) = &v.day_basis
            && b != "calendar"
            && b != "working"
        {
            ctx.error(
                q.span_of(&["day_basis"]),
                q.key("day_basis"),
                format!(
                    "`{b}`: `calendar` (365/366 days) or `working` (the worked days, 250 a year)"
                ),
            );
        }
    }
}

impl FactorRegistry {
    /// The shipped defaults. Their validity is a unit test of this crate
    /// (`shipped_registry_is_valid`), so a failure here is a build defect.
    pub fn shipped() -> FactorRegistry {
        match parse_registry(
            SHIPPED_TOML,
            std::path::Path::new("<shipped factors/default.toml>"),
        ) {
            Ok(r) => r,
            // The shipped file is compiled in and tested; it cannot be invalid at run time.
            Err(e) => panic!("shipped factor registry is invalid: {e}"),
        }
    }
}
