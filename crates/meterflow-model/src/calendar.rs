//! The working calendar (`calendar/cn.toml`): which days are worked in
//! China, year by year as the State Council announces them — weekends,
//! statutory holidays (放假) and the Saturdays and Sundays made working
//! days (调休上班). Rules that care about occupancy (the off-hours baseload
//! alert) ask it; a year without a notice falls back to Monday–Friday.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use chrono::{Datelike, NaiveDate};

/// The shipped calendar file.
pub const SHIPPED_TOML: &str = include_str!("../calendar/cn.toml");

/// What a day is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayKind {
    /// Monday to Friday, no notice about it.
    Workday,
    /// Saturday or Sunday, no notice about it.
    Weekend,
    /// A statutory holiday (inside a notice's 放假 range).
    Holiday,
    /// A Saturday or Sunday the notice makes a working day (调休上班).
    MakeUpWorkday,
}

impl DayKind {
    /// Is the day worked?
    pub fn worked(self) -> bool {
        matches!(self, DayKind::Workday | DayKind::MakeUpWorkday)
    }
}

/// The calendar: the announced days, and the years announced.
#[derive(Debug, Clone, Default)]
pub struct Calendar {
    days: BTreeMap<NaiveDate, DayKind>,
    years: BTreeMap<i32, String>,
}

#[derive(serde::Deserialize)]
struct File {
    year: Vec<YearFile>,
}

#[derive(serde::Deserialize)]
struct YearFile {
    year: i32,
    source: String,
    holidays: Vec<(String, String)>,
    workdays: Vec<String>,
}

fn date(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|e| format!("`{s}`: {e}"))
}

impl Calendar {
    /// Parse a calendar file; errors name the year and the date.
    pub fn parse(text: &str) -> Result<Calendar, String> {
        let f: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut c = Calendar::default();
        for y in f.year {
            for (from, to) in &y.holidays {
                let (a, b) = (date(from)?, date(to)?);
                if b < a || (b - a).num_days() > 14 {
                    return Err(format!(
                        "{}: holiday {from}..{to} is not a range of at most 15 days",
                        y.year
                    ));
                }
                let mut d = a;
                while d <= b {
                    c.days.insert(d, DayKind::Holiday);
                    d = d.succ_opt().ok_or("date overflow")?;
                }
            }
            for w in &y.workdays {
                let d = date(w)?;
                if d.weekday().number_from_monday() < 6 {
                    return Err(format!(
                        "{}: make-up workday {w} is not a Saturday or Sunday",
                        y.year
                    ));
                }
                if c.days.get(&d) == Some(&DayKind::Holiday) {
                    return Err(format!(
                        "{}: {w} is both a holiday and a make-up workday",
                        y.year
                    ));
                }
                c.days.insert(d, DayKind::MakeUpWorkday);
            }
            c.years.insert(y.year, y.source);
        }
        Ok(c)
    }

    /// The shipped calendar.
    pub fn shipped() -> &'static Calendar {
        static CAL: OnceLock<Calendar> = OnceLock::new();
        CAL.get_or_init(|| Calendar::parse(SHIPPED_TOML).unwrap_or_default())
    }

    /// What `d` is.
    pub fn kind(&self, d: NaiveDate) -> DayKind {
        match self.days.get(&d) {
            Some(k) => *k,
            None if d.weekday().number_from_monday() >= 6 => DayKind::Weekend,
            None => DayKind::Workday,
        }
    }

    /// The notice a year's days come from, if the year is announced.
    pub fn source(&self, year: i32) -> Option<&str> {
        self.years.get(&year).map(String::as_str)
    }

    /// The years announced.
    pub fn years(&self) -> BTreeSet<i32> {
        self.years.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    #[test]
    fn the_shipped_years_read_and_their_days_are_what_the_notices_say() {
        let c = Calendar::parse(SHIPPED_TOML).expect("shipped calendar");
        assert_eq!(c.years(), (2021..=2026).collect());
        // 2026: Sunday 4 January is worked (元旦调休); Monday 16 February is
        // the Spring Festival; Saturday 14 February is worked.
        assert_eq!(c.kind(d("2026-01-04")), DayKind::MakeUpWorkday);
        assert_eq!(c.kind(d("2026-02-16")), DayKind::Holiday);
        assert_eq!(c.kind(d("2026-02-14")), DayKind::MakeUpWorkday);
        assert_eq!(c.kind(d("2026-02-24")), DayKind::Workday);
        assert_eq!(c.kind(d("2026-03-07")), DayKind::Weekend);
        // 2025: the 8-day Spring Festival from 除夕 28 January.
        assert_eq!(c.kind(d("2025-01-28")), DayKind::Holiday);
        assert_eq!(c.kind(d("2025-02-04")), DayKind::Holiday);
        assert_eq!(c.kind(d("2025-01-26")), DayKind::MakeUpWorkday);
        // 2023's 元旦 began on 31 December 2022.
        assert_eq!(c.kind(d("2022-12-31")), DayKind::Holiday);
        // Per year: 7 or 8 holidays ranges' days; the totals by hand:
        // 2026: 3 + 9 + 3 + 5 + 3 + 3 + 7 = 33 days off, 6 make-up days.
        let in_2026 = |k: DayKind| {
            (0..365)
                .filter_map(|i| d("2026-01-01").checked_add_days(chrono::Days::new(i)))
                .filter(|x| c.days.get(x) == Some(&k))
                .count()
        };
        assert_eq!(in_2026(DayKind::Holiday), 33);
        assert_eq!(in_2026(DayKind::MakeUpWorkday), 6);
        assert!(c.source(2026).is_some_and(|s| s.contains("2026")));
        assert!(c.source(2030).is_none());
    }

    #[test]
    fn a_bad_file_is_refused_with_the_date() {
        let e = Calendar::parse(
            "[[year]]\nyear = 2026\nsource = \"x\"\nholidays = []\nworkdays = [\"2026-01-05\"]\n",
        )
        .expect_err("a Monday is no make-up day");
        assert!(e.contains("2026-01-05"), "{e}");
    }
}
