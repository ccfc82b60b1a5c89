//! Cross-field rules, in one place. Each rule reports at the key it is about.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::{LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};
use toml::value::Datetime;

use super::{ConfigErrors, Ctx, Located, RawDocument, Site, read_document, suggest};
use crate::config::schema::*;
use crate::factors::{FactorRegistry, to_date};
use crate::reading::EnergyClass;

const SUBITEMS: &[&str] = &[
    "A", "A1", "A2", "A3", "B", "B1", "B2", "C", "C1", "C2", "C3", "D",
];
const GRID_REGIONS: &[&str] = &["national", "east_china"];

/// Parse a registry-only file (the shipped defaults).
pub(crate) fn parse_registry(src: &str, path: &Path) -> Result<FactorRegistry, ConfigErrors> {
    let mut ctx = Ctx::new(src, path);
    let doc = read_document(&mut ctx);
    let mut reg = FactorRegistry::default();
    if let Some(doc) = doc {
        check_registry_rows(&mut ctx, &doc);
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

pub(crate) fn validate(
    ctx: &mut Ctx<'_>,
    doc: RawDocument<'_>,
    mut registry: FactorRegistry,
) -> Option<Site> {
    let Some(site) = doc.site.as_ref() else {
        ctx.error(
            0..0,
            "site",
            "missing [site] section (name and timezone of the site)",
        );
        return None;
    };
    let tz = match site.value.timezone.parse::<chrono_tz::Tz>() {
        Ok(tz) => Some(tz),
        Err(_) => {
            ctx.error(
                site.span_of(&["timezone"]),
                site.key("timezone"),
                format!(
                    "`{}` is not an IANA time zone (e.g. Asia/Shanghai)",
                    site.value.timezone
                ),
            );
            None
        }
    };
    let shard = match site
        .value
        .shard
        .as_deref()
        .map(str::parse::<crate::shard::Shard>)
    {
        None => crate::shard::Shard::default(),
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            ctx.error(site.span_of(&["shard"]), site.key("shard"), e);
            crate::shard::Shard::default()
        }
    };
    if !GRID_REGIONS.contains(&site.value.grid_region.as_str()) {
        let hint = suggest(&site.value.grid_region, GRID_REGIONS.iter());
        ctx.error(
            site.span_of(&["grid_region"]),
            site.key("grid_region"),
            format!("unknown grid region `{}`{hint}", site.value.grid_region),
        );
    }
    if let Some(store) = doc.store.as_ref() {
        if store.value.batch_rows == 0 {
            ctx.error(
                store.span_of(&["batch_rows"]),
                store.key("batch_rows"),
                "must be at least 1",
            );
        }
        if store.value.raw_retention_days == Some(0) {
            ctx.error(
                store.span_of(&["raw_retention_days"]),
                store.key("raw_retention_days"),
                "must be at least 1 day (omit it to keep raw readings forever)",
            );
        }
    }

    let failed = |section: &'static str| -> Vec<String> {
        doc.failed_ids
            .iter()
            .filter(|(s, _)| s == section)
            .map(|(_, id)| id.clone())
            .collect()
    };
    let mut buildings = unique_ids(ctx, &doc.buildings, |b| &b.id, "building");
    let mut zones = unique_ids(ctx, &doc.zones, |z| &z.id, "zone");
    let mut agencies = unique_ids(ctx, &doc.agencies, |a| &a.id, "agency");
    let mut meters = unique_ids(ctx, &doc.meters, |m| &m.id, "meter");
    buildings.extend(failed("building"));
    zones.extend(failed("zone"));
    agencies.extend(failed("agency"));
    meters.extend(failed("meter"));

    for b in &doc.buildings {
        non_negative(ctx, b, "total_area_m2", Some(b.value.total_area_m2));
        non_negative(ctx, b, "office_area_m2", b.value.office_area_m2);
        non_negative(ctx, b, "heated_area_m2", b.value.heated_area_m2);
        non_negative(ctx, b, "cooled_area_m2", b.value.cooled_area_m2);
        if let Some(office) = b.value.office_area_m2
            && office > b.value.total_area_m2
        {
            ctx.error(
                b.span_of(&["office_area_m2"]),
                b.key("office_area_m2"),
                format!(
                    "office area {office} m² exceeds the total area {} m²",
                    b.value.total_area_m2
                ),
            );
        }
    }
    for z in &doc.zones {
        reference(
            ctx,
            z,
            "building",
            &z.value.building,
            &buildings,
            "building",
        );
        non_negative(ctx, z, "area_m2", Some(z.value.area_m2));
    }
    for h in &doc.headcounts {
        reference(ctx, h, "agency", &h.value.agency, &agencies, "agency");
        non_negative(ctx, h, "persons", Some(h.value.persons));
        date(ctx, h, "from", &h.value.from);
    }
    for s in &doc.spaces {
        reference(ctx, s, "agency", &s.value.agency, &agencies, "agency");
        match (&s.value.zone, &s.value.building) {
            (Some(z), None) => {
                reference(ctx, s, "zone", z, &zones, "zone");
            }
            (None, Some(b)) => {
                reference(ctx, s, "building", b, &buildings, "building");
            }
            _ => ctx.error(
                s.span_of(&[]),
                s.key(""),
                "give exactly one of `zone` or `building`",
            ),
        }
        non_negative(ctx, s, "area_m2", Some(s.value.area_m2));
        let from = date(ctx, s, "from", &s.value.from);
        if let Some(to) = s.value.to.as_ref()
            && let (Some(from), Some(to)) = (from, date(ctx, s, "to", to))
            && to < from
        {
            ctx.error(
                s.span_of(&["to"]),
                s.key("to"),
                format!("ends ({to}) before it starts ({from})"),
            );
        }
    }
    for m in &doc.meters {
        check_meter(ctx, m, &buildings, &zones, &agencies, &meters);
    }
    check_parent_cycles(ctx, &doc.meters);

    let mut replacements = Vec::new();
    for r in &doc.replacements {
        let known = reference(ctx, r, "meter", &r.value.meter, &meters, "meter");
        for key in ["old_final", "new_initial"] {
            let v = if key == "old_final" {
                r.value.old_final
            } else {
                r.value.new_initial
            };
            if !v.is_finite() || v < 0.0 {
                ctx.error(
                    r.span_of(&[key]),
                    r.key(key),
                    format!("must be a register value >= 0, got {v}"),
                );
            }
        }
        if let (true, Some(tz)) = (known, tz) {
            match instant(&r.value.at, tz) {
                Ok(ts_ms) => replacements.push(ReplacementEvent {
                    meter: r.value.meter.clone(),
                    ts_ms,
                    old_final: r.value.old_final,
                    new_initial: r.value.new_initial,
                }),
                Err(msg) => ctx.error(r.span_of(&["at"]), r.key("at"), msg),
            }
        }
    }
    replacements.sort_by(|a, b| (a.meter.as_str(), a.ts_ms).cmp(&(b.meter.as_str(), b.ts_ms)));
    for pair in replacements.windows(2) {
        if pair[0].meter == pair[1].meter
            && pair[0].ts_ms == pair[1].ts_ms
            && let Some(r) = doc
                .replacements
                .iter()
                .find(|r| r.value.meter == pair[1].meter)
        {
            ctx.error(
                r.span_of(&["at"]),
                r.key("at"),
                "two replacements of the same meter at the same instant",
            );
        }
    }

    check_registry_rows(ctx, &doc);
    let overrides = (
        doc.factors.iter().map(|l| l.value.clone()).collect(),
        doc.targets.iter().map(|l| l.value.clone()).collect(),
        doc.quotas.iter().map(|l| l.value.clone()).collect(),
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

    let (buses, profiles) = validate_modbus(ctx, &doc);
    let (alerting, alert_rules, notifiers) = validate_alerts(ctx, &doc, &buildings, &agencies);
    let mqtt = validate_push(ctx, &doc);
    validate_influx(ctx, &doc);
    if let Some(w) = &doc.waste {
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
    if let Some(o) = &doc.office
        && let Some(l) = &o.value.level
        && !matches!(l.as_str(), "central" | "provincial" | "city" | "county")
    {
        ctx.error(
            o.span_of(&["level"]),
            o.key("level"),
            format!("`{l}`: one of central, provincial, city, county (the 2014 standard's tables)"),
        );
    }
    if let Some(f) = &doc.fleet {
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
    if let Some(a) = &doc.api {
        if !a
            .value
            .listen
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        {
            ctx.error(
                a.span_of(&["listen"]),
                a.key("listen"),
                format!("`{}` is not host:port", a.value.listen),
            );
        }
        if a.value.tokens_file.is_none() && a.value.tokens_env.is_none() {
            ctx.error(
                a.span_of(&[]),
                a.key("tokens_file"),
                "the API needs `tokens_file` (hashed tokens) or `tokens_env`",
            );
        }
    }
    let mut buses = buses;
    validate_cn(ctx, &doc, &mut buses);
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
        site: site.value.clone(),
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
        api: doc.api.map(|a| a.value),
        waste: doc.waste.map(|w| w.value).unwrap_or_default(),
        office: doc.office.map(|o| o.value).unwrap_or_default(),
        fleet: doc.fleet.map(|f| f.value).unwrap_or_default(),
        meter_index,
    })
}

fn is_hex(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// DL/T 645 and CJ/T 188 sources and `[[dlt645_item]]`s.
fn validate_cn(ctx: &mut Ctx<'_>, doc: &RawDocument<'_>, buses: &mut [Bus]) {
    // A bus of DL/T 645 / CJ/T 188 meters defaults to their usual 2400 8E1.
    for (b, raw) in buses.iter_mut().zip(&doc.buses) {
        let serial_meters = doc.meters.iter().any(|m| {
            m.value.dlt645.as_ref().is_some_and(|d| d.bus == b.id)
                || m.value.cjt188.as_ref().is_some_and(|c| c.bus == b.id)
        });
        if serial_meters {
            if !raw.has("baud") {
                b.baud = 2400;
            }
            if !raw.has("parity") {
                b.parity = Parity::Even;
            }
        }
    }
    let buses: &[Bus] = buses;
    for it in &doc.dlt645_items {
        let v = &it.value;
        if !is_hex(&v.di, 8) {
            ctx.error(
                it.span_of(&["di"]),
                it.key("di"),
                format!("`{}` is not 8 hex digits (DI3 DI2 DI1 DI0)", v.di),
            );
        }
        if !(1..=8).contains(&v.bytes) || v.decimals > 8 {
            ctx.error(
                it.span_of(&["bytes"]),
                it.key("bytes"),
                "1 to 8 BCD bytes and at most 8 decimals",
            );
        }
    }
    let known_di = |di: &str| -> Option<String> {
        if let Some(i) = doc
            .dlt645_items
            .iter()
            .find(|i| i.value.di.eq_ignore_ascii_case(di))
        {
            return Some(i.value.quantity.clone());
        }
        let n = u32::from_str_radix(di, 16).ok()?;
        meterflow_cnproto::dlt645::item_of(n).map(|i| i.quantity.to_string())
    };
    let modbus_buses: BTreeSet<&str> = doc
        .meters
        .iter()
        .filter_map(|m| m.value.modbus.as_ref().map(|s| s.bus.as_str()))
        .collect();
    for m in &doc.meters {
        let v = &m.value;
        let sources = [v.modbus.is_some(), v.dlt645.is_some(), v.cjt188.is_some()];
        if sources.iter().filter(|x| **x).count() > 1 {
            ctx.error(
                m.span_of(&["id"]),
                m.key("dlt645"),
                "a meter has one source: `modbus`, `dlt645` or `cjt188`",
            );
        }
        let (key, bus, poll_s) = match (&v.dlt645, &v.cjt188) {
            (Some(d), _) => ("dlt645", d.bus.as_str(), d.poll_s),
            (None, Some(c)) => ("cjt188", c.bus.as_str(), c.poll_s),
            (None, None) => continue,
        };
        match buses.iter().find(|b| b.id == bus) {
            None => ctx.error(m.span_of(&[key, "bus"]), m.key(&format!("{key}.bus")), format!("no bus `{bus}`")),
            Some(b) if b.transport == Transport::Tcp => ctx.error(
                m.span_of(&[key, "bus"]),
                m.key(&format!("{key}.bus")),
                format!("bus `{bus}` is Modbus TCP; DL/T 645 and CJ/T 188 need `rtu` (a serial line) or `rtu_over_tcp` (a serial gateway)"),
            ),
            Some(_) if modbus_buses.contains(bus) => ctx.error(
                m.span_of(&[key, "bus"]),
                m.key(&format!("{key}.bus")),
                format!("bus `{bus}` also carries Modbus meters; put DL/T 645 and CJ/T 188 meters on a bus of their own"),
            ),
            Some(_) => {}
        }
        if poll_s == 0 {
            ctx.error(
                m.span_of(&[key, "poll_s"]),
                m.key(&format!("{key}.poll_s")),
                "poll periods are at least 1 s",
            );
        }
        if let Some(d) = &v.dlt645 {
            if !(d.address.len() == 12 && d.address.bytes().all(|b| b.is_ascii_digit())) {
                ctx.error(
                    m.span_of(&["dlt645", "address"]),
                    m.key("dlt645.address"),
                    format!("`{}` is not a 12-digit meter address", d.address),
                );
            }
            let mut quantities = Vec::new();
            for (i, di) in d.items.iter().enumerate() {
                match known_di(di) {
                    Some(q) => quantities.push(q),
                    None => ctx.error(
                        m.span_of(&["dlt645", "items"]),
                        m.key(&format!("dlt645.items.{i}")),
                        format!("unknown data identifier `{di}`: add a [[dlt645_item]] for it"),
                    ),
                }
            }
            let q = v.counter_quantity();
            if v.kind != EnergyClass::Electricity {
                ctx.error(
                    m.span_of(&["kind"]),
                    m.key("kind"),
                    "a DL/T 645 meter is an electricity meter",
                );
            } else if !quantities.iter().any(|x| x == q) && quantities.len() == d.items.len() {
                ctx.error(
                    m.span_of(&["dlt645", "items"]),
                    m.key("dlt645.items"),
                    format!("no identifier gives the counter `{q}` (00010000 is forward active total energy)"),
                );
            }
        }
        if let Some(c) = &v.cjt188 {
            if !is_hex(&c.address, 14) {
                ctx.error(
                    m.span_of(&["cjt188", "address"]),
                    m.key("cjt188.address"),
                    format!("`{}` is not 14 hex digits", c.address),
                );
            }
            if !matches!(c.di.to_ascii_uppercase().as_str(), "901F" | "1F90") {
                ctx.error(
                    m.span_of(&["cjt188", "di"]),
                    m.key("cjt188.di"),
                    "`901F` or `1F90`",
                );
            }
            let fits = matches!(
                (c.meter_type, v.kind),
                (
                    Cjt188Type::ColdWater | Cjt188Type::HotWater,
                    EnergyClass::Water
                ) | (Cjt188Type::Gas, EnergyClass::Gas)
                    | (Cjt188Type::Heat, EnergyClass::Heat)
                    | (Cjt188Type::Cooling, EnergyClass::Cooling)
            );
            if !fits {
                ctx.error(
                    m.span_of(&["cjt188", "meter_type"]),
                    m.key("cjt188.meter_type"),
                    format!(
                        "a {:?} CJ/T 188 meter cannot be a {} meter",
                        c.meter_type,
                        v.kind.as_str()
                    ),
                );
            }
        }
    }
}

fn validate_influx(ctx: &mut Ctx<'_>, doc: &RawDocument<'_>) {
    let Some(l) = &doc.influx else {
        return;
    };
    let v = &l.value;
    if !(v.url.starts_with("http://") || v.url.starts_with("https://")) {
        ctx.error(
            l.span_of(&["url"]),
            l.key("url"),
            format!("`{}` is not an http(s) URL", v.url),
        );
    }
    match v.api {
        InfluxApi::V1 => {
            if v.database.as_deref().is_none_or(str::is_empty) {
                ctx.error(
                    l.span_of(&["api"]),
                    l.key("database"),
                    "the v1 write API needs `database`",
                );
            }
            if v.password_env.is_some() && v.password_file.is_some() {
                ctx.error(
                    l.span_of(&["password_file"]),
                    l.key("password_file"),
                    "give `password_env` or `password_file`, not both",
                );
            }
        }
        InfluxApi::V2 => {
            for key in ["org", "bucket"] {
                let val = if key == "org" { &v.org } else { &v.bucket };
                if val.as_deref().is_none_or(str::is_empty) {
                    ctx.error(
                        l.span_of(&["api"]),
                        l.key(key),
                        format!("the v2 write API needs `{key}`"),
                    );
                }
            }
            if v.token_env.is_none() == v.token_file.is_none() {
                ctx.error(
                    l.span_of(&["api"]),
                    l.key("token_env"),
                    "the v2 write API needs exactly one of `token_env` (an environment variable) or `token_file`",
                );
            }
        }
    }
    for (key, x) in [
        ("timeout_s", v.timeout_s),
        ("retry_initial_s", v.retry_initial_s),
        ("retry_max_s", v.retry_max_s),
    ] {
        if !(x.is_finite() && x > 0.0) {
            ctx.error(
                l.span_of(&[key]),
                l.key(key),
                format!("must be a number > 0, got {x}"),
            );
        }
    }
    for (key, x) in [
        ("batch_points", v.batch_points as u64),
        ("batch_kib", v.batch_kib as u64),
        ("outbox_max_mib", v.outbox_max_mib),
        ("kpi_interval_s", v.kpi_interval_s),
    ] {
        if x == 0 {
            ctx.error(l.span_of(&[key]), l.key(key), "must be at least 1");
        }
    }
}

fn check_meter(
    ctx: &mut Ctx<'_>,
    m: &Located<'_, Meter>,
    buildings: &BTreeSet<String>,
    zones: &BTreeSet<String>,
    agencies: &BTreeSet<String>,
    meters: &BTreeSet<String>,
) {
    let v = &m.value;
    let units = v.kind.allowed_units();
    if !units.contains(&v.unit.as_str()) {
        ctx.error(
            m.span_of(&["unit"]),
            m.key("unit"),
            format!(
                "`{}` is not a unit of a {} meter; expected one of {}",
                v.unit,
                v.kind.as_str(),
                units.join(", ")
            ),
        );
    }
    if !(1..=3).contains(&v.level) {
        ctx.error(
            m.span_of(&["level"]),
            m.key("level"),
            format!(
                "metering level must be 1, 2 or 3 (GB 17167), got {}",
                v.level
            ),
        );
    }
    if let Some(parent) = v.parent.as_ref() {
        if parent == &v.id {
            ctx.error(
                m.span_of(&["parent"]),
                m.key("parent"),
                "a meter cannot be its own parent",
            );
        } else {
            reference(ctx, m, "parent", parent, meters, "meter");
        }
    }
    if let Some(sub) = v.subitem.as_ref() {
        if v.kind != EnergyClass::Electricity {
            ctx.error(
                m.span_of(&["subitem"]),
                m.key("subitem"),
                "sub-items (分项) apply to electricity meters only",
            );
        } else if !SUBITEMS.contains(&sub.as_str()) {
            ctx.error(
                m.span_of(&["subitem"]),
                m.key("subitem"),
                format!(
                    "unknown sub-item `{sub}`; expected one of {}",
                    SUBITEMS.join(", ")
                ),
            );
        }
    }
    let s = &v.serves;
    let given = [
        s.building.is_some(),
        s.zone.is_some(),
        s.agency.is_some(),
        s.agencies.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if given != 1 {
        ctx.error(m.span_of(&["serves"]), m.key("serves"), "give exactly one of building, zone, agency or agencies, e.g. serves = { zone = \"b1-f3\" }");
    }
    if let Some(b) = s.building.as_ref() {
        reference(ctx, m, "serves.building", b, buildings, "building");
    }
    if let Some(z) = s.zone.as_ref() {
        reference(ctx, m, "serves.zone", z, zones, "zone");
    }
    if let Some(a) = s.agency.as_ref() {
        reference(ctx, m, "serves.agency", a, agencies, "agency");
    }
    if let Some(list) = s.agencies.as_ref() {
        if list.len() < 2 {
            ctx.error(
                m.span_of(&["serves", "agencies"]),
                m.key("serves.agencies"),
                "list at least two agencies (use `agency` for one)",
            );
        }
        for (i, a) in list.iter().enumerate() {
            let idx = i.to_string();
            if !agencies.contains(a) {
                let hint = suggest(
                    a,
                    agencies
                        .iter()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .iter(),
                );
                ctx.error(
                    m.span_of(&["serves", "agencies", &idx]),
                    m.key(&format!("serves.agencies[{i}]")),
                    format!("no agency `{a}`{hint}"),
                );
            }
        }
    }
    match v.effective_allocation() {
        Allocation::Fixed => {
            if v.shares.is_empty() {
                ctx.error(
                    m.span_of(&["allocation"]),
                    m.key("allocation"),
                    "fixed allocation needs `shares`, e.g. shares = { fin = 0.6, tax = 0.4 }",
                );
            } else {
                let sum: f64 = v.shares.values().sum();
                if (sum - 1.0).abs() > 1e-6 {
                    ctx.error(
                        m.span_of(&["shares"]),
                        m.key("shares"),
                        format!("shares must sum to 1, they sum to {sum}"),
                    );
                }
                for (agency, share) in &v.shares {
                    if !agencies.contains(agency) {
                        ctx.error(
                            m.span_of(&["shares", agency]),
                            m.key(&format!("shares.{agency}")),
                            format!("no agency `{agency}`"),
                        );
                    }
                    if !(0.0..=1.0).contains(share) {
                        ctx.error(
                            m.span_of(&["shares", agency]),
                            m.key(&format!("shares.{agency}")),
                            format!("a share is a fraction between 0 and 1, got {share}"),
                        );
                    }
                }
            }
        }
        Allocation::Direct => {
            if s.agency.is_none() && given == 1 {
                ctx.error(m.span_of(&["allocation"]), m.key("allocation"), "direct allocation needs the meter to serve one agency (serves = { agency = \"...\" })");
            }
        }
        Allocation::AreaShare => {}
    }
    if !v.shares.is_empty() && v.effective_allocation() != Allocation::Fixed {
        ctx.error(
            m.span_of(&["shares"]),
            m.key("shares"),
            "`shares` is only used with allocation = \"fixed\"",
        );
    }
    positive(ctx, m, "multiplier", Some(v.multiplier));
    positive(ctx, m, "scale", Some(v.scale));
    positive(ctx, m, "rollover", v.rollover);
    positive(ctx, m, "max_rate", v.max_rate);
    if v.interval_s == Some(0) {
        ctx.error(
            m.span_of(&["interval_s"]),
            m.key("interval_s"),
            "the reading interval must be at least 1 s",
        );
    }
    if v.silent_after == 0 {
        ctx.error(
            m.span_of(&["silent_after"]),
            m.key("silent_after"),
            "must be at least 1 interval",
        );
    }
    if let Some(q) = v.quantity.as_ref()
        && !is_snake_case(q)
    {
        ctx.error(
            m.span_of(&["quantity"]),
            m.key("quantity"),
            format!("quantity names are ASCII snake_case, got `{q}`"),
        );
    }
}

fn check_parent_cycles(ctx: &mut Ctx<'_>, meters: &[Located<'_, Meter>]) {
    let parent: BTreeMap<&str, &str> = meters
        .iter()
        .filter_map(|m| m.value.parent.as_deref().map(|p| (m.value.id.as_str(), p)))
        .collect();
    for m in meters {
        let mut seen = BTreeSet::new();
        let mut cur = m.value.id.as_str();
        while let Some(&p) = parent.get(cur) {
            if !seen.insert(cur) {
                break;
            }
            if p == m.value.id {
                ctx.error(
                    m.span_of(&["parent"]),
                    m.key("parent"),
                    format!("parent chain of `{}` loops back to itself", m.value.id),
                );
                break;
            }
            cur = p;
        }
    }
}

fn check_registry_rows(ctx: &mut Ctx<'_>, doc: &RawDocument<'_>) {
    for f in &doc.factors {
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
    for t in &doc.targets {
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
    for q in &doc.quotas {
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
    }
}

fn unique_ids<T>(
    ctx: &mut Ctx<'_>,
    items: &[Located<'_, T>],
    id: impl Fn(&T) -> &String,
    what: &str,
) -> BTreeSet<String> {
    let mut seen = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let value = id(&item.value);
        if value.is_empty()
            || value
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
        {
            ctx.error(
                item.span_of(&["id"]),
                item.key("id"),
                format!(
                    "a {what} id must be non-empty, without spaces or backslashes, got `{value}`"
                ),
            );
        }
        if let Some(first) = seen.insert(value.clone(), i) {
            ctx.error(
                item.span_of(&["id"]),
                item.key("id"),
                format!("duplicate {what} id `{value}` (first defined as {what}[{first}])"),
            );
        }
    }
    seen.into_keys().collect()
}

fn reference<T>(
    ctx: &mut Ctx<'_>,
    item: &Located<'_, T>,
    key: &str,
    value: &str,
    known: &BTreeSet<String>,
    what: &str,
) -> bool {
    if known.contains(value) {
        return true;
    }
    let path: Vec<&str> = key.split('.').collect();
    let names: Vec<&str> = known.iter().map(String::as_str).collect();
    let hint = if names.is_empty() {
        format!(" (no {what} is defined)")
    } else {
        suggest(value, names.iter())
    };
    ctx.error(
        item.span_of(&path),
        item.key(key),
        format!("no {what} `{value}`{hint}"),
    );
    false
}

fn non_negative<T>(ctx: &mut Ctx<'_>, item: &Located<'_, T>, key: &str, value: Option<f64>) {
    if let Some(v) = value
        && (!v.is_finite() || v < 0.0)
    {
        ctx.error(
            item.span_of(&[key]),
            item.key(key),
            format!("must be a finite number >= 0, got {v}"),
        );
    }
}

fn positive<T>(ctx: &mut Ctx<'_>, item: &Located<'_, T>, key: &str, value: Option<f64>) {
    if let Some(v) = value
        && (!v.is_finite() || v <= 0.0)
    {
        ctx.error(
            item.span_of(&[key]),
            item.key(key),
            format!("must be a finite number > 0, got {v}"),
        );
    }
}

fn date<T>(
    ctx: &mut Ctx<'_>,
    item: &Located<'_, T>,
    key: &str,
    value: &Datetime,
) -> Option<NaiveDate> {
    let d = to_date(value);
    if d.is_none() {
        ctx.error(
            item.span_of(&[key]),
            item.key(key),
            format!("expected a date like 2025-07-01, got {value}"),
        );
    }
    d
}

/// A TOML datetime as an instant: with an offset it is exact; a local
/// datetime or date is read in the site's zone. DST gaps and overlaps are errors.
pub fn instant(value: &Datetime, tz: chrono_tz::Tz) -> Result<i64, String> {
    let Some(d) = value.date else {
        return Err(format!("expected a date and time, got {value}"));
    };
    let date = NaiveDate::from_ymd_opt(i32::from(d.year), u32::from(d.month), u32::from(d.day))
        .ok_or_else(|| format!("not a calendar date: {value}"))?;
    let time = match value.time {
        Some(t) => NaiveTime::from_hms_nano_opt(
            u32::from(t.hour),
            u32::from(t.minute),
            u32::from(t.second.unwrap_or(0)),
            t.nanosecond.unwrap_or(0),
        )
        .ok_or_else(|| format!("not a time of day: {value}"))?,
        None => NaiveTime::MIN,
    };
    let naive = NaiveDateTime::new(date, time);
    match value.offset {
        Some(toml::value::Offset::Z) => Ok(naive.and_utc().timestamp_millis()),
        Some(toml::value::Offset::Custom { minutes }) => {
            Ok(naive.and_utc().timestamp_millis() - i64::from(minutes) * 60_000)
        }
        None => match tz.from_local_datetime(&naive) {
            LocalResult::Single(t) => Ok(t.timestamp_millis()),
            LocalResult::Ambiguous(_, _) => Err(format!(
                "{value} happens twice in {tz} (DST change): add an offset"
            )),
            LocalResult::None => Err(format!("{value} does not exist in {tz} (DST gap)")),
        },
    }
}

fn is_snake_case(s: &str) -> bool {
    !s.is_empty()
        && s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

const GROUPS: &[&str] = &["energy", "fast"];

/// Parse one profile document (the shipped `profiles/*.toml`).
pub(crate) fn parse_profile(
    src: &str,
    path: &Path,
) -> Result<crate::profile::Profile, ConfigErrors> {
    let mut ctx = Ctx::new(src, path);
    let (root, syntax) = toml::de::DeTable::parse_recoverable(src);
    for e in &syntax {
        ctx.error(
            e.span().unwrap_or(0..0),
            "",
            format!("TOML syntax: {}", e.message().trim()),
        );
    }
    if !syntax.is_empty() {
        return Err(ConfigErrors(ctx.errors));
    }
    let span = root.span();
    let node = toml::Spanned::new(span, toml::de::DeValue::Table(root.into_inner()));
    match super::element::<crate::profile::Profile>(&mut ctx, "profile".to_string(), node) {
        Some(p) => {
            check_profile(&mut ctx, &p);
            if ctx.errors.is_empty() {
                Ok(p.value)
            } else {
                Err(ConfigErrors(ctx.errors))
            }
        }
        None => Err(ConfigErrors(ctx.errors)),
    }
}

/// The shipped Modbus profiles.
pub fn shipped_profiles_public() -> Vec<crate::profile::Profile> {
    shipped_profiles()
}

/// The shipped profiles; their validity is a unit test, so a failure is a build defect.
pub(crate) fn shipped_profiles() -> Vec<crate::profile::Profile> {
    crate::profile::SHIPPED
        .iter()
        .map(|(name, src)| match parse_profile(src, Path::new(name)) {
            Ok(p) => p,
            // Compiled-in data, covered by `shipped_profiles_are_valid`.
            Err(e) => panic!("shipped profile {name} is invalid: {e}"),
        })
        .collect()
}

fn check_profile(ctx: &mut Ctx<'_>, p: &Located<'_, crate::profile::Profile>) {
    let mut seen = BTreeSet::new();
    for (i, f) in p.value.field.iter().enumerate() {
        let idx = i.to_string();
        let at = |k: &str| p.span_of(&["field", &idx, k]);
        let key = |k: &str| p.key(&format!("field[{i}].{k}"));
        if !is_snake_case(&f.quantity) {
            ctx.error(
                at("quantity"),
                key("quantity"),
                format!("quantity names are ASCII snake_case, got `{}`", f.quantity),
            );
        }
        if !seen.insert(f.quantity.clone()) {
            ctx.error(
                at("quantity"),
                key("quantity"),
                format!("quantity `{}` appears twice in the profile", f.quantity),
            );
        }
        if u32::from(f.address) + u32::from(f.dtype.registers()) > 65_536 {
            ctx.error(
                at("address"),
                key("address"),
                "the value runs past register 65535",
            );
        }
        if !f.scale.is_finite() || f.scale == 0.0 || !f.offset.is_finite() {
            ctx.error(
                at("scale"),
                key("scale"),
                "scale must be finite and non-zero, offset finite",
            );
        }
        if !GROUPS.contains(&f.group.as_str()) {
            ctx.error(
                at("group"),
                key("group"),
                format!("unknown rate group `{}`; expected energy or fast", f.group),
            );
        }
    }
}

/// Buses, site profiles and each meter's `modbus` source.
pub(crate) fn validate_modbus(
    ctx: &mut Ctx<'_>,
    doc: &RawDocument<'_>,
) -> (Vec<Bus>, Vec<crate::profile::Profile>) {
    let bus_ids = unique_ids(ctx, &doc.buses, |b| &b.id, "bus");
    for b in &doc.buses {
        let v = &b.value;
        match v.transport {
            Transport::Tcp | Transport::RtuOverTcp => match v.address.as_deref() {
                None => ctx.error(
                    b.span_of(&["transport"]),
                    b.key("address"),
                    "a TCP bus needs `address = \"host:port\"`",
                ),
                Some(a)
                    if !a
                        .rsplit_once(':')
                        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()) =>
                {
                    ctx.error(
                        b.span_of(&["address"]),
                        b.key("address"),
                        format!("`{a}` is not host:port"),
                    );
                }
                Some(_) => {}
            },
            Transport::Rtu => {
                if v.device.is_none() {
                    ctx.error(
                        b.span_of(&["transport"]),
                        b.key("device"),
                        "an RTU bus needs `device = \"/dev/ttyUSB0\"`",
                    );
                }
            }
        }
        if v.concurrency == 0 || (v.concurrency > 1 && v.transport != Transport::Tcp) {
            ctx.error(b.span_of(&["concurrency"]), b.key("concurrency"), "concurrency is at least 1, and only a `tcp` bus may have more than one request in flight");
        }
        if !(1..=125).contains(&v.max_registers) {
            ctx.error(
                b.span_of(&["max_registers"]),
                b.key("max_registers"),
                "Modbus reads 1 to 125 registers at a time",
            );
        }
        if v.timeout_ms == 0 || v.baud == 0 || !(1..=2).contains(&v.stop_bits) {
            ctx.error(
                b.span_of(&[]),
                b.key(""),
                "timeout_ms and baud must be positive, stop_bits 1 or 2",
            );
        }
    }
    let mut profiles = shipped_profiles();
    let mut site_names = BTreeSet::new();
    for p in &doc.profiles {
        check_profile(ctx, p);
        if !site_names.insert(p.value.name.clone()) {
            ctx.error(
                p.span_of(&["name"]),
                p.key("name"),
                format!("duplicate profile `{}`", p.value.name),
            );
        }
        profiles.retain(|q| q.name != p.value.name);
        profiles.push(p.value.clone());
    }
    let buses: Vec<Bus> = doc.buses.iter().map(|b| b.value.clone()).collect();
    for m in &doc.meters {
        let Some(src) = m.value.modbus.as_ref() else {
            continue;
        };
        if !bus_ids.contains(&src.bus) {
            let names: Vec<&str> = bus_ids.iter().map(String::as_str).collect();
            let hint = if names.is_empty() {
                " (no [[bus]] is defined)".to_string()
            } else {
                suggest(&src.bus, names.iter())
            };
            ctx.error(
                m.span_of(&["modbus", "bus"]),
                m.key("modbus.bus"),
                format!("no bus `{}`{hint}", src.bus),
            );
        }
        let tcp = buses
            .iter()
            .find(|b| b.id == src.bus)
            .is_some_and(|b| b.transport == Transport::Tcp);
        let valid_unit = (1..=247).contains(&src.unit) || (tcp && src.unit == 255);
        if !valid_unit {
            ctx.error(
                m.span_of(&["modbus", "unit"]),
                m.key("modbus.unit"),
                format!("unit id {} is outside 1-247", src.unit),
            );
        }
        if src.poll_s == 0 || src.fast_poll_s == Some(0) {
            ctx.error(
                m.span_of(&["modbus", "poll_s"]),
                m.key("modbus.poll_s"),
                "poll periods are at least 1 s",
            );
        }
        match profiles.iter().find(|p| p.name == src.profile) {
            None => {
                let names: Vec<&str> = profiles.iter().map(|p| p.name.as_str()).collect();
                let hint = suggest(&src.profile, names.iter());
                ctx.error(
                    m.span_of(&["modbus", "profile"]),
                    m.key("modbus.profile"),
                    format!("no profile `{}`{hint}", src.profile),
                );
            }
            Some(p) => {
                let q = m.value.counter_quantity();
                if !p.field.iter().any(|f| f.counter && f.quantity == q) {
                    let counters: Vec<&str> = p
                        .field
                        .iter()
                        .filter(|f| f.counter)
                        .map(|f| f.quantity.as_str())
                        .collect();
                    ctx.error(
                        m.span_of(&["modbus", "profile"]),
                        m.key("modbus.profile"),
                        format!("profile `{}` has no counter field `{q}` (its counters: {}); set the meter's `quantity`", p.name, counters.join(", ")),
                    );
                }
            }
        }
    }
    (buses, profiles)
}

/// `[[mqtt]]`, `[broker]` and `[http]`.
pub(crate) fn validate_push(ctx: &mut Ctx<'_>, doc: &RawDocument<'_>) -> Vec<MqttBroker> {
    unique_ids(ctx, &doc.mqtt, |b| &b.id, "mqtt broker");
    let meter_ids: BTreeSet<&str> = doc
        .meters
        .iter()
        .map(|m| m.value.id.as_str())
        .chain(
            doc.failed_ids
                .iter()
                .filter(|(s, _)| s == "meter")
                .map(|(_, id)| id.as_str()),
        )
        .collect();
    for b in &doc.mqtt {
        let v = &b.value;
        if v.qos > 1 {
            ctx.error(
                b.span_of(&["qos"]),
                b.key("qos"),
                "QoS 0 or 1 (1 acknowledges only after the reading is committed)",
            );
        }
        if v.client_id.is_empty() || v.client_id.len() > 64 {
            ctx.error(
                b.span_of(&["client_id"]),
                b.key("client_id"),
                "a stable, non-empty client id of at most 64 characters",
            );
        }
        for (i, r) in v.rfid.iter().enumerate() {
            if r.pattern.trim().is_empty() || r.pattern.contains('#') && !r.pattern.ends_with('#') {
                ctx.error(
                    b.span_of(&["rfid"]),
                    b.key(&format!("rfid[{i}].pattern")),
                    "a topic pattern (segments, `{room}`, `{reader}`, `+`, a trailing `#`)",
                );
            }
        }
        if v.password_env.is_some() && v.password_file.is_some() {
            ctx.error(
                b.span_of(&["password_file"]),
                b.key("password_file"),
                "give the password by `password_env` or `password_file`, not both",
            );
        }
        if !v.tls && (v.ca_file.is_some() || v.client_cert_file.is_some()) {
            ctx.error(
                b.span_of(&["tls"]),
                b.key("tls"),
                "certificates are given but `tls` is not true",
            );
        }
        if v.client_cert_file.is_some() != v.client_key_file.is_some() {
            ctx.error(
                b.span_of(&["client_cert_file"]),
                b.key("client_cert_file"),
                "mutual TLS needs both `client_cert_file` and `client_key_file`",
            );
        }
        if v.max_packet_kib == 0 || v.keep_alive_s < 5 {
            ctx.error(
                b.span_of(&[]),
                b.key(""),
                "max_packet_kib must be positive and keep_alive_s at least 5",
            );
        }
        if let Some(g) = &v.shared_group
            && (g.is_empty() || g.contains(['/', '+', '#']))
        {
            ctx.error(
                b.span_of(&["shared_group"]),
                b.key("shared_group"),
                "a share group name without `/`, `+` or `#`",
            );
        }
        for (i, t) in v.topic.iter().enumerate() {
            let idx = i.to_string();
            let at = |k: &str| b.span_of(&["topic", &idx, k]);
            let key = |k: &str| b.key(&format!("topic[{i}].{k}"));
            if let Err(e) = check_pattern(&t.pattern) {
                ctx.error(at("pattern"), key("pattern"), e);
            }
            let names_meter = t.pattern.contains("{meter_id}")
                || t.meter.is_some()
                || t.meter_field.is_some()
                || t.format == PayloadFormat::LineProtocol;
            if !names_meter {
                ctx.error(at("pattern"), key("pattern"), "nothing names the meter: use {meter_id} in the pattern, `meter`, or `meter_field`");
            }
            if let Some(m) = &t.meter
                && !meter_ids.contains(m.as_str())
            {
                let names: Vec<&str> = meter_ids.iter().copied().collect();
                let hint = suggest(m, names.iter());
                ctx.error(at("meter"), key("meter"), format!("no meter `{m}`{hint}"));
            }
            if t.format == PayloadFormat::Json
                && t.value.is_none()
                && t.fields.is_empty()
                && t.items.is_none()
            {
                ctx.error(
                    at("format"),
                    key("format"),
                    "a JSON mapping needs `value`, `fields` or `items`",
                );
            }
            for q in t.quantity.iter().chain(t.fields.iter()) {
                if !is_snake_case(q) {
                    ctx.error(
                        at("quantity"),
                        key("quantity"),
                        format!("quantity names are ASCII snake_case, got `{q}`"),
                    );
                }
            }
        }
    }
    if let Some(br) = &doc.broker
        && br.value.listen.parse::<std::net::SocketAddr>().is_err()
    {
        ctx.error(
            br.span_of(&["listen"]),
            br.key("listen"),
            format!("`{}` is not ip:port", br.value.listen),
        );
    }
    if let Some(h) = &doc.http {
        if h.value.listen.parse::<std::net::SocketAddr>().is_err() {
            ctx.error(
                h.span_of(&["listen"]),
                h.key("listen"),
                format!("`{}` is not ip:port", h.value.listen),
            );
        }
        if h.value.token_env.is_empty() {
            ctx.error(
                h.span_of(&["token_env"]),
                h.key("token_env"),
                "name the environment variable holding the write token",
            );
        }
    }
    doc.mqtt.iter().map(|b| b.value.clone()).collect()
}

/// A topic pattern: `/`-separated literals, `+`, `{name}`, and `#` last.
pub(crate) fn check_pattern(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Err("empty topic pattern".into());
    }
    let segs: Vec<&str> = p.split('/').collect();
    for (i, s) in segs.iter().enumerate() {
        if *s == "#" && i != segs.len() - 1 {
            return Err("`#` may only be the last segment".into());
        }
        if s.starts_with('{') != s.ends_with('}') {
            return Err(format!(
                "segment `{s}`: a named segment is written {{name}}"
            ));
        }
        if s.starts_with('{') && !is_snake_case(&s[1..s.len() - 1]) {
            return Err(format!("segment `{s}`: the name must be snake_case"));
        }
        if s.len() > 1 && (s.contains('+') || s.contains('#')) {
            return Err(format!("segment `{s}`: `+` and `#` stand alone"));
        }
    }
    Ok(())
}

/// `HH:MM-HH:MM` → minutes after midnight (start, end); the end may be before the start (overnight).
pub fn parse_hours(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.split_once('-')?;
    let m = |x: &str| -> Option<u32> {
        let (h, mi) = x.trim().split_once(':')?;
        let (h, mi): (u32, u32) = (h.parse().ok()?, mi.parse().ok()?);
        (h <= 24 && mi < 60 && h * 60 + mi <= 24 * 60).then_some(h * 60 + mi)
    };
    let (a, b) = (m(a)?, m(b)?);
    (a != b).then_some((a, b))
}

/// The rules used when a site file has no `[[alert]]`.
pub fn default_alert_rules() -> Vec<AlertRule> {
    let rule = |id: &str, kind: AlertKind, severity: AlertSeverity, for_s: u64| AlertRule {
        id: id.to_string(),
        kind,
        severity,
        for_s,
        hysteresis: 0.05,
        threshold: None,
        level: None,
        targets: Vec::new(),
        work_hours: None,
        workdays: None,
        holidays: Vec::new(),
        night: None,
        nights: None,
        window_s: None,
    };
    vec![
        rule(
            "quota-projection",
            AlertKind::QuotaProjection,
            AlertSeverity::Warning,
            0,
        ),
        rule(
            "quota-overrun",
            AlertKind::QuotaOverrun,
            AlertSeverity::Critical,
            0,
        ),
        rule(
            "off-hours-baseload",
            AlertKind::OffHoursBaseload,
            AlertSeverity::Warning,
            2 * 3600,
        ),
        rule(
            "night-flow",
            AlertKind::NightFlow,
            AlertSeverity::Critical,
            0,
        ),
        rule(
            "sub-meter-imbalance",
            AlertKind::Imbalance,
            AlertSeverity::Warning,
            0,
        ),
        rule(
            "meter-silent",
            AlertKind::MeterSilent,
            AlertSeverity::Warning,
            0,
        ),
        rule(
            "counter-reset",
            AlertKind::CounterReset,
            AlertSeverity::Info,
            0,
        ),
        rule(
            "implausible-delta",
            AlertKind::ImplausibleDelta,
            AlertSeverity::Warning,
            0,
        ),
        rule(
            "bus-error-rate",
            AlertKind::BusErrorRate,
            AlertSeverity::Warning,
            600,
        ),
        rule(
            "battery-low",
            AlertKind::BatteryLow,
            AlertSeverity::Warning,
            0,
        ),
        rule(
            "valve-fault",
            AlertKind::ValveFault,
            AlertSeverity::Critical,
            0,
        ),
    ]
}

fn validate_alerts(
    ctx: &mut Ctx<'_>,
    doc: &RawDocument<'_>,
    buildings: &BTreeSet<String>,
    agencies: &BTreeSet<String>,
) -> (Alerting, Vec<AlertRule>, Vec<NotifierConfig>) {
    let alerting = doc
        .alerting
        .as_ref()
        .map(|a| a.value.clone())
        .unwrap_or_default();
    if let Some(a) = &doc.alerting {
        for (key, v) in [
            ("retry_initial_s", a.value.retry_initial_s),
            ("retry_max_s", a.value.retry_max_s),
        ] {
            if !(v.is_finite() && v > 0.0) {
                ctx.error(
                    a.span_of(&[key]),
                    a.key(key),
                    format!("must be a number > 0, got {v}"),
                );
            }
        }
        if a.value.interval_s == 0 {
            ctx.error(
                a.span_of(&["interval_s"]),
                a.key("interval_s"),
                "must be at least 1 s",
            );
        }
    }
    unique_ids(ctx, &doc.alerts, |a| &a.id, "alert");
    let meters: BTreeSet<String> = doc.meters.iter().map(|m| m.value.id.clone()).collect();
    let buses: BTreeSet<String> = doc.buses.iter().map(|b| b.value.id.clone()).collect();
    for r in &doc.alerts {
        let v = &r.value;
        if let Some(t) = v.threshold
            && !t.is_finite()
        {
            ctx.error(
                r.span_of(&["threshold"]),
                r.key("threshold"),
                "must be a finite number",
            );
        }
        if !(0.0..1.0).contains(&v.hysteresis) {
            ctx.error(
                r.span_of(&["hysteresis"]),
                r.key("hysteresis"),
                format!("a fraction in [0, 1), got {}", v.hysteresis),
            );
        }
        if let Some(level) = &v.level
            && !["agency", "building", "site"].contains(&level.as_str())
        {
            let hint = suggest(level, ["agency", "building", "site"].iter());
            ctx.error(
                r.span_of(&["level"]),
                r.key("level"),
                format!("`{level}` is not agency, building or site{hint}"),
            );
        }
        for (key, val) in [("work_hours", &v.work_hours), ("night", &v.night)] {
            if let Some(h) = val
                && parse_hours(h).is_none()
            {
                ctx.error(
                    r.span_of(&[key]),
                    r.key(key),
                    format!("`{h}` is not a local time range like 08:00-18:00"),
                );
            }
        }
        if let Some(days) = &v.workdays
            && days.iter().any(|d| !(1..=7).contains(d))
        {
            ctx.error(
                r.span_of(&["workdays"]),
                r.key("workdays"),
                "days are 1 (Monday) to 7 (Sunday)",
            );
        }
        for (i, h) in v.holidays.iter().enumerate() {
            if crate::factors::to_date(h).is_none() {
                let idx = i.to_string();
                ctx.error(
                    r.span_of(&["holidays", &idx]),
                    r.key(&format!("holidays[{i}]")),
                    format!("`{h}` is not a date"),
                );
            }
        }
        let level = v.level.as_deref();
        let known: (&BTreeSet<String>, &str) = match v.kind {
            AlertKind::QuotaOverrun | AlertKind::QuotaProjection if level == Some("building") => {
                (buildings, "building")
            }
            AlertKind::QuotaOverrun | AlertKind::QuotaProjection => (agencies, "agency"),
            AlertKind::OffHoursBaseload if level == Some("agency") => (agencies, "agency"),
            AlertKind::OffHoursBaseload => (buildings, "building"),
            AlertKind::BusErrorRate => (&buses, "bus"),
            _ => (&meters, "meter"),
        };
        for (i, t) in v.targets.iter().enumerate() {
            if level != Some("site") {
                reference(ctx, r, &format!("targets.{i}"), t, known.0, known.1);
            }
        }
    }
    unique_ids(ctx, &doc.notifiers, |n| &n.id, "notifier");
    let brokers: BTreeSet<String> = doc.mqtt.iter().map(|b| b.value.id.clone()).collect();
    for n in &doc.notifiers {
        let v = &n.value;
        let http = matches!(
            v.kind,
            NotifierKind::Webhook
                | NotifierKind::Wecom
                | NotifierKind::Dingtalk
                | NotifierKind::Feishu
        );
        if http && v.url.is_none() == v.url_env.is_none() {
            ctx.error(n.span_of(&["kind"]), n.key("url"), "give exactly one of `url` or `url_env` (the name of an environment variable holding the URL)");
        }
        if let Some(u) = &v.url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            ctx.error(
                n.span_of(&["url"]),
                n.key("url"),
                format!("`{u}` is not an http(s) URL"),
            );
        }
        if v.kind == NotifierKind::Mqtt {
            match v.broker.as_deref() {
                None => ctx.error(
                    n.span_of(&["kind"]),
                    n.key("broker"),
                    "an MQTT notifier needs `broker` (a [[mqtt]] id, or \"embedded\")",
                ),
                Some("embedded") if doc.broker.is_none() => ctx.error(
                    n.span_of(&["broker"]),
                    n.key("broker"),
                    "`embedded` needs a [broker] section",
                ),
                Some("embedded") => {}
                Some(b) => {
                    reference(ctx, n, "broker", b, &brokers, "mqtt broker");
                }
            }
        }
        if !(v.timeout_s.is_finite() && v.timeout_s > 0.0) {
            ctx.error(
                n.span_of(&["timeout_s"]),
                n.key("timeout_s"),
                format!("must be a number > 0, got {}", v.timeout_s),
            );
        }
    }
    let rules = if doc.alerts.is_empty() {
        default_alert_rules()
    } else {
        doc.alerts.iter().map(|a| a.value.clone()).collect()
    };
    (
        alerting,
        rules,
        doc.notifiers.iter().map(|n| n.value.clone()).collect(),
    )
}
