//! Contests: creating them and reading their leaderboards.
//!
//! A contest ranks its participants (users, or teams as the sum of their members) by one
//! metric over the instants `[starts_at, ends_at)`. The ranking rules, tie-break included,
//! are [`crate::engine::ranking`]'s: standard competition ranks, and on equal values the
//! participant who reached the value earlier (their last counting fact in the window is
//! older) ranks higher. Every participant is listed, zeros included.
//!
//! Results are frozen at the end: the first read after `ends_at` stores the final standing
//! and every later read serves that stored standing, whatever the CRM says afterwards.

use std::collections::{BTreeSet, HashMap};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use jiff::tz::TimeZone;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, User};
use super::kpis::{metric_kind, render};
use super::tenants::{audit, check_name, parse_id};
use crate::engine::{Contender, DatedValue, rank};
use crate::ingest::MetricKind;
use crate::store::types::now_ms;
use crate::store::{
    Actor, Contest, ContestId, DatedFact, NewContest, Participants, Principal, Role, TeamId, Tenant, UserId,
};

/// The formats this version runs.
const FORMATS: [&str; 1] = ["leaderboard"];

/// The most participants one contest may have.
pub(super) const MAX_PARTICIPANTS: usize = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewContestBody {
    name: String,
    metric: String,
    #[serde(default = "default_format")]
    format: String,
    starts_at: String,
    ends_at: String,
    participants: ParticipantsBody,
}

fn default_format() -> String {
    FORMATS[0].to_owned()
}

/// `{"users":[…]}` or `{"teams":[…]}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
enum ParticipantsBody {
    Users(Vec<String>),
    Teams(Vec<String>),
}

/// The tenant and its time zone.
pub(super) async fn tenant_zone(state: &AppState, p: &Principal) -> Result<(Tenant, TimeZone), ApiError> {
    let tenant = state.store.tenant(p.tenant_id).await?;
    let tz = TimeZone::get(&tenant.timezone).map_err(|e| ApiError::Internal(anyhow::anyhow!("tenant zone: {e}")))?;
    Ok((tenant, tz))
}

/// The kind of a stored contest's or target's metric; 422 if no installed connector
/// declares it any more.
pub(super) fn stored_metric_kind(state: &AppState, metric: &str) -> Result<MetricKind, ApiError> {
    metric_kind(state, metric).ok_or_else(|| {
        ApiError::unprocessable("metric_unavailable", "no installed connector provides this metric any more")
    })
}

/// An instant as RFC 3339 with the tenant's UTC offset at that instant
/// (`2025-06-01T00:00:00+01:00`).
pub(super) fn instant(ms: i64, tz: &TimeZone) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(ts) => ts.display_with_offset(tz.to_offset(ts)).to_string(),
        Err(_) => crate::cli::output::rfc3339_ms(ms),
    }
}

/// Parses an RFC 3339 instant into milliseconds since the Unix epoch.
fn parse_instant(field: &'static str, text: &str) -> Result<i64, ApiError> {
    let ts: jiff::Timestamp = text.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_field",
            format!("`{field}` must be an RFC 3339 instant with an offset, such as 2025-06-01T00:00:00Z"),
        )
    })?;
    Ok(ts.as_millisecond())
}

/// Parses listed ids: each a UUID (400 otherwise), none twice (400).
fn parse_ids<T: std::str::FromStr + Ord + Copy>(what: &str, raw: &[String]) -> Result<Vec<T>, ApiError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for id in raw {
        let id: T = id.parse().map_err(|_| {
            ApiError::bad_request("invalid_field", format!("`participants.{what}` holds something that is not an id"))
        })?;
        if !seen.insert(id) {
            return Err(ApiError::bad_request("invalid_field", format!("`participants.{what}` lists an id twice")));
        }
        out.push(id);
    }
    Ok(out)
}

/// `POST /v1/contests` (manager+): `{"name","metric","format","starts_at","ends_at",
/// "participants":{"users":[…]}|{"teams":[…]}}` → 201 `{"id"}`.
pub(super) async fn create_contest(
    State(state): State<AppState>,
    user: User,
    ApiJson(body): ApiJson<NewContestBody>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.require_manager()?;
    let name = check_name("name", &body.name)?;
    let starts_at = parse_instant("starts_at", &body.starts_at)?;
    let ends_at = parse_instant("ends_at", &body.ends_at)?;
    let participants = match &body.participants {
        ParticipantsBody::Users(ids) => Participants::Users(parse_ids::<UserId>("users", ids)?),
        ParticipantsBody::Teams(ids) => Participants::Teams(parse_ids::<TeamId>("teams", ids)?),
    };
    metric_kind(&state, &body.metric).ok_or(ApiError::NotFound("metric"))?;
    if !FORMATS.contains(&body.format.as_str()) {
        return Err(ApiError::unprocessable(
            "format_not_supported",
            format!("this contest format is not supported yet; supported: {}", FORMATS.join(", ")),
        ));
    }
    if ends_at <= starts_at {
        return Err(ApiError::unprocessable(
            "empty_window",
            "`ends_at` must be after `starts_at` (`ends_at` is exclusive)",
        ));
    }
    if participants.is_empty() {
        return Err(ApiError::unprocessable("no_participants", "a contest needs at least one participant"));
    }
    if participants.len() > MAX_PARTICIPANTS {
        return Err(ApiError::unprocessable(
            "too_many_participants",
            format!("a contest has at most {MAX_PARTICIPANTS} participants"),
        ));
    }
    let contest = state
        .store
        .create_contest(
            p.tenant_id,
            &NewContest {
                name: &name,
                metric: &body.metric,
                format: &body.format,
                starts_at_ms: starts_at,
                ends_at_ms: ends_at,
                participants: &participants,
                created_by: p.user_id,
            },
        )
        .await?;
    audit(&state, p.tenant_id, Actor::User(p.user_id), "contest.created", &contest.id.to_string()).await?;
    Ok((StatusCode::CREATED, axum::Json(json!({"id": contest.id}))))
}

/// Managers and admins see every contest; a member only those they take part in (as a
/// user, or as a member of a participating team).
async fn may_see(state: &AppState, p: &Principal, contest: &Contest) -> Result<(), ApiError> {
    let allowed = match (p.role, &contest.participants) {
        (Role::Admin | Role::Manager, _) => true,
        (Role::Member, Participants::Users(users)) => users.contains(&p.user_id),
        (Role::Member, Participants::Teams(teams)) => {
            state.store.teams_of(p.tenant_id, p.user_id).await?.iter().any(|t| teams.contains(t))
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::Forbidden("only the contest's participants and managers may see its leaderboard"))
    }
}

/// The standing now, as the answer's `entries`.
async fn standing(
    state: &AppState,
    p: &Principal,
    contest: &Contest,
    kind: MetricKind,
    currency: &str,
) -> Result<Vec<Value>, ApiError> {
    let facts = state.store.dated_facts(p.tenant_id, &contest.metric, contest.starts_at_ms, contest.ends_at_ms).await?;
    let mut by_user: HashMap<UserId, Vec<DatedValue>> = HashMap::new();
    for DatedFact { user_id, at_ms, value } in facts {
        by_user.entry(user_id).or_default().push(DatedValue::new(at_ms, value));
    }
    let (key, contenders): (&str, Vec<Contender<String>>) = match &contest.participants {
        Participants::Users(users) => (
            "user_id",
            users
                .iter()
                .map(|u| Contender::from_facts(u.to_string(), by_user.get(u).map_or(&[][..], Vec::as_slice)))
                .collect(),
        ),
        Participants::Teams(teams) => {
            let mut contenders = Vec::with_capacity(teams.len());
            for team in teams {
                let members = state.store.team_members(p.tenant_id, *team).await?;
                let facts: Vec<DatedValue> = members.iter().filter_map(|m| by_user.get(m)).flatten().copied().collect();
                contenders.push(Contender::from_facts(team.to_string(), &facts));
            }
            ("team_id", contenders)
        }
    };
    Ok(rank(contenders)
        .into_iter()
        .map(|s| json!({"rank": s.rank, key: s.key, "value": render(kind, s.value, currency)}))
        .collect())
}

/// `GET /v1/contests/{id}/leaderboard` (participants, manager+): `{"entries":[{"rank",
/// "user_id"|"team_id","value"}]}`, every participant, best first, with the contest, its
/// state (`scheduled`, `running`, `final`) and when it was frozen.
pub(super) async fn leaderboard(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.0;
    let id: ContestId = parse_id("contest", &id)?;
    let contest = state.store.contest(p.tenant_id, id).await?;
    may_see(&state, &p, &contest).await?;
    let (tenant, tz) = tenant_zone(&state, &p).await?;
    let currency = tenant.currency.as_str();
    let now = now_ms();
    let (entries, frozen_at): (Value, Option<i64>) = match (&contest.frozen, contest.frozen_at_ms) {
        (Some(frozen), Some(at)) => (parse_frozen(frozen)?, Some(at)),
        _ => {
            let kind = stored_metric_kind(&state, &contest.metric)?;
            let entries = standing(&state, &p, &contest, kind, currency).await?;
            if now >= contest.ends_at_ms {
                let (frozen, at) =
                    state.store.freeze_contest(p.tenant_id, contest.id, &Value::Array(entries).to_string()).await?;
                (parse_frozen(&frozen)?, Some(at))
            } else {
                (Value::Array(entries), None)
            }
        }
    };
    let status = if frozen_at.is_some() {
        "final"
    } else if now < contest.starts_at_ms {
        "scheduled"
    } else {
        "running"
    };
    let participants = match contest.participants {
        Participants::Users(_) => "users",
        Participants::Teams(_) => "teams",
    };
    Ok(axum::Json(json!({
        "contest": {
            "id": contest.id,
            "name": contest.name,
            "metric": contest.metric,
            "format": contest.format,
            "starts_at": instant(contest.starts_at_ms, &tz),
            "ends_at": instant(contest.ends_at_ms, &tz),
            "participants": participants,
        },
        "status": status,
        "frozen_at": frozen_at.map(|at| instant(at, &tz)),
        "kind": metric_kind(&state, &contest.metric),
        "currency": currency,
        "entries": entries,
    })))
}

fn parse_frozen(frozen: &str) -> Result<Value, ApiError> {
    serde_json::from_str(frozen).map_err(|e| ApiError::Internal(anyhow::anyhow!("a frozen standing is malformed: {e}")))
}
