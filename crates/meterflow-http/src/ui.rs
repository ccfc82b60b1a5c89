//! What every page shares and nothing else: the language of a page and the
//! font stack (a leaf module: the pages import it, it imports none of them).

/// The page's language: Chinese by default, English on `?lang=en`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// 简体中文.
    Zh,
    /// English.
    En,
}

impl Lang {
    /// From the `lang` query parameter.
    pub fn from_query(q: Option<&str>) -> Lang {
        match q {
            Some(l) if l.eq_ignore_ascii_case("en") => Lang::En,
            _ => Lang::Zh,
        }
    }

    pub(crate) fn t(self, zh: &'static str, en: &'static str) -> &'static str {
        match self {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }
}

/// The CJK font stack of every page (Noto/Source Han on Linux, PingFang on
/// macOS, YaHei on Windows).
pub const FONTS: &str = "\"Noto Sans CJK SC\",\"Source Han Sans SC\",\"PingFang SC\",\"Microsoft YaHei\",\"WenQuanYi Micro Hei\",sans-serif";
