//! The error machinery of the site file: an error with file, line, column
//! and dotted key; the context that collects them; a deserialized element
//! with the span it came from; "did you mean" suggestions. Nothing here
//! knows a section.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeValue, ValueDeserializer};

use crate::span::line_col;

/// One configuration mistake, located.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// File the mistake is in.
    pub file: PathBuf,
    /// 1-based line (0 when the file could not be read at all).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Dotted key, e.g. `meter[3].parent` (empty for whole-file errors).
    pub key: String,
    /// What is wrong, and what would be right.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// All mistakes found in a configuration, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Error collection with access to the source text.
pub(crate) struct Ctx<'s> {
    pub(crate) src: &'s str,
    pub(crate) file: PathBuf,
    pub(crate) errors: Vec<ConfigError>,
}

impl<'s> Ctx<'s> {
    pub(crate) fn new(src: &'s str, file: &Path) -> Self {
        Ctx {
            src,
            file: file.to_path_buf(),
            errors: Vec::new(),
        }
    }

    pub(crate) fn error(
        &mut self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        let (line, column) = line_col(self.src, span.start);
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line,
            column,
            key: key.into(),
            message: message.into(),
        });
    }
}

/// A deserialized element with the parse tree it came from, to locate keys later.
pub(crate) struct Located<'s, T> {
    pub(crate) value: T,
    pub(crate) node: Spanned<DeValue<'s>>,
    /// `meter[3]` or `site`.
    pub(crate) path: String,
}

impl<T> Located<'_, T> {
    /// Span of the value under `key` (dotted path segments), or of the element.
    pub(crate) fn span_of(&self, key: &[&str]) -> Range<usize> {
        crate::span::locate(&self.node, key)
    }

    /// The element's table has `key` (to tell a default from an explicit value).
    pub(crate) fn has(&self, key: &str) -> bool {
        match self.node.get_ref() {
            DeValue::Table(t) => crate::span::key_span(t, key).is_some(),
            _ => false,
        }
    }

    pub(crate) fn key(&self, key: &str) -> String {
        if key.is_empty() {
            self.path.clone()
        } else {
            format!("{}.{}", self.path, key)
        }
    }
}

pub(crate) fn element<'s, T: DeserializeOwned>(
    ctx: &mut Ctx<'s>,
    path: String,
    node: Spanned<DeValue<'s>>,
) -> Option<Located<'s, T>> {
    let de = ValueDeserializer::from(node.clone());
    match T::deserialize(de) {
        Ok(value) => Some(Located { value, node, path }),
        Err(e) => {
            let span = e.span().unwrap_or_else(|| node.span());
            let key = key_at(&node, span.start)
                .map(|k| format!("{path}.{k}"))
                .unwrap_or(path);
            ctx.error(span, key, tidy_serde_message(e.message()));
            None
        }
    }
}

/// The dotted key whose key or value span contains `offset`, inside `node`.
pub(crate) fn key_at(node: &Spanned<DeValue<'_>>, offset: usize) -> Option<String> {
    let DeValue::Table(table) = node.get_ref() else {
        return None;
    };
    for (k, v) in table.iter() {
        let (ks, vs) = (k.span(), v.span());
        if ks.contains(&offset) || vs.contains(&offset) || (vs.end == offset && vs.start < vs.end) {
            let name: &str = k.get_ref().as_ref();
            return Some(match key_at(v, offset) {
                Some(inner) if vs.contains(&offset) => format!("{name}.{inner}"),
                _ => name.to_string(),
            });
        }
    }
    None
}

pub(crate) fn tidy_serde_message(msg: &str) -> String {
    msg.trim().replace('\n', " ")
}

/// ", did you mean `x`?" for a close spelling, else a list of what is allowed.
pub(crate) fn suggest<'a>(
    word: &str,
    allowed: impl Iterator<Item = &'a &'a str> + Clone,
) -> String {
    let best = allowed
        .clone()
        .map(|a| (edit_distance(word, a), *a))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((d, a)) if d <= 2 => format!(", did you mean `{a}`?"),
        _ => {
            let list: Vec<_> = allowed.map(|a| format!("`{a}`")).collect();
            format!(", expected one of {}", list.join(", "))
        }
    }
}

pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
