//! A target's progress over its period, and a team's over a calendar period or a custom
//! range.
//!
//! Progress, pace, status and the moment achieved follow [`crate::engine::progress`]; the
//! pace counts the tenant's working days ([`crate::engine::calendar`]). A user's goal is
//! pro-rated by working days when they joined after the period started
//! ([`super::goals::effective_goal`]). A team's value is the sum of its current members'
//! facts; a team without a target of its own has the sum of its members' (pro-rated)
//! targets as its goal.

use jiff::civil::Date;
use jiff::tz::TimeZone;

use super::goals::{current_period, effective_goal, first_period, period_covering};
use super::metrics::Unit;
use super::{Result, Scoring, ScoringError};
use crate::engine::period::local_date;
use crate::engine::{DatedValue, Period, PeriodKind, Progress, WorkCalendar};
use crate::store::types::now_ms;
use crate::store::{Assignee, Principal, Role, Target, TargetId, TeamId, TenantId, UserId};

/// A stretch tier's progress.
#[derive(Debug, Clone)]
pub struct TierProgress {
    /// Its goal (pro-rated like the target's).
    pub goal: i128,
    /// Its label.
    pub label: Option<String>,
    /// When the running total first reached it.
    pub achieved_at_ms: Option<i64>,
}

/// Progress over one period: the numbers every progress answer shows.
#[derive(Debug, Clone)]
pub struct PeriodProgress {
    /// The metric's unit.
    pub unit: Unit,
    /// The period measured.
    pub period: Period,
    /// Value, goal, pace, status and the moment achieved.
    pub progress: Progress,
    /// The stretch tiers, ascending.
    pub tiers: Vec<TierProgress>,
}

/// A target's progress.
#[derive(Debug, Clone)]
pub struct TargetProgress {
    /// The target.
    pub target: Target,
    /// Its progress over its (current) period.
    pub of: PeriodProgress,
    /// The day the assignee joined, when the goal is pro-rated for it.
    pub joined_on: Option<Date>,
}

/// One member's part of a team's progress.
#[derive(Debug, Clone)]
pub struct MemberPart {
    /// The member.
    pub user: UserId,
    /// Their target covering the period, with its effective and original goal.
    pub target: Option<(TargetId, i128, i64)>,
    /// Their value in the period.
    pub value: i128,
}

/// Where a team's goal comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoalSource {
    /// The team's own target.
    Target(TargetId),
    /// The sum of its members' targets.
    Members,
}

/// A team's progress.
#[derive(Debug, Clone)]
pub struct TeamProgress {
    /// Where the goal comes from.
    pub source: GoalSource,
    /// The progress.
    pub of: PeriodProgress,
    /// Every current member.
    pub members: Vec<MemberPart>,
}

/// What a team's progress is asked about: a day inside a calendar period, or a custom range.
#[derive(Debug, Clone, Copy)]
pub enum Asked {
    /// A local day inside a period of the kind asked.
    Day(Date),
    /// A custom range.
    Range(Period),
}

impl Scoring {
    /// The users whose figures count for a target, after checking that `p` may see it
    /// (managers and admins; a member if they are the assignee or in the assignee team).
    pub async fn visible_target(&self, p: &Principal, target: &Target) -> Result<Vec<UserId>> {
        let members = self.target_members(p.tenant_id, target).await?;
        let allowed = match p.role {
            Role::Admin | Role::Manager => true,
            Role::Member => members.contains(&p.user_id),
        };
        if !allowed {
            return Err(ScoringError::Forbidden("only managers and the target's assignee may see it"));
        }
        Ok(members)
    }

    /// The users whose figures count for a target: its user, or its team's members now.
    pub async fn target_members(&self, tenant: TenantId, target: &Target) -> Result<Vec<UserId>> {
        Ok(match target.assignee {
            Assignee::User(u) => vec![u],
            Assignee::Team(t) => self.store().team_members(tenant, t).await?,
        })
    }

    /// A target's progress over its period, or the current one when it recurs, for the
    /// users `members` ([`Scoring::visible_target`]).
    pub async fn target_progress(
        &self,
        tenant: TenantId,
        target: Target,
        members: &[UserId],
    ) -> Result<TargetProgress> {
        let (_, tz) = self.tenant_zone(tenant).await?;
        let metric = self.resolve_stored(tenant, &target.metric).await?;
        let calendar = self.store().calendar(tenant).await?.calendar;
        let now = now_ms();
        let period = current_period(&target, now, &tz)?;
        let facts: Vec<DatedValue> = metric
            .dated(self.store(), tenant, period.start_ms, period.end_ms)
            .await?
            .into_iter()
            .filter(|f| members.contains(&f.user_id))
            .map(|f| DatedValue::new(f.at_ms, f.value))
            .collect();
        // A user who joined after the period started owes a working-day share of the goal.
        let joined = self.store().joined_on(tenant).await?;
        let joined_on = match target.assignee {
            Assignee::User(u) => joined.get(&u).copied().filter(|d| *d > period.first_day),
            Assignee::Team(_) => None,
        };
        let share = |goal: i64| effective_goal(goal, target.assignee, &period, &calendar, &joined);
        let tiers: Vec<(i128, Option<String>)> =
            target.tiers.iter().map(|t| (share(t.goal), t.label.clone())).collect();
        let of = measure(metric.unit, share(target.goal), period, now, &facts, &tiers, &calendar, &tz)?;
        Ok(TargetProgress { target, of, joined_on })
    }

    /// A team's progress for a metric and period kind, asked by `p` (manager+, or a member
    /// of the team): 404 for an unknown team or metric, or when neither the team nor any
    /// member has a target for it.
    pub async fn team_progress(
        &self,
        p: &Principal,
        team: TeamId,
        metric_slug: &str,
        kind: PeriodKind,
        asked: Asked,
    ) -> Result<TeamProgress> {
        let tenant = p.tenant_id;
        let (_, tz) = self.tenant_zone(tenant).await?;
        if !self.store().team_exists(tenant, team).await? {
            return Err(ScoringError::NotFound("team"));
        }
        let members = self.store().team_members(tenant, team).await?;
        if p.role == Role::Member && !members.contains(&p.user_id) {
            return Err(ScoringError::Forbidden("only managers and the team's members may see its progress"));
        }
        let metric = self.resolve(tenant, metric_slug).await?.ok_or(ScoringError::NotFound("metric"))?;
        let calendar = self.store().calendar(tenant).await?.calendar;
        let now = now_ms();
        // The period of `t` that counts: the one covering the day asked about, or for a
        // custom range, its own range if it is exactly the one asked.
        let counted = |t: &Target| -> Result<Option<Period>> {
            match &asked {
                Asked::Day(day) => Ok(period_covering(t, *day, &tz)?),
                Asked::Range(range) => {
                    let own = first_period(t, &tz)?;
                    Ok((own.start_ms == range.start_ms && own.end_ms == range.end_ms).then_some(own))
                }
            }
        };
        // The team's own target, if one covers the day (or is the range).
        let mut own: Option<(Target, Period)> = None;
        for t in self.store().targets_of(tenant, Assignee::Team(team), metric_slug, kind).await? {
            if let Some(period) = counted(&t)? {
                own = Some((t, period));
            }
        }
        let period = match (&own, &asked) {
            (Some((_, period)), _) => *period,
            (None, Asked::Day(day)) => Period::containing_with(kind, *day, calendar.week_start, &tz)?,
            (None, Asked::Range(range)) => *range,
        };
        let all_facts = metric.dated(self.store(), tenant, period.start_ms, period.end_ms).await?;
        let facts: Vec<DatedValue> = all_facts
            .iter()
            .filter(|f| members.contains(&f.user_id))
            .map(|f| DatedValue::new(f.at_ms, f.value))
            .collect();
        let joined = self.store().joined_on(tenant).await?;
        let mut parts = Vec::with_capacity(members.len());
        let mut members_goal: i128 = 0;
        let mut any_member_target = false;
        for &member in &members {
            let value: i128 = all_facts.iter().filter(|f| f.user_id == member).map(|f| f.value).sum();
            let mut found: Option<(Target, Period)> = None;
            for t in self.store().targets_of(tenant, Assignee::User(member), metric_slug, kind).await? {
                if let Some(their) = counted(&t)? {
                    found = Some((t, their));
                }
            }
            let target = found.map(|(t, their)| {
                let effective = effective_goal(t.goal, t.assignee, &their, &calendar, &joined);
                any_member_target = true;
                members_goal += effective;
                (t.id, effective, t.goal)
            });
            parts.push(MemberPart { user: member, target, value });
        }
        let (source, goal, tiers) = match &own {
            Some((t, _)) => (
                GoalSource::Target(t.id),
                i128::from(t.goal),
                t.tiers.iter().map(|tier| (i128::from(tier.goal), tier.label.clone())).collect(),
            ),
            None if any_member_target => (GoalSource::Members, members_goal, Vec::new()),
            None => return Err(ScoringError::NotFound("target")),
        };
        let of = measure(metric.unit, goal, period, now, &facts, &tiers, &calendar, &tz)?;
        Ok(TeamProgress { source, of, members: parts })
    }

    /// Today's local date in the tenant's zone.
    pub fn today(tz: &TimeZone) -> Result<Date> {
        local_date(now_ms(), tz).map_err(|e| ScoringError::Internal(e.into()))
    }
}

/// The progress of `goal` over `period` at `now_ms`, paced by the tenant's working days,
/// with its tiers.
#[allow(clippy::too_many_arguments)]
fn measure(
    unit: Unit,
    goal: i128,
    period: Period,
    now_ms: i64,
    facts: &[DatedValue],
    tiers: &[(i128, Option<String>)],
    calendar: &WorkCalendar,
    tz: &TimeZone,
) -> Result<PeriodProgress> {
    let clock = calendar.pace_clock(&period, now_ms, tz)?;
    let progress = Progress::compute_paced(goal, &period, clock, facts);
    let tiers = tiers
        .iter()
        .map(|(goal, label)| TierProgress {
            goal: *goal,
            label: label.clone(),
            achieved_at_ms: Progress::tier(&period, facts, *goal),
        })
        .collect();
    Ok(PeriodProgress { unit, period, progress, tiers })
}
