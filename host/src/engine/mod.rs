//! The engine: the rules behind targets and contests, as pure functions of plain values.
//!
//! Nothing here does IO or knows the store, HTTP or the sandbox: the API reads facts and
//! settings from the store, hands them to these functions and renders what they answer. So
//! every rule is unit-tested with plain values, and the same rules will serve the demo, the
//! live leaderboards and the incentives.
//!
//! * [`period`]: periods (day, week, month, quarter, year, custom ranges) in a tenant's
//!   IANA time zone, as `[start, end)` instants, correct across daylight-saving changes.
//! * [`calendar`]: a tenant's week start, working week and holidays: pace by working days
//!   and pro-rated goals for joiners.
//! * [`progress`]: a target's progress over one period: value, ratio, pace, status and the
//!   moment it was achieved.
//! * [`ranking`]: contest standings with standard competition ranks and the documented
//!   tie-break, by value, by the instant a race's goal was reached, or by percent of each
//!   participant's own goal (and which of their targets a contest uses).
//!
//! # Units
//! Instants are `i64` milliseconds since the Unix epoch (the store's unit). Values are
//! `i128` in the metric's unit: whole counts, or millionths ("micros") of the tenant
//! currency for money. The engine never needs to know which: sums, comparisons and ratios
//! are the same for both.

pub mod calendar;
pub mod period;
pub mod progress;
pub mod ranking;

pub use self::calendar::{PaceClock, WorkCalendar};
pub use self::period::{Period, PeriodError, PeriodKind};
pub use self::progress::{PACE_TOLERANCE_PERCENT, Pace, Progress, Status};
pub use self::ranking::{
    Contender, PercentStanding, RaceStanding, Standing, closest_period, first_reaching, percent_hundredths, rank,
    rank_by_percent, rank_race,
};

/// One dated fact as the engine sees it: when it happened and what it adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DatedValue {
    /// When it happened, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// What it adds: a count, or micros of the tenant currency (may be negative).
    pub value: i128,
}

impl DatedValue {
    /// A fact of `value` at `at_ms`.
    pub const fn new(at_ms: i64, value: i128) -> Self {
        Self { at_ms, value }
    }
}

/// The running total of `facts` (in any order): `(instant, total after every fact at that
/// instant)`, one entry per distinct instant, oldest first. Facts at the same instant are
/// taken together, since nothing orders them.
pub(crate) fn running_totals(facts: &[DatedValue]) -> Vec<(i64, i128)> {
    let mut sorted: Vec<DatedValue> = facts.to_vec();
    sorted.sort_unstable();
    let mut out: Vec<(i64, i128)> = Vec::with_capacity(sorted.len());
    let mut total: i128 = 0;
    for fact in sorted {
        total += fact.value;
        match out.last_mut() {
            Some((at, sum)) if *at == fact.at_ms => *sum = total,
            _ => out.push((fact.at_ms, total)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_totals_group_equal_instants_in_time_order() {
        let facts = [DatedValue::new(30, 1), DatedValue::new(10, 2), DatedValue::new(30, -1), DatedValue::new(20, 5)];
        assert_eq!(running_totals(&facts), vec![(10, 2), (20, 7), (30, 7)]);
        assert!(running_totals(&[]).is_empty());
    }
}
