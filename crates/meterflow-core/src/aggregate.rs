//! The streaming aggregator (`docs/methodology.md` §2): 15-minute bucket changes of
//! every meter rolled up to zone → building → agency → site, by energy class
//! and electricity sub-item, for 15 min, hour, local day, month and year.
//!
//! Exactness and order independence. Input is a bucket's change from its old
//! to its new totals (the store knows both when it commits). Every meter's
//! contribution to a scope is a function of the bucket's value alone:
//!
//! - physical scopes (zone, building, site) get the meter's own consumption,
//!   and a parent meter's scopes lose its same-class children's consumption, so
//!   each unit counts once (the parent's remainder: common areas and losses);
//! - agencies get the meter's value split by its shares on that local day
//!   (area share, fixed or direct), with integer largest-remainder rounding,
//!   and a parent's agencies lose the children's value split by the parent's shares.
//!
//! A change adds `contribution(new) − contribution(old)`; over any sequence of
//! changes these telescope to `contribution(final)`, so every arrival order,
//! late reading or backfill gives bit-identical rollups.
//!
//! Values are integers in a fixed fraction of the carrier unit (kWh, m³, GJ;
//! see [`EXPONENT`]) so sums are exact whatever the meters' units.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use chrono::{Datelike, NaiveDate};
use chrono_tz::Tz;
use meterflow_model::EnergyClass;
use meterflow_model::config::Site;

use crate::buckets::BUCKET_MS;
use crate::denominators::shares_on;
use crate::memlog::BucketTotals;
use crate::time::{day_start, hour_start, local_date};

/// Rollup values are integers of 10^−EXPONENT of the carrier unit of their class.
pub fn exponent(class: EnergyClass) -> i32 {
    match class {
        EnergyClass::Heat | EnergyClass::Cooling => 12,
        _ => 9,
    }
}

/// Exponent of electricity, water and gas (nano-kWh, nano-m³).
pub const EXPONENT: i32 = 9;

/// Carrier unit of a class's rollups.
pub fn carrier_unit(class: EnergyClass) -> &'static str {
    match class {
        EnergyClass::Electricity => "kWh",
        EnergyClass::Water | EnergyClass::Gas => "m3",
        EnergyClass::Heat | EnergyClass::Cooling => "GJ",
        EnergyClass::Lpg | EnergyClass::Coal | EnergyClass::Steam | EnergyClass::FuelOil => "kg",
    }
}

/// Integer factor from a meter's micro-units to its class's rollup units, if the unit is known.
pub fn rollup_factor(class: EnergyClass, unit: &str) -> Option<i64> {
    Some(match (class, unit) {
        (EnergyClass::Electricity, "kWh") => 1_000,
        (EnergyClass::Electricity, "MWh") => 1_000_000,
        (EnergyClass::Electricity, "Wh") => 1,
        (EnergyClass::Water | EnergyClass::Gas, "m3") => 1_000,
        (EnergyClass::Water | EnergyClass::Gas, "L") => 1,
        // Heat in pico-GJ = milli-joules: 1 micro-kWh = 3.6 mJ is not an
        // integer, so heat goes through micro-kJ (10⁻¹² GJ).
        (EnergyClass::Heat | EnergyClass::Cooling, "GJ") => 1_000_000,
        (EnergyClass::Heat | EnergyClass::Cooling, "MJ") => 1_000,
        (EnergyClass::Heat | EnergyClass::Cooling, "kWh") => 3_600,
        (EnergyClass::Heat | EnergyClass::Cooling, "MWh") => 3_600_000,
        (
            EnergyClass::Lpg | EnergyClass::Coal | EnergyClass::Steam | EnergyClass::FuelOil,
            "kg",
        ) => 1_000,
        (EnergyClass::Lpg | EnergyClass::Coal | EnergyClass::Steam | EnergyClass::FuelOil, "t") => {
            1_000_000
        }
        _ => return None,
    })
}

/// A rollup value in its carrier unit.
pub fn to_carrier(class: EnergyClass, value: i64) -> f64 {
    value as f64 / 10f64.powi(exponent(class))
}

/// Level of a rollup scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    /// A zone (floor, wing).
    Zone,
    /// A building.
    Building,
    /// An agency (allocated shares).
    Agency,
    /// The whole site.
    Site,
}

impl Level {
    /// Stable text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Zone => "zone",
            Level::Building => "building",
            Level::Agency => "agency",
            Level::Site => "site",
        }
    }

    /// Parse the text form.
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s {
            "zone" => Level::Zone,
            "building" => Level::Building,
            "agency" => Level::Agency,
            "site" => Level::Site,
            _ => return None,
        })
    }
}

/// What a rollup row is about: a level's entity, an energy class, and an
/// electricity sub-item (`""` = all of the class; `"A"` = the letter's
/// total; `"A1"` = the sub-item).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScopeKey {
    /// Level.
    pub level: Level,
    /// Zone, building or agency id (`"site"` for the site).
    pub id: String,
    /// Energy class.
    pub class: EnergyClass,
    /// Sub-item, `""` for the class total.
    pub subitem: String,
}

/// Time grain of a rollup row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Grain {
    /// The 15-minute bucket.
    Quarter,
    /// Local hour.
    Hour,
    /// Local day.
    Day,
    /// Local calendar month.
    Month,
    /// Local calendar year.
    Year,
}

impl Grain {
    /// All grains, finest first.
    pub const ALL: [Grain; 5] = [
        Grain::Quarter,
        Grain::Hour,
        Grain::Day,
        Grain::Month,
        Grain::Year,
    ];

    /// Stable text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Grain::Quarter => "15m",
            Grain::Hour => "hour",
            Grain::Day => "day",
            Grain::Month => "month",
            Grain::Year => "year",
        }
    }

    /// Parse the text form.
    pub fn parse(s: &str) -> Option<Grain> {
        Grain::ALL.into_iter().find(|g| g.as_str() == s)
    }
}

/// A change to one rollup row: add these to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollupDelta {
    /// Scope index (see [`Aggregator::scope`]).
    pub scope: u32,
    /// Grain.
    pub grain: Grain,
    /// Start of the period, UTC ms (local midnight for day, month and year).
    pub start_ms: i64,
    /// Consumption, 10^−exponent of the carrier unit.
    pub value: i64,
    /// Measured meter-buckets.
    pub measured: i64,
    /// Estimated meter-buckets.
    pub estimated: i64,
}

/// Multiplicative hashing for integer keys (the std SipHash costs more than
/// the rest of an update; keys here are not attacker-chosen).
#[derive(Default)]
pub struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn write_u8(&mut self, v: u8) {
        self.write_u64(u64::from(v));
    }

    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }

    fn write_i64(&mut self, v: i64) {
        self.write_u64(v as u64);
    }

    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }

    fn write_isize(&mut self, v: isize) {
        self.write_u64(v as u64);
    }
}

type IntMap<V> = HashMap<u64, V, BuildHasherDefault<IntHasher>>;

/// Shares of one meter from a local date on: (agency targets, share).
#[derive(Debug, Clone)]
struct ShareStep {
    from: NaiveDate,
    /// For each agency with a share: its scope ids (class total and sub-items) and the share.
    parts: Vec<(Vec<u32>, f64)>,
}

#[derive(Debug, Clone)]
struct Node {
    factor: i64,
    /// Physical scopes getting the meter's own value (zone, building, site; sub-item variants).
    phys: Vec<u32>,
    /// Agency shares over time.
    shares: Vec<ShareStep>,
    /// Same-class parent meter.
    parent: Option<u32>,
}

/// Local calendar keys of the day containing an instant, cached.
#[derive(Debug, Clone, Copy)]
struct DayKeys {
    lo: i64,
    hi: i64,
    date: NaiveDate,
    month_ms: i64,
    year_ms: i64,
    uniform: bool,
}

/// Rolls bucket changes up to every scope and grain.
pub struct Aggregator {
    tz: Tz,
    nodes: Vec<Node>,
    index: HashMap<String, u32>,
    scopes: Vec<ScopeKey>,
    members: Vec<u32>,
    quarter: IntMap<[i64; 3]>,
    /// Changes of the bucket being applied, by scope index: array updates
    /// instead of hash updates while consecutive changes share a bucket
    /// (the writer applies bucket-major); moved to `quarter` when the bucket
    /// changes and on drain.
    dense: Vec<[i64; 3]>,
    touched: Vec<u32>,
    dense_bucket: Option<u64>,
    day: Option<DayKeys>,
    split: Vec<i64>,
    adds: Vec<(u32, i64, [i64; 2])>,
    fracs: Vec<(f64, usize)>,
    /// Day, month and year changes of long gaps kept whole (no 15-minute
    /// or hourly rows): (scope, grain, start) → (value, measured, estimated).
    coarse: HashMap<(u32, Grain, i64), [i64; 3], BuildHasherDefault<IntHasher>>,
}

fn subitem_keys(sub: Option<&str>) -> Vec<String> {
    let mut keys = vec![String::new()];
    if let Some(s) = sub.filter(|s| !s.is_empty()) {
        let letter: String = s.chars().take(1).collect();
        if letter != s {
            keys.push(letter);
        }
        keys.push(s.to_string());
    }
    keys
}

impl Aggregator {
    /// The hierarchy of a site: meters, what they serve, their parents and
    /// their share timelines (one step at every date an occupancy changes).
    pub fn new(site: &Site) -> Aggregator {
        let mut scopes: Vec<ScopeKey> = Vec::new();
        let mut ids: HashMap<ScopeKey, u32> = HashMap::new();
        let mut intern = |key: ScopeKey| -> u32 {
            *ids.entry(key.clone()).or_insert_with(|| {
                scopes.push(key);
                (scopes.len() - 1) as u32
            })
        };
        // Dates at which some occupancy starts or ends (the day after `to`).
        // (and headcounts, for headcount shares).
        let mut steps: Vec<NaiveDate> = vec![NaiveDate::MIN];
        steps.extend(crate::denominators::change_dates(site));
        steps.dedup();
        let index: HashMap<String, u32> = site
            .meters
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id.clone(), i as u32))
            .collect();
        let mut nodes = Vec::with_capacity(site.meters.len());
        for m in &site.meters {
            let subs = subitem_keys(
                m.subitem
                    .as_deref()
                    .filter(|_| m.kind == EnergyClass::Electricity),
            );
            let mut phys = Vec::new();
            let zone_building = |z: &String| {
                site.zones
                    .iter()
                    .find(|x| &x.id == z)
                    .map(|x| x.building.clone())
            };
            // A meter serving agencies directly is in the building they occupy,
            // when all their spaces, ever, are in one building.
            let agencies: Vec<&String> = m
                .serves
                .agency
                .iter()
                .chain(m.serves.agencies.iter().flatten())
                .collect();
            let occupied = || {
                let mut bs: Vec<String> = site
                    .spaces
                    .iter()
                    .filter(|s| agencies.contains(&&s.agency))
                    .filter_map(|s| {
                        s.building
                            .clone()
                            .or_else(|| s.zone.as_ref().and_then(zone_building))
                    })
                    .collect();
                bs.sort();
                bs.dedup();
                (bs.len() == 1).then(|| bs.remove(0))
            };
            let building = m
                .serves
                .building
                .clone()
                .or_else(|| m.serves.zone.as_ref().and_then(zone_building))
                .or_else(occupied);
            let mut levels: Vec<(Level, String)> = Vec::new();
            if let Some(z) = &m.serves.zone {
                levels.push((Level::Zone, z.clone()));
            }
            if let Some(b) = building {
                levels.push((Level::Building, b));
            }
            levels.push((Level::Site, "site".to_string()));
            for (level, id) in levels {
                for s in &subs {
                    phys.push(intern(ScopeKey {
                        level,
                        id: id.clone(),
                        class: m.kind,
                        subitem: s.clone(),
                    }));
                }
            }
            let mut shares: Vec<ShareStep> = Vec::new();
            for &from in &steps {
                let on = shares_on(site, m, from);
                let parts: Vec<(Vec<u32>, f64)> = on
                    .into_iter()
                    .filter(|(_, s)| *s > 0.0)
                    .map(|(agency, share)| {
                        let targets = subs
                            .iter()
                            .map(|s| {
                                intern(ScopeKey {
                                    level: Level::Agency,
                                    id: agency.clone(),
                                    class: m.kind,
                                    subitem: s.clone(),
                                })
                            })
                            .collect();
                        (targets, share)
                    })
                    .collect();
                let same = shares.last().is_some_and(|last| {
                    last.parts.len() == parts.len()
                        && last
                            .parts
                            .iter()
                            .zip(&parts)
                            .all(|(a, b)| a.0 == b.0 && a.1 == b.1)
                });
                if !same {
                    shares.push(ShareStep { from, parts });
                }
            }
            let parent = m
                .parent
                .as_deref()
                .and_then(|p| index.get(p).copied())
                .filter(|&p| site.meters[p as usize].kind == m.kind);
            nodes.push(Node {
                factor: rollup_factor(m.kind, &m.unit).unwrap_or(1_000),
                phys,
                shares,
                parent,
            });
        }
        // Meters counted in each scope (their own value reaches it).
        let mut members = vec![0u32; scopes.len()];
        for n in &nodes {
            let mut seen: Vec<u32> = n.phys.clone();
            for step in &n.shares {
                for (t, _) in &step.parts {
                    seen.extend(t);
                }
            }
            seen.sort_unstable();
            seen.dedup();
            for s in seen {
                members[s as usize] += 1;
            }
        }
        let n_scopes = scopes.len();
        Aggregator {
            tz: site.tz,
            nodes,
            index,
            scopes,
            members,
            quarter: IntMap::default(),
            dense: vec![[0; 3]; n_scopes],
            touched: Vec::new(),
            dense_bucket: None,
            day: None,
            split: Vec::new(),
            adds: Vec::with_capacity(32),
            fracs: Vec::new(),
            coarse: HashMap::default(),
        }
    }

    /// Index of a meter by id.
    pub fn meter_index(&self, id: &str) -> Option<u32> {
        self.index.get(id).copied()
    }

    /// All scopes, indexed by [`RollupDelta::scope`].
    pub fn scopes(&self) -> &[ScopeKey] {
        &self.scopes
    }

    /// A scope by index.
    pub fn scope(&self, i: u32) -> Option<&ScopeKey> {
        self.scopes.get(i as usize)
    }

    /// Meters whose consumption reaches scope `i` (for completeness).
    pub fn members(&self, i: u32) -> u32 {
        self.members.get(i as usize).copied().unwrap_or(0)
    }

    /// Meter-buckets expected in the scopes `scopes` over local dates
    /// `[from, to)`: each meter counts for the days on which its consumption
    /// reaches one of them (always, for its zone, building and site; while it
    /// has a share, for an agency). The denominator of completeness.
    pub fn expected_buckets(&self, scopes: &[u32], from: NaiveDate, to: NaiveDate) -> i64 {
        self.reach(scopes, from, to)
            .into_iter()
            .map(|(_, a, b)| (day_start(b, self.tz) - day_start(a, self.tz)) / BUCKET_MS)
            .sum()
    }

    /// The meters (site order) whose own value reaches one of `scopes`, with
    /// the days of `[from, to)` on which it does: `(meter index, from, to)`.
    pub fn reach(
        &self,
        scopes: &[u32],
        from: NaiveDate,
        to: NaiveDate,
    ) -> Vec<(usize, NaiveDate, NaiveDate)> {
        let mut out = Vec::new();
        for (m, n) in self.nodes.iter().enumerate() {
            if n.phys.iter().any(|s| scopes.contains(s)) {
                if from < to {
                    out.push((m, from, to));
                }
                continue;
            }
            for (i, step) in n.shares.iter().enumerate() {
                let end = n.shares.get(i + 1).map_or(NaiveDate::MAX, |x| x.from);
                let hit = step
                    .parts
                    .iter()
                    .any(|(t, _)| t.iter().any(|s| scopes.contains(s)));
                let (a, b) = (step.from.max(from), end.min(to));
                if hit && a < b {
                    out.push((m, a, b));
                }
            }
        }
        out
    }

    /// Index of a scope by key.
    pub fn scope_index(&self, key: &ScopeKey) -> Option<u32> {
        self.scopes.iter().position(|k| k == key).map(|i| i as u32)
    }

    /// The building a meter's own value reaches, if any.
    pub fn building_of(&self, meter: u32) -> Option<&str> {
        let n = self.nodes.get(meter as usize)?;
        n.phys.iter().find_map(|&s| {
            let k = &self.scopes[s as usize];
            (k.level == Level::Building && k.subitem.is_empty()).then_some(k.id.as_str())
        })
    }

    /// The factor from a meter's micro-units to its class's rollup units.
    pub fn factor(&self, meter: u32) -> i64 {
        self.nodes.get(meter as usize).map_or(0, |n| n.factor)
    }

    /// How much of each meter's own value reaches `scope`, from each date
    /// on: `(meter, [(from, weight)])`, the steps in date order, meters
    /// with a weight somewhere only. The weight is the meter's physical
    /// membership (1) plus its agency share, less its same-class parent's
    /// (whose remainder the meter's value is taken out of): exactly what
    /// [`Aggregator::apply`] does, in real numbers instead of an integer split.
    pub fn weights(&self, scope: u32) -> Vec<(u32, Vec<(NaiveDate, f64)>)> {
        let own = |n: &Node, d: NaiveDate| -> f64 {
            let phys = if n.phys.contains(&scope) { 1.0 } else { 0.0 };
            let i = n.shares.partition_point(|s| s.from <= d);
            let share: f64 = i
                .checked_sub(1)
                .and_then(|i| n.shares.get(i))
                .map_or(0.0, |step| {
                    step.parts
                        .iter()
                        .filter(|(t, _)| t.contains(&scope))
                        .map(|(_, s)| *s)
                        .sum()
                });
            phys + share
        };
        let mut out = Vec::new();
        for (m, n) in self.nodes.iter().enumerate() {
            let parent = n.parent.and_then(|p| self.nodes.get(p as usize));
            let mut dates: Vec<NaiveDate> = n.shares.iter().map(|s| s.from).collect();
            if let Some(p) = parent {
                dates.extend(p.shares.iter().map(|s| s.from));
            }
            dates.push(NaiveDate::MIN);
            dates.sort_unstable();
            dates.dedup();
            let mut steps: Vec<(NaiveDate, f64)> = Vec::new();
            for d in dates {
                let w = own(n, d) - parent.map_or(0.0, |p| own(p, d));
                if steps.last().is_none_or(|(_, last)| *last != w) {
                    steps.push((d, w));
                }
            }
            if steps.iter().any(|(_, w)| *w != 0.0) {
                out.push((m as u32, steps));
            }
        }
        out
    }

    /// Bytes of per-meter state (hierarchy, share timelines), approximately.
    pub fn state_bytes(&self) -> usize {
        self.dense.capacity() * std::mem::size_of::<[i64; 3]>()
            + self
                .nodes
                .iter()
                .map(|n| {
                    std::mem::size_of::<Node>()
                        + n.phys.capacity() * 4
                        + n.shares
                            .iter()
                            .map(|s| {
                                std::mem::size_of::<ShareStep>()
                                    + s.parts
                                        .iter()
                                        .map(|p| 32 + p.0.capacity() * 4)
                                        .sum::<usize>()
                            })
                            .sum::<usize>()
                })
                .sum::<usize>()
    }

    fn keys(&mut self, bucket_ms: i64) -> DayKeys {
        if let Some(k) = self.day
            && (k.lo..k.hi).contains(&bucket_ms)
        {
            return k;
        }
        let date = local_date(bucket_ms, self.tz);
        let lo = day_start(date, self.tz);
        let hi = date.succ_opt().map_or(i64::MAX, |d| day_start(d, self.tz));
        let month = date.with_day(1).unwrap_or(date);
        let year = date.with_ordinal(1).unwrap_or(date);
        let k = DayKeys {
            lo,
            hi,
            date,
            month_ms: day_start(month, self.tz),
            year_ms: day_start(year, self.tz),
            uniform: hi - lo == 86_400_000,
        };
        self.day = Some(k);
        k
    }

    /// Apply a bucket's change of meter `meter` from `old` to `new` totals.
    pub fn apply(&mut self, meter: u32, bucket_ms: i64, old: &BucketTotals, new: &BucketTotals) {
        let Some(node) = self.nodes.get(meter as usize) else {
            return;
        };
        let f = node.factor;
        let (old_v, new_v) = (old.micro * f, new.micro * f);
        let q = |t: &BucketTotals| -> [i64; 2] {
            if t.is_empty() {
                return [0, 0];
            }
            match t.quality() {
                meterflow_model::Quality::Measured => [1, 0],
                meterflow_model::Quality::Estimated => [0, 1],
                meterflow_model::Quality::Missing => [0, 0],
            }
        };
        let (qo, qn) = (q(old), q(new));
        let dq = [qn[0] - qo[0], qn[1] - qo[1]];
        let date = self.keys(bucket_ms).date;
        let bucket = bucket_ms.div_euclid(BUCKET_MS) as u32 as u64;
        let node = &self.nodes[meter as usize];
        let mut adds = std::mem::take(&mut self.adds);
        adds.clear();
        let dv = new_v - old_v;
        for &s in &node.phys {
            adds.push((s, dv, dq));
        }
        let scratch = (&mut self.split, &mut self.fracs);
        push_split(node, date, old_v, new_v, dq, scratch, &mut adds);
        if let Some(p) = node.parent {
            let pn = &self.nodes[p as usize];
            for &s in &pn.phys {
                adds.push((s, -dv, [0, 0]));
            }
            let scratch = (&mut self.split, &mut self.fracs);
            push_split(pn, date, -old_v, -new_v, [0, 0], scratch, &mut adds);
        }
        if self.dense_bucket != Some(bucket) {
            self.flush_dense();
            self.dense_bucket = Some(bucket);
        }
        for &(s, v, c) in &adds {
            if v == 0 && c == [0, 0] {
                continue;
            }
            let Some(e) = self.dense.get_mut(s as usize) else {
                continue;
            };
            if *e == [0; 3] {
                // May be listed twice if it returns to zero and back: flush merges.
                self.touched.push(s);
            }
            e[0] += v;
            e[1] += c[0];
            e[2] += c[1];
        }
        self.adds = adds;
    }

    /// `[lo_ms, hi_ms)` cut at local midnights: the blocks of a long gap
    /// that [`Aggregator::apply_block`] takes.
    pub fn day_blocks(&mut self, lo_ms: i64, hi_ms: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        let mut a = lo_ms;
        while a < hi_ms {
            // The next local midnight (a bucket boundary: offsets are whole quarters).
            let b = self.keys(a).hi.clamp(a + BUCKET_MS, hi_ms);
            out.push((a, b));
            a = b;
        }
        out
    }

    /// A block `[lo_ms, hi_ms)` of whole estimated buckets of one local day
    /// of `meter` (a part of a long gap kept whole), worth `micro`; `sign`
    /// −1 takes it back. Its day, month and year rows are pending like
    /// [`Aggregator::apply`]'s; returned are what the block adds to each
    /// scope `(scope, value, estimated meter-buckets)`, which the caller
    /// keeps whole in place of 15-minute and hourly rows. The split by
    /// shares is of the block's total (one integer split a day).
    pub fn apply_block(
        &mut self,
        meter: u32,
        lo_ms: i64,
        hi_ms: i64,
        micro: i64,
        sign: i64,
    ) -> Vec<(u32, i64, i64)> {
        if self.nodes.get(meter as usize).is_none() || hi_ms <= lo_ms {
            return Vec::new();
        }
        let keys = self.keys(lo_ms);
        let node = &self.nodes[meter as usize];
        let n = (hi_ms - lo_ms) / BUCKET_MS;
        let v = micro.saturating_mul(node.factor);
        let (old_v, new_v, dq) = if sign >= 0 {
            (0, v, [0, n])
        } else {
            (v, 0, [0, -n])
        };
        let dv = new_v - old_v;
        let mut adds: Vec<(u32, i64, [i64; 2])> = Vec::new();
        for &s in &node.phys {
            adds.push((s, dv, dq));
        }
        let scratch = (&mut self.split, &mut self.fracs);
        push_split(node, keys.date, old_v, new_v, dq, scratch, &mut adds);
        if let Some(p) = node.parent {
            let pn = &self.nodes[p as usize];
            for &s in &pn.phys {
                adds.push((s, -dv, [0, 0]));
            }
            let scratch = (&mut self.split, &mut self.fracs);
            push_split(pn, keys.date, -old_v, -new_v, [0, 0], scratch, &mut adds);
        }
        // One entry per scope.
        let mut by_scope: BTreeMap<u32, (i64, i64)> = BTreeMap::new();
        for (s, v, c) in adds {
            let e = by_scope.entry(s).or_default();
            e.0 += v;
            e.1 += c[1];
        }
        for (&s, &(v, est)) in &by_scope {
            for (g, start) in [
                (Grain::Day, keys.lo),
                (Grain::Month, keys.month_ms),
                (Grain::Year, keys.year_ms),
            ] {
                let e = self.coarse.entry((s, g, start)).or_insert([0; 3]);
                e[0] += v;
                e[2] += est;
            }
        }
        by_scope
            .into_iter()
            .filter(|(_, (v, e))| *v != 0 || *e != 0)
            .map(|(s, (v, e))| (s, v, e))
            .collect()
    }

    /// Move the dense changes of the current bucket into `quarter`.
    fn flush_dense(&mut self) {
        let Some(bucket) = self.dense_bucket else {
            return;
        };
        for &s in &self.touched {
            let Some(e) = self.dense.get_mut(s as usize) else {
                continue;
            };
            let v = std::mem::take(e);
            if v == [0; 3] {
                continue;
            }
            let q = self
                .quarter
                .entry((u64::from(s) << 32) | bucket)
                .or_insert([0; 3]);
            for i in 0..3 {
                q[i] += v[i];
            }
        }
        self.touched.clear();
    }

    /// Pending changes, expanded to every grain and merged, sorted by
    /// (scope, grain, start). Rows that net to zero are left out.
    pub fn drain(&mut self) -> Vec<RollupDelta> {
        self.flush_dense();
        let mut quarters: Vec<(u64, [i64; 3])> = self.quarter.drain().collect();
        quarters.sort_unstable_by_key(|(k, _)| (*k & 0xFFFF_FFFF, *k >> 32));
        let mut merged: HashMap<(u32, Grain, i64), [i64; 3], BuildHasherDefault<IntHasher>> =
            std::mem::take(&mut self.coarse);
        for (k, v) in quarters {
            if v == [0; 3] {
                continue;
            }
            let scope = (k >> 32) as u32;
            let bucket_ms = i64::from((k & 0xFFFF_FFFF) as u32) * BUCKET_MS;
            let d = self.keys(bucket_ms);
            let hour = if d.uniform {
                d.lo + (bucket_ms - d.lo) / 3_600_000 * 3_600_000
            } else {
                hour_start(bucket_ms, self.tz)
            };
            for (g, start) in [
                (Grain::Quarter, bucket_ms),
                (Grain::Hour, hour),
                (Grain::Day, d.lo),
                (Grain::Month, d.month_ms),
                (Grain::Year, d.year_ms),
            ] {
                let e = merged.entry((scope, g, start)).or_insert([0; 3]);
                for i in 0..3 {
                    e[i] += v[i];
                }
            }
        }
        let mut out: Vec<RollupDelta> = merged
            .into_iter()
            .filter(|(_, v)| *v != [0; 3])
            .map(|((scope, grain, start_ms), v)| RollupDelta {
                scope,
                grain,
                start_ms,
                value: v[0],
                measured: v[1],
                estimated: v[2],
            })
            .collect();
        out.sort_unstable_by_key(|r| (r.scope, r.grain, r.start_ms));
        out
    }

    /// Changes not drained yet (15-minute rows).
    pub fn pending(&self) -> usize {
        self.quarter.len() + self.touched.len() + self.coarse.len()
    }
}

/// Agency contributions of `node` for a bucket going from `old` to `new`:
/// `split(new) − split(old)` per agency (exact, telescoping).
fn push_split(
    node: &Node,
    date: NaiveDate,
    old: i64,
    new: i64,
    dq: [i64; 2],
    (scratch, fracs): (&mut Vec<i64>, &mut Vec<(f64, usize)>),
    adds: &mut Vec<(u32, i64, [i64; 2])>,
) {
    let i = node.shares.partition_point(|s| s.from <= date);
    let Some(step) = i.checked_sub(1).and_then(|i| node.shares.get(i)) else {
        return;
    };
    if step.parts.is_empty() {
        return;
    }
    if step.parts.len() == 1 && step.parts[0].1 == 1.0 {
        for &s in &step.parts[0].0 {
            adds.push((s, new - old, dq));
        }
        return;
    }
    let k = step.parts.len();
    scratch.clear();
    scratch.resize(k * 2, 0);
    let (a, b) = scratch.split_at_mut(k);
    split_by(new, step.parts.iter().map(|p| p.1), a, fracs);
    split_by(old, step.parts.iter().map(|p| p.1), b, fracs);
    for (k, (targets, _)) in step.parts.iter().enumerate() {
        let d = a[k] - b[k];
        for &s in targets {
            adds.push((s, d, dq));
        }
    }
}

/// Split `v` by `shares` into integers summing to `round(v × Σshares)`
/// (exactly `v` when the shares sum to 1): floors, then the remaining units
/// to the largest fractional parts (ties to the earlier share). Symmetric:
/// `split(−v) = −split(v)`.
pub fn split(v: i64, shares: &[f64], out: &mut [i64]) {
    split_by(v, shares.iter().copied(), out, &mut Vec::new());
}

fn split_by(
    v: i64,
    shares: impl Iterator<Item = f64>,
    out: &mut [i64],
    fracs: &mut Vec<(f64, usize)>,
) {
    if v == 0 {
        out.iter_mut().for_each(|o| *o = 0);
        return;
    }
    let neg = v < 0;
    let a = v.unsigned_abs() as f64;
    let mut given: i64 = 0;
    let mut total = 0.0;
    fracs.clear();
    for (i, s) in shares.enumerate() {
        let x = a * s;
        let fl = x.floor();
        out[i] = fl as i64;
        given += out[i];
        total += s;
        fracs.push((x - fl, i));
    }
    let target = (a * total).round() as i64;
    let rest = (target - given).clamp(0, fracs.len() as i64) as usize;
    if rest > 0 {
        // The `rest` largest fractions (ties to the earlier share): a total
        // order, so selection gives the same set as a full sort, in O(k).
        let order = |x: &(f64, usize), y: &(f64, usize)| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1));
        if rest < fracs.len() {
            fracs.select_nth_unstable_by(rest - 1, order);
        }
        for &(_, i) in &fracs[..rest] {
            out[i] += 1;
        }
    }
    if neg {
        for o in out.iter_mut() {
            *o = -*o;
        }
    }
}
