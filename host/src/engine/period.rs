//! Periods in a tenant's time zone: day, week, month, quarter, year, and custom ranges.
//!
//! A period is a run of whole local days, cut at local midnight in the tenant's IANA zone,
//! and covers the instants `[start, end)`: `start` is the first instant of its first day
//! and `end` the first instant of the day after its last. Because the cuts are made on the
//! local calendar and converted to instants only at the edges, a period keeps its calendar
//! meaning across daylight-saving changes: the day clocks go forward lasts 23 hours, the
//! day they go back 25, and a March month in London is 743 hours long. Where local
//! midnight does not exist (a zone that springs forward at 00:00), the day starts at the
//! first instant that does (jiff's "compatible" disambiguation: after the gap; in a fold,
//! the earlier of the two).
//!
//! Weeks are ISO weeks (Monday to Sunday) unless a tenant's calendar starts them on another
//! day ([`Period::containing_with`]; see [`super::calendar`]). Quarters start in January,
//! April, July and October. Consecutive periods tile time: the `end` of one is the `start`
//! of the next. A custom period ([`Period::custom`]) is any run of whole local days, first
//! and last inclusive; it has no next or previous one.

use std::fmt;

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, ToSpan};

/// The length of a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeriodKind {
    /// One local day.
    Day,
    /// One ISO week, Monday to Sunday.
    Week,
    /// One calendar month.
    Month,
    /// Three calendar months starting in January, April, July or October.
    Quarter,
    /// One calendar year.
    Year,
    /// A run of local days chosen by hand (first and last inclusive); never recurs.
    Custom,
}

impl PeriodKind {
    /// Every calendar kind (all but [`PeriodKind::Custom`]), shortest first.
    pub const ALL: [PeriodKind; 5] =
        [PeriodKind::Day, PeriodKind::Week, PeriodKind::Month, PeriodKind::Quarter, PeriodKind::Year];

    /// The name used in the API and the store: `day`, `week`, `month`, `quarter`, `year`.
    pub fn as_str(self) -> &'static str {
        match self {
            PeriodKind::Day => "day",
            PeriodKind::Week => "week",
            PeriodKind::Month => "month",
            PeriodKind::Quarter => "quarter",
            PeriodKind::Year => "year",
            PeriodKind::Custom => "custom",
        }
    }

    /// Reads a name written by [`PeriodKind::as_str`].
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().chain([PeriodKind::Custom]).find(|k| k.as_str() == name)
    }

    /// The first day of the period of this kind that contains `date`, weeks starting on
    /// Monday (ISO). A custom period has no calendar rule: `date` itself.
    pub fn first_day(self, date: Date) -> Date {
        self.first_day_with(date, Weekday::Monday)
    }

    /// The first day of the period of this kind that contains `date`, weeks starting on
    /// `week_start`.
    pub fn first_day_with(self, date: Date, week_start: Weekday) -> Date {
        match self {
            PeriodKind::Day | PeriodKind::Custom => date,
            // Going back at most six days stays in range for any date a tenant can use
            // (the checked arithmetic only fails at year -9999).
            PeriodKind::Week => {
                let back = i64::from(date.weekday().since(week_start));
                date.checked_sub(back.days()).unwrap_or(date)
            }
            PeriodKind::Month => date.first_of_month(),
            PeriodKind::Quarter => {
                let month = (date.month() - 1) / 3 * 3 + 1;
                Date::new(date.year(), month, 1).unwrap_or_else(|_| date.first_of_month())
            }
            PeriodKind::Year => date.first_of_year(),
        }
    }

    /// How far one period of this kind reaches on the calendar (none for a custom one).
    fn span(self) -> Option<Span> {
        match self {
            PeriodKind::Day => Some(1.day()),
            PeriodKind::Week => Some(7.days()),
            PeriodKind::Month => Some(1.month()),
            PeriodKind::Quarter => Some(3.months()),
            PeriodKind::Year => Some(1.year()),
            PeriodKind::Custom => None,
        }
    }
}

impl fmt::Display for PeriodKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A date or instant beyond what the calendar arithmetic supports (years before -9999 or
/// after 9999), or a calendar rule asked of a custom period (which has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("date or instant out of range")]
pub struct PeriodError;

/// One period of a tenant's calendar: its kind, its local days and its instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Period {
    /// Its kind.
    pub kind: PeriodKind,
    /// Its first local day.
    pub first_day: Date,
    /// The local day after its last (the first day of the next period).
    pub end_day: Date,
    /// The first instant of `first_day`, in milliseconds since the Unix epoch (inclusive).
    pub start_ms: i64,
    /// The first instant of `end_day`, in milliseconds since the Unix epoch (exclusive).
    pub end_ms: i64,
}

impl Period {
    /// The period of `kind` containing the local date `date` in `tz` (ISO weeks).
    pub fn containing(kind: PeriodKind, date: Date, tz: &TimeZone) -> Result<Self, PeriodError> {
        Self::containing_with(kind, date, Weekday::Monday, tz)
    }

    /// The period of `kind` containing the local date `date` in `tz`, weeks starting on
    /// `week_start`. [`PeriodError`] for [`PeriodKind::Custom`].
    pub fn containing_with(
        kind: PeriodKind,
        date: Date,
        week_start: Weekday,
        tz: &TimeZone,
    ) -> Result<Self, PeriodError> {
        Self::starting(kind, kind.first_day_with(date, week_start), tz)
    }

    /// The period of `kind` containing the instant `at_ms` in `tz` (ISO weeks).
    pub fn containing_instant(kind: PeriodKind, at_ms: i64, tz: &TimeZone) -> Result<Self, PeriodError> {
        Self::containing(kind, local_date(at_ms, tz)?, tz)
    }

    /// The period of `kind` containing the instant `at_ms` in `tz`, weeks starting on
    /// `week_start`.
    pub fn containing_instant_with(
        kind: PeriodKind,
        at_ms: i64,
        week_start: Weekday,
        tz: &TimeZone,
    ) -> Result<Self, PeriodError> {
        Self::containing_with(kind, local_date(at_ms, tz)?, week_start, tz)
    }

    /// The custom period of the local days `first_day..=last_day` in `tz`.
    /// [`PeriodError`] if `last_day` is before `first_day`.
    pub fn custom(first_day: Date, last_day: Date, tz: &TimeZone) -> Result<Self, PeriodError> {
        if last_day < first_day {
            return Err(PeriodError);
        }
        let end_day = last_day.tomorrow().map_err(|_| PeriodError)?;
        Ok(Self {
            kind: PeriodKind::Custom,
            first_day,
            end_day,
            start_ms: start_of_day_ms(first_day, tz)?,
            end_ms: start_of_day_ms(end_day, tz)?,
        })
    }

    /// The period of `kind` whose first day is `first_day` (already a period start).
    fn starting(kind: PeriodKind, first_day: Date, tz: &TimeZone) -> Result<Self, PeriodError> {
        let end_day = first_day.checked_add(kind.span().ok_or(PeriodError)?).map_err(|_| PeriodError)?;
        Ok(Self {
            kind,
            first_day,
            end_day,
            start_ms: start_of_day_ms(first_day, tz)?,
            end_ms: start_of_day_ms(end_day, tz)?,
        })
    }

    /// The period right after this one.
    pub fn next(&self, tz: &TimeZone) -> Result<Self, PeriodError> {
        Self::starting(self.kind, self.end_day, tz)
    }

    /// The period right before this one.
    pub fn previous(&self, tz: &TimeZone) -> Result<Self, PeriodError> {
        let first = self.first_day.checked_sub(self.kind.span().ok_or(PeriodError)?).map_err(|_| PeriodError)?;
        Self::starting(self.kind, first, tz)
    }

    /// Whether the instant `at_ms` is inside `[start, end)`.
    pub fn contains(&self, at_ms: i64) -> bool {
        self.start_ms <= at_ms && at_ms < self.end_ms
    }

    /// Its length in milliseconds (always positive).
    pub fn duration_ms(&self) -> i64 {
        self.end_ms - self.start_ms
    }

    /// Its last local day.
    pub fn last_day(&self) -> Date {
        self.end_day.yesterday().unwrap_or(self.first_day)
    }

    /// How many local days it has.
    pub fn days(&self) -> i64 {
        days_between(self.first_day, self.end_day)
    }
}

/// The number of days from `from` to `until` (negative if `until` is earlier).
pub fn days_between(from: Date, until: Date) -> i64 {
    from.duration_until(until).as_secs() / 86_400
}

/// The local date in `tz` of the instant `at_ms`.
pub fn local_date(at_ms: i64, tz: &TimeZone) -> Result<Date, PeriodError> {
    let at = Timestamp::from_millisecond(at_ms).map_err(|_| PeriodError)?;
    Ok(at.to_zoned_datetime(tz.clone()).date())
}

/// The first instant of the local day `date` in `tz`, in milliseconds since the Unix epoch.
pub fn start_of_day_ms(date: Date, tz: &TimeZone) -> Result<i64, PeriodError> {
    let zoned = date.to_zoned_datetime(tz.clone()).map_err(|_| PeriodError)?;
    Ok(zoned.timestamp().as_millisecond())
}

#[cfg(test)]
mod tests {
    use jiff::civil::date;

    use super::*;

    const HOUR_MS: i64 = 3_600_000;
    const DAY_MS: i64 = 24 * HOUR_MS;

    fn tz(name: &str) -> TimeZone {
        TimeZone::get(name).unwrap()
    }

    /// Milliseconds of an RFC 3339 instant.
    fn ms(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_millisecond()
    }

    fn period(kind: PeriodKind, d: Date, zone: &str) -> Period {
        Period::containing(kind, d, &tz(zone)).unwrap()
    }

    #[test]
    fn kinds_round_trip_their_names() {
        for kind in PeriodKind::ALL {
            assert_eq!(PeriodKind::parse(kind.as_str()), Some(kind));
            assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{kind}\""));
        }
        assert_eq!(PeriodKind::parse("fortnight"), None);
        assert_eq!(PeriodKind::parse("Day"), None);
    }

    #[test]
    fn first_days_of_each_kind() {
        // 2025-01-01 is a Wednesday; its ISO week starts on Monday 2024-12-30.
        assert_eq!(PeriodKind::Week.first_day(date(2025, 1, 1)), date(2024, 12, 30));
        assert_eq!(PeriodKind::Week.first_day(date(2025, 1, 5)), date(2024, 12, 30));
        assert_eq!(PeriodKind::Week.first_day(date(2025, 1, 6)), date(2025, 1, 6));
        assert_eq!(PeriodKind::Day.first_day(date(2025, 2, 28)), date(2025, 2, 28));
        assert_eq!(PeriodKind::Month.first_day(date(2024, 2, 29)), date(2024, 2, 1));
        for (month, first) in [(1, 1), (3, 1), (4, 4), (6, 4), (7, 7), (9, 7), (10, 10), (12, 10)] {
            assert_eq!(PeriodKind::Quarter.first_day(date(2025, month, 15)), date(2025, first, 1), "month {month}");
        }
        assert_eq!(PeriodKind::Year.first_day(date(2025, 12, 31)), date(2025, 1, 1));
    }

    #[test]
    fn london_spring_forward() {
        // 2025-03-30: clocks go from 01:00 GMT to 02:00 BST.
        let day = period(PeriodKind::Day, date(2025, 3, 30), "Europe/London");
        assert_eq!((day.start_ms, day.end_ms), (ms("2025-03-30T00:00:00Z"), ms("2025-03-30T23:00:00Z")));
        assert_eq!(day.duration_ms(), 23 * HOUR_MS);
        let week = period(PeriodKind::Week, date(2025, 3, 30), "Europe/London");
        assert_eq!(week.first_day, date(2025, 3, 24));
        assert_eq!(week.last_day(), date(2025, 3, 30));
        assert_eq!((week.start_ms, week.end_ms), (ms("2025-03-24T00:00:00Z"), ms("2025-03-30T23:00:00Z")));
        let month = period(PeriodKind::Month, date(2025, 3, 10), "Europe/London");
        assert_eq!((month.start_ms, month.end_ms), (ms("2025-03-01T00:00:00Z"), ms("2025-03-31T23:00:00Z")));
        assert_eq!(month.duration_ms(), 31 * DAY_MS - HOUR_MS);
        let quarter = period(PeriodKind::Quarter, date(2025, 5, 15), "Europe/London");
        assert_eq!((quarter.start_ms, quarter.end_ms), (ms("2025-03-31T23:00:00Z"), ms("2025-06-30T23:00:00Z")));
        let year = period(PeriodKind::Year, date(2025, 7, 1), "Europe/London");
        assert_eq!((year.start_ms, year.end_ms), (ms("2025-01-01T00:00:00Z"), ms("2026-01-01T00:00:00Z")));
        assert_eq!(year.duration_ms(), 365 * DAY_MS);
    }

    #[test]
    fn london_fall_back() {
        // 2025-10-26: clocks go from 02:00 BST back to 01:00 GMT.
        let day = period(PeriodKind::Day, date(2025, 10, 26), "Europe/London");
        assert_eq!((day.start_ms, day.end_ms), (ms("2025-10-25T23:00:00Z"), ms("2025-10-27T00:00:00Z")));
        assert_eq!(day.duration_ms(), 25 * HOUR_MS);
        let month = period(PeriodKind::Month, date(2025, 10, 1), "Europe/London");
        assert_eq!(month.duration_ms(), 31 * DAY_MS + HOUR_MS);
        // Both 01:30s of the repeated hour are on the 26th.
        let zone = tz("Europe/London");
        for at in ["2025-10-26T00:30:00Z", "2025-10-26T01:30:00Z"] {
            assert_eq!(Period::containing_instant(PeriodKind::Day, ms(at), &zone).unwrap(), day, "{at}");
        }
    }

    #[test]
    fn new_york_both_switches() {
        // 2025-03-09: 02:00 EST becomes 03:00 EDT.
        let spring = period(PeriodKind::Day, date(2025, 3, 9), "America/New_York");
        assert_eq!((spring.start_ms, spring.end_ms), (ms("2025-03-09T05:00:00Z"), ms("2025-03-10T04:00:00Z")));
        assert_eq!(spring.duration_ms(), 23 * HOUR_MS);
        // 2025-11-02: 02:00 EDT becomes 01:00 EST.
        let fall = period(PeriodKind::Day, date(2025, 11, 2), "America/New_York");
        assert_eq!((fall.start_ms, fall.end_ms), (ms("2025-11-02T04:00:00Z"), ms("2025-11-03T05:00:00Z")));
        assert_eq!(fall.duration_ms(), 25 * HOUR_MS);
        // The week of the fall-back Sunday: Monday 27 October (EDT) to Monday 3 November (EST).
        let week = period(PeriodKind::Week, date(2025, 11, 2), "America/New_York");
        assert_eq!((week.start_ms, week.end_ms), (ms("2025-10-27T04:00:00Z"), ms("2025-11-03T05:00:00Z")));
        assert_eq!(week.duration_ms(), 7 * DAY_MS + HOUR_MS);
        let quarter = period(PeriodKind::Quarter, date(2025, 3, 9), "America/New_York");
        assert_eq!((quarter.start_ms, quarter.end_ms), (ms("2025-01-01T05:00:00Z"), ms("2025-04-01T04:00:00Z")));
    }

    #[test]
    fn instants_near_midnight_fall_on_the_local_day() {
        let zone = tz("America/New_York");
        // 03:30 UTC on 10 March is still 9 March in New York (23:30 EDT).
        let day = Period::containing_instant(PeriodKind::Day, ms("2025-03-10T03:30:00Z"), &zone).unwrap();
        assert_eq!(day.first_day, date(2025, 3, 9));
        assert!(day.contains(ms("2025-03-10T03:59:59.999Z")));
        assert!(!day.contains(ms("2025-03-10T04:00:00Z")));
        assert!(day.contains(day.start_ms));
        assert!(!day.contains(day.start_ms - 1));
        let month = Period::containing_instant(PeriodKind::Month, ms("2025-04-01T03:59:59Z"), &zone).unwrap();
        assert_eq!(month.first_day, date(2025, 3, 1));
    }

    #[test]
    fn a_day_whose_midnight_does_not_exist_starts_after_the_gap() {
        // São Paulo sprang forward at midnight on 2018-11-04: 00:00 -03 became 01:00 -02.
        let day = period(PeriodKind::Day, date(2018, 11, 4), "America/Sao_Paulo");
        // The day starts at 01:00 -02 and, an hour short, lasts 23 hours.
        assert_eq!(day.start_ms, ms("2018-11-04T03:00:00Z"));
        assert_eq!(day.duration_ms(), 23 * HOUR_MS);
        let before = period(PeriodKind::Day, date(2018, 11, 3), "America/Sao_Paulo");
        assert_eq!(before.end_ms, day.start_ms);
        assert_eq!(before.duration_ms(), 24 * HOUR_MS);
    }

    #[test]
    fn consecutive_periods_tile_time_through_the_switches() {
        for zone in ["Europe/London", "America/New_York", "Australia/Lord_Howe", "UTC"] {
            let tz = tz(zone);
            for kind in PeriodKind::ALL {
                let mut p = Period::containing(kind, date(2024, 12, 20), &tz).unwrap();
                for _ in 0..60 {
                    let next = p.next(&tz).unwrap();
                    assert_eq!(next.start_ms, p.end_ms, "{zone} {kind} after {}", p.first_day);
                    assert_eq!(next.first_day, p.end_day);
                    assert_eq!(next.previous(&tz).unwrap(), p, "{zone} {kind}");
                    assert!(p.duration_ms() > 0);
                    // Every period contains its own first and last days, and no other.
                    assert_eq!(Period::containing(kind, p.last_day(), &tz).unwrap(), p);
                    assert_eq!(Period::containing_instant(kind, p.end_ms - 1, &tz).unwrap(), p);
                    assert_eq!(Period::containing_instant(kind, p.end_ms, &tz).unwrap(), next);
                    p = next;
                }
            }
        }
    }

    #[test]
    fn month_and_quarter_arithmetic_starts_on_the_first() {
        let zone = tz("Europe/London");
        let jan = period(PeriodKind::Month, date(2025, 1, 31), "Europe/London");
        let feb = jan.next(&zone).unwrap();
        assert_eq!((feb.first_day, feb.end_day), (date(2025, 2, 1), date(2025, 3, 1)));
        let q4 = period(PeriodKind::Quarter, date(2025, 12, 31), "Europe/London");
        assert_eq!((q4.first_day, q4.end_day), (date(2025, 10, 1), date(2026, 1, 1)));
        assert_eq!(q4.next(&zone).unwrap().first_day, date(2026, 1, 1));
        assert_eq!(q4.previous(&zone).unwrap().first_day, date(2025, 7, 1));
        let leap = period(PeriodKind::Year, date(2024, 2, 29), "UTC");
        assert_eq!(leap.duration_ms(), 366 * DAY_MS);
    }

    #[test]
    fn weeks_starting_on_sunday_across_the_switches() {
        let zone = tz("America/New_York");
        // 2025-03-09 is the spring-forward Sunday: a Sunday week starts on it and is an
        // hour short; the Saturday before belongs to the week before.
        let week = Period::containing_with(PeriodKind::Week, date(2025, 3, 12), Weekday::Sunday, &zone).unwrap();
        assert_eq!((week.first_day, week.last_day()), (date(2025, 3, 9), date(2025, 3, 15)));
        assert_eq!((week.start_ms, week.end_ms), (ms("2025-03-09T05:00:00Z"), ms("2025-03-16T04:00:00Z")));
        assert_eq!(week.duration_ms(), 7 * DAY_MS - HOUR_MS);
        let before = Period::containing_with(PeriodKind::Week, date(2025, 3, 8), Weekday::Sunday, &zone).unwrap();
        assert_eq!((before.first_day, before.end_ms), (date(2025, 3, 2), week.start_ms));
        assert_eq!(before.next(&zone).unwrap(), week);
        // The fall-back Sunday starts a week an hour long.
        let fall = Period::containing_with(PeriodKind::Week, date(2025, 11, 2), Weekday::Sunday, &zone).unwrap();
        assert_eq!((fall.start_ms, fall.end_ms), (ms("2025-11-02T04:00:00Z"), ms("2025-11-09T05:00:00Z")));
        assert_eq!(fall.duration_ms(), 7 * DAY_MS + HOUR_MS);
        let at = Period::containing_instant_with(PeriodKind::Week, ms("2025-11-02T04:30:00Z"), Weekday::Sunday, &zone);
        assert_eq!(at.unwrap(), fall);
        // Every start day works, and other kinds ignore it.
        for offset in 0..7 {
            let start = Weekday::from_monday_zero_offset(offset).unwrap();
            let w = Period::containing_with(PeriodKind::Week, date(2025, 6, 18), start, &zone).unwrap();
            assert_eq!(w.first_day.weekday(), start);
            assert!(w.first_day <= date(2025, 6, 18) && date(2025, 6, 18) <= w.last_day());
            let m = Period::containing_with(PeriodKind::Month, date(2025, 6, 18), start, &zone).unwrap();
            assert_eq!(m, Period::containing(PeriodKind::Month, date(2025, 6, 18), &zone).unwrap());
        }
    }

    #[test]
    fn custom_periods_are_whole_local_days_inclusive() {
        let zone = tz("Europe/London");
        // 28 March to 2 April 2025: six days over the spring-forward night.
        let p = Period::custom(date(2025, 3, 28), date(2025, 4, 2), &zone).unwrap();
        assert_eq!(p.kind, PeriodKind::Custom);
        assert_eq!((p.first_day, p.last_day(), p.days()), (date(2025, 3, 28), date(2025, 4, 2), 6));
        assert_eq!((p.start_ms, p.end_ms), (ms("2025-03-28T00:00:00Z"), ms("2025-04-02T23:00:00Z")));
        assert_eq!(p.duration_ms(), 6 * DAY_MS - HOUR_MS);
        // One day is fine; ending before it starts is not; it has no neighbours.
        assert_eq!(Period::custom(date(2025, 5, 1), date(2025, 5, 1), &zone).unwrap().days(), 1);
        assert_eq!(Period::custom(date(2025, 5, 2), date(2025, 5, 1), &zone), Err(PeriodError));
        assert_eq!(p.next(&zone), Err(PeriodError));
        assert_eq!(p.previous(&zone), Err(PeriodError));
        assert_eq!(Period::containing(PeriodKind::Custom, date(2025, 5, 1), &zone), Err(PeriodError));
        assert_eq!(PeriodKind::parse("custom"), Some(PeriodKind::Custom));
        assert_eq!(days_between(date(2025, 1, 1), date(2024, 12, 30)), -2);
    }

    #[test]
    fn out_of_range_is_an_error() {
        let zone = tz("UTC");
        assert_eq!(Period::containing(PeriodKind::Year, date(9999, 6, 1), &zone), Err(PeriodError));
        assert_eq!(local_date(i64::MAX, &zone), Err(PeriodError));
    }
}
