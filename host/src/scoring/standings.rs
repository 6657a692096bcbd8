//! Contests: their formats, their standings and the freezing of the result.
//!
//! A contest ranks its participants (users, or teams as the sum of their members) by one
//! metric over the instants `[starts_at, ends_at)`, with [`crate::engine::ranking`]'s rules.
//!
//! # Where a standing comes from
//! Never from the facts at read time: the store keeps every contest's running totals per CRM
//! owner, updated inside each ingestion commit and rebuilt by the few writes that change
//! what a contest counts ([`crate::store::standings`]). [`Scoring::current_entries`] joins
//! them with the owner mappings (and teams) and ranks. A race also needs when each
//! participant first reached the goal; that is read from the facts only for participants
//! who can have reached it, and cached by the contest's standing version ([`RaceCache`]).
//!
//! # Frozen at the end
//! When a contest's end passes, its final standing is stored (frozen) from the totals as
//! they are then, by the scheduler's freezing tick ([`Scoring::freeze_due`], every
//! second) or by a read that comes first; the contest's placement incentives are awarded
//! by that freeze. Every later read serves the stored standing, with [`Flag`]s for the
//! participants whose value in the current totals differs from the frozen one.
//!
//! A frozen standing is stored as the JSON text of its entries, figures rendered in the
//! metric's unit (`[{"rank":1,"user_id":"…","value":"12.50"},…]`, plus `reached_goal_at`
//! in a race, `goal` and `percent` ranked by percent of own target); [`decode_frozen`]
//! reads every standing ever stored that way.

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, PoisonError};

use jiff::tz::TimeZone;
use serde::{Deserialize, Deserializer, Serialize};

use super::goals::GoalBook;
use super::metrics::{Resolved, Unit};
use super::{Result, Scoring, ScoringError};
use crate::engine::{Contender, DatedValue, first_reaching, rank, rank_by_percent, rank_race};
use crate::format::{decimal_to_micros, instant_in, micros_to_decimal, money_to_decimal, parse_rfc3339_ms};
use crate::store::standings::StoredStanding;
use crate::store::types::now_ms;
use crate::store::{Assignee, Contest, ContestId, DatedFact, Participants, Principal, Role, TeamId, TenantId, UserId};

/// A contest's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Users or teams ranked by value.
    Leaderboard,
    /// First to reach the goal wins; ranked by when each reached it, then by value.
    Race,
    /// Exactly two participants (users or teams), ranked by value.
    HeadToHead,
    /// Two or more teams, each the sum of its members, ranked by value.
    TeamVsTeam,
    /// Users or teams ranked by value as a percent of their own goal.
    PercentOfTarget,
}

impl Format {
    /// Every format this version runs, the default first.
    pub const ALL: [Format; 5] =
        [Format::Leaderboard, Format::Race, Format::HeadToHead, Format::TeamVsTeam, Format::PercentOfTarget];

    /// Its name in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Leaderboard => "leaderboard",
            Format::Race => "race",
            Format::HeadToHead => "head_to_head",
            Format::TeamVsTeam => "team_vs_team",
            Format::PercentOfTarget => "percent_of_target",
        }
    }

    /// The format of that name.
    pub fn parse(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.as_str() == name)
    }

    /// Every name, comma separated (for messages).
    pub fn names() -> String {
        Format::ALL.map(Format::as_str).join(", ")
    }
}

/// Who an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Participant {
    /// A user.
    User(UserId),
    /// A team.
    Team(TeamId),
}

/// What an entry shows besides rank and value, by format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Nothing more.
    Plain,
    /// A race: when the participant reached the goal.
    Race {
        /// `None` while they have not.
        reached_goal_at_ms: Option<i64>,
    },
    /// Ranked by percent of own target.
    Percent {
        /// The participant's own goal, `None` without one.
        goal: Option<i128>,
        /// Value ÷ goal in hundredths of a percent.
        percent_hundredths: Option<i128>,
    },
}

/// One line of a standing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Standard competition rank.
    pub rank: u64,
    /// Who.
    pub participant: Participant,
    /// Their value, in the metric's unit.
    pub value: i128,
    /// What the format adds.
    pub detail: Detail,
}

/// A participant whose value changed after the result was frozen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    /// Who.
    pub participant: Participant,
    /// The value in the frozen standing.
    pub frozen_value: i128,
    /// The value in the totals now (`None`: not a participant any more).
    pub current_value: Option<i128>,
}

/// Where the clock and the freeze put a standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Before its start.
    Scheduled,
    /// Between its start and its end.
    Running,
    /// Frozen.
    Final,
}

impl Status {
    /// Its name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Scheduled => "scheduled",
            Status::Running => "running",
            Status::Final => "final",
        }
    }
}

/// A contest's standing, as its leaderboard shows it.
#[derive(Debug, Clone)]
pub struct Standing {
    /// The contest.
    pub contest: Contest,
    /// The metric's unit; `None` when the metric is gone (a frozen standing still reads).
    pub unit: Option<Unit>,
    /// The unit the entries' values are in: the metric's, or read from the frozen text.
    pub figures: Unit,
    /// The tenant currency.
    pub currency: String,
    /// The tenant's zone.
    pub tz: TimeZone,
    /// Where it stands.
    pub status: Status,
    /// When it was frozen.
    pub frozen_at_ms: Option<i64>,
    /// Every participant, best first.
    pub entries: Vec<Entry>,
    /// Once final: who changed since.
    pub flags: Vec<Flag>,
    /// The winner, once decided (see [`winner_of`]).
    pub winner: Option<Participant>,
}

/// The node's cache of race finishes, per contest.
#[derive(Default)]
pub struct RaceCache {
    by_contest: Mutex<HashMap<ContestId, RaceFinishes>>,
}

/// The instants at which a race's participants first reached the goal.
struct RaceFinishes {
    /// The contest's standing version and who the candidates were (with their CRM owners).
    signature: u64,
    /// Participant → instant (`None`: not reached).
    finishes: HashMap<Participant, Option<i64>>,
}

impl Scoring {
    /// Who may see a contest with these participants: managers and admins, and the members
    /// taking part (in person or through a team).
    pub async fn may_see(&self, p: &Principal, participants: &Participants) -> Result<()> {
        let allowed = match (p.role, participants) {
            (Role::Admin | Role::Manager, _) => true,
            (Role::Member, Participants::Users(users)) => users.contains(&p.user_id),
            (Role::Member, Participants::Teams(teams)) => {
                self.store().teams_of(p.tenant_id, p.user_id).await?.iter().any(|t| teams.contains(t))
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(ScoringError::Forbidden("only the contest's participants and managers may see its leaderboard"))
        }
    }

    /// A `percent_of_target` contest needs someone to measure: at least one participant
    /// (or a member of a participating team) with a goal by the rule the standing uses
    /// (refused `no_targets`). An unknown participant is not found first, as for every
    /// format.
    pub async fn check_percent_targets(
        &self,
        tenant: TenantId,
        metric: &str,
        participants: &Participants,
        window: (i64, i64),
    ) -> Result<()> {
        let (_, tz) = self.tenant_zone(tenant).await?;
        let book = GoalBook::load(self.store(), tenant, metric, window, &tz).await?;
        match participants {
            Participants::Users(users) => {
                for &user in users {
                    if book.own_goal(Assignee::User(user))?.is_some() {
                        return Ok(());
                    }
                }
                for &user in users {
                    self.store().user(tenant, user).await?;
                }
            }
            Participants::Teams(teams) => {
                for &team in teams {
                    if !self.store().team_exists(tenant, team).await? {
                        return Err(ScoringError::NotFound("team"));
                    }
                    let members = self.store().team_members(tenant, team).await?;
                    if book.team_goal(team, &members)?.is_some() {
                        return Ok(());
                    }
                }
            }
        }
        Err(ScoringError::refused(
            "no_targets",
            "no participant has a target of this metric whose period contains the contest's first day; \
             set targets first, or choose another format",
        ))
    }

    /// A contest's standing now (no check of who asks: callers check that).
    ///
    /// While the contest runs, ranked from the stored totals. At or after its end, the
    /// frozen one (frozen now if the freezing tick has not yet, which awards its placement
    /// incentives), with the flags of participants whose value changed since.
    pub async fn standing(&self, tenant_id: TenantId, contest: Contest) -> Result<Standing> {
        let (tenant, tz) = self.tenant_zone(tenant_id).await?;
        let currency = tenant.currency.as_str().to_owned();
        let now = now_ms();
        let metric = self.resolve(tenant_id, &contest.metric).await?;
        let (entries, figures, frozen_at_ms, flags) = match (&contest.frozen, contest.frozen_at_ms) {
            (Some(frozen), Some(at)) => {
                let (entries, figures) = decode_frozen(frozen, metric.as_ref().map(|m| m.unit))?;
                let flags = match &metric {
                    Some(metric) => {
                        let current = self.current_entries(tenant_id, &contest, metric, &tz).await?;
                        flags_of(&entries, &current, metric.unit, &currency)
                    }
                    // The metric is gone: nothing to compare with.
                    None => Vec::new(),
                };
                (entries, figures, Some(at), flags)
            }
            _ => {
                let metric = self.resolve_stored(tenant_id, &contest.metric).await?;
                let entries = self.current_entries(tenant_id, &contest, &metric, &tz).await?;
                if now >= contest.ends_at_ms {
                    let text = encode_frozen(&entries, metric.unit, &currency, &tz)?;
                    let (frozen, at) = self.store().freeze_contest(tenant_id, contest.id, &text).await?;
                    let (entries, figures) = decode_frozen(&frozen, Some(metric.unit))?;
                    self.award_contest(tenant_id, &contest, &entries, Some(metric.unit)).await?;
                    (entries, figures, Some(at), Vec::new())
                } else {
                    (entries, metric.unit, None, Vec::new())
                }
            }
        };
        let status = if frozen_at_ms.is_some() {
            Status::Final
        } else if now < contest.starts_at_ms {
            Status::Scheduled
        } else {
            Status::Running
        };
        let winner = winner_of(Format::parse(&contest.format), &entries, status == Status::Final);
        Ok(Standing {
            unit: metric.map(|m| m.unit),
            figures,
            currency,
            tz,
            status,
            frozen_at_ms,
            entries,
            flags,
            winner,
            contest,
        })
    }

    /// Freezes every contest (of any tenant) past its end and not frozen yet, at most
    /// `batch` of them, each with its placement incentives awarded. Several nodes may do
    /// this at once: the freeze is a conditional update, the first writer's standing is
    /// the one every reader sees, and the ledger takes each award once.
    pub async fn freeze_due(&self, batch: u32) -> Result<usize> {
        let due = self.store().contests_to_freeze(now_ms(), batch).await?;
        let mut frozen = 0;
        for (tenant, contest) in due {
            let result = match self.store().contest(tenant, contest).await {
                Ok(found) => self.standing(tenant, found).await.map(|_| ()),
                Err(e) => Err(e.into()),
            };
            match result {
                Ok(()) => frozen += 1,
                // Retried at every tick (a contest whose metric is gone stays unfrozen
                // until a read reports why).
                Err(e) => tracing::debug!(%tenant, %contest, error = %e, "could not freeze a contest's result"),
            }
        }
        Ok(frozen)
    }

    /// A contest's standing now, best first: from its stored totals
    /// ([`crate::store::standings`]), summed per user over their CRM owners (and per team
    /// over its members), never from the facts. A user's reaching instant is the latest of
    /// their owners'; a team's the latest of its members'.
    pub async fn current_entries(
        &self,
        tenant: TenantId,
        contest: &Contest,
        metric: &Resolved,
        tz: &TimeZone,
    ) -> Result<Vec<Entry>> {
        let stored = self.store().stored_standing(tenant, contest.id).await?;
        let mut by_user: HashMap<UserId, (i128, Option<i64>)> = HashMap::new();
        for owner in &stored.owners {
            let entry = by_user.entry(owner.user_id).or_insert((0, None));
            entry.0 += owner.value;
            entry.1 = entry.1.max(owner.reached_at_ms);
        }
        // Every participant with the users whose totals are theirs.
        let participants: Vec<(Participant, Vec<UserId>)> = match &contest.participants {
            Participants::Users(users) => users.iter().map(|u| (Participant::User(*u), vec![*u])).collect(),
            Participants::Teams(teams) => {
                let mut members: HashMap<TeamId, Vec<UserId>> = HashMap::new();
                for (team, user) in &stored.members {
                    members.entry(*team).or_default().push(*user);
                }
                teams.iter().map(|t| (Participant::Team(*t), members.remove(t).unwrap_or_default())).collect()
            }
        };
        let contender = |key: Participant, users: &[UserId]| {
            let (value, reached_at_ms) = users
                .iter()
                .filter_map(|u| by_user.get(u))
                .fold((0_i128, None), |(v, r), (uv, ur)| (v + uv, r.max(*ur)));
            Contender { key, value, reached_at_ms }
        };
        let format = Format::parse(&contest.format);
        Ok(match (format, contest.goal) {
            (Some(Format::Race), Some(goal)) => {
                let goal = i128::from(goal);
                let contenders: Vec<Contender<Participant>> =
                    participants.iter().map(|(k, users)| contender(*k, users)).collect();
                let finishes =
                    self.race_finishes(tenant, contest, metric, &stored, &participants, &contenders, goal).await?;
                let contenders = contenders
                    .into_iter()
                    .map(|c| {
                        let finished = finishes.get(&c.key).copied().flatten();
                        (c, finished)
                    })
                    .collect();
                rank_race(contenders)
                    .into_iter()
                    .map(|r| Entry {
                        rank: u64::from(r.standing.rank),
                        participant: r.standing.key,
                        value: r.standing.value,
                        detail: Detail::Race { reached_goal_at_ms: r.finished_at_ms },
                    })
                    .collect()
            }
            (Some(Format::PercentOfTarget), _) => {
                let window = (contest.starts_at_ms, contest.ends_at_ms);
                let book = GoalBook::load(self.store(), tenant, &contest.metric, window, tz).await?;
                let mut contenders = Vec::with_capacity(participants.len());
                for (k, users) in &participants {
                    let goal = match k {
                        Participant::User(user) => book.own_goal(Assignee::User(*user))?,
                        Participant::Team(team) => book.team_goal(*team, users)?,
                    };
                    contenders.push((contender(*k, users), goal));
                }
                rank_by_percent(contenders)
                    .into_iter()
                    .map(|s| Entry {
                        rank: u64::from(s.standing.rank),
                        participant: s.standing.key,
                        value: s.standing.value,
                        detail: Detail::Percent { goal: s.goal, percent_hundredths: s.percent_hundredths() },
                    })
                    .collect()
            }
            _ => rank(participants.iter().map(|(k, users)| contender(*k, users)).collect())
                .into_iter()
                .map(|s| Entry { rank: u64::from(s.rank), participant: s.key, value: s.value, detail: Detail::Plain })
                .collect(),
        })
    }

    /// When each participant of a race first reached its goal.
    ///
    /// The totals tell who can have reached it: with a metric that only grows (counts, and
    /// composites of positive weights), exactly those at or above the goal now; otherwise
    /// (money may be negative) anyone whose total ever changed. Only when there is such a
    /// candidate are the facts read ([`Resolved::dated`] over the window), and the result
    /// is cached by the contest's standing version and the candidates' CRM owners, so a
    /// read between two commits that change the race reads no fact. The instants come from
    /// the facts because a total does not say when it crossed the goal (a fact synced late
    /// may lie before the others).
    #[allow(clippy::too_many_arguments)]
    async fn race_finishes(
        &self,
        tenant: TenantId,
        contest: &Contest,
        metric: &Resolved,
        stored: &StoredStanding,
        participants: &[(Participant, Vec<UserId>)],
        contenders: &[Contender<Participant>],
        goal: i128,
    ) -> Result<HashMap<Participant, Option<i64>>> {
        let monotone = match metric.unit {
            Unit::Count => true,
            Unit::Score => metric.terms.iter().all(|t| t.weight_micros > 0),
            Unit::Money => false,
        };
        let candidates: Vec<&(Participant, Vec<UserId>)> = participants
            .iter()
            .zip(contenders)
            .filter(|(_, c)| if monotone { c.value >= goal } else { c.reached_at_ms.is_some() })
            .map(|(p, _)| p)
            .collect();
        if candidates.is_empty() {
            return Ok(HashMap::new());
        }
        let signature = {
            let mut owners: HashMap<UserId, Vec<(&str, [u8; 16])>> = HashMap::new();
            for o in &stored.owners {
                owners.entry(o.user_id).or_default().push((o.connector_id.as_str(), o.owner));
            }
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            stored.version.hash(&mut hasher);
            for (key, users) in &candidates {
                key.hash(&mut hasher);
                for user in users {
                    let mut mine = owners.get(user).cloned().unwrap_or_default();
                    mine.sort_unstable();
                    (user, mine).hash(&mut hasher);
                }
            }
            hasher.finish()
        };
        let cache = &self.inner.races.by_contest;
        if let Some(cached) = cache.lock().unwrap_or_else(PoisonError::into_inner).get(&contest.id)
            && cached.signature == signature
        {
            return Ok(cached.finishes.clone());
        }
        let facts = metric.dated(self.store(), tenant, contest.starts_at_ms, contest.ends_at_ms).await?;
        let mut by_user: HashMap<UserId, Vec<DatedValue>> = HashMap::new();
        for DatedFact { user_id, at_ms, value } in facts {
            by_user.entry(user_id).or_default().push(DatedValue::new(at_ms, value));
        }
        let finishes: HashMap<Participant, Option<i64>> = candidates
            .iter()
            .map(|(key, users)| {
                let facts: Vec<DatedValue> = users.iter().filter_map(|u| by_user.get(u)).flatten().copied().collect();
                (*key, first_reaching(&facts, goal))
            })
            .collect();
        cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(contest.id, RaceFinishes { signature, finishes: finishes.clone() });
        Ok(finishes)
    }
}

/// The winner shown with a standing: in a race, the one participant ranked first who
/// reached the goal (as soon as they did); in the other formats, the one participant
/// ranked first once the result is final. `None` while undecided or when several share
/// first place.
pub fn winner_of(format: Option<Format>, entries: &[Entry], is_final: bool) -> Option<Participant> {
    let first: Vec<&Entry> = entries.iter().filter(|e| e.rank == 1).collect();
    let [only] = first.as_slice() else { return None };
    let decided = match (format, only.detail) {
        (Some(Format::Race), Detail::Race { reached_goal_at_ms }) => reached_goal_at_ms.is_some(),
        (Some(Format::Race), _) => false,
        _ => is_final,
    };
    decided.then_some(only.participant)
}

/// The participants whose value now differs (as shown) from their frozen value: a fact of
/// theirs was retracted, changed or arrived late after the freeze. The frozen standing is
/// not changed; these are shown beside it.
pub fn flags_of(frozen: &[Entry], current: &[Entry], unit: Unit, currency: &str) -> Vec<Flag> {
    let now: HashMap<Participant, i128> = current.iter().map(|e| (e.participant, e.value)).collect();
    frozen
        .iter()
        .filter_map(|e| {
            let current = now.get(&e.participant).copied();
            let same = current.is_some_and(|v| unit.shown(v, currency) == unit.shown(e.value, currency));
            (!same).then_some(Flag { participant: e.participant, frozen_value: e.value, current_value: current })
        })
        .collect()
}

// ----- the stored form of a frozen standing ---------------------------------------------------

/// A figure as stored: a whole number, a decimal number, or a decimal string (money).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum StoredFigure {
    Int(i64),
    Float(f64),
    Text(String),
}

impl StoredFigure {
    /// How `value` is stored (and shown): counts whole, money as a decimal string rounded
    /// to the currency, scores as numbers with at most six decimals.
    fn of(unit: Unit, value: i128, currency: &str) -> Result<Self> {
        let whole =
            |v: i128| i64::try_from(v).map_err(|_| ScoringError::Internal(anyhow::anyhow!("a figure is out of range")));
        Ok(match unit {
            Unit::Count => StoredFigure::Int(whole(value)?),
            Unit::Money => StoredFigure::Text(money_to_decimal(value, currency)),
            Unit::Score if value % 1_000_000 == 0 => StoredFigure::Int(whole(value / 1_000_000)?),
            Unit::Score => {
                let text = micros_to_decimal(value);
                match text.parse::<f64>() {
                    Ok(f) => StoredFigure::Float(f),
                    Err(_) => StoredFigure::Text(text),
                }
            }
        })
    }

    /// The value in `unit`.
    fn value(&self, unit: Unit) -> Option<i128> {
        match (unit, self) {
            (Unit::Count, StoredFigure::Int(n)) => Some(i128::from(*n)),
            (Unit::Score, StoredFigure::Int(n)) => i128::from(*n).checked_mul(1_000_000),
            (Unit::Score, StoredFigure::Float(f)) => decimal_to_micros(&f.to_string()),
            (Unit::Money | Unit::Score, StoredFigure::Text(t)) => decimal_to_micros(t),
            _ => None,
        }
    }
}

/// One stored entry: absent fields stay absent, `null` ones are `Some(None)`.
#[derive(Debug, Serialize, Deserialize)]
struct StoredEntry {
    rank: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_id: Option<uuid::Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    team_id: Option<uuid::Uuid>,
    value: StoredFigure,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    reached_goal_at: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    goal: Option<Option<StoredFigure>>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    percent: Option<Option<f64>>,
}

/// A field that is present (`null` included).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn malformed(what: &str) -> ScoringError {
    ScoringError::Internal(anyhow::anyhow!("a frozen standing is malformed: {what}"))
}

/// The stored text of a frozen standing.
pub fn encode_frozen(entries: &[Entry], unit: Unit, currency: &str, tz: &TimeZone) -> Result<String> {
    let mut stored = Vec::with_capacity(entries.len());
    for e in entries {
        let (user_id, team_id) = match e.participant {
            Participant::User(u) => (Some(u.as_uuid()), None),
            Participant::Team(t) => (None, Some(t.as_uuid())),
        };
        let (reached_goal_at, goal, percent) = match e.detail {
            Detail::Plain => (None, None, None),
            Detail::Race { reached_goal_at_ms } => (Some(reached_goal_at_ms.map(|at| instant_in(at, tz))), None, None),
            Detail::Percent { goal, percent_hundredths } => (
                None,
                Some(goal.map(|g| StoredFigure::of(unit, g, currency)).transpose()?),
                Some(percent_hundredths.map(|h| h as f64 / 100.0)),
            ),
        };
        stored.push(StoredEntry {
            rank: e.rank,
            user_id,
            team_id,
            value: StoredFigure::of(unit, e.value, currency)?,
            reached_goal_at,
            goal,
            percent,
        });
    }
    serde_json::to_string(&stored).map_err(|e| ScoringError::Internal(e.into()))
}

/// The entries of a stored frozen standing, and the unit their figures are in: the
/// metric's when it is known, else the one the text shows (decimal strings are money,
/// decimal numbers a score, whole numbers counts).
pub fn decode_frozen(text: &str, unit: Option<Unit>) -> Result<(Vec<Entry>, Unit)> {
    let stored: Vec<StoredEntry> = serde_json::from_str(text).map_err(|e| malformed(&e.to_string()))?;
    let unit = unit.unwrap_or_else(|| {
        let figures = stored.iter().flat_map(|e| std::iter::once(&e.value).chain(e.goal.iter().flatten()));
        let kinds: BTreeSet<u8> = figures
            .map(|f| match f {
                StoredFigure::Text(_) => 2,
                StoredFigure::Float(_) => 1,
                StoredFigure::Int(_) => 0,
            })
            .collect();
        match kinds.last() {
            Some(2) => Unit::Money,
            Some(1) => Unit::Score,
            _ => Unit::Count,
        }
    });
    let mut entries = Vec::with_capacity(stored.len());
    for e in stored {
        let participant = match (e.user_id, e.team_id) {
            (Some(u), None) => Participant::User(UserId::from_uuid(u)),
            (None, Some(t)) => Participant::Team(TeamId::from_uuid(t)),
            _ => return Err(malformed("an entry without one user_id or team_id")),
        };
        let value = e.value.value(unit).ok_or_else(|| malformed("a value"))?;
        let detail = match (e.reached_goal_at, e.goal, e.percent) {
            (Some(at), _, _) => Detail::Race {
                reached_goal_at_ms: match at {
                    Some(text) => Some(parse_rfc3339_ms(&text).ok_or_else(|| malformed("an instant"))?),
                    None => None,
                },
            },
            (None, Some(goal), percent) => Detail::Percent {
                goal: match goal {
                    Some(g) => Some(g.value(unit).ok_or_else(|| malformed("a goal"))?),
                    None => None,
                },
                percent_hundredths: percent.flatten().map(|p| (p * 100.0).round() as i128),
            },
            (None, None, _) => Detail::Plain,
        };
        entries.push(Entry { rank: e.rank, participant, value, detail });
    }
    Ok((entries, unit))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(n: u128) -> Participant {
        Participant::User(UserId::from_uuid(uuid::Uuid::from_u128(n)))
    }

    #[test]
    fn formats_are_listed_once_and_round_trip() {
        for f in Format::ALL {
            assert_eq!(Format::parse(f.as_str()), Some(f));
        }
        assert_eq!(Format::parse("lottery"), None);
        assert_eq!(Format::names(), "leaderboard, race, head_to_head, team_vs_team, percent_of_target");
    }

    #[test]
    fn standings_stored_before_typed_entries_still_read() {
        // As earlier versions stored them (keys sorted, figures rendered).
        let money = r#"[{"rank":1,"user_id":"00000000-0000-0000-0000-000000000001","value":"12750.50"},
            {"rank":2,"user_id":"00000000-0000-0000-0000-000000000002","value":"-0.01"}]"#;
        let (entries, unit) = decode_frozen(money, Some(Unit::Money)).expect("reads");
        assert_eq!(unit, Unit::Money);
        assert_eq!(entries[0], Entry { rank: 1, participant: user(1), value: 12_750_500_000, detail: Detail::Plain });
        assert_eq!(entries[1].value, -10_000);
        // Without the metric, the text says what the figures are.
        assert_eq!(decode_frozen(money, None).expect("reads").1, Unit::Money);
        let race = r#"[{"rank":1,"reached_goal_at":"2025-06-02T11:01:55+01:00","user_id":"00000000-0000-0000-0000-000000000001","value":3},
            {"rank":2,"reached_goal_at":null,"user_id":"00000000-0000-0000-0000-000000000002","value":1}]"#;
        let (entries, unit) = decode_frozen(race, None).expect("reads");
        assert_eq!(unit, Unit::Count);
        assert_eq!(entries[0].detail, Detail::Race { reached_goal_at_ms: Some(1_748_858_515_000) });
        assert_eq!(entries[1].detail, Detail::Race { reached_goal_at_ms: None });
        let percent = r#"[{"goal":1.5,"percent":62.5,"rank":1,"team_id":"00000000-0000-0000-0000-000000000003","value":0.9375},
            {"goal":null,"percent":null,"rank":2,"team_id":"00000000-0000-0000-0000-000000000004","value":4}]"#;
        let (entries, unit) = decode_frozen(percent, Some(Unit::Score)).expect("reads");
        assert_eq!(unit, Unit::Score);
        assert_eq!(entries[0].value, 937_500);
        assert_eq!(entries[0].detail, Detail::Percent { goal: Some(1_500_000), percent_hundredths: Some(6250) });
        assert_eq!(entries[1].value, 4_000_000);
        assert_eq!(entries[1].detail, Detail::Percent { goal: None, percent_hundredths: None });
        assert!(decode_frozen("{}", None).is_err());
        assert!(decode_frozen(r#"[{"rank":1,"value":1}]"#, None).is_err());
    }

    #[test]
    fn a_frozen_standing_reads_back_as_it_was_shown() {
        let tz = TimeZone::get("Europe/London").expect("a zone");
        let entries = vec![
            Entry {
                rank: 1,
                participant: user(1),
                value: 1_500_000,
                detail: Detail::Race { reached_goal_at_ms: Some(1_748_858_515_000) },
            },
            Entry {
                rank: 2,
                participant: user(2),
                value: 2_000_000,
                detail: Detail::Race { reached_goal_at_ms: None },
            },
        ];
        for unit in [Unit::Score, Unit::Money] {
            let text = encode_frozen(&entries, unit, "GBP", &tz).expect("encodes");
            let (back, read) = decode_frozen(&text, Some(unit)).expect("decodes");
            assert_eq!((back, read), (entries.clone(), unit), "{text}");
        }
        // Money is stored as shown: rounded to the currency.
        let odd = vec![Entry { rank: 1, participant: user(1), value: 12_750_504_999, detail: Detail::Plain }];
        let text = encode_frozen(&odd, Unit::Money, "GBP", &tz).expect("encodes");
        assert_eq!(decode_frozen(&text, Some(Unit::Money)).expect("decodes").0[0].value, 12_750_500_000);
        // ... so that it is not flagged against the exact value it was frozen from.
        let (frozen, _) = decode_frozen(&text, Some(Unit::Money)).expect("decodes");
        assert!(flags_of(&frozen, &odd, Unit::Money, "GBP").is_empty());
        let moved = vec![Entry { value: 12_760_000_000, ..odd[0].clone() }];
        assert_eq!(flags_of(&frozen, &moved, Unit::Money, "GBP").len(), 1);
        assert_eq!(flags_of(&frozen, &[], Unit::Money, "GBP")[0].current_value, None);
    }

    #[test]
    fn the_winner_is_decided_by_the_format() {
        let plain = |rank, n| Entry { rank, participant: user(n), value: 1, detail: Detail::Plain };
        assert_eq!(winner_of(Some(Format::Leaderboard), &[plain(1, 1), plain(2, 2)], false), None);
        assert_eq!(winner_of(Some(Format::Leaderboard), &[plain(1, 1), plain(2, 2)], true), Some(user(1)));
        assert_eq!(winner_of(Some(Format::Leaderboard), &[plain(1, 1), plain(1, 2)], true), None);
        let race =
            |at| Entry { rank: 1, participant: user(1), value: 1, detail: Detail::Race { reached_goal_at_ms: at } };
        assert_eq!(winner_of(Some(Format::Race), &[race(Some(5))], false), Some(user(1)));
        assert_eq!(winner_of(Some(Format::Race), &[race(None)], true), None);
    }
}
