//! The node's cache of rendered leaderboard answers.
//!
//! A leaderboard of 10 000 participants is some 700 KB of JSON ranked from 10 000 totals,
//! their owner mappings and the contest's participants: tens of milliseconds to build. It
//! changes only when one of its inputs does, so each node keeps the serialized answer per
//! contest, keyed by the versions of every input ([`LeaderboardVersions`], read in one
//! statement by primary keys) and the time-based status:
//!
//! * the contest's totals (`standing_version`, bumped by every commit or rebuild that
//!   changes them);
//! * the contest row (name, window, goal, frozen result: `definition_version`, a trigger);
//! * the tenant's other inputs (zone and currency, owner mappings written by the roster
//!   mapping and by erasure, team members, participants, composite metric definitions,
//!   incentives: one per-tenant version bumped by triggers, migration 0009);
//! * the phase the clock puts the contest in: scheduled or running (`final` is the frozen
//!   state). Past its end and not frozen yet, the answer is always computed (that read
//!   freezes the result) and not cached.
//!
//! The versions live in the database, so nodes sharing one Postgres never serve an answer
//! older than the last change committed anywhere: a read between two changes is the
//! caller's authentication, this one query, the visibility check (against the participants
//! the answer was computed with, which the same versions cover) and the cached bytes. The
//! versions are read before the answer is computed: an answer may be newer than its key
//! (a change landing meanwhile), never older, and the next read sees the new key.
//!
//! Bounded by entries ([`MAX_ENTRIES`]) and bytes ([`MAX_BYTES`]), the least recently used
//! evicted first. Used by `GET /v1/contests/{id}/leaderboard` and the live streams, which
//! pass the rendering (the answer's text is theirs; the cache keeps it as it is).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::standings::{Format, Standing, Status};
use super::{Result, Scoring};
use crate::store::standings::LeaderboardVersions;
use crate::store::types::now_ms;
use crate::store::{ContestId, Participants, Principal, TenantId};

/// The most contests cached per node.
pub const MAX_ENTRIES: usize = 256;
/// The most bytes of cached answers (and their participant lists) per node.
pub const MAX_BYTES: usize = 128 << 20;

/// Where the clock puts a contest that is not past its end unfrozen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Scheduled,
    Running,
    Final,
}

/// What a cached answer is valid for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key {
    tenant: TenantId,
    standing: i64,
    definition: i64,
    inputs: i64,
    phase: Phase,
}

impl Key {
    /// The key of an answer read now, `None` when it must not be cached (past the end and
    /// not frozen yet: the read freezes it; or no tenant version to key it by).
    fn of(tenant: TenantId, v: &LeaderboardVersions, now: i64) -> Option<Key> {
        // Every format's answer depends on nothing but the inputs versioned in the
        // database and the phase (`percent_of_target` reads targets, join dates and the
        // calendar besides: all versioned; its effective goals do not move with the clock).
        // An unknown format is computed at every read.
        Format::parse(&v.format)?;
        let phase = if v.frozen {
            Phase::Final
        } else if now < v.starts_at_ms {
            Phase::Scheduled
        } else if now < v.ends_at_ms {
            Phase::Running
        } else {
            return None;
        };
        Some(Key { tenant, standing: v.standing, definition: v.definition, inputs: v.inputs?, phase })
    }
}

/// A rendered answer of `GET /v1/contests/{id}/leaderboard`.
#[derive(Debug)]
pub struct Rendered {
    /// The JSON body.
    pub text: Arc<str>,
    /// Who takes part (for the visibility check of later reads).
    pub participants: Participants,
    /// Whether it is the frozen result.
    pub is_final: bool,
    /// The contest's end.
    pub ends_at_ms: i64,
}

impl Rendered {
    /// Bytes held in the cache for it.
    fn weight(&self) -> usize {
        self.text.len() + self.participants.len() * 16 + 64
    }
}

struct Slot {
    key: Key,
    rendered: Arc<Rendered>,
    last_used: u64,
}

#[derive(Default)]
struct Slots {
    by_contest: HashMap<ContestId, Slot>,
    bytes: usize,
    clock: u64,
}

/// The node's cache (one per [`Scoring`], i.e. per service instance).
pub struct LeaderboardCache {
    slots: Mutex<Slots>,
    /// One lock per contest being computed, so that concurrent misses compute it once.
    computing: Mutex<HashMap<ContestId, Arc<tokio::sync::Mutex<()>>>>,
    max_entries: usize,
    max_bytes: usize,
}

impl Default for LeaderboardCache {
    fn default() -> Self {
        LeaderboardCache::with_bounds(MAX_ENTRIES, MAX_BYTES)
    }
}

impl LeaderboardCache {
    /// A cache holding at most `max_entries` answers and `max_bytes` bytes.
    pub fn with_bounds(max_entries: usize, max_bytes: usize) -> Self {
        LeaderboardCache { slots: Mutex::default(), computing: Mutex::default(), max_entries, max_bytes }
    }

    fn get(&self, contest: ContestId, key: &Key) -> Option<Arc<Rendered>> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.clock += 1;
        let clock = slots.clock;
        let slot = slots.by_contest.get_mut(&contest)?;
        if slot.key != *key {
            return None;
        }
        slot.last_used = clock;
        Some(slot.rendered.clone())
    }

    fn insert(&self, contest: ContestId, key: Key, rendered: Arc<Rendered>) {
        let weight = rendered.weight();
        if weight > self.max_bytes || self.max_entries == 0 {
            return;
        }
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        slots.clock += 1;
        let clock = slots.clock;
        if let Some(old) = slots.by_contest.insert(contest, Slot { key, rendered, last_used: clock }) {
            slots.bytes -= old.rendered.weight();
        }
        slots.bytes += weight;
        while slots.by_contest.len() > self.max_entries || slots.bytes > self.max_bytes {
            let Some(oldest) = slots.by_contest.iter().min_by_key(|(_, s)| s.last_used).map(|(c, _)| *c) else {
                break;
            };
            if let Some(gone) = slots.by_contest.remove(&oldest) {
                slots.bytes -= gone.rendered.weight();
            }
        }
    }

    /// Drops every answer of `tenant` (offboarded: its names go from memory too).
    pub(crate) fn forget_tenant(&self, tenant: TenantId) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let gone: Vec<ContestId> =
            slots.by_contest.iter().filter(|(_, s)| s.key.tenant == tenant).map(|(c, _)| *c).collect();
        for contest in gone {
            if let Some(slot) = slots.by_contest.remove(&contest) {
                slots.bytes -= slot.rendered.weight();
            }
        }
    }

    /// The lock of one contest's computation.
    fn computing(&self, contest: ContestId) -> Arc<tokio::sync::Mutex<()>> {
        let mut computing = self.computing.lock().unwrap_or_else(PoisonError::into_inner);
        computing.retain(|_, lock| Arc::strong_count(lock) > 1);
        computing.entry(contest).or_default().clone()
    }

    /// Entries and bytes held.
    #[cfg(test)]
    fn size(&self) -> (usize, usize) {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        (slots.by_contest.len(), slots.bytes)
    }
}

impl Scoring {
    /// A contest's leaderboard answer: the cached one if its inputs have not changed since,
    /// else computed ([`Scoring::standing`], freezing included), rendered by `render` and
    /// cached. With `viewer`, checks first that they may see it, against the participants
    /// of the answer served.
    pub async fn rendered(
        &self,
        tenant: TenantId,
        contest: ContestId,
        viewer: Option<&Principal>,
        render: impl FnOnce(&Standing) -> String,
    ) -> Result<Arc<Rendered>> {
        let cache = self.leaderboards();
        let versions = self.store().leaderboard_versions(tenant, contest).await?;
        let mut key = Key::of(tenant, &versions, now_ms());
        if let Some(hit) = key.as_ref().and_then(|k| cache.get(contest, k)) {
            return self.checked(viewer, hit).await;
        }
        // A miss: one computation at a time per contest; who waited for it reads the
        // versions again and most likely finds the answer just computed.
        let lock = cache.computing(contest);
        let _computing = lock.lock().await;
        if key.is_some() {
            let versions = self.store().leaderboard_versions(tenant, contest).await?;
            key = Key::of(tenant, &versions, now_ms());
            if let Some(hit) = key.as_ref().and_then(|k| cache.get(contest, k)) {
                return self.checked(viewer, hit).await;
            }
        }
        let stored = self.store().contest(tenant, contest).await?;
        if let Some(p) = viewer {
            self.may_see(p, &stored.participants).await?;
        }
        let standing = self.standing(tenant, stored).await?;
        let rendered = Arc::new(Rendered {
            text: render(&standing).into(),
            is_final: standing.status == Status::Final,
            ends_at_ms: standing.contest.ends_at_ms,
            participants: standing.contest.participants,
        });
        if let Some(key) = key {
            cache.insert(contest, key, rendered.clone());
        }
        Ok(rendered)
    }

    /// `hit` once `viewer` (when given) may see it.
    async fn checked(&self, viewer: Option<&Principal>, hit: Arc<Rendered>) -> Result<Arc<Rendered>> {
        if let Some(p) = viewer {
            self.may_see(p, &hit.participants).await?;
        }
        Ok(hit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::UserId;

    fn answer(bytes: usize, users: usize) -> Arc<Rendered> {
        Arc::new(Rendered {
            text: "x".repeat(bytes).into(),
            participants: Participants::Users((0..users).map(|_| UserId::new()).collect()),
            is_final: false,
            ends_at_ms: 0,
        })
    }

    fn key(tenant: TenantId, standing: i64) -> Key {
        Key { tenant, standing, definition: 0, inputs: 0, phase: Phase::Running }
    }

    #[test]
    fn the_cache_stays_within_its_bounds_evicting_the_least_recently_used() {
        let tenant = TenantId::new();
        let cache = LeaderboardCache::with_bounds(3, 10_000);
        let contests: Vec<ContestId> = (0..5).map(|_| ContestId::new()).collect();
        for c in &contests[..3] {
            cache.insert(*c, key(tenant, 1), answer(1_000, 10));
        }
        assert_eq!(cache.size().0, 3);
        // The first is used again: the second is now the least recently used.
        assert!(cache.get(contests[0], &key(tenant, 1)).is_some());
        cache.insert(contests[3], key(tenant, 1), answer(1_000, 10));
        assert_eq!(cache.size().0, 3);
        assert!(cache.get(contests[1], &key(tenant, 1)).is_none(), "evicted");
        assert!(cache.get(contests[0], &key(tenant, 1)).is_some());
        // By bytes: a big answer pushes the older ones out until it fits.
        cache.insert(contests[4], key(tenant, 1), answer(8_000, 10));
        let (entries, bytes) = cache.size();
        assert!(bytes <= 10_000, "{bytes} bytes held");
        assert!(entries < 3, "{entries} entries");
        assert!(cache.get(contests[4], &key(tenant, 1)).is_some());
        // An answer larger than the whole budget is not kept at all.
        cache.insert(contests[2], key(tenant, 1), answer(20_000, 0));
        assert!(cache.get(contests[2], &key(tenant, 1)).is_none());
        assert!(cache.size().1 <= 10_000);
        // Replacing an entry accounts for the bytes of the one replaced.
        let before = cache.size();
        cache.insert(contests[4], key(tenant, 2), answer(8_000, 10));
        assert_eq!(cache.size(), before);
    }

    #[test]
    fn an_answer_serves_only_its_own_versions_and_phase() {
        let tenant = TenantId::new();
        let cache = LeaderboardCache::default();
        let contest = ContestId::new();
        cache.insert(contest, key(tenant, 1), answer(10, 1));
        assert!(cache.get(contest, &key(tenant, 1)).is_some());
        assert!(cache.get(contest, &key(tenant, 2)).is_none());
        assert!(cache.get(contest, &Key { inputs: 1, ..key(tenant, 1) }).is_none());
        assert!(cache.get(contest, &Key { definition: 1, ..key(tenant, 1) }).is_none());
        assert!(cache.get(contest, &Key { phase: Phase::Final, ..key(tenant, 1) }).is_none());
        assert!(cache.get(contest, &key(TenantId::new(), 1)).is_none());
    }

    #[test]
    fn the_phase_follows_the_clock_and_an_unfrozen_end_is_never_cached() {
        let tenant = TenantId::new();
        let v = LeaderboardVersions {
            standing: 1,
            definition: 2,
            inputs: Some(3),
            starts_at_ms: 100,
            ends_at_ms: 200,
            frozen: false,
            format: "leaderboard".to_owned(),
        };
        assert_eq!(Key::of(tenant, &v, 50).map(|k| k.phase), Some(Phase::Scheduled));
        assert_eq!(Key::of(tenant, &v, 100).map(|k| k.phase), Some(Phase::Running));
        assert_eq!(Key::of(tenant, &v, 200), None);
        let frozen = LeaderboardVersions { frozen: true, ..v.clone() };
        assert_eq!(Key::of(tenant, &frozen, 300).map(|k| k.phase), Some(Phase::Final));
        assert_eq!(Key::of(tenant, &LeaderboardVersions { inputs: None, ..v.clone() }, 150), None);
        // A format not checked for caching is computed at every read.
        assert_eq!(Key::of(tenant, &LeaderboardVersions { format: "lottery".to_owned(), ..v }, 150), None);
    }
}
