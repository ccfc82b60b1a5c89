//! InfluxDB line protocol.

use std::io::BufRead;

use influxdb_line_protocol::FieldValue;

use crate::{ImportRow, RejectReason, RowError, is_snake_case};

/// Timestamp precision of line-protocol input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// Seconds.
    S,
    /// Milliseconds.
    Ms,
    /// Microseconds.
    Us,
    /// Nanoseconds (InfluxDB's default).
    Ns,
}

impl Precision {
    /// Parse `s`, `ms`, `us`, `ns`.
    pub fn parse(s: &str) -> Option<Precision> {
        Some(match s {
            "s" => Precision::S,
            "ms" => Precision::Ms,
            "us" | "u" => Precision::Us,
            "ns" | "n" => Precision::Ns,
            _ => return None,
        })
    }

    fn to_ms(self, t: i64) -> i64 {
        match self {
            Precision::S => t.saturating_mul(1000),
            Precision::Ms => t,
            Precision::Us => t.div_euclid(1000),
            Precision::Ns => t.div_euclid(1_000_000),
        }
    }
}

/// Streams readings of a line-protocol file, line by line.
pub struct LineProtocolReader<R: BufRead> {
    inner: R,
    precision: Precision,
    line_no: u64,
    buf: Vec<u8>,
    queue: std::collections::VecDeque<Result<ImportRow, RowError>>,
}

impl<R: BufRead> LineProtocolReader<R> {
    /// Read from `r` with timestamps in `precision`.
    pub fn new(inner: R, precision: Precision) -> Self {
        LineProtocolReader {
            inner,
            precision,
            line_no: 0,
            buf: Vec::new(),
            queue: Default::default(),
        }
    }
}

impl<R: BufRead> Iterator for LineProtocolReader<R> {
    type Item = Result<ImportRow, RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(r) = self.queue.pop_front() {
                return Some(r);
            }
            self.buf.clear();
            self.line_no += 1;
            match self.inner.read_until(b'\n', &mut self.buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => {
                    return Some(Err(RowError {
                        line: self.line_no,
                        reason: RejectReason::Malformed,
                        detail: format!("read error: {e}"),
                        raw: String::new(),
                    }));
                }
            }
            let line = match std::str::from_utf8(&self.buf) {
                Ok(l) => l.trim_end_matches(['\n', '\r']),
                Err(e) => {
                    let raw = String::from_utf8_lossy(&self.buf).trim_end().to_string();
                    return Some(Err(RowError {
                        line: self.line_no,
                        reason: RejectReason::Malformed,
                        detail: format!("not UTF-8: {e}"),
                        raw,
                    }));
                }
            };
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            self.queue
                .extend(parse_line(line, self.line_no, self.precision));
        }
    }
}

/// Readings of one line-protocol line (one per numeric field), or why the line was rejected.
pub fn parse_line(
    line: &str,
    line_no: u64,
    precision: Precision,
) -> Vec<Result<ImportRow, RowError>> {
    let err = |reason, detail: String| {
        vec![Err(RowError {
            line: line_no,
            reason,
            detail,
            raw: line.to_string(),
        })]
    };
    let parsed = match influxdb_line_protocol::parse_lines(line).next() {
        Some(Ok(p)) => p,
        Some(Err(e)) => return err(RejectReason::Malformed, e.to_string()),
        None => return Vec::new(),
    };
    let Some(ts) = parsed.timestamp else {
        return err(
            RejectReason::BadTimestamp,
            "no timestamp: historical data must carry its time".to_string(),
        );
    };
    let meter = parsed
        .tag_value("meter")
        .or_else(|| parsed.tag_value("meter_id"));
    let Some(meter) = meter else {
        return err(
            RejectReason::Malformed,
            format!(
                "no `meter` tag on measurement `{}`",
                parsed.series.measurement
            ),
        );
    };
    let meter = meter.to_string();
    let quantity_tag = parsed.tag_value("quantity").map(|q| q.to_string());
    let ts_ms = precision.to_ms(ts);
    let mut out = Vec::new();
    for (key, value) in parsed.field_set.iter() {
        let key = key.to_string();
        let v = match value {
            FieldValue::F64(v) => *v,
            FieldValue::I64(v) => *v as f64,
            FieldValue::U64(v) => *v as f64,
            FieldValue::String(_) | FieldValue::Boolean(_) => {
                out.push(Err(RowError {
                    line: line_no,
                    reason: RejectReason::NonNumericValue,
                    detail: format!("field `{key}` is not a number"),
                    raw: line.to_string(),
                }));
                continue;
            }
        };
        let quantity = if key == "value" {
            quantity_tag.clone()
        } else {
            Some(key)
        };
        if let Some(q) = quantity.as_ref().filter(|q| !is_snake_case(q)) {
            out.push(Err(RowError {
                line: line_no,
                reason: RejectReason::BadQuantity,
                detail: format!("quantity `{q}` is not ASCII snake_case"),
                raw: line.to_string(),
            }));
            continue;
        }
        out.push(Ok(ImportRow {
            line: line_no,
            meter: meter.clone(),
            quantity,
            ts_ms,
            value: v,
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_become_quantities() {
        let text = "# comment\n\
                    meter,meter=m1 energy_import=1234.5,power=7i 1735661700000000000\n\
                    meter,meter=m1 value=3 1735661700000000000\n\
                    meter,site=x energy_import=1 1735661700000000000\n\
                    meter,meter=m1 energy_import=1\n\
                    this is not line protocol\n\
                    meter,meter=m1 note=\"hi\" 1735661700000000000\n";
        let rows: Vec<_> = LineProtocolReader::new(text.as_bytes(), Precision::Ns).collect();
        let ok: Vec<_> = rows
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|r| (r.line, r.quantity.clone(), r.value, r.ts_ms))
            .collect();
        assert_eq!(
            ok,
            vec![
                (
                    2,
                    Some("energy_import".to_string()),
                    1234.5,
                    1_735_661_700_000
                ),
                (2, Some("power".to_string()), 7.0, 1_735_661_700_000),
                (3, None, 3.0, 1_735_661_700_000),
            ]
        );
        let bad: Vec<_> = rows
            .iter()
            .filter_map(|r| r.as_ref().err())
            .map(|e| (e.line, e.reason))
            .collect();
        assert_eq!(
            bad,
            vec![
                (4, RejectReason::Malformed),
                (5, RejectReason::BadTimestamp),
                (6, RejectReason::Malformed),
                (7, RejectReason::NonNumericValue)
            ]
        );
    }

    #[test]
    fn invalid_utf8_line_is_reported_and_skipped() {
        let mut data = b"meter,meter=m1 energy_import=1 1\n".to_vec();
        data.extend_from_slice(b"meter,meter=\xff\xfe energy_import=2 2\n");
        data.extend_from_slice(b"meter,meter=m1 energy_import=3 3\n");
        let rows: Vec<_> = LineProtocolReader::new(&data[..], Precision::S).collect();
        assert!(rows[0].is_ok());
        assert_eq!(
            rows[1].as_ref().err().map(|e| (e.line, e.reason)),
            Some((2, RejectReason::Malformed))
        );
        assert!(rows[2].as_ref().is_ok_and(|r| r.value == 3.0));
    }
}
