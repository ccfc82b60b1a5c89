//! Metering groups of a site (ADR 0013): the buses and meters that must stay
//! in one shard because a meter tree or a shared bus joins them, and which
//! shard keeps which group.

use std::collections::BTreeMap;

use crate::config::Site;
use crate::shard::{Shard, stable_hash};

/// One metering group and its shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The key that was hashed.
    pub key: String,
    /// Shard index.
    pub shard: u32,
    /// Buses of the group.
    pub buses: Vec<String>,
    /// Meters of the group.
    pub meters: Vec<String>,
}

/// Where every bus and meter of a site goes for `count` shards.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Number of shards.
    pub count: u32,
    /// The groups, by key.
    pub groups: Vec<Group>,
    meter_shard: BTreeMap<String, u32>,
    bus_shard: BTreeMap<String, u32>,
}

fn find(parent: &mut [usize], mut x: usize) -> usize {
    while parent[x] != x {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    x
}

fn union(parent: &mut [usize], a: usize, b: usize) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        parent[ra.max(rb)] = ra.min(rb);
    }
}

impl Plan {
    /// Group the site's buses and meters and place the groups.
    pub fn new(site: &Site, count: u32) -> Plan {
        let count = count.max(1);
        // Nodes: buses first, then meters.
        let bus_ix: BTreeMap<&str, usize> = site
            .buses
            .iter()
            .enumerate()
            .map(|(i, b)| (b.id.as_str(), i))
            .collect();
        let nb = site.buses.len();
        let meter_ix: BTreeMap<&str, usize> = site
            .meters
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id.as_str(), nb + i))
            .collect();
        let mut parent: Vec<usize> = (0..nb + site.meters.len()).collect();
        for (i, m) in site.meters.iter().enumerate() {
            let me = nb + i;
            let bus = m
                .modbus
                .as_ref()
                .map(|s| s.bus.as_str())
                .or(m.dlt645.as_ref().map(|s| s.bus.as_str()))
                .or(m.cjt188.as_ref().map(|s| s.bus.as_str()));
            if let Some(&b) = bus.and_then(|b| bus_ix.get(b)) {
                union(&mut parent, me, b);
            }
            if let Some(&p) = m.parent.as_deref().and_then(|p| meter_ix.get(p)) {
                union(&mut parent, me, p);
            }
        }
        let mut members: BTreeMap<usize, (Vec<String>, Vec<String>)> = BTreeMap::new();
        for (i, b) in site.buses.iter().enumerate() {
            let r = find(&mut parent, i);
            members.entry(r).or_default().0.push(b.id.clone());
        }
        for (i, m) in site.meters.iter().enumerate() {
            let r = find(&mut parent, nb + i);
            members.entry(r).or_default().1.push(m.id.clone());
        }
        let mut groups = Vec::new();
        let (mut meter_shard, mut bus_shard) = (BTreeMap::new(), BTreeMap::new());
        for (_, (mut buses, mut meters)) in members {
            buses.sort();
            meters.sort();
            let key = buses
                .first()
                .map(|b| format!("bus:{b}"))
                .or_else(|| meters.first().map(|m| format!("meter:{m}")))
                .unwrap_or_default();
            let shard = (stable_hash(&key) % u64::from(count)) as u32;
            for b in &buses {
                bus_shard.insert(b.clone(), shard);
            }
            for m in &meters {
                meter_shard.insert(m.clone(), shard);
            }
            groups.push(Group {
                key,
                shard,
                buses,
                meters,
            });
        }
        groups.sort_by(|a, b| a.key.cmp(&b.key));
        Plan {
            count,
            groups,
            meter_shard,
            bus_shard,
        }
    }

    /// Shard of a meter (`None`: not in the site).
    pub fn meter(&self, id: &str) -> Option<u32> {
        self.meter_shard.get(id).copied()
    }

    /// Shard of a bus (`None`: not in the site).
    pub fn bus(&self, id: &str) -> Option<u32> {
        self.bus_shard.get(id).copied()
    }

    /// Meters per shard.
    pub fn meters_per_shard(&self) -> Vec<usize> {
        let mut v = vec![0; self.count as usize];
        for s in self.meter_shard.values() {
            if let Some(x) = v.get_mut(*s as usize) {
                *x += 1;
            }
        }
        v
    }
}

/// The meters a push source (MQTT, HTTP) of this instance takes: its own
/// shard's, and which shard every other meter of the site belongs to.
#[derive(Debug, Clone, Default)]
pub struct IngestMeters {
    /// This shard's meters: id → counter quantity.
    pub own: std::collections::HashMap<String, String>,
    /// The other shards' meters: id → shard index.
    pub elsewhere: std::collections::HashMap<String, u32>,
    /// This instance's shard.
    pub shard: Shard,
}

impl IngestMeters {
    /// Split the site's meters by `site.shard`.
    pub fn new(site: &Site) -> IngestMeters {
        let plan = site
            .shard
            .is_sharded()
            .then(|| Plan::new(site, site.shard.count));
        let mut out = IngestMeters {
            shard: site.shard,
            ..IngestMeters::default()
        };
        for m in &site.meters {
            match plan.as_ref().and_then(|p| p.meter(&m.id)) {
                Some(s) if s != site.shard.index => {
                    out.elsewhere.insert(m.id.clone(), s);
                }
                _ => {
                    out.own
                        .insert(m.id.clone(), m.counter_quantity().to_string());
                }
            }
        }
        out
    }
}
