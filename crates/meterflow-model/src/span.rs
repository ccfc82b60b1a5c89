//! Byte offsets to line/column, and locating keys inside a parsed TOML document.

use std::ops::Range;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Line and column (both 1-based) of a byte offset in `src`.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(src.len());
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let col = match before.rfind('\n') {
        Some(nl) => before[nl + 1..].chars().count() + 1,
        None => before.chars().count() + 1,
    };
    (line, col)
}

/// The span of the value at `path` (dotted keys and array indices) below `value`,
/// or the closest enclosing span that exists.
pub fn locate(value: &Spanned<DeValue<'_>>, path: &[&str]) -> Range<usize> {
    let mut current = value;
    for segment in path {
        let next = match current.get_ref() {
            DeValue::Table(table) => lookup(table, segment),
            DeValue::Array(array) => segment.parse::<usize>().ok().and_then(|i| array.get(i)),
            _ => None,
        };
        match next {
            Some(v) => current = v,
            None => break,
        }
    }
    current.span()
}

/// The span of the *key* `name` in `table`, if present.
pub fn key_span(table: &DeTable<'_>, name: &str) -> Option<Range<usize>> {
    table
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == name)
        .map(|(k, _)| k.span())
}

fn lookup<'a, 'i>(table: &'a DeTable<'i>, name: &str) -> Option<&'a Spanned<DeValue<'i>>> {
    table
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let src = "a = 1\nbb = 2\n";
        assert_eq!(line_col(src, 0), (1, 1));
        // 'b' of "bb" is byte 6: line 2, column 1; '=' is byte 9: column 4.
        assert_eq!(line_col(src, 6), (2, 1));
        assert_eq!(line_col(src, 9), (2, 4));
    }
}
