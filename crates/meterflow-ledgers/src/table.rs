//! A table as clerks bring one: a CSV file (UTF-8, or GB18030 as Excel on a
//! Chinese Windows saves "CSV"), or an Excel workbook (`.xlsx`, its first
//! sheet). Both become a header row and rows of cell texts, so the import
//! checks one kind of input whatever the file was.

use std::io::Cursor;

/// At most this many data rows in one file.
pub const MAX_ROWS: usize = 100_000;
/// At most this many columns are read from a row.
pub const MAX_COLUMNS: usize = 64;
/// An xlsx file may unpack to at most this many bytes (a "zip bomb" of a
/// few MB that unpacks to gigabytes is refused before it is read).
pub const MAX_UNPACKED: u64 = 128 * 1024 * 1024;

/// A table: the header and each data row with its line (or sheet row)
/// number, 1-based as a spreadsheet shows it; a row that could not be read
/// carries the reason instead.
#[derive(Debug, Default)]
pub struct Table {
    /// Column names, trimmed.
    pub headers: Vec<String>,
    /// `(row number, cells or why not)`.
    pub rows: Vec<(usize, Result<Vec<String>, String>)>,
    /// What the file was read as (`CSV (UTF-8)`, `CSV (GB18030)`, `xlsx`).
    pub format: &'static str,
}

/// Read `bytes` as xlsx (a ZIP file) or CSV.
pub fn read(bytes: &[u8]) -> Result<Table, String> {
    if bytes.starts_with(b"PK\x03\x04") {
        return xlsx(bytes);
    }
    let (text, format) = match std::str::from_utf8(bytes) {
        Ok(t) => (t.to_string(), "CSV (UTF-8)"),
        Err(_) => {
            let (t, _, bad) = encoding_rs::GB18030.decode(bytes);
            if bad {
                return Err(
                    "the file is neither UTF-8 nor GB18030 text, nor an xlsx workbook".into(),
                );
            }
            (t.into_owned(), "CSV (GB18030)")
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| format!("no CSV header row: {e}"))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let mut rows = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        if i >= MAX_ROWS {
            return Err(format!("at most {MAX_ROWS} rows per file"));
        }
        let line = i + 2;
        rows.push((
            line,
            rec.map(|r| r.iter().map(str::to_string).collect())
                .map_err(|e| format!("not CSV: {e}")),
        ));
    }
    Ok(Table {
        headers,
        rows,
        format,
    })
}

/// The first sheet of a workbook. Dates typed into date-formatted cells
/// come back as `YYYY-MM-DD` (with the time when it has one); whole numbers
/// without a trailing `.0`.
fn xlsx(bytes: &[u8]) -> Result<Table, String> {
    use calamine::{DataRef, Reader as _, Xlsx};
    let not_xlsx = |e: &dyn std::fmt::Display| format!("not a readable xlsx workbook: {e}");
    // The sizes the archive declares, before anything is unpacked.
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| not_xlsx(&e))?;
    let mut unpacked: u64 = 0;
    for i in 0..zip.len() {
        let f = zip.by_index_raw(i).map_err(|e| not_xlsx(&e))?;
        unpacked = unpacked.saturating_add(f.size());
    }
    if unpacked > MAX_UNPACKED {
        return Err(format!(
            "the workbook unpacks to {} MB; at most {} MB are read (split it, or save it as CSV)",
            unpacked / 1_000_000,
            MAX_UNPACKED / 1_000_000
        ));
    }
    let mut book: Xlsx<_> = Xlsx::new(Cursor::new(bytes)).map_err(|e| not_xlsx(&e))?;
    let Some(sheet) = book.sheet_names().first().cloned() else {
        return Err("the workbook has no sheet".into());
    };
    let mut cells = book
        .worksheet_cells_reader(&sheet)
        .map_err(|e| not_xlsx(&e))?;
    // Rows as a spreadsheet numbers them (1-based), cells by column.
    let mut grid: Vec<(u32, Vec<String>)> = Vec::new();
    while let Some(cell) = cells.next_cell().map_err(|e| not_xlsx(&e))? {
        let (row, col) = cell.get_position();
        if col as usize >= MAX_COLUMNS {
            continue;
        }
        let text = match cell.get_value() {
            DataRef::Empty => continue,
            DataRef::String(s) | DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => s.clone(),
            DataRef::SharedString(s) => (*s).to_string(),
            DataRef::Int(i) => i.to_string(),
            DataRef::Float(f) => plain_number(*f),
            DataRef::Bool(b) => b.to_string(),
            DataRef::DateTime(d) => match d.as_datetime() {
                Some(t) if d.is_datetime() && t.time() == chrono::NaiveTime::MIN => {
                    t.date().to_string()
                }
                Some(t) if d.is_datetime() => t.format("%Y-%m-%d %H:%M:%S").to_string(),
                _ => plain_number(d.as_f64()),
            },
            DataRef::Error(e) => format!("#ERROR {e}"),
        };
        let row = row + 1;
        if grid.last().is_none_or(|(r, _)| *r != row) {
            if grid.len() > MAX_ROWS {
                return Err(format!("at most {MAX_ROWS} rows per file"));
            }
            grid.push((row, Vec::new()));
        }
        if let Some((_, cells)) = grid.last_mut() {
            let col = col as usize;
            if cells.len() <= col {
                cells.resize(col + 1, String::new());
            }
            cells[col] = text;
        }
    }
    let mut grid = grid.into_iter();
    let Some((_, headers)) = grid.next() else {
        return Err("the first sheet is empty".into());
    };
    let headers: Vec<String> = headers.iter().map(|h| h.trim().to_string()).collect();
    let width = headers.len();
    let rows = grid
        .map(|(row, mut cells)| {
            cells.resize(width.max(cells.len()), String::new());
            // Trailing empty cells beyond the header are no cells at all.
            while cells.len() > width && cells.last().is_some_and(String::is_empty) {
                cells.pop();
            }
            let bad = cells.iter().find(|c| c.starts_with("#ERROR "));
            let cells = match bad {
                Some(e) => Err(format!("a cell holds an Excel error ({e})")),
                None => Ok(cells),
            };
            (row as usize, cells)
        })
        .collect();
    Ok(Table {
        headers,
        rows,
        format: "xlsx",
    })
}

/// `12` for 12.0, `2.5` for 2.5: numbers as a person typed them.
fn plain_number(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        f.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gb18030_csv_is_read() {
        // "时间,kg\n2026/12/2,2.0\n" as Excel on a Chinese Windows saves it.
        let (bytes, _, _) = encoding_rs::GB18030.encode("时间,kg\n2026/12/2,2.0\n");
        let t = read(&bytes).expect("read");
        assert_eq!(t.format, "CSV (GB18030)");
        assert_eq!(t.headers, vec!["时间", "kg"]);
        assert_eq!(t.rows[0].1.as_ref().expect("row")[0], "2026/12/2");
    }

    #[test]
    fn numbers_read_as_typed() {
        assert_eq!(plain_number(12.0), "12");
        assert_eq!(plain_number(2.5), "2.5");
    }

    #[test]
    fn a_broken_zip_is_an_error_not_a_panic() {
        let e = read(b"PK\x03\x04 not really").expect_err("refused");
        assert!(e.contains("xlsx"), "{e}");
    }
}
