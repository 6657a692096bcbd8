//! A tenant's working calendar: the day weeks start on, the working week and holidays.
//!
//! Targets use it three ways:
//!
//! * **Week start**: a weekly target's periods start on [`WorkCalendar::week_start`]
//!   (Monday by default, the ISO week).
//! * **Pace by working days** ([`WorkCalendar::pace_clock`]): the value expected by now
//!   grows only on working days (a weekday of the working week that is not a holiday), so
//!   a Monday morning is not "behind" for the weekend. Every working day weighs the same,
//!   whatever its length in hours (a daylight-saving day of 23 or 25 hours is still one
//!   day), and inside a working day the expectation grows linearly with the local clock.
//!   A period without a single working day falls back to calendar time.
//! * **Pro-rating for joiners** ([`WorkCalendar::prorate`]): someone who joins after a
//!   period started owes goal × (working days from the day they joined to the end) ÷
//!   (working days of the period), rounded up to the metric's unit so that the share is
//!   never easier than its fraction. Again, a period without working days counts calendar
//!   days instead.
//!
//! Holidays on days outside the working week change nothing.

use std::collections::BTreeSet;

use jiff::ToSpan;
use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;

use super::period::{Period, PeriodError, days_between, local_date, start_of_day_ms};

/// One working day in the pace's unit: each counts as 24 hours of "working time".
pub const WORKING_DAY_UNITS: i64 = 86_400_000;

/// The weekdays, Monday first (the order of [`WorkCalendar::working_week`]).
pub const WEEKDAYS: [Weekday; 7] = [
    Weekday::Monday,
    Weekday::Tuesday,
    Weekday::Wednesday,
    Weekday::Thursday,
    Weekday::Friday,
    Weekday::Saturday,
    Weekday::Sunday,
];

/// A weekday's name in the API: `monday` … `sunday`.
pub fn weekday_name(day: Weekday) -> &'static str {
    match day {
        Weekday::Monday => "monday",
        Weekday::Tuesday => "tuesday",
        Weekday::Wednesday => "wednesday",
        Weekday::Thursday => "thursday",
        Weekday::Friday => "friday",
        Weekday::Saturday => "saturday",
        Weekday::Sunday => "sunday",
    }
}

/// Reads a name written by [`weekday_name`].
pub fn parse_weekday(name: &str) -> Option<Weekday> {
    WEEKDAYS.into_iter().find(|d| weekday_name(*d) == name)
}

/// A tenant's calendar (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkCalendar {
    /// The first day of a week.
    pub week_start: Weekday,
    /// Whether each weekday is worked, Monday first.
    pub working_week: [bool; 7],
    /// Local dates nobody works.
    pub holidays: BTreeSet<Date>,
}

impl Default for WorkCalendar {
    /// ISO weeks, Monday to Friday worked, no holidays.
    fn default() -> Self {
        Self {
            week_start: Weekday::Monday,
            working_week: [true, true, true, true, true, false, false],
            holidays: BTreeSet::new(),
        }
    }
}

/// How far through a period we are, in comparable units: `elapsed` of `duration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaceClock {
    /// How much has elapsed, `0..=duration`.
    pub elapsed: i64,
    /// The whole period (positive).
    pub duration: i64,
    /// Whether the units are working days ([`WORKING_DAY_UNITS`] each) rather than
    /// milliseconds of calendar time.
    pub working_days: bool,
}

impl PaceClock {
    /// Calendar time: milliseconds of the period elapsed at `now_ms`.
    pub fn calendar(period: &Period, now_ms: i64) -> Self {
        let duration = period.duration_ms().max(1);
        Self { elapsed: now_ms.saturating_sub(period.start_ms).clamp(0, duration), duration, working_days: false }
    }
}

impl WorkCalendar {
    /// Whether `weekday` is in the working week.
    pub fn works_on(&self, weekday: Weekday) -> bool {
        self.working_week[weekday.to_monday_zero_offset() as usize]
    }

    /// Whether `day` is a working day: in the working week and not a holiday.
    pub fn is_working_day(&self, day: Date) -> bool {
        self.works_on(day.weekday()) && !self.holidays.contains(&day)
    }

    /// The working days in `[from, until)` (zero if `until` is not after `from`). Whole
    /// weeks are counted at once, so a long range costs no more than its holidays.
    pub fn working_days(&self, from: Date, until: Date) -> i64 {
        let days = days_between(from, until);
        if days <= 0 {
            return 0;
        }
        let per_week = self.working_week.iter().filter(|w| **w).count() as i64;
        let mut count = days / 7 * per_week;
        let mut day = from.checked_add((days / 7 * 7).days()).unwrap_or(until);
        while day < until {
            if self.works_on(day.weekday()) {
                count += 1;
            }
            day = match day.tomorrow() {
                Ok(next) => next,
                Err(_) => break,
            };
        }
        let holidays = self.holidays.range(from..until).filter(|h| self.works_on(h.weekday())).count() as i64;
        count - holidays
    }

    /// How far through `period` we are at `now_ms`, in working days (see the module docs),
    /// or in calendar time if the period has no working day.
    pub fn pace_clock(&self, period: &Period, now_ms: i64, tz: &TimeZone) -> Result<PaceClock, PeriodError> {
        let total = self.working_days(period.first_day, period.end_day);
        if total == 0 {
            return Ok(PaceClock::calendar(period, now_ms));
        }
        let duration = total * WORKING_DAY_UNITS;
        let elapsed = if now_ms < period.start_ms {
            0
        } else if now_ms >= period.end_ms {
            duration
        } else {
            let today = local_date(now_ms, tz)?;
            let mut elapsed = self.working_days(period.first_day, today) * WORKING_DAY_UNITS;
            if self.is_working_day(today) {
                let start = start_of_day_ms(today, tz)?;
                let end = start_of_day_ms(today.tomorrow().map_err(|_| PeriodError)?, tz)?;
                let into =
                    i128::from(now_ms - start) * i128::from(WORKING_DAY_UNITS) / i128::from((end - start).max(1));
                elapsed += into as i64;
            }
            elapsed.clamp(0, duration)
        };
        Ok(PaceClock { elapsed, duration, working_days: true })
    }

    /// The share of `goal` owed over `period` by someone who joined on `joined_on` (see
    /// the module docs): all of it if they joined on or before its first day, nothing if
    /// they joined after its last.
    pub fn prorate(&self, goal: i128, period: &Period, joined_on: Date) -> i128 {
        if joined_on <= period.first_day {
            return goal;
        }
        if joined_on >= period.end_day {
            return 0;
        }
        let (mut part, mut whole) =
            (self.working_days(joined_on, period.end_day), self.working_days(period.first_day, period.end_day));
        if whole == 0 {
            (part, whole) = (days_between(joined_on, period.end_day), period.days());
        }
        let numerator = goal.saturating_mul(i128::from(part));
        let whole = i128::from(whole.max(1));
        // Rounded up: the joiner's share is never smaller than its exact fraction.
        (numerator + whole - 1).div_euclid(whole)
    }
}

#[cfg(test)]
mod tests {
    use jiff::civil::date;

    use super::*;
    use crate::engine::PeriodKind;

    const HOUR_MS: i64 = 3_600_000;

    fn ms(text: &str) -> i64 {
        text.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    fn with_holidays(days: &[Date]) -> WorkCalendar {
        WorkCalendar { holidays: days.iter().copied().collect(), ..WorkCalendar::default() }
    }

    #[test]
    fn weekday_names_round_trip() {
        for day in WEEKDAYS {
            assert_eq!(parse_weekday(weekday_name(day)), Some(day));
        }
        assert_eq!(parse_weekday("Monday"), None);
        assert_eq!(parse_weekday("mon"), None);
    }

    #[test]
    fn working_days_count_the_working_week_minus_holidays() {
        let cal = WorkCalendar::default();
        // June 2025: 30 days from a Sunday, 21 weekdays.
        assert_eq!(cal.working_days(date(2025, 6, 1), date(2025, 7, 1)), 21);
        assert_eq!(cal.working_days(date(2025, 6, 2), date(2025, 6, 2)), 0);
        assert_eq!(cal.working_days(date(2025, 6, 9), date(2025, 6, 2)), 0);
        // A holiday on a Wednesday counts; one on a Saturday changes nothing.
        let cal = with_holidays(&[date(2025, 6, 11), date(2025, 6, 14)]);
        assert_eq!(cal.working_days(date(2025, 6, 1), date(2025, 7, 1)), 20);
        assert_eq!(cal.working_days(date(2025, 6, 12), date(2025, 7, 1)), 13);
        assert!(!cal.is_working_day(date(2025, 6, 11)));
        assert!(!cal.is_working_day(date(2025, 6, 14)));
        assert!(cal.is_working_day(date(2025, 6, 12)));
        // A Sunday-to-Thursday week, across a whole year, agrees with a day-by-day count.
        let cal = WorkCalendar {
            week_start: Weekday::Sunday,
            working_week: [true, true, true, true, false, false, true],
            holidays: [date(2025, 1, 1), date(2025, 5, 2), date(2025, 5, 4)].into_iter().collect(),
        };
        let (from, until) = (date(2025, 1, 1), date(2026, 1, 1));
        let by_day = from.series(1.day()).take_while(|d| *d < until).filter(|d| cal.is_working_day(*d)).count();
        assert_eq!(cal.working_days(from, until), by_day as i64);
        // 261 days of the week worked, less Wednesday 1 January and Sunday 4 May (Friday
        // 2 May is not worked anyway).
        assert_eq!(by_day, 261 - 2);
    }

    #[test]
    fn pace_counts_working_days_and_stands_still_at_the_weekend() {
        let tz = TimeZone::UTC;
        let cal = with_holidays(&[date(2025, 6, 11)]);
        let june = Period::containing(PeriodKind::Month, date(2025, 6, 1), &tz).unwrap();
        let clock = |at: &str| cal.pace_clock(&june, ms(at), &tz).unwrap();
        assert_eq!(clock("2025-05-31T12:00:00Z").elapsed, 0);
        assert_eq!(clock("2025-06-01T12:00:00Z").elapsed, 0); // a Sunday
        assert_eq!(clock("2025-06-02T12:00:00Z").elapsed, WORKING_DAY_UNITS / 2);
        // Friday 6 June evening to Monday 9 June at midnight: five days, then still.
        assert_eq!(clock("2025-06-07T09:00:00Z").elapsed, 5 * WORKING_DAY_UNITS);
        assert_eq!(clock("2025-06-09T00:00:00Z").elapsed, 5 * WORKING_DAY_UNITS);
        // The holiday on Wednesday 11 June does not move it either.
        assert_eq!(clock("2025-06-11T18:00:00Z").elapsed, 7 * WORKING_DAY_UNITS);
        let end = clock("2025-07-01T00:00:00Z");
        assert_eq!(
            (end.elapsed, end.duration, end.working_days),
            (20 * WORKING_DAY_UNITS, 20 * WORKING_DAY_UNITS, true)
        );
    }

    #[test]
    fn a_working_day_of_twenty_five_hours_is_still_one_day() {
        // London, Sunday 26 October 2025 is 25 hours long; work on Sundays only.
        let tz = TimeZone::get("Europe/London").unwrap();
        let cal =
            WorkCalendar { working_week: [false, false, false, false, false, false, true], ..WorkCalendar::default() };
        let week = Period::containing(PeriodKind::Week, date(2025, 10, 26), &tz).unwrap();
        // 12:30 GMT on the 26th is 13.5 hours after local midnight (23:00 UTC the day before).
        let clock = cal.pace_clock(&week, ms("2025-10-26T12:30:00Z"), &tz).unwrap();
        assert_eq!(clock.duration, WORKING_DAY_UNITS);
        assert_eq!(clock.elapsed, WORKING_DAY_UNITS * 27 / 50); // 13.5 of 25 hours
        assert_eq!(week.duration_ms(), 7 * 24 * HOUR_MS + HOUR_MS);
    }

    #[test]
    fn no_working_days_falls_back_to_calendar_time() {
        let tz = TimeZone::UTC;
        let cal = with_holidays(&[date(2025, 12, 25)]);
        // Thursday 25 December: a one-day period with no working day.
        let day = Period::containing(PeriodKind::Day, date(2025, 12, 25), &tz).unwrap();
        let clock = cal.pace_clock(&day, ms("2025-12-25T06:00:00Z"), &tz).unwrap();
        assert_eq!(clock, PaceClock { elapsed: 6 * HOUR_MS, duration: 24 * HOUR_MS, working_days: false });
        // A weekend custom range: calendar days for pro-rating too.
        let weekend = Period::custom(date(2025, 6, 7), date(2025, 6, 8), &tz).unwrap();
        assert_eq!(cal.working_days(weekend.first_day, weekend.end_day), 0);
        assert_eq!(cal.prorate(10, &weekend, date(2025, 6, 8)), 5);
        // A working week with no day at all behaves the same.
        let idle = WorkCalendar { working_week: [false; 7], ..WorkCalendar::default() };
        let june = Period::containing(PeriodKind::Month, date(2025, 6, 1), &tz).unwrap();
        assert!(!idle.pace_clock(&june, ms("2025-06-16T00:00:00Z"), &tz).unwrap().working_days);
        assert_eq!(idle.prorate(30, &june, date(2025, 6, 16)), 15);
    }

    #[test]
    fn joiners_owe_their_share_of_working_days_rounded_up() {
        let tz = TimeZone::UTC;
        let cal = with_holidays(&[date(2025, 6, 11)]);
        let june = Period::containing(PeriodKind::Month, date(2025, 6, 1), &tz).unwrap();
        // 20 working days; joining Monday 16 June leaves 11.
        assert_eq!(cal.prorate(20, &june, date(2025, 6, 16)), 11);
        assert_eq!(cal.prorate(10, &june, date(2025, 6, 16)), 6); // 5.5 rounds up
        assert_eq!(cal.prorate(2_000_000, &june, date(2025, 6, 16)), 1_100_000);
        // Joining on a Saturday or Sunday is joining on the Monday.
        assert_eq!(cal.prorate(20, &june, date(2025, 6, 14)), 11);
        assert_eq!(cal.prorate(20, &june, date(2025, 6, 1)), 20);
        assert_eq!(cal.prorate(20, &june, date(2025, 5, 20)), 20);
        assert_eq!(cal.prorate(20, &june, date(2025, 6, 30)), 1);
        assert_eq!(cal.prorate(20, &june, date(2025, 7, 1)), 0);
    }
}
