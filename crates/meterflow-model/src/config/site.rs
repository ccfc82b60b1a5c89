//! `[site]`, `[store]`, `[[building]]`, `[[zone]]`, `[[agency]]`,
//! `[[headcount]]` and `[[space]]`: the site, its places and its
//! denominators, with their checks.

use std::collections::BTreeSet;

use chrono::Datelike as _;
use std::path::PathBuf;

use serde::Deserialize;
use toml::value::Datetime;

use super::checks::*;
use super::document::{Ctx, Located, suggest};
use super::*;

/// `[site]`: the site as a whole.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSection {
    /// Display name of the site (e.g. the 机关事务管理局's complex).
    pub name: String,
    /// IANA time zone deciding day, month and year boundaries.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Factor set used for kgce and CO₂ conversions (a `factor_set` of the registry).
    #[serde(default = "default_factor_set")]
    pub factor_set: String,
    /// Grid region of the CO₂ grid factor: `national` or `east_china`.
    #[serde(default = "default_grid_region")]
    pub grid_region: String,
    /// Quota set the site is graded against (a `quota_set` of the registry), if any.
    #[serde(default)]
    pub quota_set: Option<String>,
    /// This instance's shard `i/N` of a sharded deployment (ADR 0013);
    /// `meterflow run --shard` overrides it. Absent = the whole site.
    #[serde(default)]
    pub shard: Option<String>,
    /// Share of a window's 15-minute buckets that must be measured or
    /// estimated for a figure compared across years (同比, reductions,
    /// targets, grades) to be given, %. Default 95.
    #[serde(default = "default_threshold")]
    pub completeness_threshold_pct: f64,
    /// Data year of the grid CO₂ factor used for every year (comparable
    /// intensity across years); absent = the published year nearest each
    /// data year (the earlier one on a tie).
    #[serde(default)]
    pub carbon_factor_year: Option<i32>,
    /// Fewest days with data before a running year's end is projected (and
    /// a projected overrun alerted). Default 30.
    #[serde(default = "default_projection_min_days")]
    pub projection_min_days: u32,
    /// An estimated 15-minute bucket counts as covered when the gap it
    /// fills lasts at most this long, h (a longer gap keeps its total but
    /// not its coverage: its split over days and hours is a guess). Default 24.
    #[serde(default = "default_covered_gap_h")]
    pub covered_gap_max_h: f64,
    /// Local dates the whole site is closed (本单位闭馆日: on top of the
    /// national calendar's holidays): not worked for every rule and for
    /// the working-day water basis.
    #[serde(default)]
    pub closures: Vec<toml::value::Datetime>,
}

fn default_covered_gap_h() -> f64 {
    24.0
}

fn default_threshold() -> f64 {
    95.0
}
fn default_projection_min_days() -> u32 {
    30
}

fn default_timezone() -> String {
    "Asia/Shanghai".to_string()
}
fn default_factor_set() -> String {
    "cn-public-institution".to_string()
}
fn default_grid_region() -> String {
    "national".to_string()
}

/// `[backup]`: scheduled online backups of the store while `run` runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupSection {
    /// Directory of the backups; relative paths are relative to the config file.
    pub dir: PathBuf,
    /// Hours between backups (default 24); the `backup_stale` alert fires
    /// when the newest good backup is older than 1.5 periods.
    #[serde(default = "default_backup_every_h")]
    pub every_h: u32,
    /// Backups kept, newest first (default 7); older ones are deleted.
    #[serde(default = "default_backup_keep")]
    pub keep: u32,
}

fn default_backup_every_h() -> u32 {
    24
}
fn default_backup_keep() -> u32 {
    7
}

/// `[store]`: the embedded store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// SQLite database file; relative paths are relative to the config file.
    #[serde(default = "default_store_path")]
    pub path: PathBuf,
    /// Days of raw readings to keep (intervals and rollups are kept forever);
    /// absent = keep raw readings forever.
    #[serde(default)]
    pub raw_retention_days: Option<u32>,
    /// Readings per write transaction during import (rows).
    #[serde(default = "default_batch_rows")]
    pub batch_rows: usize,
    /// SQLite page cache of the writer (MiB).
    #[serde(default = "default_cache_mib")]
    pub cache_mib: u32,
    /// No reading is older than this local date (a meter's `in_service`
    /// date, when later, applies to it); an earlier one is a dead letter
    /// (`implausible_time`). Absent = 2000-01-01.
    #[serde(default)]
    pub earliest: Option<Datetime>,
    /// How far past its receive time a reading's source time may be (s): a
    /// reading further ahead is a dead letter (`implausible_time`); one more
    /// than 5 minutes ahead but within this is stored and flagged
    /// `clock_skew`. Default 86 400 (one day).
    #[serde(default = "default_max_future_s")]
    pub max_future_s: u64,
    /// A series' local month that ended more than this many days before its
    /// newest reading is kept compacted (ADR 0024); `meterflow run` does it
    /// once a day, `meterflow compact` on demand. 0 = never. Default 35.
    #[serde(default = "default_compact_after_days")]
    pub compact_after_days: u32,
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            path: default_store_path(),
            raw_retention_days: None,
            batch_rows: default_batch_rows(),
            cache_mib: default_cache_mib(),
            earliest: None,
            max_future_s: default_max_future_s(),
            compact_after_days: default_compact_after_days(),
        }
    }
}

const fn default_compact_after_days() -> u32 {
    35
}

const fn default_max_future_s() -> u64 {
    86_400
}

/// The site-wide earliest plausible reading date when `[store] earliest` is
/// absent.
pub const DEFAULT_EARLIEST: (i32, u32, u32) = (2000, 1, 1);

fn default_store_path() -> PathBuf {
    PathBuf::from("data/meterflow.db")
}
const fn default_batch_rows() -> usize {
    50_000
}
const fn default_cache_mib() -> u32 {
    256
}

/// `[[building]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Building {
    /// Unique building id.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Total building area (建筑面积), m².
    pub total_area_m2: f64,
    /// Office-zone building area (dormitories/residential excluded), m²; defaults to the total.
    #[serde(default)]
    pub office_area_m2: Option<f64>,
    /// Heated area, m².
    #[serde(default)]
    pub heated_area_m2: Option<f64>,
    /// Cooled area, m².
    #[serde(default)]
    pub cooled_area_m2: Option<f64>,
    /// First day the building counts (its area in the denominators);
    /// absent = always. A building added in 2024 leaves 2020 unchanged.
    #[serde(default)]
    pub in_service: Option<Datetime>,
    /// Floor area of special-function rooms (data centre, canteen, laundry),
    /// m²: taken out with their sub-item D electricity from the quota
    /// standard's non-heating intensity.
    #[serde(default)]
    pub special_area_m2: Option<f64>,
    /// 使用面积 / 建筑面积 of the building's rooms: a ledger room known only
    /// by its usable area is converted with it; absent = such a room is
    /// left out of the denominators and flagged.
    #[serde(default)]
    pub usable_to_gross: Option<f64>,
}

/// `[[zone]]`: a floor or wing of a building.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    /// Unique zone id.
    pub id: String,
    /// Building the zone is in.
    pub building: String,
    /// Floor number (basement floors negative).
    #[serde(default)]
    pub floor: Option<i32>,
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Building area of the zone, m².
    pub area_m2: f64,
}

/// `[[agency]]`: an agency (单位) housed on the site.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agency {
    /// Unique agency id (used in API scopes, e.g. `agency:<id>`).
    pub id: String,
    /// Display name.
    pub name: String,
}

/// `[[headcount]]`: an agency's persons from a date on (until its next row).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Headcount {
    /// Agency id.
    pub agency: String,
    /// First day this row is valid (local date).
    pub from: Datetime,
    /// 用能人数: persons actually working in the office zone, persons.
    pub persons: f64,
    /// 编制: establishment, persons.
    #[serde(default)]
    pub establishment: Option<u32>,
    /// 编外: off-establishment staff, persons.
    #[serde(default)]
    pub off_establishment: Option<u32>,
    /// Where the figure comes from (document, ledger).
    #[serde(default)]
    pub source: Option<String>,
}

/// `[[space]]`: office area an agency occupies in a zone or building over a period.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Space {
    /// Agency id.
    pub agency: String,
    /// Zone occupied (either `zone` or `building`).
    #[serde(default)]
    pub zone: Option<String>,
    /// Building occupied (either `zone` or `building`).
    #[serde(default)]
    pub building: Option<String>,
    /// First day of occupation (local date).
    pub from: Datetime,
    /// Last day of occupation (local date, inclusive); absent = ongoing.
    #[serde(default)]
    pub to: Option<Datetime>,
    /// Office area occupied, m².
    pub area_m2: f64,
}

/// What `[site]` resolves to: the section, its zone (`None` after an
/// error) and the shard.
pub(crate) struct SiteCheck<'d> {
    pub(crate) section: &'d Located<'d, SiteSection>,
    pub(crate) tz: Option<chrono_tz::Tz>,
    pub(crate) shard: crate::shard::Shard,
}

/// Check `[site]` and `[store]`; `None` when there is no `[site]`.
pub(crate) fn check_site<'d>(
    ctx: &mut Ctx<'_>,
    site_rows: Option<&'d Located<'d, SiteSection>>,
    store_rows: Option<&'d Located<'d, StoreSection>>,
) -> Option<SiteCheck<'d>> {
    let Some(site) = site_rows else {
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
    for (i, c) in site.value.closures.iter().enumerate() {
        if crate::factors::to_date(c).is_none() {
            let idx = i.to_string();
            ctx.error(
                site.span_of(&["closures", &idx]),
                site.key(&format!("closures[{i}]")),
                format!("`{c}` is not a local date (YYYY-MM-DD)"),
            );
        }
    }
    if let Some(store) = store_rows {
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
        if let Some(e) = &store.value.earliest
            && let Some(d) = date(ctx, store, "earliest", e)
            && d.year() < 1970
        {
            ctx.error(
                store.span_of(&["earliest"]),
                store.key("earliest"),
                format!("{d} is before 1970: give the date the oldest data can have"),
            );
        }
        if store.value.compact_after_days > 0 && store.value.compact_after_days < 2 {
            ctx.error(
                store.span_of(&["compact_after_days"]),
                store.key("compact_after_days"),
                "must be 0 (never) or at least 2 days: readings a day late would open compacted months again and again",
            );
        }
        if store.value.max_future_s > 366 * 86_400 {
            ctx.error(
                store.span_of(&["max_future_s"]),
                store.key("max_future_s"),
                "must be at most a year (31 622 400 s)",
            );
        }
    }

    Some(SiteCheck {
        section: site,
        tz,
        shard,
    })
}

/// The ids of each kind of element, including those whose table failed to
/// parse (so that references to them are not reported twice).
pub(crate) struct Ids {
    pub(crate) buildings: BTreeSet<String>,
    pub(crate) zones: BTreeSet<String>,
    pub(crate) agencies: BTreeSet<String>,
    pub(crate) meters: BTreeSet<String>,
}

/// Collect the ids, reporting duplicates.
pub(crate) fn collect_ids(
    ctx: &mut Ctx<'_>,
    agencies_rows: &[Located<'_, Agency>],
    buildings_rows: &[Located<'_, Building>],
    failed_ids: &[(String, String)],
    meters_rows: &[Located<'_, Meter>],
    zones_rows: &[Located<'_, Zone>],
) -> Ids {
    let failed = |section: &'static str| -> Vec<String> {
        failed_ids
            .iter()
            .filter(|(s, _)| s == section)
            .map(|(_, id)| id.clone())
            .collect()
    };
    let mut buildings = unique_ids(ctx, buildings_rows, |b| &b.id, "building");
    let mut zones = unique_ids(ctx, zones_rows, |z| &z.id, "zone");
    let mut agencies = unique_ids(ctx, agencies_rows, |a| &a.id, "agency");
    let mut meters = unique_ids(ctx, meters_rows, |m| &m.id, "meter");
    buildings.extend(failed("building"));
    zones.extend(failed("zone"));
    agencies.extend(failed("agency"));
    meters.extend(failed("meter"));

    Ids {
        buildings,
        zones,
        agencies,
        meters,
    }
}

/// Buildings, zones, headcounts and spaces.
pub(crate) fn check_places(
    ctx: &mut Ctx<'_>,
    buildings_rows: &[Located<'_, Building>],
    headcounts: &[Located<'_, Headcount>],
    spaces: &[Located<'_, Space>],
    zones_rows: &[Located<'_, Zone>],
    ids: &Ids,
) {
    let (buildings, zones, agencies) = (&ids.buildings, &ids.zones, &ids.agencies);
    for b in buildings_rows {
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
    for z in zones_rows {
        reference(ctx, z, "building", &z.value.building, buildings, "building");
        non_negative(ctx, z, "area_m2", Some(z.value.area_m2));
    }
    for h in headcounts {
        reference(ctx, h, "agency", &h.value.agency, agencies, "agency");
        non_negative(ctx, h, "persons", Some(h.value.persons));
        date(ctx, h, "from", &h.value.from);
    }
    for s in spaces {
        reference(ctx, s, "agency", &s.value.agency, agencies, "agency");
        match (&s.value.zone, &s.value.building) {
            (Some(z), None) => {
                reference(ctx, s, "zone", z, zones, "zone");
            }
            (None, Some(b)) => {
                reference(ctx, s, "building", b, buildings, "building");
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
}

pub(crate) const GRID_REGIONS: &[&str] = &["national", "east_china"];
