//! Leaderboards: a contest's standing as its route and its live streams answer it,
//! computed by [`crate::scoring::standings`] and cached rendered
//! ([`crate::scoring::leaderboard_cache`]).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::extract::DisplayOrUser;
use super::metrics::{Figures, goal_figure};
use super::openapi::ErrorBody;
use super::shared::instant;
use super::tenants::parse_id;
use crate::scoring::leaderboard_cache::Rendered;
use crate::scoring::standings::{Detail, Participant, Standing};
use crate::store::{ContestId, Participants, Principal, TenantId};

/// One row of a leaderboard.
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct LeaderboardEntry {
    /// Standard competition rank (1, 2, 2, 4); equal values are ordered by who reached the
    /// value earlier.
    rank: u64,
    /// In a users contest.
    user_id: Option<uuid::Uuid>,
    /// In a teams contest.
    team_id: Option<uuid::Uuid>,
    /// The participant's figure.
    #[schema(value_type = super::openapi::FigureSchema)]
    value: Value,
    /// Races only: when the participant reached the goal, `null` while they have not.
    reached_goal_at: Option<String>,
    /// `percent_of_target` only: the participant's own goal (the effective goal of their
    /// target's period, a team's own or its members' sum), in the metric's unit; `null`
    /// without one.
    #[schema(value_type = Option<super::openapi::FigureSchema>)]
    goal: Option<Value>,
    /// `percent_of_target` only: `value` as a percent of `goal`, two decimals (ranks compare
    /// the exact ratios); `null` without a goal.
    #[schema(example = 62.5)]
    percent: Option<f64>,
}

/// A participant whose value changed after the result was frozen.
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct LeaderboardFlag {
    /// In a users contest.
    user_id: Option<uuid::Uuid>,
    /// In a teams contest.
    team_id: Option<uuid::Uuid>,
    /// The value in the frozen standing.
    #[schema(value_type = super::openapi::FigureSchema)]
    frozen_value: Value,
    /// The value computed from the facts now.
    #[schema(value_type = super::openapi::FigureSchema)]
    current_value: Value,
    /// `changed_after_freeze`.
    reason: String,
}

/// The contest a leaderboard belongs to.
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct LeaderboardContest {
    id: uuid::Uuid,
    name: String,
    metric: String,
    format: String,
    /// A race's goal; `null` for other formats.
    #[schema(value_type = Option<super::openapi::FigureSchema>)]
    goal: Value,
    starts_at: String,
    ends_at: String,
    /// `users` or `teams`.
    participants: String,
}

/// A contest's standing.
#[derive(Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct Leaderboard {
    /// The contest.
    contest: LeaderboardContest,
    /// `scheduled`, `running` or `final`.
    status: String,
    /// When the final standing was frozen (at the end, by the freezing tick or an earlier read).
    frozen_at: Option<String>,
    /// `count`, `money` or `score`.
    #[schema(value_type = super::metrics::UnitSchema)]
    kind: String,
    /// The tenant currency.
    currency: String,
    /// The winner's user or team id: in a race, the participant ranked first once they
    /// reached the goal; otherwise the participant ranked first once the result is final.
    /// `null` while undecided or when several share first place.
    winner: Option<uuid::Uuid>,
    /// Every participant, zeros included, best first.
    entries: Vec<LeaderboardEntry>,
    /// Once final: participants whose value computed now differs from the frozen one (a fact
    /// retracted, changed or synced after the freeze). The frozen standing does not change.
    flags: Vec<LeaderboardFlag>,
}

/// A contest's leaderboard (its participants, manager+; `display` tokens too).
///
/// Every participant, zeros included, best first, with standard competition ranks; on equal
/// values the one who reached the value earlier ranks higher. A race ranks first those who
/// reached its goal, the earliest first, then by value. The standing is frozen when the end
/// passes (within about a second, without waiting for a read): later reads serve it
/// unchanged, with `flags` listing participants whose value has changed since (retracted or
/// late facts), never silently changing it. Read from stored totals, never from the facts.
#[utoipa::path(get, path = "/v1/contests/{id}/leaderboard", tag = "contests", operation_id = "contest_leaderboard",
    params(("id" = uuid::Uuid, Path, description = "The contest.")),
    responses(
        (status = 200, description = "The standing.", body = Leaderboard),
        (status = 403, description = "A member who does not take part.", body = ErrorBody),
        (status = 404, description = "No such contest in this tenant.", body = ErrorBody),
        (status = 422, description = "Its metric is not available any more (`metric_unavailable`).", body = ErrorBody),
    ))]
pub(super) async fn leaderboard(
    State(state): State<AppState>,
    user: DisplayOrUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let p = user.0;
    let id: ContestId = parse_id("contest", &id)?;
    // The node's cached answer while none of its inputs changed (see `leaderboard_cache`).
    let answer: Arc<Rendered> = rendered(&state, p.tenant_id, id, Some(&p)).await?;
    Ok(respond(&answer))
}

/// A contest's leaderboard answer, rendered, from the node's cache while none of its inputs
/// changed ([`crate::scoring::leaderboard_cache`]); checked against `viewer` when given.
pub(super) async fn rendered(
    state: &AppState,
    tenant: TenantId,
    contest: ContestId,
    viewer: Option<&Principal>,
) -> Result<Arc<Rendered>, ApiError> {
    Ok(state.scoring.rendered(tenant, contest, viewer, |s| render_standing(s).to_string()).await?)
}

/// A rendered answer, `application/json`, without copying the body.
fn respond(rendered: &Rendered) -> Response {
    let body = Body::from(Bytes::from_owner(Text(rendered.text.clone())));
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

/// A shared body as bytes.
struct Text(Arc<str>);

impl AsRef<[u8]> for Text {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// The leaderboard answer of a standing ([`Leaderboard`]).
fn render_standing(s: &Standing) -> Value {
    let c = &s.contest;
    let (currency, tz) = (s.currency.as_str(), &s.tz);
    let key = match c.participants {
        Participants::Users(_) => "user_id",
        Participants::Teams(_) => "team_id",
    };
    let figure = |v: i128| s.figures.figure(v, currency);
    let entries: Vec<Value> = s
        .entries
        .iter()
        .map(|e| {
            let mut entry = json!({"rank": e.rank, key: participant_id(e.participant), "value": figure(e.value)});
            match e.detail {
                Detail::Plain => {}
                Detail::Race { reached_goal_at_ms } => {
                    entry["reached_goal_at"] = json!(reached_goal_at_ms.map(|at| instant(at, tz)));
                }
                Detail::Percent { goal, percent_hundredths } => {
                    entry["goal"] = json!(goal.map(figure));
                    entry["percent"] = json!(percent_hundredths.map(|h| h as f64 / 100.0));
                }
            }
            entry
        })
        .collect();
    let flags: Vec<Value> = s
        .flags
        .iter()
        .map(|f| {
            json!({key: participant_id(f.participant), "frozen_value": figure(f.frozen_value),
                "current_value": f.current_value.map(figure), "reason": "changed_after_freeze"})
        })
        .collect();
    json!({
        "contest": {
            "id": c.id,
            "name": c.name,
            "metric": c.metric,
            "format": c.format,
            "goal": goal_figure(c.goal, s.unit, currency),
            "starts_at": instant(c.starts_at_ms, tz),
            "ends_at": instant(c.ends_at_ms, tz),
            "participants": c.participants.kind(),
        },
        "status": s.status.as_str(),
        "frozen_at": s.frozen_at_ms.map(|at| instant(at, tz)),
        "kind": s.unit,
        "currency": currency,
        "winner": s.winner.map(participant_id),
        "entries": entries,
        "flags": flags,
    })
}

/// A participant's id.
fn participant_id(p: Participant) -> uuid::Uuid {
    match p {
        Participant::User(u) => u.as_uuid(),
        Participant::Team(t) => t.as_uuid(),
    }
}
