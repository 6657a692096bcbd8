//! Pipedrive's HTTP API over a [`Crm`]: routing, parameter validation, keyset cursors, and the
//! JSON shapes of the fixtures.
//!
//! Pages are rendered straight into one byte buffer with serde, item by item, so a 500-deal
//! page costs about as much as writing its bytes.

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};

use super::model::{Activity, Address, Attendee, ContactDetail, Deal, Organization, Person, User};
use super::table::{Record, Scan, SortField, Table};
use super::{Crm, Fault, RequestRecord};
use crate::base64;
use crate::http::{Query, Responder, Response};
use crate::time::{Date, Timestamp};

/// The `error_info` every Pipedrive error carries.
const ERROR_INFO: &str = "Please check developers.pipedrive.com";
/// The 401 body of `error_401_unauthorized.json`, compact.
const UNAUTHORIZED_BODY: &str = r#"{"success":false,"error":"unauthorized access","errorCode":401,"error_info":"Please check developers.pipedrive.com"}"#;
/// The 429 body of `error_429_rate_limited.json`, compact.
const RATE_LIMITED_BODY: &str = r#"{"success":false,"error":"Request over limit","errorCode":429,"error_info":"Please check developers.pipedrive.com"}"#;
/// Burst window size, as in the 429 fixture's headers.
const BURST_LIMIT: u64 = 40;
/// Daily token budget, as in the 429 fixture's headers.
const DAILY_TOKEN_LIMIT: u64 = 150_000;
/// Daily budget left in the burst-limit 429 of the fixture.
const DAILY_TOKENS_LEFT_ON_BURST_429: u64 = 4120;
/// Tokens one v2 list request costs here (the fake's own invention; only the trend matters).
const TOKENS_PER_REQUEST: u64 = 5;
/// The largest `limit` a v2 list accepts; more is a 400.
const MAX_LIMIT: usize = 500;
/// The page size without `limit`.
const DEFAULT_LIMIT: usize = 100;
/// Pipedrive's cap on the `ids` list.
const MAX_IDS: usize = 100;

/// An error answered with Pipedrive's error envelope.
#[derive(Debug)]
struct ApiError {
    status: u16,
    message: String,
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        Self { status: 400, message: message.into() }
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self { status: 404, message: message.into() }
    }

    fn into_response(self) -> Response {
        Response::json(self.status, error_body(self.status, &self.message))
    }
}

/// `{"success":false,"error":…,"errorCode":…,"error_info":…,"data":null,"additional_data":null}`.
fn error_body(status: u16, message: &str) -> Vec<u8> {
    #[derive(Serialize)]
    struct Envelope<'a> {
        success: bool,
        error: &'a str,
        #[serde(rename = "errorCode")]
        error_code: u16,
        error_info: &'a str,
        data: Option<()>,
        additional_data: Option<()>,
    }
    let mut out = Vec::with_capacity(160);
    write_item(
        &mut out,
        &Envelope {
            success: false,
            error: message,
            error_code: status,
            error_info: ERROR_INFO,
            data: None,
            additional_data: None,
        },
    );
    out
}

impl Responder for Crm {
    fn respond(&self, method: &str, path: &str, query: &str, headers: &[(&str, &str)]) -> Response {
        Crm::respond(self, method, path, query, headers)
    }
}

impl Crm {
    /// Answers one request: checks `x-api-token`, applies a pending [`Fault`], then serves the
    /// API. Records the request in the log. Never does IO; an injected delay is returned in
    /// [`Response::delay`] for the caller to wait out.
    pub fn respond(&self, method: &str, path: &str, query: &str, headers: &[(&str, &str)]) -> Response {
        let token_ok =
            headers.iter().any(|(name, value)| name.eq_ignore_ascii_case("x-api-token") && *value == self.token);
        let (seq, fault) = {
            let mut control = self.control();
            control.requests += 1;
            let fault = if token_ok { control.faults.pop_front() } else { None };
            (control.requests, fault)
        };
        let mut response = match (token_ok, fault) {
            (false, _) | (true, Some(Fault::Unauthorized)) => {
                Response::json(401, UNAUTHORIZED_BODY.as_bytes().to_vec())
            }
            (true, Some(Fault::RateLimited { retry_after_secs })) => {
                rate_limited(retry_after_secs, DAILY_TOKENS_LEFT_ON_BURST_429, 0)
            }
            (true, Some(Fault::DailyBudgetExhausted)) => {
                let until_midnight = crate::time::DAY - self.now.unix().rem_euclid(crate::time::DAY);
                rate_limited(until_midnight as u64, 0, BURST_LIMIT - 1)
            }
            (true, Some(Fault::ServerError(status))) => {
                let message = match status {
                    502 => "Bad gateway",
                    503 => "Service unavailable",
                    504 => "Gateway timeout",
                    _ => "Internal server error",
                };
                Response::json(status, error_body(status, message))
            }
            (true, Some(Fault::Delay(delay))) => {
                let mut response = self.serve(method, path, query, seq);
                response.delay = Some(delay);
                response
            }
            (true, None) => self.serve(method, path, query, seq),
        };
        response.headers.push(("x-correlation-id", correlation_id(seq)));
        self.control().log.push(RequestRecord {
            seq,
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            token_ok,
            status: response.status,
        });
        response
    }

    /// Serves an authenticated request that no fault intercepted.
    fn serve(&self, method: &str, path: &str, query: &str, seq: u64) -> Response {
        let mut response = match self.route(method, path, &Query::parse(query)) {
            Ok(response) => response,
            Err(error) => error.into_response(),
        };
        let left = DAILY_TOKEN_LIMIT.saturating_sub(seq * TOKENS_PER_REQUEST).max(1);
        response.headers.extend([
            ("x-ratelimit-limit", BURST_LIMIT.to_string()),
            ("x-ratelimit-remaining", (BURST_LIMIT - 1).to_string()),
            ("x-ratelimit-reset", "2".to_owned()),
            ("x-daily-ratelimit-token-limit", DAILY_TOKEN_LIMIT.to_string()),
            ("x-daily-ratelimit-token-remaining", left.to_string()),
        ]);
        response
    }

    fn route(&self, method: &str, path: &str, q: &Query<'_>) -> Result<Response, ApiError> {
        let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
        let known = matches!(
            segments.as_slice(),
            ["api", "v2", "deals" | "activities" | "persons" | "organizations"]
                | ["api", "v2", "deals" | "activities" | "persons" | "organizations", _]
                | ["v1", "users"]
                | ["v1", "users", _]
                | ["api", "v1", "users"]
                | ["api", "v1", "users", _]
        );
        if !known {
            return Err(ApiError::not_found("Not found"));
        }
        if method != "GET" {
            return Err(ApiError {
                status: 405,
                message: format!("Method {method} is not allowed here (the fake is read-only)"),
            });
        }
        let body = match segments.as_slice() {
            ["api", "v2", "deals"] => self.list_deals(q, false),
            // Archived deals are served only here, with the same parameters.
            ["api", "v2", "deals", "archived"] => self.list_deals(q, true),
            ["api", "v2", "activities"] => self.list_activities(q),
            ["api", "v2", "persons"] => self.list_persons(q),
            ["api", "v2", "organizations"] => self.list_organizations(q),
            ["api", "v2", kind, id] => self.get_one(kind, id),
            ["v1", "users"] | ["api", "v1", "users"] => Ok(data_body(&UserList(self))),
            ["v1", "users", id] | ["api", "v1", "users", id] => self.get_user(id),
            _ => Err(ApiError::not_found("Not found")),
        }?;
        Ok(Response::json(200, body))
    }

    fn get_one(&self, kind: &str, id: &str) -> Result<Vec<u8>, ApiError> {
        let id: u64 = id.parse().map_err(|_| ApiError::bad_request(format!("Invalid id {id:?}")))?;
        let found = match kind {
            "deals" => self.deals.get(id).map(|d| data_body(&DealV2(d))),
            "activities" => self.activities.get(id).map(|a| data_body(&ActivityV2(a))),
            "persons" => self.persons.get(id).map(|p| data_body(&PersonV2(p))),
            _ => self.organizations.get(id).map(|o| data_body(&OrganizationV2(o))),
        };
        found.ok_or_else(|| {
            let noun = match kind {
                "deals" => "Deal",
                "activities" => "Activity",
                "persons" => "Person",
                _ => "Organization",
            };
            ApiError::not_found(format!("{noun} not found"))
        })
    }

    fn get_user(&self, id: &str) -> Result<Vec<u8>, ApiError> {
        if id == "me" {
            let me = self.users.first().ok_or_else(|| ApiError::not_found("User not found"))?;
            return Ok(data_body(&Me { crm: self, user: me }));
        }
        let id: u64 = id.parse().map_err(|_| ApiError::bad_request(format!("Invalid id {id:?}")))?;
        let user = self.user(id).ok_or_else(|| ApiError::not_found("User not found"))?;
        Ok(data_body(&UserV1 { user, is_you: self.users.first().is_some_and(|u| u.id == user.id) }))
    }

    /// `/api/v2/deals` (`archived` false) or `/api/v2/deals/archived` (true).
    fn list_deals(&self, q: &Query<'_>, archived: bool) -> Result<Vec<u8>, ApiError> {
        let params = list_params(q, Deal::SORT_FIELDS)?;
        let (mut open, mut won, mut lost, mut deleted) = (true, true, true, false);
        if let Some(list) = q.get("status") {
            (open, won, lost, deleted) = (false, false, false, false);
            for status in list.split(',') {
                match status.trim() {
                    "open" => open = true,
                    "won" => won = true,
                    "lost" => lost = true,
                    "deleted" => deleted = true,
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "Invalid status {other:?}: expected open, won, lost or deleted"
                        )));
                    }
                }
            }
        }
        let owner = opt_id(q, "owner_id")?;
        let person = opt_id(q, "person_id")?;
        let org = opt_id(q, "org_id")?;
        let pipeline = opt_id(q, "pipeline_id")?;
        let stage = opt_id(q, "stage_id")?;
        Ok(page(
            &self.deals,
            &params,
            |d: &Deal| {
                let status_ok = if d.is_deleted() {
                    deleted && self.deleted_visible(d)
                } else {
                    match d.status {
                        super::DealStatus::Open => open,
                        super::DealStatus::Won => won,
                        super::DealStatus::Lost => lost,
                    }
                };
                status_ok
                    && d.archived == archived
                    && owner.is_none_or(|o| d.owner_id == o)
                    && person.is_none_or(|p| d.person_id == Some(p))
                    && org.is_none_or(|o| d.org_id == Some(o))
                    && pipeline.is_none_or(|p| u64::from(d.pipeline_id) == p)
                    && stage.is_none_or(|s| u64::from(d.stage_id) == s)
            },
            |d, out| write_item(out, &DealV2(d)),
        ))
    }

    fn list_activities(&self, q: &Query<'_>) -> Result<Vec<u8>, ApiError> {
        let params = list_params(q, Activity::SORT_FIELDS)?;
        let owner = opt_id(q, "owner_id")?;
        let deal = opt_id(q, "deal_id")?;
        let person = opt_id(q, "person_id")?;
        let org = opt_id(q, "org_id")?;
        let done = match q.get("done") {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(other) => {
                return Err(ApiError::bad_request(format!("Invalid done {other:?}: expected true or false")));
            }
        };
        Ok(page(
            &self.activities,
            &params,
            |a: &Activity| {
                owner.is_none_or(|o| a.owner_id == o)
                    && deal.is_none_or(|d| a.deal_id == Some(d))
                    && person.is_none_or(|p| a.person_id == Some(p))
                    && org.is_none_or(|o| a.org_id == Some(o))
                    && done.is_none_or(|d| a.done == d)
            },
            |a, out| write_item(out, &ActivityV2(a)),
        ))
    }

    fn list_persons(&self, q: &Query<'_>) -> Result<Vec<u8>, ApiError> {
        let params = list_params(q, Person::SORT_FIELDS)?;
        let owner = opt_id(q, "owner_id")?;
        let org = opt_id(q, "org_id")?;
        Ok(page(
            &self.persons,
            &params,
            |p: &Person| owner.is_none_or(|o| p.owner_id == o) && org.is_none_or(|o| p.org_id == Some(o)),
            |p, out| write_item(out, &PersonV2(p)),
        ))
    }

    fn list_organizations(&self, q: &Query<'_>) -> Result<Vec<u8>, ApiError> {
        let params = list_params(q, Organization::SORT_FIELDS)?;
        let owner = opt_id(q, "owner_id")?;
        Ok(page(
            &self.organizations,
            &params,
            |o: &Organization| owner.is_none_or(|id| o.owner_id == id),
            |o, out| write_item(out, &OrganizationV2(o)),
        ))
    }
}

/// A 429 with the headers of `error_429_rate_limited.md`.
fn rate_limited(retry_after: u64, daily_left: u64, burst_left: u64) -> Response {
    let mut response = Response::json(429, RATE_LIMITED_BODY.as_bytes().to_vec());
    let reset = if burst_left == 0 { retry_after } else { 2 };
    response.headers.extend([
        ("retry-after", retry_after.to_string()),
        ("x-ratelimit-limit", BURST_LIMIT.to_string()),
        ("x-ratelimit-remaining", burst_left.to_string()),
        ("x-ratelimit-reset", reset.to_string()),
        ("x-daily-ratelimit-token-limit", DAILY_TOKEN_LIMIT.to_string()),
        ("x-daily-ratelimit-token-remaining", daily_left.to_string()),
    ]);
    response
}

/// A UUID-shaped id derived from the request number.
fn correlation_id(seq: u64) -> String {
    let mut rng = crate::rng::Rng::new(seq);
    let (a, b) = (rng.next_u64(), rng.next_u64());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    )
}

// ----- list parameters and cursors ----------------------------------------------------------

/// The parameters every v2 list shares.
#[derive(Debug)]
struct ListParams {
    sort: SortField,
    descending: bool,
    limit: usize,
    after: Option<(i64, u64)>,
    since: Option<i64>,
    until: Option<i64>,
    ids: Option<Vec<u64>>,
}

fn list_params(q: &Query<'_>, fields: &[SortField]) -> Result<ListParams, ApiError> {
    let sort = match q.get("sort_by") {
        None => SortField::Id,
        Some(name) => SortField::parse(name).filter(|f| fields.contains(f)).ok_or_else(|| {
            let names: Vec<&str> = fields.iter().map(|f| f.name()).collect();
            ApiError::bad_request(format!("Invalid sort_by {name:?}: expected one of {}", names.join(", ")))
        })?,
    };
    let descending = match q.get("sort_direction") {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!("Invalid sort_direction {other:?}: expected asc or desc")));
        }
    };
    let limit = match q.get("limit") {
        None => DEFAULT_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(n @ 1..=MAX_LIMIT) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "Invalid limit {text:?}: must be an integer from 1 to {MAX_LIMIT}"
                )));
            }
        },
    };
    let time = |name: &str| -> Result<Option<i64>, ApiError> {
        q.get(name)
            .map(|text| {
                Timestamp::parse_rfc3339_ceil(text).map(Timestamp::unix).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "Invalid {name} {text:?}: expected an RFC 3339 date-time such as 2025-01-01T10:20:00Z"
                    ))
                })
            })
            .transpose()
    };
    let since = time("updated_since")?;
    let until = time("updated_until")?;
    let ids = match q.get("ids") {
        None => None,
        Some(list) => {
            let ids = list
                .split(',')
                .map(|id| id.trim().parse::<u64>())
                .collect::<Result<Vec<u64>, _>>()
                .map_err(|_| ApiError::bad_request(format!("Invalid ids {list:?}")))?;
            if ids.len() > MAX_IDS {
                return Err(ApiError::bad_request(format!("Too many ids: at most {MAX_IDS}")));
            }
            Some(ids)
        }
    };
    let after = match q.get("cursor") {
        None | Some("") => None,
        Some(cursor) => Some(decode_cursor(cursor, sort)?),
    };
    Ok(ListParams { sort, descending, limit, after, since, until, ids })
}

/// An optional integer id parameter; anything but digits is a 400 (v2 validates strictly).
fn opt_id(q: &Query<'_>, name: &str) -> Result<Option<u64>, ApiError> {
    q.get(name)
        .map(|text| text.parse::<u64>().map_err(|_| ApiError::bad_request(format!("Invalid {name} {text:?}"))))
        .transpose()
}

/// `{"field":"update_time","fieldValue":"2025-06-05T09:12:00Z","id":1003}` as unpadded
/// URL-safe base64, as the fixtures' cursors are; `{"field":"id","id":…}` when sorting by id.
fn encode_cursor(field: SortField, key: i64, id: u64) -> String {
    let json = match field {
        SortField::Id => format!(r#"{{"field":"id","id":{id}}}"#),
        SortField::DueDate => {
            format!(r#"{{"field":"due_date","fieldValue":"{}","id":{id}}}"#, Date::from_days(key as i32))
        }
        other => format!(r#"{{"field":"{}","fieldValue":"{}","id":{id}}}"#, other.name(), Timestamp::from_unix(key)),
    };
    base64::encode(json.as_bytes())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CursorJson {
    field: String,
    #[serde(rename = "fieldValue")]
    field_value: Option<String>,
    id: u64,
}

/// The `(key, id)` a cursor continues after; 400 for anything this fake did not issue for the
/// same `sort_by`.
fn decode_cursor(cursor: &str, sort: SortField) -> Result<(i64, u64), ApiError> {
    let invalid = || ApiError::bad_request("Invalid cursor");
    let bytes = base64::decode(cursor).ok_or_else(invalid)?;
    let parsed: CursorJson = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if parsed.field != sort.name() {
        return Err(invalid());
    }
    let key = match (sort, parsed.field_value.as_deref()) {
        (SortField::Id, None) => parsed.id as i64,
        (SortField::DueDate, Some(date)) => i64::from(Date::parse(date).ok_or_else(invalid)?.days()),
        (SortField::UpdateTime | SortField::AddTime, Some(time)) => {
            Timestamp::parse_rfc3339(time).ok_or_else(invalid)?.unix()
        }
        _ => return Err(invalid()),
    };
    Ok((key, parsed.id))
}

/// One page of `table` under `params` and `keep`, rendered as the v2 list envelope.
fn page<T: Record>(
    table: &Table<T>,
    params: &ListParams,
    keep: impl Fn(&T) -> bool,
    render: impl Fn(&T, &mut Vec<u8>),
) -> Vec<u8> {
    let by_update = params.sort == SortField::UpdateTime;
    let scan = Scan {
        after: params.after,
        min: params.since.filter(|_| by_update),
        max: params.until.filter(|_| by_update),
        descending: params.descending,
    };
    let mut rows: Vec<&T> = Vec::with_capacity(params.limit + 1);
    for row in table.scan(params.sort, scan) {
        let updated = row.updated();
        if params.since.is_some_and(|s| updated < s)
            || params.until.is_some_and(|u| updated >= u)
            || params.ids.as_ref().is_some_and(|ids| !ids.contains(&row.id()))
            || !keep(row)
        {
            continue;
        }
        rows.push(row);
        if rows.len() > params.limit {
            break;
        }
    }
    let next = if rows.len() > params.limit {
        rows.truncate(params.limit);
        rows.last().map(|last| encode_cursor(params.sort, last.key(params.sort), last.id()))
    } else {
        None
    };
    page_body(rows.into_iter(), next, render)
}

/// `{"success":true,"data":[…],"additional_data":{"next_cursor":…}}`.
fn page_body<'a, T: 'a>(
    rows: impl Iterator<Item = &'a T>,
    next_cursor: Option<String>,
    render: impl Fn(&T, &mut Vec<u8>),
) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(br#"{"success":true,"data":["#);
    for (i, row) in rows.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        render(row, &mut out);
    }
    out.extend_from_slice(br#"],"additional_data":{"next_cursor":"#);
    match next_cursor {
        Some(cursor) => write_item(&mut out, &cursor),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b"}}");
    out
}

/// `{"success":true,"data":…}`.
fn data_body(data: &impl Serialize) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(br#"{"success":true,"data":"#);
    write_item(&mut out, data);
    out.push(b'}');
    out
}

fn write_item(out: &mut Vec<u8>, item: &impl Serialize) {
    // Writing our own plain structs into a Vec cannot fail.
    let _ = serde_json::to_writer(out, item);
}

// ----- JSON shapes ------------------------------------------------------------------------

/// A value in major units: whole amounts as integers (`48000`), others with their cents
/// (`12750.5`), as Pipedrive renders them.
struct Money(i64);

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0 % 100 == 0 {
            serializer.serialize_i64(self.0 / 100)
        } else {
            serializer.serialize_f64(self.0 as f64 / 100.0)
        }
    }
}

/// `{}`, for `custom_fields`.
struct EmptyObject;

impl Serialize for EmptyObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_map(Some(0))?.end()
    }
}

/// A v2 `DealItem`, in the fixtures' field order.
struct DealV2<'a>(&'a Deal);

impl Serialize for DealV2<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            id: u64,
            title: &'a str,
            owner_id: u64,
            person_id: Option<u64>,
            org_id: Option<u64>,
            pipeline_id: u32,
            stage_id: u32,
            value: Money,
            currency: &'a str,
            add_time: Timestamp,
            update_time: Timestamp,
            stage_change_time: Option<Timestamp>,
            is_deleted: bool,
            is_archived: bool,
            status: &'a str,
            probability: Option<u32>,
            lost_reason: Option<&'a str>,
            visible_to: u32,
            close_time: Option<Timestamp>,
            won_time: Option<Timestamp>,
            lost_time: Option<Timestamp>,
            expected_close_date: Option<Date>,
            label_ids: &'a [u32],
            origin: &'a str,
            origin_id: Option<&'a str>,
            channel: Option<u32>,
            channel_id: Option<&'a str>,
            arr: Option<f64>,
            mrr: Option<f64>,
            acv: Option<f64>,
            custom_fields: EmptyObject,
        }
        let d = self.0;
        Wire {
            id: d.id,
            title: &d.title,
            owner_id: d.owner_id,
            person_id: d.person_id,
            org_id: d.org_id,
            pipeline_id: d.pipeline_id,
            stage_id: d.stage_id,
            value: Money(d.value_cents),
            currency: &d.currency,
            add_time: d.add_time,
            update_time: d.update_time,
            stage_change_time: d.stage_change_time,
            is_deleted: d.is_deleted(),
            is_archived: d.archived,
            status: if d.is_deleted() { "deleted" } else { d.status.as_str() },
            probability: d.probability,
            lost_reason: d.lost_reason.as_deref(),
            visible_to: 3,
            close_time: d.close_time,
            won_time: d.won_time,
            lost_time: d.lost_time,
            expected_close_date: d.expected_close_date,
            label_ids: &d.label_ids,
            origin: "ManuallyCreated",
            origin_id: None,
            channel: None,
            channel_id: None,
            arr: None,
            mrr: None,
            acv: None,
            custom_fields: EmptyObject,
        }
        .serialize(serializer)
    }
}

/// `[{"person_id":…,"primary":true}, …]`, the first participant primary.
struct Participants<'a>(&'a [u64]);

impl Serialize for Participants<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Participant {
            person_id: u64,
            primary: bool,
        }
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for (i, &person_id) in self.0.iter().enumerate() {
            seq.serialize_element(&Participant { person_id, primary: i == 0 })?;
        }
        seq.end()
    }
}

/// A v2 `ActivityItem`, in the fixtures' field order.
struct ActivityV2<'a>(&'a Activity);

impl Serialize for ActivityV2<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            id: u64,
            subject: &'a str,
            #[serde(rename = "type")]
            kind: &'a str,
            owner_id: u64,
            creator_user_id: u64,
            is_deleted: bool,
            add_time: Timestamp,
            update_time: Timestamp,
            deal_id: Option<u64>,
            lead_id: Option<&'a str>,
            person_id: Option<u64>,
            org_id: Option<u64>,
            project_id: Option<u64>,
            due_date: Date,
            due_time: Option<&'a str>,
            duration: Option<&'a str>,
            busy: bool,
            done: bool,
            marked_as_done_time: Option<Timestamp>,
            location: Option<&'a Address>,
            participants: Participants<'a>,
            attendees: &'a [Attendee],
            conference_meeting_client: Option<&'a str>,
            conference_meeting_url: Option<&'a str>,
            conference_meeting_id: Option<&'a str>,
            public_description: Option<&'a str>,
            priority: Option<u32>,
            note: Option<&'a str>,
        }
        let a = self.0;
        Wire {
            id: a.id,
            subject: &a.subject,
            kind: &a.kind,
            owner_id: a.owner_id,
            creator_user_id: a.creator_user_id,
            is_deleted: a.deleted,
            add_time: a.add_time,
            update_time: a.update_time,
            deal_id: a.deal_id,
            lead_id: None,
            person_id: a.person_id,
            org_id: a.org_id,
            project_id: None,
            due_date: a.due_date,
            due_time: a.due_time.as_deref(),
            duration: a.duration.as_deref(),
            busy: a.busy,
            done: a.done,
            marked_as_done_time: a.marked_as_done_time,
            location: a.location.as_ref(),
            participants: Participants(&a.participants),
            attendees: &a.attendees,
            conference_meeting_client: None,
            conference_meeting_url: None,
            conference_meeting_id: None,
            public_description: None,
            priority: None,
            note: a.note.as_deref(),
        }
        .serialize(serializer)
    }
}

/// A v2 `PersonItem`, in the fixture's field order.
struct PersonV2<'a>(&'a Person);

impl Serialize for PersonV2<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            id: u64,
            name: &'a str,
            first_name: &'a str,
            last_name: &'a str,
            owner_id: u64,
            org_id: Option<u64>,
            add_time: Timestamp,
            update_time: Timestamp,
            emails: &'a [ContactDetail],
            phones: &'a [ContactDetail],
            is_deleted: bool,
            visible_to: u32,
            label_ids: &'a [u32],
            picture_id: Option<u64>,
            custom_fields: EmptyObject,
        }
        let p = self.0;
        Wire {
            id: p.id,
            name: &p.name,
            first_name: &p.first_name,
            last_name: &p.last_name,
            owner_id: p.owner_id,
            org_id: p.org_id,
            add_time: p.add_time,
            update_time: p.update_time,
            emails: &p.emails,
            phones: &p.phones,
            is_deleted: false,
            visible_to: 3,
            label_ids: &p.label_ids,
            picture_id: None,
            custom_fields: EmptyObject,
        }
        .serialize(serializer)
    }
}

/// A v2 `OrganizationItem` (fields of the SDK's model; no fixture shows one).
struct OrganizationV2<'a>(&'a Organization);

impl Serialize for OrganizationV2<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            id: u64,
            name: &'a str,
            owner_id: u64,
            add_time: Timestamp,
            update_time: Timestamp,
            is_deleted: bool,
            visible_to: u32,
            address: &'a Address,
            label_ids: &'a [u32],
            custom_fields: EmptyObject,
        }
        let o = self.0;
        Wire {
            id: o.id,
            name: &o.name,
            owner_id: o.owner_id,
            add_time: o.add_time,
            update_time: o.update_time,
            is_deleted: false,
            visible_to: 3,
            address: &o.address,
            label_ids: &o.label_ids,
            custom_fields: EmptyObject,
        }
        .serialize(serializer)
    }
}

/// The invented permission set every user has.
const PERMISSION_SET_ID: &str = "62cc4d7f-4038-4352-abf3-a8c1c822b631";

/// A v1 `BaseUser`, in the fixture's field order, with v1's `YYYY-MM-DD HH:MM:SS` times.
#[derive(Serialize)]
struct UserV1Wire<'a> {
    id: u64,
    name: &'a str,
    default_currency: &'a str,
    locale: &'a str,
    lang: u32,
    email: &'a str,
    phone: Option<&'a str>,
    activated: bool,
    last_login: String,
    created: String,
    modified: String,
    has_created_company: bool,
    access: [Access; 1],
    active_flag: bool,
    timezone_name: &'a str,
    timezone_offset: &'a str,
    role_id: u32,
    icon_url: Option<&'a str>,
    is_you: bool,
    is_deleted: bool,
}

#[derive(Serialize)]
struct Access {
    app: &'static str,
    admin: bool,
    permission_set_id: &'static str,
}

impl<'a> UserV1Wire<'a> {
    fn new(user: &'a User, is_you: bool) -> Self {
        Self {
            id: user.id,
            name: &user.name,
            default_currency: &user.default_currency,
            locale: user.locale,
            lang: 1,
            email: &user.email,
            phone: None,
            activated: true,
            last_login: user.last_login.v1(),
            created: user.created.v1(),
            modified: user.modified.v1(),
            has_created_company: user.is_admin && is_you,
            access: [Access { app: "sales", admin: user.is_admin, permission_set_id: PERMISSION_SET_ID }],
            active_flag: user.active,
            timezone_name: user.timezone_name,
            timezone_offset: user.timezone_offset,
            role_id: 1,
            icon_url: None,
            is_you,
            is_deleted: false,
        }
    }
}

struct UserV1<'a> {
    user: &'a User,
    is_you: bool,
}

impl Serialize for UserV1<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        UserV1Wire::new(self.user, self.is_you).serialize(serializer)
    }
}

/// The `data` array of `GET /v1/users`; the first user is the token's owner.
struct UserList<'a>(&'a Crm);

impl Serialize for UserList<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let users = &self.0.users;
        let mut seq = serializer.serialize_seq(Some(users.len()))?;
        for (i, user) in users.iter().enumerate() {
            seq.serialize_element(&UserV1Wire::new(user, i == 0))?;
        }
        seq.end()
    }
}

/// `GET /v1/users/me`: the user plus the company they are logged into.
struct Me<'a> {
    crm: &'a Crm,
    user: &'a User,
}

impl Serialize for Me<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Language {
            language_code: &'static str,
            country_code: &'static str,
        }
        #[derive(Serialize)]
        struct Wire<'a> {
            #[serde(flatten)]
            user: UserV1Wire<'a>,
            company_id: u64,
            company_name: &'a str,
            company_domain: &'a str,
            company_country: &'a str,
            company_industry: Option<&'a str>,
            language: Language,
        }
        let company = &self.crm.company;
        Wire {
            user: UserV1Wire::new(self.user, true),
            company_id: company.id,
            company_name: &company.name,
            company_domain: &company.domain,
            company_country: "DE",
            company_industry: None,
            language: Language { language_code: "en", country_code: "US" },
        }
        .serialize(serializer)
    }
}
