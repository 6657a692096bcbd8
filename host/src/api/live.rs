//! Live leaderboards: `GET /v1/contests/{id}/leaderboard/stream` (server-sent events) and the
//! office TV page `GET /tv/contests/{id}` that shows one.
//!
//! ## Events
//! - `standing` — the leaderboard, the very body `GET /v1/contests/{id}/leaderboard`
//!   answers. The first event, then again whenever the standing changes (an identical
//!   standing is never sent twice). The first one carries a `retry:` hint.
//! - `names` — once, after the first standing: participant id → display name (the tenant's
//!   users or teams), for screens that show names.
//! - `final` — the frozen result, once the contest has ended; the stream then ends.
//! - `error` — the usual error body, when the standing can no longer be read for this
//!   viewer (the contest was deleted, they no longer take part); the stream then ends.
//! - keep-alive comments (`: keep-alive`) every 15 s, or `keep_alive_secs`.
//!
//! A node that shuts down ends its streams (no event): `EventSource` reconnects after the
//! `retry:` delay, to another node behind the same address.
//!
//! ## When a new standing is computed
//! The scheduler announces every successful commit of this node's syncs (a checkpoint or
//! the end of a run) on its change feed ([`crate::scheduler::FactsCommitted`]: tenant,
//! connector, metrics touched). One task here reads it and bumps the *generation* of every
//! watched contest of that tenant whose metric is touched (the metric itself, or a term of
//! the composite it ranks by). A stream that sees a new generation waits out its coalescing
//! delay (at most one recompute per [`COALESCE`] per stream, so a burst of commits costs
//! one), then asks the contest's shared [`Feed`] for the standing of that generation: the
//! first stream to ask computes it, the others get the cached one. N viewers of a contest
//! cost one computation per change, not N.
//!
//! Another node's commits do not reach this node's feed. So every stream also polls every
//! [`POLL`]: it accepts a cached standing computed since the previous poll, or computes a
//! new one (again shared by the contest's streams); a change committed elsewhere shows up
//! within two poll periods. The same poll notices a contest starting, or a composite metric
//! redefined while watched; a timer at the contest's end fetches (and so freezes) the final
//! result at once.
//!
//! ## Access
//! The leaderboard's own rules (participants, managers and admins; another tenant's contest
//! is 404), checked when the stream opens and again at every poll: a revoked token, an
//! erased user or a member no longer taking part ends the stream with an `error` event.
//! Browsers' `EventSource` cannot set an `Authorization` header, so this route, and only
//! this one, also takes a `display` token as `?access_token=` or a one-time `?ticket=`
//! (`POST /v1/contests/{id}/stream-tickets`: 60 s, one connection, consumed atomically in
//! the database). A `full` token in the URL is refused (401 `token_in_url`): URLs end up in
//! browser history and proxy logs. This service logs the matched route only, never the
//! query. Open streams are capped per token and per tenant on each node
//! ([`super::security`]).
//!
//! ## The TV page
//! A self-contained page (inline CSS and script, no other host, a nonce-based Content
//! Security Policy, no referrer). Open it as `/tv/contests/{id}#token=…` with a `display`
//! token: the fragment never leaves the browser (`?token=` works too, but reaches the
//! server, which refuses a `full` token there). `#ticket=…` opens one connection only. The
//! page reads the credential, removes it from the address bar and history, and puts it
//! only in the stream URL on the same origin. The server never writes it into the page.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{broadcast, watch};

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiQuery, ClientAddr, User, bearer_principal, principal_of_token};
use super::openapi::ErrorBody;
use super::security::StreamSlot;
use super::tenants::parse_id;
use crate::scheduler::{FactsCommitted, Scheduler};
use crate::store::types::now_ms;
use crate::store::{ContestId, Participants, Principal, Scope, TenantId};

/// Default interval between keep-alive comments.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The shortest and longest keep-alive interval a client may ask for (seconds).
const KEEP_ALIVE_SECS: std::ops::RangeInclusive<u64> = 1..=60;
/// How often a stream checks for changes committed by other nodes.
pub const POLL: Duration = Duration::from_secs(3);
/// The least time between two recomputes asked for by one stream.
pub const COALESCE: Duration = Duration::from_millis(250);
/// The reconnection delay suggested to clients.
const RETRY: Duration = Duration::from_secs(3);

/// The live leaderboards of this node: the contests being watched, each with its shared
/// standing, and the task that turns the scheduler's change feed into their generations.
pub struct Live {
    feeds: Arc<Mutex<HashMap<ContestId, Weak<Feed>>>>,
    poll: Duration,
    /// `true` once the node shuts down: every stream ends (clients reconnect elsewhere),
    /// so that draining HTTP connections does not wait for them.
    stopping: watch::Receiver<bool>,
}

impl Live {
    /// Follows the scheduler's change feed ([`Scheduler::changes`]); ends every stream when
    /// it stops claiming ([`Scheduler::stop_claiming`], the first step of a shutdown). Call
    /// inside the tokio runtime.
    pub fn start(scheduler: &Scheduler) -> Self {
        let feeds = Arc::new(Mutex::new(HashMap::new()));
        tokio::spawn(dispatch(scheduler.changes().subscribe(), Arc::downgrade(&feeds)));
        Live { feeds, poll: POLL, stopping: scheduler.stopping() }
    }

    /// The shared feed of a contest, created for its first viewer.
    fn feed(&self, tenant: TenantId, contest: ContestId, metrics: BTreeSet<String>) -> Arc<Feed> {
        let mut feeds = self.feeds.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(feed) = feeds.get(&contest).and_then(Weak::upgrade) {
            return feed;
        }
        feeds.retain(|_, f| f.strong_count() > 0);
        let feed = Arc::new(Feed {
            tenant,
            metrics,
            generation: watch::Sender::new(0),
            cached: tokio::sync::Mutex::new(None),
        });
        feeds.insert(contest, Arc::downgrade(&feed));
        feed
    }
}

/// Bumps the generation of every watched contest a commit concerns.
async fn dispatch(
    mut changes: broadcast::Receiver<FactsCommitted>,
    feeds: Weak<Mutex<HashMap<ContestId, Weak<Feed>>>>,
) {
    loop {
        let received = changes.recv().await;
        let Some(feeds) = feeds.upgrade() else { return };
        let watched: Vec<Arc<Feed>> =
            feeds.lock().unwrap_or_else(PoisonError::into_inner).values().filter_map(Weak::upgrade).collect();
        match received {
            Ok(commit) => {
                for feed in watched {
                    if feed.tenant == commit.tenant_id && commit.metrics.iter().any(|m| feed.metrics.contains(m)) {
                        feed.bump();
                    }
                }
            }
            // Announcements were missed: any contest may have changed.
            Err(broadcast::error::RecvError::Lagged(_)) => watched.iter().for_each(|f| f.bump()),
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// One watched contest: what concerns it, its generation, its last computed standing.
struct Feed {
    tenant: TenantId,
    /// The connector metrics its standing depends on.
    metrics: BTreeSet<String>,
    /// Bumped on every commit that touches one of `metrics`.
    generation: watch::Sender<u64>,
    /// The last standing computed, shared by the contest's streams. Locked while one is
    /// computed, so that concurrent askers wait for it instead of computing it again.
    cached: tokio::sync::Mutex<Option<Cached>>,
}

struct Cached {
    /// The generation when its computation started.
    generation: u64,
    /// When its computation started.
    started: Instant,
    standing: Standing,
}

impl Feed {
    fn bump(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// The standing as of `generation` at least, its computation started no earlier than
    /// `not_before` when given: the cached one if it qualifies, else a new one.
    async fn standing(
        &self,
        state: &AppState,
        contest: ContestId,
        generation: u64,
        not_before: Option<Instant>,
    ) -> Result<Standing, ApiError> {
        self.standing_with(generation, not_before, || compute(state, self.tenant, contest)).await
    }

    /// [`Feed::standing`] with the computation given.
    async fn standing_with<F, Fut>(
        &self,
        generation: u64,
        not_before: Option<Instant>,
        compute: F,
    ) -> Result<Standing, ApiError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Standing, ApiError>>,
    {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && c.generation >= generation
            && not_before.is_none_or(|t| c.started >= t)
        {
            return Ok(c.standing.clone());
        }
        let generation = *self.generation.borrow();
        let started = Instant::now();
        let standing = compute().await?;
        *cached = Some(Cached { generation, started, standing: standing.clone() });
        Ok(standing)
    }
}

/// A computed leaderboard.
#[derive(Clone)]
struct Standing {
    /// The JSON body, as `GET …/leaderboard` answers it.
    body: Arc<str>,
    /// Whether it is the frozen result.
    is_final: bool,
    /// The contest's end, in milliseconds since the Unix epoch.
    ends_at_ms: Option<i64>,
}

/// The current standing of a contest of `tenant`: the leaderboard route's own answer,
/// freezing included, from the node's cache while nothing it depends on changed
/// ([`crate::scoring::leaderboard_cache`]).
async fn compute(state: &AppState, tenant: TenantId, contest: ContestId) -> Result<Standing, ApiError> {
    let rendered = super::leaderboard::rendered(state, tenant, contest, None).await?;
    Ok(Standing { is_final: rendered.is_final, ends_at_ms: Some(rendered.ends_at_ms), body: rendered.text.clone() })
}

/// How to stream.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct StreamQuery {
    /// A `display` token, for clients that cannot set an `Authorization` header (a
    /// browser's `EventSource`). A `full` token is refused here (401 `token_in_url`): URLs
    /// end up in histories and proxy logs.
    access_token: Option<String>,
    /// A one-time stream ticket (`POST /v1/contests/{id}/stream-tickets`): one connection
    /// within its lifetime.
    ticket: Option<String>,
    /// Seconds between keep-alive comments, 1 to 60 (default 15).
    #[param(minimum = 1, maximum = 60)]
    keep_alive_secs: Option<u64>,
}

/// The refusal of a `full` token in a URL.
const FULL_TOKEN_IN_URL: &str = "a full-access token may not be put in a URL (it would end up in browser history \
     and proxy logs): use a display token (`POST /v1/users/{id}/tokens` with `\"scope\":\"display\"`) or a one-time \
     stream ticket (`POST /v1/contests/{id}/stream-tickets`, then `?ticket=`), or send the token in the \
     `Authorization` header";

/// Who watches: from the `Authorization` header (any scope), a `display` token as
/// `access_token`, or a stream ticket for this contest (used up here).
async fn viewer(
    state: &AppState,
    addr: Option<std::net::IpAddr>,
    headers: &HeaderMap,
    contest: &str,
    q: &StreamQuery,
) -> Result<Principal, ApiError> {
    let given = usize::from(headers.contains_key(header::AUTHORIZATION))
        + usize::from(q.access_token.is_some())
        + usize::from(q.ticket.is_some());
    if given > 1 {
        return Err(ApiError::bad_request(
            "invalid_query",
            "give one credential: the `Authorization` header, `access_token` or `ticket`",
        ));
    }
    if let Some(token) = &q.access_token {
        let p = principal_of_token(state, addr, token).await?;
        return match p.scope {
            Scope::Display => Ok(p),
            Scope::Full => Err(ApiError::UnauthorizedBecause { code: "token_in_url", message: FULL_TOKEN_IN_URL }),
        };
    }
    if let Some(ticket) = &q.ticket {
        return match state.store.consume_stream_ticket(ticket).await? {
            Some((p, for_contest)) if for_contest.to_string() == contest => Ok(p),
            _ => Err(state.security.failed(addr, ApiError::Unauthorized)),
        };
    }
    let (mut parts, ()) = axum::http::Request::new(()).into_parts();
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        parts.headers.insert(header::AUTHORIZATION, value.clone());
    }
    if let Some(addr) = addr {
        // `bearer_principal` reads the address from the connection info.
        parts.extensions.insert(axum::extract::ConnectInfo(std::net::SocketAddr::new(addr, 0)));
    }
    bearer_principal(&parts, state).await
}

/// A contest's leaderboard, live (its participants, manager+), as server-sent events.
///
/// `text/event-stream`: first a `standing` event (the body of `GET …/leaderboard`, with a
/// `retry:` hint), then `names` (participant id → display name), then a new `standing`
/// whenever synced data changes it (never the same one twice; bursts coalesced), keep-alive
/// comments every 15 s (`keep_alive_secs`), and a `final` event with the frozen result when
/// the contest ends, which ends the stream. An `error` event (the usual error body) ends it
/// when the standing can no longer be read. Changes committed on other nodes show up within
/// a few seconds. Browsers' `EventSource` cannot set headers: this route also takes a
/// `display` token as `access_token`, or a one-time `ticket` (`POST
/// /v1/contests/{id}/stream-tickets`); a `full` token in the URL is refused (401
/// `token_in_url`). Open streams are capped per token and per tenant on each node (429
/// `too_many_streams`).
#[utoipa::path(get, path = "/v1/contests/{id}/leaderboard/stream", tag = "contests",
    operation_id = "contest_leaderboard_stream",
    params(("id" = uuid::Uuid, Path, description = "The contest."), StreamQuery),
    responses(
        (status = 200, description = "The event stream: each event follows `StreamEvent`.", content_type = "text/event-stream", body = super::openapi::StreamEventSchema),
        (status = 400, description = "An unknown parameter, `keep_alive_secs` out of 1..=60, or more than one credential.", body = ErrorBody),
        (status = 401, description = "No valid token or ticket (`unauthorized`), or a full token in the URL (`token_in_url`).", body = ErrorBody),
        (status = 429, description = "Too many open streams for this token or tenant (`too_many_streams`), or too many failed authentications from this address.", body = ErrorBody),
        (status = 403, description = "A member who does not take part.", body = ErrorBody),
        (status = 404, description = "No such contest in this tenant.", body = ErrorBody),
        (status = 422, description = "Its metric is not available any more (`metric_unavailable`).", body = ErrorBody),
    ))]
pub(super) async fn leaderboard_stream(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ClientAddr(addr): ClientAddr,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<StreamQuery>,
) -> Result<Response, ApiError> {
    let keep_alive = match q.keep_alive_secs {
        None => KEEP_ALIVE,
        Some(s) if KEEP_ALIVE_SECS.contains(&s) => Duration::from_secs(s),
        Some(_) => return Err(ApiError::bad_request("invalid_query", "`keep_alive_secs` must be 1 to 60")),
    };
    let p = viewer(&state, addr, &headers, &id, &q).await?;
    let id: ContestId = parse_id("contest", &id)?;
    let contest = state.store.contest(p.tenant_id, id).await?;
    state.scoring.may_see(&p, &contest.participants).await?;
    let slot = state.security.open_stream(&p)?;
    let mut metrics: BTreeSet<String> = match state.scoring.resolve(p.tenant_id, &contest.metric).await? {
        Some(resolved) => resolved.terms.into_iter().map(|t| t.metric).collect(),
        None => BTreeSet::new(),
    };
    metrics.insert(contest.metric.clone());
    let feed = state.live.feed(p.tenant_id, id, metrics);

    // The first standing: one computed since this request came (shared with the streams
    // that open at the same time).
    let opened = Instant::now();
    let mut generation = feed.generation.subscribe();
    let at_generation = *generation.borrow_and_update();
    let first = feed.standing(&state, id, at_generation, Some(opened)).await?;
    let names = names(&state, p.tenant_id, &contest.participants).await?;

    let poll = state.live.poll;
    let mut viewer = Viewer {
        state: state.clone(),
        principal: p,
        _slot: slot,
        participants: contest.participants,
        contest: id,
        feed,
        generation,
        last: first.body.clone(),
        last_compute: opened,
        poll: tokio::time::interval_at(tokio::time::Instant::now() + poll, poll),
        poll_period: poll,
        end_at: None,
        stopping: state.live.stopping.clone(),
        queue: VecDeque::new(),
        done: false,
    };
    viewer.poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    viewer.queue.push_back(Event::default().event("standing").retry(RETRY).data(&*first.body));
    viewer.queue.push_back(Event::default().event("names").data(names.to_string()));
    if first.is_final {
        viewer.queue.push_back(Event::default().event("final").data(&*first.body));
        viewer.done = true;
    } else if let Some(ends) = first.ends_at_ms {
        // A little after the end, so that the read freezes the result.
        let wait = Duration::from_millis(u64::try_from(ends.saturating_sub(now_ms())).unwrap_or(0).saturating_add(50));
        // An end too far ahead for the clock: the polls will see it.
        viewer.end_at = tokio::time::Instant::now().checked_add(wait);
    }
    let events = futures_util::stream::unfold(viewer, |mut v| async move {
        let event = v.next().await?;
        Some((Ok::<_, Infallible>(event), v))
    });
    let sse = Sse::new(events).keep_alive(KeepAlive::new().interval(keep_alive).text("keep-alive"));
    // Tells buffering reverse proxies (nginx) to pass events on at once.
    Ok(([("x-accel-buffering", "no")], sse).into_response())
}

/// A one-time stream ticket.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct StreamTicket {
    /// Opens one `…/leaderboard/stream?ticket=` connection to this contest before it
    /// expires; used up by that connection (on whichever node).
    ticket: String,
    /// When it expires (RFC 3339, UTC): 60 s after it was issued.
    expires_at: String,
}

/// Issues a one-time ticket for one stream connection to a contest's leaderboard (whoever
/// may see the leaderboard, with a full token).
///
/// For browsers, which cannot send an `Authorization` header on a stream: put the ticket,
/// not a token, in the URL. Valid 60 s and for one connection; it acts as the token that
/// asked for it (revoking that token ends the stream at its next check). Kept only as a
/// hash.
#[utoipa::path(post, path = "/v1/contests/{id}/stream-tickets", tag = "contests", operation_id = "create_stream_ticket",
    params(("id" = uuid::Uuid, Path, description = "The contest.")),
    responses(
        (status = 201, description = "Issued.", body = StreamTicket),
        (status = 403, description = "A member who does not take part, or a display token.", body = ErrorBody),
        (status = 404, description = "No such contest in this tenant.", body = ErrorBody),
    ))]
pub(super) async fn create_stream_ticket(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<(axum::http::StatusCode, axum::Json<StreamTicket>), ApiError> {
    let p = user.0;
    let id: ContestId = parse_id("contest", &id)?;
    let contest = state.store.contest(p.tenant_id, id).await?;
    state.scoring.may_see(&p, &contest.participants).await?;
    let ttl = i64::try_from(state.security.config().stream_ticket_ttl.as_millis()).unwrap_or(60_000);
    let (ticket, expires) = state.store.issue_stream_ticket(p.tenant_id, p.token_id, id, ttl).await?;
    Ok((axum::http::StatusCode::CREATED, axum::Json(StreamTicket { ticket, expires_at: super::tenants::utc(expires) })))
}

/// Participant id → display name: tenant account data, shown to those who may see the
/// leaderboard.
async fn names(state: &AppState, tenant: TenantId, participants: &Participants) -> Result<Value, ApiError> {
    let mut out = serde_json::Map::new();
    match participants {
        Participants::Users(ids) => {
            let wanted: BTreeSet<_> = ids.iter().collect();
            for u in state.store.users(tenant).await? {
                if wanted.contains(&u.id) {
                    out.insert(u.id.to_string(), Value::String(u.name));
                }
            }
        }
        Participants::Teams(ids) => {
            let wanted: BTreeSet<_> = ids.iter().collect();
            for t in state.store.teams(tenant).await? {
                if wanted.contains(&t.id) {
                    out.insert(t.id.to_string(), Value::String(t.name));
                }
            }
        }
    }
    Ok(Value::Object(out))
}

/// What woke a stream.
enum Wake {
    /// The node shuts down.
    Stop,
    /// A commit of this node concerns the contest.
    Change,
    /// Time to look for other nodes' commits.
    Poll(Instant),
    /// The contest has just ended.
    End,
}

/// One open stream.
struct Viewer {
    state: AppState,
    /// Who watches, with the token they watch with (checked again at every poll).
    principal: Principal,
    /// Its place in the stream caps, given back when the stream ends.
    _slot: StreamSlot,
    participants: Participants,
    contest: ContestId,
    feed: Arc<Feed>,
    generation: watch::Receiver<u64>,
    /// The body of the last `standing` sent.
    last: Arc<str>,
    last_compute: Instant,
    poll: tokio::time::Interval,
    poll_period: Duration,
    /// When the contest ends (while it has not yet).
    end_at: Option<tokio::time::Instant>,
    stopping: watch::Receiver<bool>,
    queue: VecDeque<Event>,
    done: bool,
}

impl Viewer {
    /// The next event to send, waiting for one; `None` ends the stream.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some(event);
            }
            if self.done {
                return None;
            }
            self.step().await;
        }
    }

    /// Waits for a change, a poll or the end, then reads the standing.
    async fn step(&mut self) {
        let end_at = self.end_at.unwrap_or_else(tokio::time::Instant::now);
        let woken = tokio::select! {
            _ = self.stopping.wait_for(|s| *s) => Wake::Stop,
            changed = self.generation.changed() => if changed.is_ok() { Wake::Change } else { Wake::Stop },
            tick = self.poll.tick() => Wake::Poll(tick.into_std()),
            () = tokio::time::sleep_until(end_at), if self.end_at.is_some() => Wake::End,
        };
        // The oldest computation acceptable: any for a change of this node (the generation
        // says whether it is recent enough); for a poll, one since the previous poll; at the
        // end, one after it.
        let not_before = match woken {
            Wake::Stop => {
                self.done = true;
                return;
            }
            Wake::Change => None,
            Wake::Poll(at) => {
                if let Err(e) = self.still_allowed().await {
                    self.fail(e);
                    return;
                }
                Some(at.checked_sub(self.poll_period).unwrap_or(at))
            }
            Wake::End => {
                self.end_at = None;
                Some(Instant::now())
            }
        };
        let since = self.last_compute.elapsed();
        if since < COALESCE {
            tokio::time::sleep(COALESCE - since).await;
        }
        // Every change seen so far, bursts during the wait included.
        let generation = *self.generation.borrow_and_update();
        self.last_compute = Instant::now();
        match self.feed.standing(&self.state, self.contest, generation, not_before).await {
            Ok(standing) => {
                if *standing.body != *self.last {
                    self.queue.push_back(Event::default().event("standing").data(&*standing.body));
                    self.last = standing.body.clone();
                }
                if standing.is_final {
                    self.queue.push_back(Event::default().event("final").data(&*standing.body));
                    self.done = true;
                }
            }
            Err(failure) => self.fail(failure),
        }
    }

    /// Whether the viewer's token still names someone who may watch (a revoked token, a
    /// deleted user or a member no longer taking part ends the stream).
    async fn still_allowed(&self) -> Result<(), ApiError> {
        let p = self.principal;
        let p = self.state.store.token_principal(p.tenant_id, p.token_id).await?.ok_or(ApiError::Unauthorized)?;
        Ok(self.state.scoring.may_see(&p, &self.participants).await?)
    }

    /// Ends the stream with an `error` event, unless the trouble may pass (the database):
    /// then the next poll tries again.
    fn fail(&mut self, error: ApiError) {
        if error.status().is_server_error() {
            match &error {
                ApiError::Internal(e) => {
                    tracing::warn!(error = format!("{e:#}"), "a live leaderboard could not be read")
                }
                other => tracing::warn!(code = other.code(), "a live leaderboard could not be read"),
            }
            return;
        }
        let body = serde_json::json!({"error": {"code": error.code(), "message": error.to_string()}});
        self.queue.push_back(Event::default().event("error").data(body.to_string()));
        self.done = true;
    }
}

/// The office TV page: see the module documentation. A token in its query (`?token=`)
/// reaches the server: a `full` one is refused (401 `token_in_url`), an invalid one is a
/// failed authentication (401).
#[utoipa::path(get, path = "/tv/contests/{id}", tag = "contests", operation_id = "tv_page",
    description = "The office TV page of a contest: a self-contained HTML page (no external assets, a strict \
        content security policy) that shows the live leaderboard full screen. It reads the stream with a \
        `display` token or a one-time ticket that the page takes from its own address (`#token=` or `?token=`) \
        and then removes from the address bar. The page itself needs no credentials; a `token` in its query is \
        checked: a `full` token is refused (401 `token_in_url`).",
    params(
        ("id" = String, Path, description = "The contest."),
        ("token" = Option<String>, Query, description = "A `display` token (checked, never written into the page)."),
    ),
    responses(
        (status = 200, description = "The page.", content_type = "text/html", body = String),
        (status = 401, description = "A `full` token (`token_in_url`) or an invalid token in the query.", body = ErrorBody),
        (status = 404, description = "Not a contest id.", body = ErrorBody),
        (status = 429, description = "Too many failed authentications from this address.", body = ErrorBody),
    ))]
pub(super) async fn tv_page(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ClientAddr(addr): ClientAddr,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    if id.parse::<uuid::Uuid>().is_err() {
        return ApiError::NotFound("contest").into_response();
    }
    let token = query.as_deref().and_then(|q| url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "token"));
    if let Some((_, token)) = token {
        match principal_of_token(&state, addr, &token).await {
            Ok(p) if p.scope == Scope::Display => {}
            Ok(_) => {
                return ApiError::UnauthorizedBecause { code: "token_in_url", message: FULL_TOKEN_IN_URL }
                    .into_response();
            }
            Err(e) => return e.into_response(),
        }
    }
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).expect("the operating system's random source is available");
    let nonce = hex::encode(nonce);
    let page = include_str!("tv.html").replace("{{NONCE}}", &nonce);
    let policy = format!(
        "default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; connect-src 'self'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    );
    let policy = HeaderValue::from_str(&policy).expect("a hex nonce is a valid header value");
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
            (header::CONTENT_SECURITY_POLICY, policy),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        page,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn feed() -> Arc<Feed> {
        Arc::new(Feed {
            tenant: TenantId::new(),
            metrics: BTreeSet::new(),
            generation: watch::Sender::new(0),
            cached: tokio::sync::Mutex::new(None),
        })
    }

    /// `viewers` streams ask at once; each computation takes a while and is numbered.
    async fn ask(
        feed: &Arc<Feed>,
        computed: &Arc<AtomicUsize>,
        viewers: usize,
        not_before: Option<Instant>,
    ) -> Vec<String> {
        let asks = (0..viewers).map(|_| {
            let (feed, computed) = (feed.clone(), computed.clone());
            tokio::spawn(async move {
                let generation = *feed.generation.borrow();
                let standing = feed
                    .standing_with(generation, not_before, || async {
                        let n = computed.fetch_add(1, Ordering::SeqCst) + 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok(Standing { body: format!("standing {n}").into(), is_final: false, ends_at_ms: None })
                    })
                    .await
                    .expect("a standing");
                standing.body.to_string()
            })
        });
        let mut bodies = Vec::new();
        for ask in futures_util::future::join_all(asks).await {
            bodies.push(ask.expect("the ask completes"));
        }
        bodies
    }

    #[tokio::test]
    async fn the_viewers_of_a_contest_share_one_computation_per_change() {
        let (feed, computed) = (feed(), Arc::new(AtomicUsize::new(0)));
        // Ten viewers at once: one computation, every one gets it.
        assert_eq!(ask(&feed, &computed, 10, None).await, vec!["standing 1"; 10]);
        assert_eq!(computed.load(Ordering::SeqCst), 1);
        // Nothing changed: the cached standing serves them again.
        assert_eq!(ask(&feed, &computed, 10, None).await, vec!["standing 1"; 10]);
        assert_eq!(computed.load(Ordering::SeqCst), 1);
        // A commit concerns the contest: one more computation for all of them.
        feed.bump();
        assert_eq!(ask(&feed, &computed, 10, None).await, vec!["standing 2"; 10]);
        assert_eq!(computed.load(Ordering::SeqCst), 2);
        // A poll accepts a standing computed since the previous poll ...
        let earlier = Instant::now() - Duration::from_secs(3);
        assert_eq!(ask(&feed, &computed, 5, Some(earlier)).await, vec!["standing 2"; 5]);
        assert_eq!(computed.load(Ordering::SeqCst), 2);
        // ... and computes one afresh, once for all, when the cached one is older.
        let now = Instant::now();
        assert_eq!(ask(&feed, &computed, 5, Some(now)).await, vec!["standing 3"; 5]);
        assert_eq!(computed.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_change_during_a_computation_is_not_lost() {
        let (feed, computed) = (feed(), Arc::new(AtomicUsize::new(0)));
        // The commit lands while the standing is computed: that standing may predate it,
        // so it is kept as of the generation before.
        let computing = {
            let feed = feed.clone();
            tokio::spawn(async move {
                feed.standing_with(0, None, || async {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(Standing { body: "before".into(), is_final: false, ends_at_ms: None })
                })
                .await
                .map(|s| s.body.to_string())
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        feed.bump();
        assert_eq!(computing.await.expect("done").expect("a standing"), "before");
        // The stream woken by that commit asks for its generation: computed again.
        assert_eq!(ask(&feed, &computed, 3, None).await, vec!["standing 1"; 3]);
        assert_eq!(computed.load(Ordering::SeqCst), 1);
    }
}
