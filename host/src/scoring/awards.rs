//! Incentives and the points ledger.
//!
//! An incentive awards `points` for achieving a tier of a target (`tier_percent` of its
//! goal, 100 by default) or for a final contest placement (rank ≤ `places`, optionally
//! with at least `min_value`).
//!
//! A target's tier is measured against the goal its progress shows for that period (the
//! effective goal, [`super::goals::effective_goal`]); a period whose effective goal is zero
//! (the user joined after it ended) earns nothing.
//!
//! # When points are awarded
//! When the numbers change, never on a read:
//! * after each ingestion commit, for the targets whose metric the commit touched (the
//!   scheduler's award pass, [`Scoring::settle_metrics`]);
//! * when an incentive is created, a target edited, an owner remapped, a team's members,
//!   a join date, the calendar or FX rates changed ([`Scoring::settle_tenant`]);
//! * when a contest is frozen at its end (the freezing tick, or the first read after the
//!   end if it comes before the tick: the same standing either way), for its placements.
//!
//! Every award is a ledger row keyed by (incentive, user, period start for a target or 0
//! for a contest, sequence number) under a unique constraint, so two nodes settling at once
//! write it once.
//!
//! # Retractions
//! * **Targets**: the periods evaluated (a one-off target's period; for a recurring one the
//!   current and the previous period) are re-evaluated at each settlement. When a retracted
//!   fact (or a remap) takes a period back below the tier, a `revoked` row of minus the
//!   points is appended; reaching it again awards it again.
//! * **Contests**: awarded from the frozen final standing only, and never revoked: a fact
//!   retracted after the freeze does not change the result, it shows as a flag.
//! * A team's award goes to each of its members at the time of the settlement.

use std::collections::BTreeSet;

use super::goals::{current_period, effective_goal, first_period};
use super::metrics::Unit;
use super::standings::{Entry, Participant, decode_frozen};
use super::{Result, Scoring};
use crate::store::engine::{Incentive, IncentiveSource};
use crate::store::types::now_ms;
use crate::store::{Contest, ContestId, Target, TargetId, TenantId, UserId};

impl Scoring {
    /// Brings one user's award of one incentive for one key in line: awarded when `earned`
    /// and not currently held, revoked when held and no longer earned (only if `revocable`).
    async fn settle(
        &self,
        tenant: TenantId,
        incentive: &Incentive,
        user: UserId,
        key: i64,
        earned: bool,
        revocable: bool,
    ) -> Result<()> {
        let (count, net) = self.store().ledger_state(tenant, incentive.id, user, key).await?;
        if earned && net <= 0 {
            self.store().append_ledger(tenant, incentive, user, key, count, incentive.points, "awarded").await?;
        } else if !earned && revocable && net > 0 {
            self.store().append_ledger(tenant, incentive, user, key, count, -net, "revoked").await?;
        }
        Ok(())
    }

    /// Awards (or revokes) the incentives of one target over its evaluated periods: a
    /// one-off target's period; a recurring target's current and previous periods.
    pub async fn settle_target(&self, tenant: TenantId, target: &Target) -> Result<()> {
        let incentives = self.store().incentives(tenant, None, Some(target.id)).await?;
        if incentives.is_empty() {
            return Ok(());
        }
        let Some(metric) = self.resolve(tenant, &target.metric).await? else { return Ok(()) };
        let (_, tz) = self.tenant_zone(tenant).await?;
        let now = now_ms();
        // The target's period now and, for a recurring one, the period before (awarded or
        // revoked late when facts arrive after it ended).
        let first = first_period(target, &tz)?;
        let current = current_period(target, now, &tz)?;
        let mut periods = vec![];
        if current.start_ms > first.start_ms {
            periods.push(current.previous(&tz)?);
        }
        periods.push(current);
        let members = self.target_members(tenant, target).await?;
        let calendar = self.store().calendar(tenant).await?.calendar;
        let joined = self.store().joined_on(tenant).await?;
        for period in periods {
            // The goal progress shows for this period (pro-rated for a joiner); a period
            // owed nothing (joined after it ended) earns nothing.
            let goal = effective_goal(target.goal, target.assignee, &period, &calendar, &joined);
            let value: i128 = metric
                .dated(self.store(), tenant, period.start_ms, period.end_ms)
                .await?
                .into_iter()
                .filter(|f| members.contains(&f.user_id))
                .map(|f| f.value)
                .sum();
            for incentive in &incentives {
                let IncentiveSource::Target { tier_percent, .. } = incentive.source else { continue };
                let earned = goal > 0 && value * 100 >= goal * i128::from(tier_percent);
                for &user in &members {
                    self.settle(tenant, incentive, user, period.start_ms, earned, true).await?;
                }
            }
        }
        Ok(())
    }

    /// Awards the placement incentives of a final contest from its frozen `entries` (in
    /// `unit`, `None` when the metric is gone: no minimum is met then). Never revokes: the
    /// frozen result stands (later changes show as flags).
    pub async fn award_contest(
        &self,
        tenant: TenantId,
        contest: &Contest,
        entries: &[Entry],
        unit: Option<Unit>,
    ) -> Result<()> {
        let incentives = self.store().incentives(tenant, Some(contest.id), None).await?;
        for incentive in &incentives {
            let IncentiveSource::Contest { places, min_value, .. } = incentive.source else { continue };
            for entry in entries {
                if i64::try_from(entry.rank).unwrap_or(i64::MAX) > places {
                    continue;
                }
                // A value at or below zero is below any minimum.
                if let Some(min) = min_value
                    && !(unit.is_some() && entry.value > 0 && entry.value >= i128::from(min))
                {
                    continue;
                }
                let users: Vec<UserId> = match entry.participant {
                    Participant::User(u) => vec![u],
                    Participant::Team(team) => self.store().team_members(tenant, team).await?,
                };
                for user in users {
                    self.settle(tenant, incentive, user, 0, true, false).await?;
                }
            }
        }
        Ok(())
    }

    /// Awards the placement incentives of a contest if it is final (from its stored
    /// standing, no recomputation); nothing before the freeze.
    pub async fn settle_contest(&self, tenant: TenantId, contest: ContestId) -> Result<()> {
        let found = self.store().contest(tenant, contest).await?;
        let Some(frozen) = &found.frozen else { return Ok(()) };
        let unit = self.unit_of(tenant, &found.metric).await?;
        let (entries, _) = decode_frozen(frozen, unit)?;
        self.award_contest(tenant, &found, &entries, unit).await
    }

    /// Settles one incentive (just created).
    pub async fn settle_incentive(&self, tenant: TenantId, incentive: &Incentive) -> Result<()> {
        match incentive.source {
            IncentiveSource::Target { target, .. } => {
                let found = self.store().target(tenant, target).await?;
                self.settle_target(tenant, &found).await
            }
            IncentiveSource::Contest { contest, .. } => self.settle_contest(tenant, contest).await,
        }
    }

    /// Settles every incentive of the tenant: every target incentive, and the placements
    /// of every final contest with incentives. After a change that may move any figure or
    /// goal (a remap, team members, join dates, the calendar, FX rates).
    pub async fn settle_tenant(&self, tenant: TenantId) -> Result<()> {
        self.settle_where(tenant, |_| true, true).await
    }

    /// Settles the target incentives whose target's metric a commit touching the connector
    /// metrics `metrics` can have changed.
    pub async fn settle_metrics(&self, tenant: TenantId, metrics: &[String]) -> Result<()> {
        let mut touched: BTreeSet<String> = BTreeSet::new();
        let mut untouched: BTreeSet<String> = BTreeSet::new();
        for incentive in self.store().incentives(tenant, None, None).await? {
            let IncentiveSource::Target { target, .. } = incentive.source else { continue };
            let found = self.store().target(tenant, target).await?;
            if touched.contains(&found.metric) || untouched.contains(&found.metric) {
                continue;
            }
            let hit = self.resolve(tenant, &found.metric).await?.is_some_and(|m| m.touches(metrics));
            if hit {
                touched.insert(found.metric)
            } else {
                untouched.insert(found.metric)
            };
        }
        if touched.is_empty() {
            return Ok(());
        }
        self.settle_where(tenant, |t| touched.contains(&t.metric), false).await
    }

    /// Settles the target incentives whose target passes `wanted`, and (with `contests`)
    /// the placements of final contests.
    async fn settle_where(&self, tenant: TenantId, wanted: impl Fn(&Target) -> bool, contests: bool) -> Result<()> {
        let mut contests_done: BTreeSet<ContestId> = BTreeSet::new();
        let mut targets_done: BTreeSet<TargetId> = BTreeSet::new();
        for incentive in self.store().incentives(tenant, None, None).await? {
            match incentive.source {
                IncentiveSource::Contest { contest, .. } => {
                    if contests && contests_done.insert(contest) {
                        self.settle_contest(tenant, contest).await?;
                    }
                }
                IncentiveSource::Target { target, .. } => {
                    if targets_done.insert(target) {
                        let found = self.store().target(tenant, target).await?;
                        if wanted(&found) {
                            self.settle_target(tenant, &found).await?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
