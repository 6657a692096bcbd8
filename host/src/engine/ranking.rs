//! Contest standings: standard competition ranking with a documented tie-break.
//!
//! Every participant is ranked, zeros included, best first:
//!
//! 1. a higher value ranks higher;
//! 2. on equal values, **the one who reached that value earlier ranks higher**. A
//!    participant reached their final value at the instant of their last *counting* fact
//!    in the window: the last instant at which their running total changed (facts at one
//!    instant taken together; a fact of zero changes nothing). A participant with no
//!    counting fact has held their value (zero) since the window opened, so they reached
//!    it before anyone who got there through facts;
//! 3. equal on both: the same rank.
//!
//! Ranks are standard competition ranks ("1224"): a participant's rank is one more than
//! the number of participants strictly ahead of them, so two sharing second place are
//! followed by the fourth. Within one rank, entries are listed by key, so an answer is
//! deterministic.
//!
//! # Ranked by percent of own target
//! [`rank_by_percent`] ranks each participant by their value as a share of their own goal
//! (value ÷ goal, compared exactly by cross-multiplication, never rounded):
//!
//! 1. participants with a goal (above zero) rank before those without one;
//! 2. among those with a goal, a higher percent ranks higher; among those without, a
//!    higher value;
//! 3. then the usual tie-break: the value reached earlier ranks higher;
//! 4. equal on all of these: the same rank (standard competition ranks again).
//!
//! Which target's goal a participant is measured against is the API's choice of data; the
//! rule that picks among several of their targets is [`closest_period`].

use std::cmp::Ordering;

use super::DatedValue;
use super::period::Period;

/// One participant before ranking: its key (a user or team id), its value and when it
/// reached that value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contender<K> {
    /// Who.
    pub key: K,
    /// The sum of their facts in the window.
    pub value: i128,
    /// The instant of their last counting fact; `None` when no fact changed their total.
    pub reached_at_ms: Option<i64>,
}

impl<K> Contender<K> {
    /// A participant's value and reaching instant from their facts in the window (any
    /// order; for a team, every member's facts together).
    pub fn from_facts(key: K, facts: &[DatedValue]) -> Self {
        let mut value: i128 = 0;
        let mut reached_at_ms = None;
        for (at, total) in super::running_totals(facts) {
            if total != value {
                value = total;
                reached_at_ms = Some(at);
            }
        }
        Self { key, value, reached_at_ms }
    }
}

/// One line of a leaderboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing<K> {
    /// 1 for the best; equal for participants tied on value and reaching instant.
    pub rank: u32,
    /// Who.
    pub key: K,
    /// Their value.
    pub value: i128,
    /// When they reached it (see [`Contender::reached_at_ms`]).
    pub reached_at_ms: Option<i64>,
}

/// Ranks every contender (see the module docs), best first.
pub fn rank<K: Ord>(mut contenders: Vec<Contender<K>>) -> Vec<Standing<K>> {
    // `None` (held since the start) sorts before any instant, as it should.
    contenders.sort_by(|a, b| {
        b.value.cmp(&a.value).then(a.reached_at_ms.cmp(&b.reached_at_ms)).then_with(|| a.key.cmp(&b.key))
    });
    let mut out: Vec<Standing<K>> = Vec::with_capacity(contenders.len());
    for (index, c) in contenders.into_iter().enumerate() {
        let rank = match out.last() {
            Some(prev) if prev.value == c.value && prev.reached_at_ms == c.reached_at_ms => prev.rank,
            _ => u32::try_from(index + 1).unwrap_or(u32::MAX),
        };
        out.push(Standing { rank, key: c.key, value: c.value, reached_at_ms: c.reached_at_ms });
    }
    out
}

/// The instant a participant's running total first reached `goal` (facts at one instant
/// taken together), or `None` if it never did. A race is won by reaching the goal: a later
/// fall below it (a negative fact) does not undo that instant; a retracted fact is gone
/// from `facts` and so is not counted at all.
pub fn first_reaching(facts: &[DatedValue], goal: i128) -> Option<i64> {
    super::running_totals(facts).into_iter().find(|&(_, total)| total >= goal).map(|(at, _)| at)
}

/// One line of a race: its [`Standing`] and when the participant reached the goal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaceStanding<K> {
    /// Rank, key, value and the instant the value was reached.
    pub standing: Standing<K>,
    /// When the participant's total first reached the goal; `None` while it has not.
    pub finished_at_ms: Option<i64>,
}

/// Ranks a race, best first, with standard competition ranks:
///
/// 1. participants who reached the goal rank before those who did not, **the earlier to
///    reach it the higher**;
/// 2. then (at the same instant, or among those who have not reached it) a higher value;
/// 3. then the usual tie-break: the value reached earlier ranks higher;
/// 4. equal on all three: the same rank.
pub fn rank_race<K: Ord>(mut contenders: Vec<(Contender<K>, Option<i64>)>) -> Vec<RaceStanding<K>> {
    // `Some` (finished) before `None`, then earlier instants first.
    let finish_key = |f: Option<i64>| (f.is_none(), f);
    contenders.sort_by(|(a, fa), (b, fb)| {
        finish_key(*fa)
            .cmp(&finish_key(*fb))
            .then(b.value.cmp(&a.value))
            .then(a.reached_at_ms.cmp(&b.reached_at_ms))
            .then_with(|| a.key.cmp(&b.key))
    });
    let mut out: Vec<RaceStanding<K>> = Vec::with_capacity(contenders.len());
    for (index, (c, finished_at_ms)) in contenders.into_iter().enumerate() {
        let rank = match out.last() {
            Some(prev)
                if prev.finished_at_ms == finished_at_ms
                    && prev.standing.value == c.value
                    && prev.standing.reached_at_ms == c.reached_at_ms =>
            {
                prev.standing.rank
            }
            _ => u32::try_from(index + 1).unwrap_or(u32::MAX),
        };
        out.push(RaceStanding {
            standing: Standing { rank, key: c.key, value: c.value, reached_at_ms: c.reached_at_ms },
            finished_at_ms,
        });
    }
    out
}

/// One line of a leaderboard ranked by percent of own target: its [`Standing`] and the
/// goal it was measured against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PercentStanding<K> {
    /// Rank, key, value and the instant the value was reached.
    pub standing: Standing<K>,
    /// The participant's goal (above zero); `None` without one.
    pub goal: Option<i128>,
}

impl<K> PercentStanding<K> {
    /// The value as a percent of the goal in hundredths of a percent (see [`percent_hundredths`]).
    pub fn percent_hundredths(&self) -> Option<i128> {
        self.goal.and_then(|goal| percent_hundredths(self.standing.value, goal))
    }
}

/// `value ÷ goal` in hundredths of a percent (`5000` for 50 %), rounded half away from
/// zero; `None` unless `goal` is above zero. Only for display: ranks compare the exact
/// ratios.
pub fn percent_hundredths(value: i128, goal: i128) -> Option<i128> {
    if goal <= 0 {
        return None;
    }
    let scaled = value.checked_mul(10_000)?;
    let (quotient, remainder) = (scaled / goal, scaled % goal);
    // Half away from zero: |remainder| × 2 ≥ goal moves one further from zero.
    let away = remainder.unsigned_abs().saturating_mul(2) >= goal.unsigned_abs();
    Some(if !away {
        quotient
    } else if scaled < 0 {
        quotient - 1
    } else {
        quotient + 1
    })
}

/// Compares `a_value ÷ a_goal` with `b_value ÷ b_goal` (goals above zero) exactly; on an
/// overflow of the cross products (values beyond any real figure), as floats.
fn cmp_ratio(a_value: i128, a_goal: i128, b_value: i128, b_goal: i128) -> Ordering {
    match (a_value.checked_mul(b_goal), b_value.checked_mul(a_goal)) {
        (Some(a), Some(b)) => a.cmp(&b),
        _ => {
            let (a, b) = (a_value as f64 / a_goal as f64, b_value as f64 / b_goal as f64);
            a.partial_cmp(&b).unwrap_or(Ordering::Equal)
        }
    }
}

/// How `a` compares with `b` on the first two rules of [`rank_by_percent`]: `Less` when
/// `a` ranks higher.
fn cmp_percent<K>(a: &(Contender<K>, Option<i128>), b: &(Contender<K>, Option<i128>)) -> Ordering {
    match (a.1, b.1) {
        (Some(ga), Some(gb)) => cmp_ratio(b.0.value, gb, a.0.value, ga),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => b.0.value.cmp(&a.0.value),
    }
}

/// Ranks a leaderboard by percent of each participant's own goal (see the module docs),
/// best first. A goal of zero or below counts as none.
pub fn rank_by_percent<K: Ord>(contenders: Vec<(Contender<K>, Option<i128>)>) -> Vec<PercentStanding<K>> {
    let mut contenders: Vec<(Contender<K>, Option<i128>)> =
        contenders.into_iter().map(|(c, goal)| (c, goal.filter(|g| *g > 0))).collect();
    contenders.sort_by(|a, b| {
        cmp_percent(a, b).then(a.0.reached_at_ms.cmp(&b.0.reached_at_ms)).then_with(|| a.0.key.cmp(&b.0.key))
    });
    let mut out: Vec<PercentStanding<K>> = Vec::with_capacity(contenders.len());
    let mut previous: Option<(i128, Option<i128>, Option<i64>)> = None;
    for (index, (c, goal)) in contenders.into_iter().enumerate() {
        let here = (c.value, goal, c.reached_at_ms);
        let tied = previous.is_some_and(|(value, prev_goal, reached)| {
            let same = match (prev_goal, goal) {
                (Some(pg), Some(g)) => cmp_ratio(value, pg, c.value, g) == Ordering::Equal,
                (None, None) => value == c.value,
                _ => false,
            };
            same && reached == c.reached_at_ms
        });
        let rank = match out.last() {
            Some(prev) if tied => prev.standing.rank,
            _ => u32::try_from(index + 1).unwrap_or(u32::MAX),
        };
        previous = Some(here);
        out.push(PercentStanding {
            standing: Standing { rank, key: c.key, value: c.value, reached_at_ms: c.reached_at_ms },
            goal,
        });
    }
    out
}

/// Which of a participant's targets a contest over the instants `[start_ms, end_ms)`
/// measures them against, given each candidate's period that contains the contest's first
/// local day: the period that **overlaps the contest's window the most**; on equal
/// overlap, the **shorter** period (a month's target for a month's contest rather than the
/// quarter's that contains it); then the first candidate given. `None` without candidates.
pub fn closest_period<T>(start_ms: i64, end_ms: i64, candidates: Vec<(T, Period)>) -> Option<(T, Period)> {
    let overlap = |p: &Period| p.end_ms.min(end_ms).saturating_sub(p.start_ms.max(start_ms)).max(0);
    let mut best: Option<(T, Period)> = None;
    for (item, period) in candidates {
        let better = match &best {
            None => true,
            Some((_, b)) => {
                overlap(&period).cmp(&overlap(b)).then(b.duration_ms().cmp(&period.duration_ms())) == Ordering::Greater
            }
        };
        if better {
            best = Some((item, period));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(key: &'static str, value: i128, reached: Option<i64>) -> Contender<&'static str> {
        Contender { key, value, reached_at_ms: reached }
    }

    fn ranks(standings: &[Standing<&'static str>]) -> Vec<(u32, &'static str)> {
        standings.iter().map(|s| (s.rank, s.key)).collect()
    }

    #[test]
    fn standard_competition_ranks() {
        let standings = rank(vec![c("d", 1, Some(5)), c("b", 2, Some(7)), c("a", 3, Some(9)), c("c", 2, Some(7))]);
        assert_eq!(ranks(&standings), vec![(1, "a"), (2, "b"), (2, "c"), (4, "d")]);
        assert_eq!(standings.iter().map(|s| s.value).collect::<Vec<_>>(), vec![3, 2, 2, 1]);
    }

    #[test]
    fn earlier_to_reach_the_value_ranks_higher() {
        let standings = rank(vec![c("late", 5, Some(200)), c("early", 5, Some(100)), c("top", 6, Some(300))]);
        assert_eq!(ranks(&standings), vec![(1, "top"), (2, "early"), (3, "late")]);
    }

    #[test]
    fn zeros_are_listed_and_tied_and_rank_after_the_rest() {
        let standings = rank(vec![c("z2", 0, None), c("one", 1, Some(10)), c("z1", 0, None), c("neg", -3, Some(4))]);
        assert_eq!(ranks(&standings), vec![(1, "one"), (2, "z1"), (2, "z2"), (4, "neg")]);
        // Everyone at zero: all first.
        let standings = rank(vec![c("b", 0, None), c("a", 0, None)]);
        assert_eq!(ranks(&standings), vec![(1, "a"), (1, "b")]);
        assert!(rank::<&str>(vec![]).is_empty());
    }

    #[test]
    fn a_total_held_since_the_start_was_reached_first() {
        // `back` went up and down to zero at 50: it reached zero later than `idle`.
        let back = Contender::from_facts("back", &[DatedValue::new(10, 5), DatedValue::new(50, -5)]);
        assert_eq!((back.value, back.reached_at_ms), (0, Some(50)));
        let idle = Contender::from_facts("idle", &[]);
        assert_eq!((idle.value, idle.reached_at_ms), (0, None));
        assert_eq!(ranks(&rank(vec![back, idle])), vec![(1, "idle"), (2, "back")]);
    }

    #[test]
    fn reaching_instant_is_the_last_fact_that_changed_the_total() {
        let facts = [DatedValue::new(30, 2), DatedValue::new(10, 1), DatedValue::new(40, 0), DatedValue::new(20, 1)];
        let contender = Contender::from_facts("u", &facts);
        assert_eq!((contender.value, contender.reached_at_ms), (4, Some(30)));
        // Two facts cancelling out at one instant change nothing.
        let facts = [DatedValue::new(10, 3), DatedValue::new(20, 4), DatedValue::new(20, -4)];
        assert_eq!(Contender::from_facts("u", &facts).reached_at_ms, Some(10));
        // Only zero-valued facts: held since the start.
        assert_eq!(Contender::from_facts("u", &[DatedValue::new(10, 0)]).reached_at_ms, None);
    }

    #[test]
    fn first_reaching_is_the_first_instant_at_or_above_the_goal() {
        let facts = [DatedValue::new(30, 2), DatedValue::new(10, 1), DatedValue::new(20, 1), DatedValue::new(40, -3)];
        assert_eq!(first_reaching(&facts, 2), Some(20));
        assert_eq!(first_reaching(&facts, 4), Some(30), "a later fall does not undo it");
        assert_eq!(first_reaching(&facts, 5), None);
        assert_eq!(first_reaching(&[], 1), None);
    }

    #[test]
    fn a_race_ranks_finishers_by_when_they_finished_then_by_value() {
        let entry = |key, value, reached, finished| (c(key, value, reached), finished);
        let standings = rank_race(vec![
            entry("slow", 9, Some(90), Some(80)),
            entry("fast", 5, Some(50), Some(50)),
            entry("big", 30, Some(95), None),
            entry("fast_more", 7, Some(60), Some(50)),
            entry("none", 0, None, None),
            entry("twin", 9, Some(90), Some(80)),
        ]);
        let got: Vec<(u32, &str, Option<i64>)> =
            standings.iter().map(|s| (s.standing.rank, s.standing.key, s.finished_at_ms)).collect();
        assert_eq!(
            got,
            vec![
                (1, "fast_more", Some(50)),
                (2, "fast", Some(50)),
                (3, "slow", Some(80)),
                (3, "twin", Some(80)),
                (5, "big", None),
                (6, "none", None),
            ]
        );
    }

    fn pc(
        key: &'static str,
        value: i128,
        reached: Option<i64>,
        goal: Option<i128>,
    ) -> (Contender<&'static str>, Option<i128>) {
        (c(key, value, reached), goal)
    }

    fn percent_rows(standings: &[PercentStanding<&'static str>]) -> Vec<(u32, &'static str, Option<i128>)> {
        standings.iter().map(|s| (s.standing.rank, s.standing.key, s.percent_hundredths())).collect()
    }

    #[test]
    fn percent_of_own_goal_ranks_by_share_not_by_value() {
        let standings = rank_by_percent(vec![
            pc("big", 50, Some(10), Some(100)),   // 50 %
            pc("small", 9, Some(20), Some(10)),   // 90 %
            pc("over", 30, Some(30), Some(20)),   // 150 %
            pc("none", 500, Some(5), None),       // no target: after everyone with one
            pc("zero_goal", 7, Some(5), Some(0)), // a goal of zero counts as none
        ]);
        assert_eq!(
            percent_rows(&standings),
            vec![
                (1, "over", Some(15_000)),
                (2, "small", Some(9_000)),
                (3, "big", Some(5_000)),
                (4, "none", None),
                (5, "zero_goal", None),
            ]
        );
        assert_eq!(standings[4].goal, None);
        assert_eq!(standings[0].standing.value, 30, "the value is kept");
    }

    #[test]
    fn equal_percents_tie_break_on_who_reached_the_value_earlier() {
        // 2/4 and 3/6 are the same 50 %: the earlier to reach their value ranks higher;
        // 1/2 reached at the same instant as 3/6 shares its rank (1224).
        let standings = rank_by_percent(vec![
            pc("three_of_six", 3, Some(300), Some(6)),
            pc("two_of_four", 2, Some(100), Some(4)),
            pc("one_of_two", 1, Some(300), Some(2)),
            pc("idle", 0, None, Some(5)),
        ]);
        assert_eq!(
            percent_rows(&standings),
            vec![
                (1, "two_of_four", Some(5_000)),
                (2, "one_of_two", Some(5_000)),
                (2, "three_of_six", Some(5_000)),
                (4, "idle", Some(0)),
            ]
        );
        // Without goals: by value, then reached, ties sharing a rank.
        let standings = rank_by_percent(vec![
            pc("b", 4, Some(50), None),
            pc("a", 4, Some(50), None),
            pc("c", 4, Some(10), None),
            pc("d", 0, None, None),
        ]);
        assert_eq!(percent_rows(&standings), vec![(1, "c", None), (2, "a", None), (2, "b", None), (4, "d", None)]);
        assert!(rank_by_percent::<&str>(vec![]).is_empty());
    }

    #[test]
    fn ratios_are_compared_exactly_not_as_rounded_percents() {
        // 1/3 and 333333/1000000 both show as 33.33 %, but 1/3 is more.
        let standings =
            rank_by_percent(vec![pc("almost", 333_333, Some(1), Some(1_000_000)), pc("third", 1, Some(2), Some(3))]);
        assert_eq!(percent_rows(&standings), vec![(1, "third", Some(3_333)), (2, "almost", Some(3_333))]);
        // Negative values (money refunded) rank below zero.
        let standings = rank_by_percent(vec![pc("refunds", -5, Some(1), Some(10)), pc("nothing", 0, None, Some(10))]);
        assert_eq!(percent_rows(&standings), vec![(1, "nothing", Some(0)), (2, "refunds", Some(-5_000))]);
    }

    #[test]
    fn percents_round_half_away_from_zero() {
        assert_eq!(percent_hundredths(1, 3), Some(3_333));
        assert_eq!(percent_hundredths(2, 3), Some(6_667));
        assert_eq!(percent_hundredths(1, 8), Some(1_250));
        assert_eq!(percent_hundredths(1, 20_000), Some(1), "0.005 % rounds to 0.01 %");
        assert_eq!(percent_hundredths(1, 20_001), Some(0));
        assert_eq!(percent_hundredths(-2, 3), Some(-6_667));
        assert_eq!(percent_hundredths(7, 0), None);
        assert_eq!(percent_hundredths(7, -1), None);
        assert_eq!(percent_hundredths(i128::MAX, 1), None, "no overflow");
    }

    #[test]
    fn the_target_period_closest_to_the_window_is_chosen() {
        use crate::engine::{Period, PeriodKind};
        use jiff::civil::date;
        let tz = jiff::tz::TimeZone::get("Europe/London").unwrap();
        let june = Period::containing(PeriodKind::Month, date(2025, 6, 1), &tz).unwrap();
        let q2 = Period::containing(PeriodKind::Quarter, date(2025, 6, 1), &tz).unwrap();
        let week = Period::containing(PeriodKind::Week, date(2025, 6, 2), &tz).unwrap();
        let year = Period::containing(PeriodKind::Year, date(2025, 6, 2), &tz).unwrap();
        // A contest over June: the month and the quarter overlap all of it; the month is
        // shorter. The order given does not matter.
        let (start, end) = (june.start_ms, june.end_ms);
        let got = closest_period(start, end, vec![("q2", q2), ("week", week), ("june", june), ("year", year)]);
        assert_eq!(got.map(|(k, _)| k), Some("june"));
        // A contest over one week of June: the week.
        let got = closest_period(week.start_ms, week.end_ms, vec![("june", june), ("week", week), ("q2", q2)]);
        assert_eq!(got.map(|(k, _)| k), Some("week"));
        // A contest from mid-June to mid-July: the quarter overlaps as much as the month
        // (both end on June 30); the month wins as the shorter.
        let mid = june.start_ms + 14 * 86_400_000;
        let got = closest_period(mid, mid + 30 * 86_400_000, vec![("q2", q2), ("june", june)]);
        assert_eq!(got.map(|(k, _)| k), Some("june"));
        // Equal in both: the first given.
        let got = closest_period(start, end, vec![("first", june), ("second", june)]);
        assert_eq!(got.map(|(k, _)| k), Some("first"));
        assert!(closest_period::<&str>(start, end, vec![]).is_none());
    }
}
