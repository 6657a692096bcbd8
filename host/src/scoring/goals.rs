//! A target's periods, and the goal owed over one.
//!
//! Periods are cut in the tenant's time zone ([`crate::engine::period`]): a calendar kind
//! (one-off or recurring) or a custom range of local days. Weeks start on the week start
//! the target was created with. [`effective_goal`] is the one rule for the goal owed over a
//! period (progress, incentives, contests ranked by percent of own target); [`GoalBook`]
//! picks the target a contest measures each participant against.

use std::collections::HashMap;

use jiff::civil::Date;
use jiff::tz::TimeZone;

use super::{Result, ScoringError};
use crate::engine::period::local_date;
use crate::engine::{Period, PeriodError, PeriodKind, WorkCalendar};
use crate::store::{Assignee, Store, Target, TeamId, TenantId, UserId};

/// A target's first period: its custom range, or the period of its kind containing
/// `starts_on` (weeks from its own week start).
pub fn first_period(target: &Target, tz: &TimeZone) -> Result<Period, PeriodError> {
    match (target.period, target.ends_on) {
        (PeriodKind::Custom, Some(last)) => Period::custom(target.starts_on, last, tz),
        (PeriodKind::Custom, None) => Err(PeriodError),
        (kind, _) => Period::containing_with(kind, target.starts_on, target.week_start, tz),
    }
}

/// The period a target's progress is measured over at `now_ms`: its only one, or, when
/// it recurs, the current one (the first until that has ended).
pub fn current_period(target: &Target, now_ms: i64, tz: &TimeZone) -> Result<Period, PeriodError> {
    let first = first_period(target, tz)?;
    if target.recurring && now_ms >= first.end_ms {
        Period::containing_instant_with(target.period, now_ms, target.week_start, tz)
    } else {
        Ok(first)
    }
}

/// The period of `target` that contains the local day `day`, if it covers that day.
pub fn period_covering(target: &Target, day: Date, tz: &TimeZone) -> Result<Option<Period>, PeriodError> {
    let first = first_period(target, tz)?;
    if day < first.first_day {
        return Ok(None);
    }
    if day < first.end_day {
        return Ok(Some(first));
    }
    if target.recurring {
        return Period::containing_with(target.period, day, target.week_start, tz).map(Some);
    }
    Ok(None)
}

/// The goal a target's assignee owes over `period`, as its progress shows it (`goal`): a
/// user who joined after the period started owes a working-day share of it
/// ([`WorkCalendar::prorate`]; nothing if they joined after it ended); a team the goal as
/// set. Progress, team progress, target incentives and contests ranked by percent of own
/// target all take their goal from here.
pub fn effective_goal(
    goal: i64,
    assignee: Assignee,
    period: &Period,
    calendar: &WorkCalendar,
    joined: &HashMap<UserId, Date>,
) -> i128 {
    match assignee {
        Assignee::User(user) => match joined.get(&user) {
            Some(day) => calendar.prorate(i128::from(goal), period, *day),
            None => i128::from(goal),
        },
        Assignee::Team(_) => i128::from(goal),
    }
}

/// What the goals of a contest ranked by percent of own target are read from: every
/// target of its metric in the tenant, the join dates and the working calendar (three
/// reads, whatever the number of participants).
pub struct GoalBook {
    targets: HashMap<Assignee, Vec<Target>>,
    joined: HashMap<UserId, Date>,
    calendar: WorkCalendar,
    /// The contest's window `[start, end)` and its first local day.
    window: (i64, i64),
    first_day: Date,
    tz: TimeZone,
}

impl GoalBook {
    /// The targets of `metric` for a contest over `[start_ms, end_ms)`.
    pub async fn load(
        store: &Store,
        tenant: TenantId,
        metric: &str,
        (start_ms, end_ms): (i64, i64),
        tz: &TimeZone,
    ) -> Result<Self> {
        let mut targets: HashMap<Assignee, Vec<Target>> = HashMap::new();
        for t in store.targets_of_metric(tenant, metric).await? {
            targets.entry(t.assignee).or_default().push(t);
        }
        Ok(Self {
            targets,
            joined: store.joined_on(tenant).await?,
            calendar: store.calendar(tenant).await?.calendar,
            window: (start_ms, end_ms),
            first_day: local_date(start_ms, tz).map_err(|e| ScoringError::Internal(e.into()))?,
            tz: tz.clone(),
        })
    }

    /// The effective goal of `assignee`'s own target that the contest uses: among their
    /// targets of the metric, those with a period containing the contest's first local day
    /// (a recurring target's period then), the one whose period is closest to the window
    /// ([`crate::engine::closest_period`]); its goal as its progress shows it for that
    /// period ([`effective_goal`]). `None` without such a target.
    pub fn own_goal(&self, assignee: Assignee) -> Result<Option<i128>> {
        let Some(targets) = self.targets.get(&assignee) else { return Ok(None) };
        let mut candidates = Vec::with_capacity(targets.len());
        for t in targets {
            if let Some(period) = period_covering(t, self.first_day, &self.tz)? {
                candidates.push((t, period));
            }
        }
        Ok(crate::engine::closest_period(self.window.0, self.window.1, candidates)
            .map(|(t, period)| effective_goal(t.goal, t.assignee, &period, &self.calendar, &self.joined)))
    }

    /// A team's goal, as a team's progress picks its goal source: its own target
    /// ([`GoalBook::own_goal`]), or failing that the sum of its `members`' own goals (each
    /// as they would have as a user participant); `None` when neither the team nor any
    /// member has one.
    pub fn team_goal(&self, team: TeamId, members: &[UserId]) -> Result<Option<i128>> {
        if let Some(goal) = self.own_goal(Assignee::Team(team))? {
            return Ok(Some(goal));
        }
        let mut sum: Option<i128> = None;
        for &member in members {
            if let Some(goal) = self.own_goal(Assignee::User(member))? {
                sum = Some(sum.unwrap_or(0).saturating_add(goal));
            }
        }
        Ok(sum)
    }
}
