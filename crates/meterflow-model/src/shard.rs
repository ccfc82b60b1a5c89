//! Shards of a site (`meterflow run --shard i/N`, ADR 0013).
//!
//! The unit that goes to one shard is a *metering group*: buses joined by
//! the meter trees that span them, with every meter on them and every meter
//! below or above those meters. A serial line is never split (all of its
//! meters share the bus), and a parent meter always lives with its
//! sub-meters, so the remainder rule (parent − children) is applied where
//! both counters are, and the shards' rollups add up to the unsharded ones.
//! A group is placed by a stable hash (FNV-1a, 64 bit) of its key: its
//! smallest bus id, or its smallest meter id when it has no bus (meters that
//! only push over MQTT or HTTP).

use std::fmt;
use std::str::FromStr;

/// This instance's shard: index `i` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based index.
    pub index: u32,
    /// Number of shards (1 = unsharded).
    pub count: u32,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl Shard {
    /// Whether the site is split at all.
    pub fn is_sharded(&self) -> bool {
        self.count > 1
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    /// `i/N` with `0 <= i < N`. `i` may also be a Kubernetes StatefulSet pod
    /// name (`meterflow-2/3`): its trailing ordinal is the index.
    fn from_str(s: &str) -> Result<Shard, String> {
        let (i, n) = s
            .rsplit_once('/')
            .ok_or_else(|| format!("`{s}`: expected i/N, e.g. 0/3"))?;
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("`{s}`: N must be a whole number"))?;
        let i = i.trim();
        let digits = match i.rsplit_once('-') {
            Some((name, d)) if !name.is_empty() => d,
            _ => i,
        };
        let index: u32 = digits.parse().map_err(|_| {
            format!("`{s}`: i must be a whole number or a pod name ending in -<ordinal>")
        })?;
        if count == 0 {
            return Err(format!("`{s}`: N must be at least 1"));
        }
        if index >= count {
            return Err(format!("`{s}`: i must be below N (0 to {})", count - 1));
        }
        Ok(Shard { index, count })
    }
}

/// FNV-1a, 64 bit: stable across builds and platforms.
pub fn stable_hash(key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

pub use crate::metering_groups::{Group, IngestMeters, Plan};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Site;

    #[test]
    fn shard_parses_numbers_and_pod_names_and_refuses_the_rest() {
        assert_eq!("2/3".parse(), Ok(Shard { index: 2, count: 3 }));
        assert_eq!("meterflow-1/3".parse(), Ok(Shard { index: 1, count: 3 }));
        assert_eq!(" 0 / 1 ".parse::<Shard>().map(|s| s.count), Ok(1));
        for bad in ["3/3", "1", "a/3", "1/0", "-1/3", "1/x"] {
            let e = bad.parse::<Shard>().expect_err(bad);
            assert!(e.contains(bad.trim()), "{e}");
        }
    }

    fn site(src: &str) -> Site {
        match Site::parse(src, std::path::Path::new("site.toml")) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn a_meter_tree_joins_its_buses_into_one_group() {
        // m0 (bus rtu1) is the parent of s1 (bus gw2): rtu1, gw2 and both
        // meters are one group; s3 on gw2 joins it through the bus; p1 and p2
        // push over MQTT, p2 below s3 (so in the group), p1 alone.
        let s = site(
            r#"
[site]
name = "t"
[[building]]
id = "b"
total_area_m2 = 100
[[bus]]
id = "rtu1"
transport = "rtu"
device = "/dev/ttyUSB0"
[[bus]]
id = "gw2"
transport = "tcp"
address = "127.0.0.1:502"
[[bus]]
id = "gw3"
transport = "tcp"
address = "127.0.0.1:503"
[[meter]]
id = "m0"
kind = "electricity"
unit = "kWh"
serves = { building = "b" }
modbus = { bus = "rtu1", unit = 1, profile = "sdm630" }
[[meter]]
id = "s1"
kind = "electricity"
unit = "kWh"
parent = "m0"
serves = { building = "b" }
modbus = { bus = "gw2", unit = 1, profile = "sdm630" }
[[meter]]
id = "s3"
kind = "electricity"
unit = "kWh"
serves = { building = "b" }
modbus = { bus = "gw2", unit = 2, profile = "sdm630" }
[[meter]]
id = "p2"
kind = "electricity"
unit = "kWh"
parent = "s3"
serves = { building = "b" }
[[meter]]
id = "p1"
kind = "water"
unit = "m3"
serves = { building = "b" }
[[meter]]
id = "x"
kind = "electricity"
unit = "kWh"
serves = { building = "b" }
modbus = { bus = "gw3", unit = 1, profile = "sdm630" }
"#,
        );
        let plan = Plan::new(&s, 4);
        let keys: Vec<&str> = plan.groups.iter().map(|g| g.key.as_str()).collect();
        assert_eq!(keys, vec!["bus:gw2", "bus:gw3", "meter:p1"]);
        assert_eq!(plan.groups[0].buses, vec!["gw2", "rtu1"]);
        assert_eq!(plan.groups[0].meters, vec!["m0", "p2", "s1", "s3"]);
        // Every member has its group's shard, and the shard is the hash's.
        for g in &plan.groups {
            assert_eq!(g.shard, (stable_hash(&g.key) % 4) as u32);
            for m in &g.meters {
                assert_eq!(plan.meter(m), Some(g.shard));
            }
            for b in &g.buses {
                assert_eq!(plan.bus(b), Some(g.shard));
            }
        }
        assert_eq!(plan.meters_per_shard().iter().sum::<usize>(), 6);
        // One shard: everything in shard 0.
        assert!(Plan::new(&s, 1).groups.iter().all(|g| g.shard == 0));
        // The ingest view of shard `plan.meter("p1")` owns p1 and not m0 unless
        // they share a shard.
        let mut s2 = s.clone();
        s2.shard = Shard {
            index: plan.meter("p1").expect("p1"),
            count: 4,
        };
        let view = IngestMeters::new(&s2);
        assert!(view.own.contains_key("p1"));
        assert_eq!(
            view.elsewhere.contains_key("m0"),
            plan.meter("m0") != plan.meter("p1")
        );
        assert_eq!(view.own.len() + view.elsewhere.len(), 6);
    }

    #[test]
    fn single_meter_groups_spread_evenly() {
        // 3 000 push meters over 3 shards: FNV-1a spreads them within 5 % of a third.
        let mut src =
            String::from("[site]\nname = \"t\"\n[[building]]\nid = \"b\"\ntotal_area_m2 = 1\n");
        for i in 0..3000 {
            src.push_str(&format!(
                "[[meter]]\nid = \"m{i}\"\nkind = \"water\"\nunit = \"m3\"\nserves = {{ building = \"b\" }}\n"
            ));
        }
        let per = Plan::new(&site(&src), 3).meters_per_shard();
        assert_eq!(per.iter().sum::<usize>(), 3000);
        assert!(per.iter().all(|n| (950..=1050).contains(n)), "{per:?}");
    }

    #[test]
    fn fnv1a_is_the_published_function() {
        // FNV-1a 64 test vectors (Fowler, Noll, Vo): "" and "a".
        assert_eq!(stable_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
