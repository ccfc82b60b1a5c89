//! The site file's checks as one short sequence over the sections; each
//! section's rules live with its shapes (`site`, `meters`, `modbus`, `cn`,
//! `mqtt`, `http`, `influx`, `api`, `alerts`, `ledgers`, `registry`).

use super::document::Ctx;
use super::raw::RawDocument;
use super::*;
use crate::factors::{FactorRegistry, to_date};

/// Check the document and build the site; `None` when an error makes the
/// site unusable (the errors are in `ctx`).
pub(crate) fn validate(
    ctx: &mut Ctx<'_>,
    doc: RawDocument<'_>,
    registry: FactorRegistry,
) -> Option<Site> {
    let checked = site::check_site(ctx, doc.site.as_ref(), doc.store.as_ref())?;
    let site = checked.section.value.clone();
    let (tz, shard) = (checked.tz, checked.shard);
    let ids = site::collect_ids(
        ctx,
        &doc.agencies,
        &doc.buildings,
        &doc.failed_ids,
        &doc.meters,
        &doc.zones,
    );
    site::check_places(
        ctx,
        &doc.buildings,
        &doc.headcounts,
        &doc.spaces,
        &doc.zones,
        &ids,
    );
    meters::check_meters(ctx, &doc.meters, &ids);
    let replacements = meters::check_replacements(ctx, &doc.replacements, &ids.meters, tz);
    let registry = registry::apply_site_rows(
        ctx,
        &doc.factors,
        &doc.quotas,
        &doc.targets,
        registry,
        checked.section,
    );
    let (mut buses, profiles) =
        modbus::validate_modbus(ctx, &doc.buses, &doc.meters, &doc.profiles);
    let referable = alerts::Referable {
        broker: doc.broker.as_ref(),
        buses: &doc.buses,
        meters: &doc.meters,
        mqtt: &doc.mqtt,
    };
    let (alerting, alert_rules, notifiers) = alerts::validate_alerts(
        ctx,
        doc.alerting.as_ref(),
        &doc.alerts,
        &doc.notifiers,
        &referable,
        &ids,
    );
    let mut mqtt = mqtt::validate_mqtt(ctx, &doc.meters, &doc.failed_ids, &doc.mqtt);
    // Like every other file the site names (secrets, certificates, the
    // store), the brokers' files are relative to the site file, not to the
    // directory meterflow was started in.
    let base = ctx
        .file
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    for b in &mut mqtt {
        for f in [
            &mut b.password_file,
            &mut b.ca_file,
            &mut b.client_cert_file,
            &mut b.client_key_file,
        ]
        .into_iter()
        .flatten()
        {
            if f.is_relative() {
                *f = base.join(&*f);
            }
        }
    }
    http::validate_http(ctx, doc.broker.as_ref(), doc.http.as_ref());
    influx::validate_influx(ctx, doc.influx.as_ref());
    ledgers::check_ledgers(
        ctx,
        doc.fleet.as_ref(),
        doc.office.as_ref(),
        doc.waste.as_ref(),
    );
    api::check_api(ctx, doc.api.as_ref());
    super::tariffs::check_tariffs(ctx, &doc.tariffs, &ids);
    let agency_ids: std::collections::BTreeSet<String> =
        doc.agencies.iter().map(|a| a.value.id.clone()).collect();
    super::tariffs::check_budgets(ctx, &doc.budgets, &agency_ids);
    cn::validate_cn(
        ctx,
        &doc.buses,
        &doc.dlt645_items,
        &doc.cjt188_layouts,
        &doc.meters,
        &mut buses,
    );
    let tz = tz?;
    let mut headcounts: Vec<Headcount> = doc.headcounts.into_iter().map(|l| l.value).collect();
    headcounts.sort_by(|a, b| {
        (a.agency.as_str(), to_date(&a.from)).cmp(&(b.agency.as_str(), to_date(&b.from)))
    });
    let meters: Vec<Meter> = doc.meters.into_iter().map(|l| l.value).collect();
    let meter_index = meters
        .iter()
        .enumerate()
        .map(|(i, m)| (m.id.clone(), i))
        .collect();
    Some(Site {
        path: ctx.file.clone(),
        site,
        tz,
        shard,
        store: doc.store.map(|l| l.value).unwrap_or_default(),
        buildings: doc.buildings.into_iter().map(|l| l.value).collect(),
        zones: doc.zones.into_iter().map(|l| l.value).collect(),
        agencies: doc.agencies.into_iter().map(|l| l.value).collect(),
        headcounts,
        spaces: doc.spaces.into_iter().map(|l| l.value).collect(),
        meters,
        replacements,
        factors: registry,
        buses,
        profiles,
        mqtt,
        broker: doc.broker.map(|b| b.value),
        http: doc.http.map(|h| h.value),
        alerting,
        alert_rules,
        notifiers,
        influx: doc.influx.map(|i| i.value),
        dlt645_items: doc.dlt645_items.into_iter().map(|i| i.value).collect(),
        cjt188_layouts: doc.cjt188_layouts.into_iter().map(|i| i.value).collect(),
        tariffs: doc.tariffs.into_iter().map(|t| t.value).collect(),
        budgets: doc.budgets.into_iter().map(|b| b.value).collect(),
        api: doc.api.map(|a| a.value),
        waste: doc.waste.map(|w| w.value).unwrap_or_default(),
        office: doc.office.map(|o| o.value).unwrap_or_default(),
        fleet: doc.fleet.map(|f| f.value).unwrap_or_default(),
        backup: doc.backup.map(|b| b.value),
        meter_index,
    })
}
