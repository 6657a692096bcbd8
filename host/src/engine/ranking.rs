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

use super::DatedValue;

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
}
