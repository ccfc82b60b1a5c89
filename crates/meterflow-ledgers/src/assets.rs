//! The fixed-asset ledger (`docs/methodology.md` §11): asset cards with their RFID tag
//! (EPC), lifecycle events and RFID scans (through the API, the CSV import
//! or MQTT). Derived: where each asset is and who holds it, straight-line
//! net book value at a date, inventory reconciliation of a room or an agency
//! over a scan window, idle assets.
//!
//! Rules (documented in `docs/ledgers.md`):
//! - depreciation is straight-line by month with no salvage value, starting
//!   in the month of acquisition (政府会计准则: 当月增加当月计提; 不考虑预计净残值):
//!   net book value at a date = value − value × months / (life_years × 12),
//!   months counted from the acquisition month through the date's month,
//!   at most the life; rounded to the fen;
//! - an asset is expected in the room (and agency) of its card or its latest
//!   assign/transfer/return event by the end of the window; disposed assets
//!   are not expected;
//! - reconciliation of a scope over a window: *missing* = expected, seen
//!   nowhere; *misplaced* = expected, seen only elsewhere (where is given);
//!   *unexpected* = seen in the scope but expected elsewhere, or not on any card;
//! - idle = not disposed and neither scanned nor in a lifecycle event for
//!   `idle_days` days before the date (counted from acquisition if never).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, NaiveDate};
use meterflow_core::time::local_date;
use meterflow_model::Site;
use meterflow_store::LedgerEvent;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::rules::{Reject, agency, norm, number, of_kind, text, typed};

/// Lifecycle actions.
pub const ACTIONS: [&str; 5] = ["assign", "transfer", "repair", "return", "dispose"];

/// An asset card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Card {
    /// RFID tag (EPC).
    pub epc: String,
    /// Category.
    pub category: String,
    /// Original value, CNY.
    pub value_cny: f64,
    /// Useful life, years.
    pub life_years: f64,
    /// Custodian agency.
    pub agency: String,
    /// Room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// Custodian person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custodian: Option<String>,
    /// Model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// A lifecycle event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetEvent {
    /// Tag.
    pub epc: String,
    /// Action.
    pub action: String,
    /// New custodian agency (assign, transfer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agency: Option<String>,
    /// New room (assign, transfer, return).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// New custodian person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custodian: Option<String>,
    /// Note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// An RFID scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scan {
    /// Tag read.
    pub epc: String,
    /// Room of the reader.
    pub room: String,
    /// Reader id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reader: Option<String>,
}

fn tag(epc: &str) -> Result<(), Reject> {
    if epc.is_empty()
        || epc.len() > 64
        || !epc
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err((
            "epc".into(),
            format!("`{epc}` is not a tag id (1-64 letters, digits, - and _)"),
        ));
    }
    Ok(())
}

/// Check an entry; its agency and normalised fields.
pub fn check(
    site: &Site,
    kind: &str,
    state: &[LedgerEvent],
    ts: i64,
    body: Value,
) -> Result<(Option<String>, Value), Reject> {
    match kind {
        "card" => {
            let c: Card = typed(&body)?;
            tag(&c.epc)?;
            text("category", &c.category)?;
            agency(site, "agency", &c.agency)?;
            number("value_cny", c.value_cny, 0.0, 1.0e10)?;
            number("life_years", c.life_years, 0.1, 100.0)?;
            if let Some(r) = &c.room {
                text("room", r)?;
            }
            if of_kind::<Card>(state, "card").any(|(_, x)| x.epc == c.epc) {
                return Err((
                    "epc".into(),
                    format!("`{}` already has a card; correct it instead", c.epc),
                ));
            }
            Ok((Some(c.agency.clone()), norm(&c)))
        }
        "event" => {
            let a: AssetEvent = typed(&body)?;
            tag(&a.epc)?;
            let Some(now) = locate(state, ts, site.tz).remove(&a.epc) else {
                return Err(("epc".into(), format!("no asset card for `{}`", a.epc)));
            };
            if now.disposed {
                return Err(("epc".into(), format!("`{}` was disposed of", a.epc)));
            }
            if !ACTIONS.contains(&a.action.as_str()) {
                return Err((
                    "action".into(),
                    format!("`{}`: one of {}", a.action, ACTIONS.join(", ")),
                ));
            }
            if let Some(g) = &a.agency {
                agency(site, "agency", g)?;
            }
            if matches!(a.action.as_str(), "assign" | "transfer")
                && a.agency.is_none()
                && a.room.is_none()
            {
                return Err((
                    "room".into(),
                    "an assign or transfer names the new room or agency".into(),
                ));
            }
            let owner = a.agency.clone().unwrap_or(now.agency);
            Ok((Some(owner), norm(&a)))
        }
        "scan" => {
            let s: Scan = typed(&body)?;
            tag(&s.epc)?;
            text("room", &s.room)?;
            // Unknown tags are kept: they are the "unexpected" of an inventory.
            let owner = locate(state, ts, site.tz).remove(&s.epc).map(|l| l.agency);
            Ok((owner, norm(&s)))
        }
        other => Err(("kind".into(), format!("no asset entry `{other}`"))),
    }
}

/// Where an asset is, and what is known of it, at a time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Located {
    /// Tag.
    pub epc: String,
    /// Category.
    pub category: String,
    /// Custodian agency.
    pub agency: String,
    /// Room it belongs in.
    pub room: Option<String>,
    /// Custodian person.
    pub custodian: Option<String>,
    /// Acquired (local date).
    pub acquired: NaiveDate,
    /// Value, CNY.
    pub value_cny: f64,
    /// Useful life, years.
    pub life_years: f64,
    /// Disposed of.
    pub disposed: bool,
    /// Last scan: room and time (UTC ms).
    pub last_seen: Option<(String, i64)>,
    /// Last scan or lifecycle event (or acquisition), UTC ms.
    pub last_activity_ms: i64,
    /// Card entry id.
    pub card_entry: i64,
}

/// Every asset as of `ts` (events with time ≤ ts), by tag.
pub fn locate(events: &[LedgerEvent], ts: i64, tz: chrono_tz::Tz) -> BTreeMap<String, Located> {
    let mut out: BTreeMap<String, Located> = BTreeMap::new();
    for e in events.iter().filter(|e| e.ts_ms <= ts) {
        match e.kind.as_str() {
            "card" => {
                if let Ok(c) = serde_json::from_str::<Card>(&e.body) {
                    out.insert(
                        c.epc.clone(),
                        Located {
                            epc: c.epc,
                            category: c.category,
                            agency: c.agency,
                            room: c.room,
                            custodian: c.custodian,
                            acquired: local_date(e.ts_ms, tz),
                            value_cny: c.value_cny,
                            life_years: c.life_years,
                            disposed: false,
                            last_seen: None,
                            last_activity_ms: e.ts_ms,
                            card_entry: e.id,
                        },
                    );
                }
            }
            "event" => {
                if let Ok(a) = serde_json::from_str::<AssetEvent>(&e.body)
                    && let Some(l) = out.get_mut(&a.epc)
                {
                    l.last_activity_ms = l.last_activity_ms.max(e.ts_ms);
                    match a.action.as_str() {
                        "assign" | "transfer" | "return" => {
                            if let Some(g) = a.agency {
                                l.agency = g;
                            }
                            if a.room.is_some() {
                                l.room = a.room;
                            }
                            if a.custodian.is_some() {
                                l.custodian = a.custodian;
                            }
                        }
                        "dispose" => l.disposed = true,
                        _ => {}
                    }
                }
            }
            "scan" => {
                if let Ok(s) = serde_json::from_str::<Scan>(&e.body)
                    && let Some(l) = out.get_mut(&s.epc)
                {
                    l.last_activity_ms = l.last_activity_ms.max(e.ts_ms);
                    l.last_seen = Some((s.room, e.ts_ms));
                }
            }
            _ => {}
        }
    }
    out
}

/// Straight-line net book value on `date` (see the module rules).
pub fn net_book_value(value: f64, life_years: f64, acquired: NaiveDate, date: NaiveDate) -> f64 {
    if date < acquired {
        return value;
    }
    let life_months = (life_years * 12.0).round().max(1.0);
    let months = f64::from(
        (date.year() * 12 + date.month() as i32) - (acquired.year() * 12 + acquired.month() as i32)
            + 1,
    )
    .min(life_months);
    let dep = (value * months / life_months * 100.0).round() / 100.0;
    ((value - dep) * 100.0).round() / 100.0
}

/// The scope of a reconciliation.
#[derive(Debug, Clone, PartialEq)]
pub enum Scope {
    /// One room.
    Room(String),
    /// One agency (all its assets, wherever they belong).
    Agency(String),
}

/// An asset out of place.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// Tag.
    pub epc: String,
    /// Category (unknown tags: none).
    pub category: Option<String>,
    /// Room it belongs in.
    pub expected_room: Option<String>,
    /// Rooms it was seen in during the window.
    pub seen_in: Vec<String>,
}

/// An inventory reconciliation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reconciliation {
    /// Expected in the scope.
    pub expected: usize,
    /// Expected and seen where they belong.
    pub found: usize,
    /// Expected, seen nowhere.
    pub missing: Vec<Finding>,
    /// Expected, seen only elsewhere.
    pub misplaced: Vec<Finding>,
    /// Seen in the scope, expected elsewhere or on no card.
    pub unexpected: Vec<Finding>,
}

/// Reconcile `scope` over the scans of `[from_ms, to_ms)`.
pub fn reconcile(
    site: &Site,
    events: &[LedgerEvent],
    scope: &Scope,
    from_ms: i64,
    to_ms: i64,
) -> Reconciliation {
    let assets = locate(events, to_ms - 1, site.tz);
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (e, s) in of_kind::<Scan>(events, "scan") {
        if e.ts_ms >= from_ms && e.ts_ms < to_ms {
            seen.entry(s.epc).or_default().insert(s.room);
        }
    }
    let expected: Vec<&Located> = assets
        .values()
        .filter(|a| !a.disposed)
        .filter(|a| match scope {
            Scope::Room(r) => a.room.as_deref() == Some(r.as_str()),
            Scope::Agency(g) => &a.agency == g,
        })
        .collect();
    // Rooms the scope covers: the room, or every room the agency's assets belong in.
    let rooms: BTreeSet<String> = match scope {
        Scope::Room(r) => [r.clone()].into(),
        Scope::Agency(_) => expected.iter().filter_map(|a| a.room.clone()).collect(),
    };
    let finding = |epc: &str, a: Option<&Located>| Finding {
        epc: epc.to_string(),
        category: a.map(|a| a.category.clone()),
        expected_room: a.and_then(|a| a.room.clone()),
        seen_in: seen
            .get(epc)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default(),
    };
    let mut r = Reconciliation {
        expected: expected.len(),
        found: 0,
        missing: Vec::new(),
        misplaced: Vec::new(),
        unexpected: Vec::new(),
    };
    for a in &expected {
        match seen.get(&a.epc) {
            None => r.missing.push(finding(&a.epc, Some(a))),
            Some(where_) => {
                let home = a.room.as_ref().is_none_or(|h| where_.contains(h));
                if home {
                    r.found += 1;
                } else {
                    r.misplaced.push(finding(&a.epc, Some(a)));
                }
            }
        }
    }
    let expected_tags: BTreeSet<&str> = expected.iter().map(|a| a.epc.as_str()).collect();
    for (epc, where_) in &seen {
        if expected_tags.contains(epc.as_str()) || where_.is_disjoint(&rooms) {
            continue;
        }
        r.unexpected.push(finding(epc, assets.get(epc)));
    }
    r
}

/// Assets neither scanned nor moved for `idle_days` before `at_ms`.
pub fn idle(site: &Site, events: &[LedgerEvent], at_ms: i64, idle_days: i64) -> Vec<Located> {
    let cutoff = at_ms - idle_days * 86_400_000;
    locate(events, at_ms, site.tz)
        .into_values()
        .filter(|a| !a.disposed && a.last_activity_ms < cutoff)
        .collect()
}

/// Per agency at a date: assets, original value, net book value, idle count.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgencyAssets {
    /// Agency.
    pub agency: String,
    /// Assets in use (not disposed).
    pub count: usize,
    /// Original value, CNY.
    pub value_cny: f64,
    /// Net book value on the date, CNY.
    pub net_book_value_cny: f64,
    /// Idle assets.
    pub idle: usize,
}

/// The register at the end of `date` by agency, in the site zone.
pub fn by_agency(
    site: &Site,
    events: &[LedgerEvent],
    date: NaiveDate,
    idle_days: i64,
) -> Vec<AgencyAssets> {
    let end = meterflow_core::time::day_start(date + chrono::Duration::days(1), site.tz) - 1;
    let all = locate(events, end, site.tz);
    let idle_tags: BTreeSet<String> = idle(site, events, end, idle_days)
        .into_iter()
        .map(|a| a.epc)
        .collect();
    site.agencies
        .iter()
        .map(|g| {
            let mine: Vec<&Located> = all
                .values()
                .filter(|a| a.agency == g.id && !a.disposed)
                .collect();
            AgencyAssets {
                agency: g.id.clone(),
                count: mine.len(),
                value_cny: mine.iter().map(|a| a.value_cny).sum(),
                net_book_value_cny: mine
                    .iter()
                    .map(|a| net_book_value(a.value_cny, a.life_years, a.acquired, date))
                    .sum(),
                idle: mine.iter().filter(|a| idle_tags.contains(&a.epc)).count(),
            }
        })
        .collect()
}
