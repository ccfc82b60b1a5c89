//! What belongs to an agency: the meters that serve it and the buildings and
//! zones it occupies. The API's agency scoping and the export's per-agency
//! meter tables both ask here.

use meterflow_model::Site;
use meterflow_model::config::Meter;

/// Agencies a meter serves (directly, by area share or by fixed shares).
pub fn meter_agencies(m: &Meter) -> Vec<String> {
    let mut a: Vec<String> = m
        .serves
        .agency
        .iter()
        .chain(m.serves.agencies.iter().flatten())
        .cloned()
        .chain(m.shares.keys().cloned())
        .collect();
    a.sort();
    a.dedup();
    a
}

/// A meter is an agency's when it serves the agency (directly, by shares) or
/// a zone the agency occupies; building-wide meters, which also measure the
/// other agencies, are not.
pub fn meter_of_agency(site: &Site, m: &Meter, agency: &str) -> bool {
    meter_agencies(m).iter().any(|x| x == agency)
        || m.serves
            .zone
            .as_ref()
            .is_some_and(|z| occupied(site, agency).1.contains(z))
}

/// Buildings and zones an agency occupies (ever).
pub fn occupied(site: &Site, agency: &str) -> (Vec<String>, Vec<String>) {
    let mut b = Vec::new();
    let mut z = Vec::new();
    for s in site.spaces.iter().filter(|s| s.agency == agency) {
        if let Some(zone) = &s.zone {
            z.push(zone.clone());
            if let Some(x) = site.zones.iter().find(|x| &x.id == zone) {
                b.push(x.building.clone());
            }
        }
        if let Some(x) = &s.building {
            b.push(x.clone());
        }
    }
    b.sort();
    b.dedup();
    z.sort();
    z.dedup();
    (b, z)
}
