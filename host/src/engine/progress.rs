//! A target's progress over one period.
//!
//! Given the goal, the period, the present instant and the dated facts that count towards
//! the target (a user's, or the sum of a team's members'), [`Progress::compute`] answers:
//!
//! * **value**: the sum of the facts inside the period `[start, end)`;
//! * **ratio**: value ÷ goal;
//! * **pace**: how much of the period has elapsed, and the value expected by now if the
//!   goal were reached evenly over the period: *expected = goal × elapsed ÷ duration*
//!   (elapsed clamped to the period: zero before it starts, all of it once it ended).
//!   Elapsed and duration are calendar time ([`Progress::compute`]) or working days of the
//!   tenant's calendar ([`Progress::compute_paced`] with a
//!   [`super::calendar::WorkCalendar::pace_clock`]);
//! * **status**, with the tolerance [`PACE_TOLERANCE_PERCENT`] (10 %):
//!   * `achieved`: value ≥ goal;
//!   * otherwise, once the period is over, `behind` (the goal was missed);
//!   * `ahead`: value more than 10 % above the expected value (value > 1.1 × expected);
//!   * `on_track`: value at least 90 % of the expected value (value ≥ 0.9 × expected);
//!   * `behind`: below that.
//!
//!   So at the very start of a period (expected = 0) a target with nothing yet is
//!   `on_track`, and one with anything counted is `ahead`. The comparisons are exact
//!   (integer arithmetic on value, goal and milliseconds), never rounded.
//! * **achieved_at**: when the target is achieved, the instant of the fact with which the
//!   running total of the period's facts first reached the goal (facts at the same instant
//!   taken together).

use super::DatedValue;
use super::calendar::PaceClock;
use super::period::Period;

/// How far from the expected value still counts as on track, in percent.
pub const PACE_TOLERANCE_PERCENT: i128 = 10;

/// Where a target stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The goal is reached.
    Achieved,
    /// More than the tolerance above the expected value by now.
    Ahead,
    /// Within the tolerance of (or above) the expected value by now.
    OnTrack,
    /// Below the tolerance, or the period ended without reaching the goal.
    Behind,
}

impl Status {
    /// The API's name: `achieved`, `ahead`, `on_track`, `behind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Achieved => "achieved",
            Status::Ahead => "ahead",
            Status::OnTrack => "on_track",
            Status::Behind => "behind",
        }
    }
}

/// How far through the period we are, and whether the value keeps up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// How much of the period has elapsed, `0..=duration_ms`: milliseconds, or working
    /// days of [`super::calendar::WORKING_DAY_UNITS`] each when `working_days`.
    pub elapsed_ms: i64,
    /// The period's length in the same unit.
    pub duration_ms: i64,
    /// Whether the pace counts working days rather than calendar time.
    pub working_days: bool,
    /// Whether the status is `achieved`, `ahead` or `on_track`.
    pub on_track: bool,
}

impl Pace {
    /// The elapsed fraction of the period, `0.0..=1.0`.
    pub fn elapsed_fraction(&self) -> f64 {
        self.elapsed_ms as f64 / self.duration_ms as f64
    }

    /// goal × elapsed ÷ duration, multiplied by `scale` and rounded down: with `scale` 1 the
    /// expected value in the metric's unit, with 100 in hundredths of it.
    pub fn expected_scaled(&self, goal: i128, scale: i128) -> i128 {
        goal.saturating_mul(scale).saturating_mul(i128::from(self.elapsed_ms)) / i128::from(self.duration_ms)
    }
}

/// A target's progress over one period (see the module docs for each field's rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The sum of the facts inside the period.
    pub value: i128,
    /// The goal (positive).
    pub goal: i128,
    /// The pace.
    pub pace: Pace,
    /// The status.
    pub status: Status,
    /// When the running total first reached the goal, if it is reached.
    pub achieved_at_ms: Option<i64>,
}

impl Progress {
    /// The progress towards `goal` (positive) over `period` at `now_ms`, from `facts` (in
    /// any order; those outside the period are ignored).
    pub fn compute(goal: i128, period: &Period, now_ms: i64, facts: &[DatedValue]) -> Self {
        Self::compute_paced(goal, period, PaceClock::calendar(period, now_ms), facts)
    }

    /// As [`Progress::compute`], with how far through the period we are given by `clock`
    /// (calendar time or working days).
    pub fn compute_paced(goal: i128, period: &Period, clock: PaceClock, facts: &[DatedValue]) -> Self {
        let running = running_in(period, facts);
        let value = running.last().map_or(0, |(_, total)| *total);
        let duration_ms = clock.duration.max(1);
        let elapsed_ms = clock.elapsed.clamp(0, duration_ms);
        let status = status(value, goal, elapsed_ms, duration_ms);
        let achieved_at_ms = if status == Status::Achieved { first_at(&running, goal) } else { None };
        Progress {
            value,
            goal,
            pace: Pace {
                elapsed_ms,
                duration_ms,
                on_track: status != Status::Behind,
                working_days: clock.working_days,
            },
            status,
            achieved_at_ms,
        }
    }

    /// Where a stretch tier of `threshold` stands over `period`: reached when the value is
    /// at least the threshold, and then the instant the running total first reached it
    /// (the same rule as `achieved_at`).
    pub fn tier(period: &Period, facts: &[DatedValue], threshold: i128) -> Option<i64> {
        let running = running_in(period, facts);
        let value = running.last().map_or(0, |(_, total)| *total);
        if value >= threshold { first_at(&running, threshold) } else { None }
    }

    /// value ÷ goal.
    pub fn ratio(&self) -> f64 {
        if self.goal == 0 { 1.0 } else { self.value as f64 / self.goal as f64 }
    }

    /// The value expected by now, in the metric's unit, rounded down.
    pub fn expected(&self) -> i128 {
        self.pace.expected_scaled(self.goal, 1)
    }
}

/// The running totals of the facts inside `period`.
fn running_in(period: &Period, facts: &[DatedValue]) -> Vec<(i64, i128)> {
    let inside: Vec<DatedValue> = facts.iter().copied().filter(|f| period.contains(f.at_ms)).collect();
    super::running_totals(&inside)
}

/// The first instant the running total reached `threshold`.
fn first_at(running: &[(i64, i128)], threshold: i128) -> Option<i64> {
    running.iter().find(|(_, total)| *total >= threshold).map(|(at, _)| *at)
}

/// The status rule of the module docs, in exact integer arithmetic: compares
/// value × duration × 100 with goal × elapsed × (100 ± tolerance).
fn status(value: i128, goal: i128, elapsed_ms: i64, duration_ms: i64) -> Status {
    if value >= goal {
        return Status::Achieved;
    }
    if elapsed_ms >= duration_ms {
        return Status::Behind;
    }
    let actual = value.saturating_mul(i128::from(duration_ms)).saturating_mul(100);
    let expected = goal.saturating_mul(i128::from(elapsed_ms));
    if actual > expected.saturating_mul(100 + PACE_TOLERANCE_PERCENT) {
        Status::Ahead
    } else if actual >= expected.saturating_mul(100 - PACE_TOLERANCE_PERCENT) {
        Status::OnTrack
    } else {
        Status::Behind
    }
}

#[cfg(test)]
mod tests {
    use jiff::civil::date;
    use jiff::tz::TimeZone;

    use super::*;
    use crate::engine::PeriodKind;

    const DAY_MS: i64 = 86_400_000;

    /// June 2025 in UTC: 30 days.
    fn june() -> Period {
        Period::containing(PeriodKind::Month, date(2025, 6, 1), &TimeZone::UTC).unwrap()
    }

    fn day(n: i64) -> i64 {
        june().start_ms + (n - 1) * DAY_MS
    }

    fn facts(list: &[(i64, i128)]) -> Vec<DatedValue> {
        list.iter().map(|&(at, v)| DatedValue::new(at, v)).collect()
    }

    #[test]
    fn value_counts_only_facts_inside_the_period() {
        let p = june();
        let f = facts(&[(p.start_ms - 1, 100), (p.start_ms, 2), (day(10), 3), (p.end_ms - 1, 4), (p.end_ms, 100)]);
        let progress = Progress::compute(20, &p, day(16), &f);
        assert_eq!(progress.value, 9);
        assert_eq!(progress.goal, 20);
        assert_eq!(progress.achieved_at_ms, None);
        assert!((progress.ratio() - 0.45).abs() < 1e-12);
    }

    #[test]
    fn pace_is_goal_times_the_elapsed_fraction() {
        let p = june();
        // Halfway through June (day 16 at 00:00 is 15 of 30 days).
        let progress = Progress::compute(30, &p, day(16), &[]);
        assert_eq!(progress.pace.elapsed_ms, 15 * DAY_MS);
        assert_eq!(progress.pace.duration_ms, 30 * DAY_MS);
        assert!((progress.pace.elapsed_fraction() - 0.5).abs() < 1e-12);
        assert_eq!(progress.expected(), 15);
        assert_eq!(progress.pace.expected_scaled(7, 100), 350);
        // Before the period: nothing elapsed; after it: all of it.
        assert_eq!(Progress::compute(30, &p, p.start_ms - DAY_MS, &[]).pace.elapsed_ms, 0);
        assert_eq!(Progress::compute(30, &p, p.end_ms + DAY_MS, &[]).pace.elapsed_ms, 30 * DAY_MS);
    }

    #[test]
    fn status_thresholds() {
        let p = june();
        let now = day(16); // expected 50 of a goal of 100
        let at = |value: i128| Progress::compute(100, &p, now, &facts(&[(day(2), value)])).status;
        assert_eq!(at(100), Status::Achieved);
        assert_eq!(at(150), Status::Achieved);
        assert_eq!(at(56), Status::Ahead); // above 55 = 1.1 × 50
        assert_eq!(at(55), Status::OnTrack); // exactly 10 % ahead is still on track
        assert_eq!(at(50), Status::OnTrack);
        assert_eq!(at(45), Status::OnTrack); // exactly 90 % of the pace
        assert_eq!(at(44), Status::Behind);
        assert_eq!(at(0), Status::Behind);
        let progress = Progress::compute(100, &p, now, &facts(&[(day(2), 44)]));
        assert!(!progress.pace.on_track);
        assert!(Progress::compute(100, &p, now, &facts(&[(day(2), 45)])).pace.on_track);
    }

    #[test]
    fn status_at_the_edges_of_the_period() {
        let p = june();
        // At the start nothing is expected: nothing yet is on track, anything is ahead.
        assert_eq!(Progress::compute(10, &p, p.start_ms, &[]).status, Status::OnTrack);
        assert_eq!(Progress::compute(10, &p, p.start_ms - DAY_MS, &[]).status, Status::OnTrack);
        assert_eq!(Progress::compute(10, &p, p.start_ms, &facts(&[(p.start_ms, 1)])).status, Status::Ahead);
        // Once it is over, anything short of the goal is behind.
        let over = Progress::compute(10, &p, p.end_ms, &facts(&[(day(3), 9)]));
        assert_eq!(over.status, Status::Behind);
        assert!(!over.pace.on_track);
        assert_eq!(Progress::compute(10, &p, p.end_ms, &facts(&[(day(3), 10)])).status, Status::Achieved);
    }

    #[test]
    fn achieved_at_is_when_the_running_total_first_reached_the_goal() {
        let p = june();
        let f = facts(&[(day(9), 4), (day(3), 3), (day(20), 5), (day(12), 3)]);
        // 3 (day 3), 7 (day 9), 10 (day 12): the goal of 10 was reached on day 12.
        let progress = Progress::compute(10, &p, day(25), &f);
        assert_eq!(progress.status, Status::Achieved);
        assert_eq!(progress.value, 15);
        assert_eq!(progress.achieved_at_ms, Some(day(12)));
        assert!((progress.ratio() - 1.5).abs() < 1e-12);
        // Reached, lost through a retraction-like negative amount, reached again: the first.
        let f = facts(&[(day(2), 10), (day(4), -5), (day(6), 6)]);
        assert_eq!(Progress::compute(10, &p, day(25), &f).achieved_at_ms, Some(day(2)));
        // Reached then dropped below: not achieved, no moment.
        let f = facts(&[(day(2), 10), (day(4), -5)]);
        let progress = Progress::compute(10, &p, day(25), &f);
        assert_eq!((progress.status, progress.achieved_at_ms), (Status::Behind, None));
        // Facts at the same instant count together.
        let f = facts(&[(day(5), 6), (day(5), 4)]);
        assert_eq!(Progress::compute(10, &p, day(6), &f).achieved_at_ms, Some(day(5)));
    }

    #[test]
    fn working_day_pace_with_a_holiday() {
        use crate::engine::calendar::{WORKING_DAY_UNITS, WorkCalendar};
        let p = june();
        let cal = WorkCalendar { holidays: [date(2025, 6, 11)].into_iter().collect(), ..WorkCalendar::default() };
        let tz = TimeZone::UTC;
        // Saturday 14 June: 9 of 20 working days gone (the holiday on the 11th not among
        // them), against 13 of 30 calendar days.
        let clock = cal.pace_clock(&p, day(14), &tz).unwrap();
        let progress = Progress::compute_paced(20, &p, clock, &facts(&[(day(3), 8)]));
        assert_eq!(
            (progress.pace.elapsed_ms, progress.pace.duration_ms),
            (9 * WORKING_DAY_UNITS, 20 * WORKING_DAY_UNITS)
        );
        assert!(progress.pace.working_days);
        assert_eq!(progress.expected(), 9);
        // 8 is below 90 % of the 9 expected by working days: behind; by calendar time
        // (8.67 expected) the same 8 would be on track.
        assert_eq!(progress.status, Status::Behind);
        let calendar = Progress::compute(20, &p, day(14), &facts(&[(day(3), 8)]));
        assert_eq!(calendar.expected(), 8); // 20 × 13 / 30, rounded down
        assert_eq!(calendar.status, Status::OnTrack);
        assert!(!calendar.pace.working_days);
        // The same value on Monday 16 June, start of day: still 9 working days.
        let monday = Progress::compute_paced(20, &p, cal.pace_clock(&p, day(16), &tz).unwrap(), &facts(&[(day(3), 9)]));
        assert_eq!((monday.expected(), monday.status), (9, Status::OnTrack));
    }

    #[test]
    fn tiers_are_reached_like_the_goal() {
        let p = june();
        let f = facts(&[(day(3), 5), (day(8), 5), (day(12), 6), (p.end_ms, 50)]);
        assert_eq!(Progress::tier(&p, &f, 10), Some(day(8)));
        assert_eq!(Progress::tier(&p, &f, 16), Some(day(12)));
        assert_eq!(Progress::tier(&p, &f, 17), None);
        // Reached and then lost is not reached.
        let f = facts(&[(day(3), 20), (day(4), -10)]);
        assert_eq!(Progress::tier(&p, &f, 15), None);
        assert_eq!(Progress::tier(&p, &f, 10), Some(day(3)));
    }

    #[test]
    fn money_sized_values_do_not_overflow() {
        let p = Period::containing(PeriodKind::Year, date(2025, 1, 1), &TimeZone::UTC).unwrap();
        let goal: i128 = 5_000_000_000_000_000_000; // five trillion units in micros
        let progress = Progress::compute(goal, &p, p.start_ms + p.duration_ms() / 2, &facts(&[(p.start_ms, goal / 2)]));
        assert_eq!(progress.status, Status::OnTrack);
        assert_eq!(progress.expected(), goal / 2);
    }

    #[test]
    fn status_names() {
        for (s, name) in [
            (Status::Achieved, "achieved"),
            (Status::Ahead, "ahead"),
            (Status::OnTrack, "on_track"),
            (Status::Behind, "behind"),
        ] {
            assert_eq!(s.as_str(), name);
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{name}\""));
        }
    }
}
