//! Request planning: coalesce a meter's fields into as few reads as possible.

use meterflow_model::profile::{Field, Space};

/// One read request covering some fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// Register space (function code 03 or 04).
    pub space: Space,
    /// First register.
    pub start: u16,
    /// Registers to read.
    pub count: u16,
    /// Indices of the fields it covers, in address order.
    pub fields: Vec<usize>,
}

/// Coalesce `wanted` fields into reads of at most `max_registers`, bridging at
/// most `max_gap` unwanted registers between two fields.
pub fn plan(fields: &[Field], wanted: &[usize], max_registers: u16, max_gap: u16) -> Vec<Read> {
    let mut idx: Vec<usize> = wanted.to_vec();
    idx.sort_by_key(|&i| (fields[i].space, fields[i].address));
    let mut out: Vec<Read> = Vec::new();
    for i in idx {
        let f = &fields[i];
        let end = u32::from(f.address) + u32::from(f.dtype.registers());
        if let Some(last) = out.last_mut() {
            let last_end = u32::from(last.start) + u32::from(last.count);
            let gap = i64::from(f.address) - last_end as i64;
            let new_count = end.saturating_sub(u32::from(last.start));
            if last.space == f.space
                && gap <= i64::from(max_gap)
                && new_count <= u32::from(max_registers)
            {
                last.count = last.count.max(new_count as u16);
                last.fields.push(i);
                continue;
            }
        }
        out.push(Read {
            space: f.space,
            start: f.address,
            count: f.dtype.registers(),
            fields: vec![i],
        });
    }
    out
}

/// Split a coalesced read into two reads over halves of its fields (used when
/// the device answers exception 2 or 3 for the whole range).
pub fn split(fields: &[Field], read: &Read) -> Option<(Read, Read)> {
    if read.fields.len() < 2 {
        return None;
    }
    let mid = read.fields.len() / 2;
    let part = |ix: &[usize]| {
        let start = ix
            .iter()
            .map(|&i| fields[i].address)
            .min()
            .unwrap_or(read.start);
        let end = ix
            .iter()
            .map(|&i| u32::from(fields[i].address) + u32::from(fields[i].dtype.registers()))
            .max()
            .unwrap_or(0);
        Read {
            space: read.space,
            start,
            count: (end - u32::from(start)) as u16,
            fields: ix.to_vec(),
        }
    };
    Some((part(&read.fields[..mid]), part(&read.fields[mid..])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use meterflow_model::config::shipped_profiles;

    #[test]
    fn sdm630_fast_group_coalesces_across_small_gaps() {
        let p = shipped_profiles()
            .into_iter()
            .find(|p| p.name == "sdm630")
            .expect("sdm630");
        let all: Vec<usize> = (0..p.field.len()).collect();
        // Addresses 0x00-0x0B (V, A), 0x34 power, 0x3E PF, 0x46 Hz, 0x48/0x4A energy, 0x156 total.
        // Gap 0x0C→0x34 is 40 registers: a new read with max_gap 10; 0x34..0x4C bridges
        // gaps of 8, 6 and 0; 0x156 is far away.
        let reads = plan(&p.field, &all, 125, 10);
        let spans: Vec<(u16, u16)> = reads.iter().map(|r| (r.start, r.count)).collect();
        assert_eq!(spans, vec![(0x00, 12), (0x34, 0x4C - 0x34), (0x156, 2)]);
        // With a 64-register gap allowed, 0x00..0x4C is one read of 76 registers.
        let reads = plan(&p.field, &all, 125, 64);
        assert_eq!(
            reads.iter().map(|r| (r.start, r.count)).collect::<Vec<_>>(),
            vec![(0x00, 76), (0x156, 2)]
        );
        // The 125-register limit stops coalescing even with a huge gap allowance.
        let reads = plan(&p.field, &all, 125, 1000);
        assert!(reads.iter().all(|r| r.count <= 125));
        assert_eq!(
            reads.iter().map(|r| r.fields.len()).sum::<usize>(),
            p.field.len()
        );
    }

    #[test]
    fn spaces_are_never_mixed_and_split_halves_fields() {
        let p = shipped_profiles()
            .into_iter()
            .find(|p| p.name == "acrel-adl400")
            .expect("acrel");
        let all: Vec<usize> = (0..p.field.len()).collect();
        let reads = plan(&p.field, &all, 125, 10);
        let first = &reads[0];
        // 0x00, 0x0A, 0x14 (u32 each): gaps of 8 → one read 0x00..0x16.
        assert_eq!((first.start, first.count, first.fields.len()), (0, 0x16, 3));
        let (a, b) = split(&p.field, first).expect("splittable");
        assert_eq!((a.start, a.count), (0x00, 2));
        assert_eq!((b.start, b.count), (0x0A, 0x0C));
        assert_eq!(split(&p.field, &a), None);
    }
}
