//! CSV: `meter_id,timestamp,value[,quantity]`.

use std::io::Read;

use chrono_tz::Tz;

use crate::{ImportRow, RejectReason, RowError, is_snake_case, parse_timestamp};

/// Streams rows of a CSV file.
pub struct CsvReader<R: Read> {
    inner: csv::Reader<R>,
    tz: Tz,
    record: csv::StringRecord,
    first: bool,
}

impl<R: Read> CsvReader<R> {
    /// Read from `r`; local times are in `tz`.
    pub fn new(r: R, tz: Tz) -> Self {
        let inner = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .comment(Some(b'#'))
            .from_reader(r);
        CsvReader {
            inner,
            tz,
            record: csv::StringRecord::new(),
            first: true,
        }
    }
}

impl<R: Read> Iterator for CsvReader<R> {
    type Item = Result<ImportRow, RowError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let more = match self.inner.read_record(&mut self.record) {
                Ok(more) => more,
                Err(e) => {
                    let line = e.position().map(|p| p.line()).unwrap_or(0);
                    let skip = matches!(e.kind(), csv::ErrorKind::Io(_));
                    if skip {
                        return None;
                    }
                    return Some(Err(RowError {
                        line,
                        reason: RejectReason::Malformed,
                        detail: e.to_string(),
                        raw: String::new(),
                    }));
                }
            };
            if !more {
                return None;
            }
            let line = self.record.position().map(|p| p.line()).unwrap_or(0);
            if self.record.len() == 1 && self.record.get(0).is_some_and(str::is_empty) {
                continue;
            }
            if std::mem::take(&mut self.first)
                && self.record.get(0).is_some_and(|f| {
                    f.eq_ignore_ascii_case("meter_id") || f.eq_ignore_ascii_case("meter")
                })
            {
                continue;
            }
            return Some(row(&self.record, line, self.tz));
        }
    }
}

fn row(rec: &csv::StringRecord, line: u64, tz: Tz) -> Result<ImportRow, RowError> {
    let raw = rec.iter().collect::<Vec<_>>().join(",");
    let err = |reason, detail: String| RowError {
        line,
        reason,
        detail,
        raw: raw.clone(),
    };
    if !(3..=4).contains(&rec.len()) {
        return Err(err(
            RejectReason::Malformed,
            format!(
                "expected 3 or 4 columns (meter_id,timestamp,value[,quantity]), found {}",
                rec.len()
            ),
        ));
    }
    let meter = rec.get(0).unwrap_or_default();
    if meter.is_empty() {
        return Err(err(RejectReason::Malformed, "empty meter_id".to_string()));
    }
    let ts_ms = parse_timestamp(rec.get(1).unwrap_or_default(), tz)
        .map_err(|e| err(RejectReason::BadTimestamp, e))?;
    let text = rec.get(2).unwrap_or_default();
    let value: f64 = text.parse().map_err(|_| {
        err(
            RejectReason::NonNumericValue,
            format!("value `{text}` is not a number"),
        )
    })?;
    let quantity = match rec.get(3).filter(|q| !q.is_empty()) {
        Some(q) if !is_snake_case(q) => {
            return Err(err(
                RejectReason::BadQuantity,
                format!("quantity `{q}` is not ASCII snake_case"),
            ));
        }
        q => q.map(str::to_string),
    };
    Ok(ImportRow {
        line,
        meter: meter.to_string(),
        quantity,
        ts_ms,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Asia::Shanghai;

    #[test]
    fn reads_rows_and_names_bad_lines() {
        let data = "meter_id,timestamp,value,quantity\n\
                    m1,2025-01-01 00:15,1234.5\n\
                    m1,2025-01-01 00:30,abc\n\
                    m1,not-a-time,1\n\
                    \n\
                    m2,2025-01-01T00:15:00+08:00,7,power\n\
                    m3,2025-01-01 00:15\n\
                    m1,2025-01-01 00:45,nan\n";
        let rows: Vec<_> = CsvReader::new(data.as_bytes(), Shanghai).collect();
        assert_eq!(rows.len(), 6);
        let ok = rows[0].as_ref().expect("row 1");
        assert_eq!(
            (ok.line, ok.meter.as_str(), ok.ts_ms, ok.value),
            (2, "m1", 1_735_661_700_000, 1234.5)
        );
        assert_eq!(
            rows[1].as_ref().err().map(|e| (e.line, e.reason)),
            Some((3, RejectReason::NonNumericValue))
        );
        assert_eq!(
            rows[2].as_ref().err().map(|e| (e.line, e.reason)),
            Some((4, RejectReason::BadTimestamp))
        );
        assert_eq!(
            rows[3].as_ref().ok().and_then(|r| r.quantity.clone()),
            Some("power".to_string())
        );
        assert_eq!(
            rows[4].as_ref().err().map(|e| (e.line, e.reason)),
            Some((7, RejectReason::Malformed))
        );
        // NaN is a number to the parser; the normaliser rejects it as invalid_value.
        assert!(rows[5].as_ref().is_ok_and(|r| r.value.is_nan()));
    }
}
