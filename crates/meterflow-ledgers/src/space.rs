//! The office-space ledger (`docs/methodology.md` §9): rooms, their allocation to
//! agencies over time, occupants with rank, and headcount per agency over
//! time. Derived: area per person against the 2014 standard, 超标 rooms,
//! idle rooms and 闲置率; and the denominators — the headcount entries and
//! the allocated rooms' areas join the site's `[[headcount]]` and `[[space]]`
//! rows ([`merged_site`]), so every per-capita and per-area KPI uses them
//! from their effective date on.
//!
//! Rules (documented in `docs/ledgers.md`):
//! - a room's latest `room` entry at a date describes it;
//! - an allocation runs from its time until `until` (inclusive) or the
//!   room's next allocation, whichever is first;
//! - a person's latest `occupant` entry places them (no room = left);
//! - an office room (办公室) that is allocated and has nobody in it is idle
//!   (闲置) since the later of its allocation and the last person leaving;
//!   service, equipment and ancillary rooms have no occupants by nature and
//!   are never idle;
//! - 闲置率 = idle usable area / usable area of the rooms in scope × 100;
//! - a room is 超标 when its usable area exceeds the sum of its occupants'
//!   standard areas; an agency is 超标 when its office rooms' usable area
//!   exceeds the sum of its occupants' standards.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};
use meterflow_core::time::{day_start, local_date};
use meterflow_model::Site;
use meterflow_model::config::{Headcount, Space};
use meterflow_store::LedgerEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::rules::{Reject, agency, date_field, norm, number, of_kind, text, typed};

/// Use types: 办公室, 服务用房, 设备用房, 附属用房.
pub const USE_TYPES: [&str; 4] = ["office", "service", "equipment", "ancillary"];

/// The 2014 standard: usable office area per person (m²) by rank, per level.
pub fn standard_table(level: &str) -> &'static [(&'static str, f64)] {
    match level {
        "central" => &[
            ("部级正", 54.0),
            ("部级副", 42.0),
            ("正司局", 24.0),
            ("副司局", 18.0),
            ("处级", 12.0),
            ("处以下", 9.0),
        ],
        "provincial" => &[
            ("省级正", 54.0),
            ("省级副", 42.0),
            ("正厅局", 30.0),
            ("副厅局", 24.0),
            ("正处", 18.0),
            ("副处", 12.0),
            ("处以下", 9.0),
        ],
        "city" => &[
            ("市级正", 42.0),
            ("市级副", 30.0),
            ("正局处", 24.0),
            ("副局处", 18.0),
            ("以下", 9.0),
        ],
        "county" => &[
            ("县级正", 30.0),
            ("县级副", 24.0),
            ("正科", 18.0),
            ("副科", 12.0),
            ("以下", 9.0),
        ],
        _ => &[],
    }
}

/// Standard m² per person of `rank` at the site's level.
pub fn standard_m2(site: &Site, rank: &str) -> Option<f64> {
    let level = site.office.level.as_deref()?;
    standard_table(level)
        .iter()
        .find(|(r, _)| *r == rank)
        .map(|(_, m)| *m)
}

/// A room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Room {
    /// Room id, unique in the site.
    pub room: String,
    /// Building.
    pub building: String,
    /// Zone (for area-share allocation of the zone's meters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Floor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<String>,
    /// Use type.
    pub use_type: String,
    /// Usable area (使用面积), m².
    pub usable_m2: f64,
    /// Building area apportioned to the room (建筑面积, with its share of
    /// corridors and walls), m²: the per-area denominator. Default: usable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area_m2: Option<f64>,
}

/// An allocation of a room to an agency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allocation {
    /// Room id.
    pub room: String,
    /// Agency.
    pub agency: String,
    /// Use agreement id.
    pub agreement: String,
    /// Last day (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

/// A person's place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Occupant {
    /// Person (name or staff id).
    pub person: String,
    /// Agency.
    pub agency: String,
    /// Rank, in the table of `[office] level`.
    pub rank: String,
    /// Room; absent = left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
}

/// Headcount of an agency from a date.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadcountEntry {
    /// Agency.
    pub agency: String,
    /// 用能人数.
    pub persons: f64,
    /// 编制.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub establishment: Option<f64>,
    /// 编外.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub off_establishment: Option<f64>,
    /// Where the figure comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

fn room_known(state: &[LedgerEvent], room: &str) -> bool {
    of_kind::<Room>(state, "room").any(|(_, r)| r.room == room)
}

fn whole(field: &str, v: Option<f64>) -> Result<(), Reject> {
    match v {
        Some(n) if !(n.is_finite() && (0.0..=1.0e6).contains(&n) && n.fract() == 0.0) => Err((
            field.to_string(),
            format!("{n} is not a whole number of persons"),
        )),
        _ => Ok(()),
    }
}

/// Check an entry; its agency and normalised fields.
pub fn check(
    site: &Site,
    kind: &str,
    state: &[LedgerEvent],
    _ts: i64,
    body: Value,
) -> Result<(Option<String>, Value), Reject> {
    match kind {
        "room" => {
            let r: Room = typed(&body)?;
            text("room", &r.room)?;
            if !site.buildings.iter().any(|b| b.id == r.building) {
                return Err(("building".into(), format!("no building `{}`", r.building)));
            }
            if let Some(z) = &r.zone
                && !site
                    .zones
                    .iter()
                    .any(|x| &x.id == z && x.building == r.building)
            {
                return Err((
                    "zone".into(),
                    format!("no zone `{z}` in building `{}`", r.building),
                ));
            }
            if !USE_TYPES.contains(&r.use_type.as_str()) {
                return Err((
                    "use_type".into(),
                    format!("`{}`: one of {}", r.use_type, USE_TYPES.join(", ")),
                ));
            }
            number("usable_m2", r.usable_m2, 0.1, 100_000.0)?;
            if let Some(a) = r.area_m2 {
                number("area_m2", a, r.usable_m2, 200_000.0)?;
            }
            Ok((None, norm(&r)))
        }
        "allocation" => {
            let a: Allocation = typed(&body)?;
            agency(site, "agency", &a.agency)?;
            text("agreement", &a.agreement)?;
            if !room_known(state, &a.room) {
                return Err(("room".into(), format!("no room `{}` registered", a.room)));
            }
            if let Some(u) = &a.until {
                let until = date_field("until", u)?;
                if until < local_date(_ts, site.tz) {
                    return Err(("until".into(), "ends before it starts".into()));
                }
            }
            Ok((Some(a.agency.clone()), norm(&a)))
        }
        "occupant" => {
            let o: Occupant = typed(&body)?;
            text("person", &o.person)?;
            agency(site, "agency", &o.agency)?;
            let Some(level) = site.office.level.as_deref() else {
                return Err((
                    "rank".into(),
                    "set `[office] level` (central, provincial, city or county) in the site config first: it picks the standard's table".into(),
                ));
            };
            if standard_m2(site, &o.rank).is_none() {
                let names: Vec<&str> = standard_table(level).iter().map(|(r, _)| *r).collect();
                return Err((
                    "rank".into(),
                    format!("`{}`: one of {} ({level} level)", o.rank, names.join(", ")),
                ));
            }
            if let Some(r) = &o.room
                && !room_known(state, r)
            {
                return Err(("room".into(), format!("no room `{r}` registered")));
            }
            Ok((Some(o.agency.clone()), norm(&o)))
        }
        "headcount" => {
            let h: HeadcountEntry = typed(&body)?;
            agency(site, "agency", &h.agency)?;
            number("persons", h.persons, 0.0, 1.0e6)?;
            whole("establishment", h.establishment)?;
            whole("off_establishment", h.off_establishment)?;
            Ok((Some(h.agency.clone()), norm(&h)))
        }
        other => Err(("kind".into(), format!("no space entry `{other}`"))),
    }
}

/// The site with the ledger's headcounts and allocated areas added to its
/// `[[headcount]]` and `[[space]]` rows (a ledger headcount on the same day as
/// a config row wins).
pub fn merged_site(site: &Site, events: &[LedgerEvent]) -> Site {
    if events.is_empty() {
        return site.clone();
    }
    let mut s = site.clone();
    // One source of truth per fact and period: from the first day the
    // ledger holds an agency's headcount (or rooms), its entries replace the
    // site file's rows for that agency; they never add to them.
    let mut ledger_heads: BTreeMap<String, NaiveDate> = BTreeMap::new();
    for (e, h) in of_kind::<HeadcountEntry>(events, "headcount") {
        let from = local_date(e.ts_ms, site.tz);
        let first = ledger_heads.entry(h.agency.clone()).or_insert(from);
        *first = (*first).min(from);
        s.headcounts.push(Headcount {
            agency: h.agency,
            from: meterflow_model::factors::from_date(from),
            persons: h.persons,
            establishment: h.establishment.map(|v| v as u32),
            off_establishment: h.off_establishment.map(|v| v as u32),
            source: Some(format!("office-space ledger entry {}", e.id)),
        });
    }
    s.headcounts.retain(|h| {
        let from = meterflow_model::factors::to_date(&h.from);
        let from_ledger = h
            .source
            .as_deref()
            .is_some_and(|x| x.starts_with("office-space ledger"));
        from_ledger
            || match (ledger_heads.get(&h.agency), from) {
                (Some(first), Some(f)) => f < *first,
                _ => true,
            }
    });
    s.headcounts.sort_by(|a, b| {
        (
            a.agency.as_str(),
            meterflow_model::factors::to_date(&a.from),
        )
            .cmp(&(
                b.agency.as_str(),
                meterflow_model::factors::to_date(&b.from),
            ))
    });
    let periods = allocation_periods(site, events);
    let mut ledger_rooms: BTreeMap<String, NaiveDate> = BTreeMap::new();
    for p in &periods {
        let first = ledger_rooms.entry(p.agency.clone()).or_insert(p.from);
        *first = (*first).min(p.from);
    }
    // Site rows of those agencies end the day before the ledger starts.
    s.spaces = std::mem::take(&mut s.spaces)
        .into_iter()
        .filter_map(|mut row| {
            let Some(first) = ledger_rooms.get(&row.agency) else {
                return Some(row);
            };
            let from = meterflow_model::factors::to_date(&row.from)?;
            if from >= *first {
                return None;
            }
            let last = first.pred_opt()?;
            let to = row.to.as_ref().and_then(meterflow_model::factors::to_date);
            if to.is_none_or(|t| t > last) {
                row.to = Some(meterflow_model::factors::from_date(last));
            }
            Some(row)
        })
        .collect();
    for p in periods {
        let room = room_at(events, &p.room, day_start(p.from, site.tz));
        if let Some(r) = room
            && let Some(area) = gross_area(site, &r)
        {
            s.spaces.push(Space {
                agency: p.agency,
                zone: r.zone.clone(),
                building: if r.zone.is_some() {
                    None
                } else {
                    Some(r.building.clone())
                },
                from: meterflow_model::factors::from_date(p.from),
                to: p.to.map(meterflow_model::factors::from_date),
                area_m2: area,
            });
        }
    }
    s
}

/// A room's building area (建筑面积): as recorded, or its usable area
/// (使用面积) converted with its building's declared ratio; `None` when
/// neither is known (the room is then left out and flagged, never counted
/// with its usable area as if it were building area).
fn gross_area(site: &Site, r: &Room) -> Option<f64> {
    if let Some(a) = r.area_m2 {
        return Some(a);
    }
    let ratio = site
        .buildings
        .iter()
        .find(|b| b.id == r.building)
        .and_then(|b| b.usable_to_gross)
        .filter(|x| *x > 0.0)?;
    Some(r.usable_m2 / ratio)
}

/// Rooms left out of the area denominators, as (agency, room): only their
/// usable area is known and their building declares no `usable_to_gross`.
pub fn rooms_without_gross_area(site: &Site, events: &[LedgerEvent]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = allocation_periods(site, events)
        .into_iter()
        .filter(|p| {
            room_at(events, &p.room, day_start(p.from, site.tz))
                .is_some_and(|r| gross_area(site, &r).is_none())
        })
        .map(|p| (p.agency, p.room))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// One allocation over its validity: `from ..= to` (local dates).
#[derive(Debug, Clone, PartialEq)]
pub struct AllocationPeriod {
    /// Room.
    pub room: String,
    /// Agency.
    pub agency: String,
    /// Agreement.
    pub agreement: String,
    /// First day.
    pub from: NaiveDate,
    /// Last day (inclusive); `None` = ongoing.
    pub to: Option<NaiveDate>,
}

/// Every allocation with its end (its `until`, or the day before the room's next allocation).
pub fn allocation_periods(site: &Site, events: &[LedgerEvent]) -> Vec<AllocationPeriod> {
    let allocs: Vec<(NaiveDate, Allocation)> = of_kind::<Allocation>(events, "allocation")
        .map(|(e, a)| (local_date(e.ts_ms, site.tz), a))
        .collect();
    allocs
        .iter()
        .enumerate()
        .map(|(i, (from, a))| {
            let until = a.until.as_deref().and_then(|u| date_field("until", u).ok());
            let next = allocs[i + 1..]
                .iter()
                .find(|(_, b)| b.room == a.room)
                .and_then(|(d, _)| d.checked_sub_signed(Duration::days(1)));
            let to = match (until, next) {
                (Some(u), Some(n)) => Some(u.min(n)),
                (u, n) => u.or(n),
            };
            AllocationPeriod {
                room: a.room.clone(),
                agency: a.agency.clone(),
                agreement: a.agreement.clone(),
                from: *from,
                to,
            }
        })
        .filter(|p| p.to.is_none_or(|t| t >= p.from))
        .collect()
}

/// A room's description in effect at `ts`.
fn room_at(events: &[LedgerEvent], room: &str, ts: i64) -> Option<Room> {
    of_kind::<Room>(events, "room")
        .filter(|(e, r)| r.room == room && e.ts_ms <= ts)
        .last()
        .map(|(_, r)| r)
}

/// A room on a date, as the summary reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoomStatus {
    /// Room id.
    pub room: String,
    /// Building.
    pub building: String,
    /// Floor, as registered.
    pub floor: Option<String>,
    /// Use type.
    pub use_type: String,
    /// Usable area, m².
    pub usable_m2: f64,
    /// Agency it is allocated to.
    pub agency: Option<String>,
    /// Use agreement.
    pub agreement: Option<String>,
    /// Persons in it.
    pub occupants: Vec<String>,
    /// Sum of their standard areas, m².
    pub standard_m2: f64,
    /// Usable area above the standard (超标).
    pub over_standard: bool,
    /// Allocated office room with nobody in it (闲置).
    pub idle: bool,
    /// Idle since (local date).
    pub idle_since: Option<NaiveDate>,
}

/// An agency's office space on a date.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgencySpace {
    /// Agency.
    pub agency: String,
    /// 用能人数 on the date (ledger or config).
    pub persons: f64,
    /// Rooms allocated to it.
    pub rooms: usize,
    /// Usable area of its rooms, m².
    pub usable_m2: f64,
    /// Usable area of its office rooms, m².
    pub office_m2: f64,
    /// Persons placed in its rooms.
    pub occupants: usize,
    /// Office m² per occupant.
    pub m2_per_person: Option<f64>,
    /// Sum of its occupants' standard areas, m².
    pub standard_m2: f64,
    /// Office area above the standard (超标).
    pub over_standard: bool,
    /// Its 超标 rooms.
    pub over_standard_rooms: Vec<String>,
    /// Its idle rooms.
    pub idle_rooms: Vec<String>,
    /// Idle usable area, m².
    pub idle_m2: f64,
    /// 闲置率, %.
    pub idle_rate_pct: Option<f64>,
}

/// The whole site's office space on a date.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpaceSummary {
    /// The date.
    pub date: NaiveDate,
    /// Every registered room.
    pub rooms: Vec<RoomStatus>,
    /// Per agency.
    pub agencies: Vec<AgencySpace>,
    /// Usable area of every registered room, m².
    pub total_usable_m2: f64,
    /// Idle usable area, m².
    pub idle_m2: f64,
    /// 闲置率 of the site, %.
    pub idle_rate_pct: Option<f64>,
}

/// The office space at the end of `date`.
pub fn summarize(site: &Site, events: &[LedgerEvent], date: NaiveDate) -> SpaceSummary {
    let end = day_start(date + Duration::days(1), site.tz);
    let upto: Vec<LedgerEvent> = events.iter().filter(|e| e.ts_ms < end).cloned().collect();
    // Rooms as described on the date.
    let mut rooms: BTreeMap<String, Room> = BTreeMap::new();
    for (_, r) in of_kind::<Room>(&upto, "room") {
        rooms.insert(r.room.clone(), r);
    }
    // Allocation in force on the date.
    let mut alloc: BTreeMap<String, AllocationPeriod> = BTreeMap::new();
    for p in allocation_periods(site, &upto) {
        if p.from <= date && p.to.is_none_or(|t| date <= t) {
            alloc.insert(p.room.clone(), p);
        }
    }
    // People, in time order; when a room empties, remember when.
    let mut place: BTreeMap<String, Occupant> = BTreeMap::new();
    let mut emptied: BTreeMap<String, NaiveDate> = BTreeMap::new();
    for (e, o) in of_kind::<Occupant>(&upto, "occupant") {
        let day = local_date(e.ts_ms, site.tz);
        let old = place.insert(o.person.clone(), o.clone());
        if let Some(r) = old.and_then(|x| x.room)
            && !place
                .values()
                .any(|p| p.room.as_deref() == Some(r.as_str()))
        {
            emptied.insert(r, day);
        }
    }
    let mut statuses = Vec::new();
    for (id, r) in &rooms {
        let a = alloc.get(id);
        let people: Vec<&Occupant> = place
            .values()
            .filter(|p| p.room.as_deref() == Some(id.as_str()))
            .collect();
        let standard: f64 = people
            .iter()
            .filter_map(|p| standard_m2(site, &p.rank))
            .sum();
        let office = r.use_type == "office";
        let idle = office && a.is_some() && people.is_empty();
        statuses.push(RoomStatus {
            room: id.clone(),
            building: r.building.clone(),
            floor: r.floor.clone(),
            use_type: r.use_type.clone(),
            usable_m2: r.usable_m2,
            agency: a.map(|a| a.agency.clone()),
            agreement: a.map(|a| a.agreement.clone()),
            occupants: people.iter().map(|p| p.person.clone()).collect(),
            standard_m2: standard,
            over_standard: office && !people.is_empty() && r.usable_m2 > standard + 1e-9,
            idle,
            idle_since: a
                .filter(|_| idle)
                .map(|a| emptied.get(id).copied().map_or(a.from, |d| d.max(a.from))),
        });
    }
    let merged = merged_site(site, events);
    let agencies = site
        .agencies
        .iter()
        .map(|ag| {
            let mine: Vec<&RoomStatus> = statuses
                .iter()
                .filter(|r| r.agency.as_deref() == Some(ag.id.as_str()))
                .collect();
            let usable: f64 = mine.iter().map(|r| r.usable_m2).sum();
            let office: f64 = mine
                .iter()
                .filter(|r| r.use_type == "office")
                .map(|r| r.usable_m2)
                .sum();
            let occupants: usize = mine.iter().map(|r| r.occupants.len()).sum();
            let standard: f64 = mine.iter().map(|r| r.standard_m2).sum();
            let idle_m2: f64 = mine.iter().filter(|r| r.idle).map(|r| r.usable_m2).sum();
            AgencySpace {
                agency: ag.id.clone(),
                persons: meterflow_core::denominators::persons_on(&merged, &ag.id, date),
                rooms: mine.len(),
                usable_m2: usable,
                office_m2: office,
                occupants,
                m2_per_person: (occupants > 0).then(|| office / occupants as f64),
                standard_m2: standard,
                over_standard: occupants > 0 && office > standard + 1e-9,
                over_standard_rooms: mine
                    .iter()
                    .filter(|r| r.over_standard)
                    .map(|r| r.room.clone())
                    .collect(),
                idle_rooms: mine
                    .iter()
                    .filter(|r| r.idle)
                    .map(|r| r.room.clone())
                    .collect(),
                idle_m2,
                idle_rate_pct: (usable > 0.0).then(|| idle_m2 / usable * 100.0),
            }
        })
        .collect();
    let total: f64 = statuses.iter().map(|r| r.usable_m2).sum();
    let idle: f64 = statuses
        .iter()
        .filter(|r| r.idle)
        .map(|r| r.usable_m2)
        .sum();
    SpaceSummary {
        date,
        rooms: statuses,
        agencies,
        total_usable_m2: total,
        idle_m2: idle,
        idle_rate_pct: (total > 0.0).then(|| idle / total * 100.0),
    }
}
