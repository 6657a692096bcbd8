//! Bullhorn's HTTP API over a [`Crm`]: the OAuth token endpoint, `loginInfo`, the REST login,
//! and the REST calls (`ping`, `search/{Entity}`, `query/{Entity}`) with field selection,
//! sorting and `start`/`count` paging.

use std::time::Instant;

use serde_json::{Map, Value, json};

use super::lang;
use super::{Control, Crm, Fault, RequestRecord};
use crate::http::{Query, Responder, Response};

/// The 401 body of `error_401_invalid_rest_token.json`.
const INVALID_REST_TOKEN: &str = r#"{"errorMessage":"Bad 'BhRestToken' or timed-out.","errorMessageKey":"errors.authentication.invalidRestToken","errorCode":401}"#;
/// The 429 body of `error_429_rate_limited.json`.
const RATE_LIMITED: &str = r#"{"errorMessage":"Too many requests","errorCode":429}"#;
/// The largest page Bullhorn serves; a larger `count` is cut to it.
const MAX_COUNT: usize = 500;
/// The page size without `count`.
const DEFAULT_COUNT: usize = 20;

/// Entities `query/` serves.
const QUERY_ENTITIES: &[&str] =
    &["Placement", "JobSubmission", "CorporateUser", "Candidate", "ClientContact", "ClientCorporation", "JobOrder"];
/// Entities `search/` serves (Lucene-indexed ones).
const SEARCH_ENTITIES: &[&str] = &["Placement", "Candidate", "ClientContact", "ClientCorporation", "JobOrder"];

/// Bullhorn's REST error envelope.
fn rest_error(status: u16, message: &str) -> Response {
    Response::json(status, json!({"errorMessage": message, "errorCode": status}).to_string().into_bytes())
}

/// An OAuth error (`{"error","error_description"}`).
fn oauth_error(status: u16, error: &str, description: &str) -> Response {
    Response::json(status, json!({"error": error, "error_description": description}).to_string().into_bytes())
}

fn ok(body: &Value) -> Response {
    Response::json(200, body.to_string().into_bytes())
}

impl Responder for Crm {
    fn respond(&self, method: &str, path: &str, query: &str, headers: &[(&str, &str)]) -> Response {
        Crm::respond(self, method, path, query, headers)
    }
}

impl Crm {
    /// Answers one request and records it in the log. Never does IO; an injected delay is
    /// returned in [`Response::delay`] for the caller to wait out.
    pub fn respond(&self, method: &str, path: &str, query: &str, headers: &[(&str, &str)]) -> Response {
        let seq = {
            let mut control = self.control();
            control.requests += 1;
            control.requests
        };
        let header = |name: &str| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v);
        let base = format!("http://{}", header("host").unwrap_or("127.0.0.1"));
        let q = Query::parse(query);
        let rest_prefix = format!("/rest-services/{}/", self.corp_token);
        let mut session_ok = false;
        let response = match path {
            "/oauth/token" => self.token(method, &q),
            "/oauth/authorize" => self.authorize(method, &q),
            "/rest-services/loginInfo" => ok(&json!({
                "oauthUrl": format!("{base}/oauth"),
                "restUrl": format!("{base}/rest-services"),
            })),
            "/rest-services/login" => self.login(method, &q, &base),
            _ => match path.strip_prefix(&rest_prefix) {
                Some(operation) => {
                    let token = header("bhresttoken").or_else(|| q.get("BhRestToken"));
                    let (response, ok) = self.rest(method, operation, &q, token);
                    session_ok = ok;
                    response
                }
                None => rest_error(404, "Not found"),
            },
        };
        self.control().log.push(RequestRecord {
            seq,
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            session_ok,
            status: response.status,
        });
        response
    }

    fn new_token(control: &mut Control, kind: &str) -> String {
        control.token_seq += 1;
        let mut rng = crate::rng::Rng::new(control.token_seq ^ 0x0A17_4000);
        let (a, b) = (rng.next_u64(), rng.next_u64());
        format!("42:{kind}-{:08x}-{:04x}-{:012x}", a >> 32, a & 0xffff, b & 0xffff_ffff_ffff)
    }

    /// `POST {auth}/token?grant_type=refresh_token&refresh_token=&client_id=&client_secret=`.
    fn token(&self, method: &str, q: &Query<'_>) -> Response {
        if method != "POST" {
            return oauth_error(405, "invalid_request", "Use POST");
        }
        let mut control = self.control();
        if q.get("client_id") != Some(control.client_id.as_str())
            || q.get("client_secret") != Some(control.client_secret.as_str())
        {
            return oauth_error(401, "invalid_client", "Bad client credentials");
        }
        match q.get("grant_type") {
            Some("refresh_token") => {}
            Some("authorization_code") => {
                if let Err(refusal) = control.codes.redeem(q) {
                    return oauth_error(400, "invalid_grant", refusal.description());
                }
                // The consent replaces the integration's refresh token.
                let old = std::mem::take(&mut control.refresh_token);
                control.spent_refresh_tokens.insert(old);
                let refresh_token = Self::new_token(&mut control, "refresh");
                control.refresh_token = refresh_token.clone();
                let access_token = Self::new_token(&mut control, "access");
                let expires = Instant::now() + control.access_ttl;
                control.access_tokens.insert(access_token.clone(), expires);
                return ok(&json!({
                    "access_token": access_token,
                    "token_type": "Bearer",
                    "expires_in": control.access_ttl.as_secs(),
                    "refresh_token": refresh_token,
                }));
            }
            Some(_) => return oauth_error(400, "unsupported_grant_type", "Unsupported grant type"),
            None => return oauth_error(400, "invalid_request", "Missing grant type"),
        }
        let presented = q.get("refresh_token").unwrap_or("");
        if presented.is_empty() || presented != control.refresh_token {
            return oauth_error(400, "invalid_grant", "Invalid, expired, or revoked refresh token.");
        }
        // Single use: the token presented is spent, a new one replaces it.
        let spent = std::mem::take(&mut control.refresh_token);
        control.spent_refresh_tokens.insert(spent);
        let refresh_token = Self::new_token(&mut control, "refresh");
        control.refresh_token = refresh_token.clone();
        let access_token = Self::new_token(&mut control, "access");
        let expires = Instant::now() + control.access_ttl;
        control.access_tokens.insert(access_token.clone(), expires);
        control.refreshes += 1;
        ok(&json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": control.access_ttl.as_secs(),
            "refresh_token": refresh_token,
        }))
    }

    /// `GET {auth}/authorize?response_type=code&client_id&redirect_uri&state&code_challenge&
    /// code_challenge_method=S256`: consents at once, `302` back with a code.
    fn authorize(&self, method: &str, q: &Query<'_>) -> Response {
        if method != "GET" {
            return oauth_error(405, "invalid_request", "Use GET");
        }
        let mut control = self.control();
        let client_id = control.client_id.clone();
        control.codes.authorize(&client_id, q)
    }

    /// `{login_url}/login?version=*&access_token=`.
    fn login(&self, method: &str, q: &Query<'_>, base: &str) -> Response {
        if method != "GET" && method != "POST" {
            return rest_error(405, "Method not allowed");
        }
        if q.get("version").is_none() {
            return rest_error(400, "Missing version");
        }
        let mut control = self.control();
        let now = Instant::now();
        let live = q.get("access_token").and_then(|t| control.access_tokens.get(t)).is_some_and(|exp| *exp > now);
        if !live {
            return Response::json(
                401,
                json!({"errorMessage": "Invalid or expired OAuth access token.", "errorCode": 401})
                    .to_string()
                    .into_bytes(),
            );
        }
        let ttl = match q.get("ttl").map(str::parse::<u64>) {
            Some(Ok(minutes)) => std::time::Duration::from_secs(minutes * 60),
            Some(Err(_)) => return rest_error(400, "Invalid ttl"),
            None => control.session_ttl,
        };
        let token = Self::new_token(&mut control, "rest");
        control.sessions.insert(token.clone(), now + ttl);
        control.logins += 1;
        ok(&json!({
            "BhRestToken": token,
            "restUrl": format!("{base}/rest-services/{}/", self.corp_token),
        }))
    }

    /// A REST call: the session check, faults, then the operation. The flag says whether the
    /// session was live.
    fn rest(&self, method: &str, operation: &str, q: &Query<'_>, token: Option<&str>) -> (Response, bool) {
        let Some(token) = token else {
            return (rest_error(412, "Missing BhRestToken"), false);
        };
        let fault = {
            let mut control = self.control();
            let now = Instant::now();
            let live = control.sessions.get(token).is_some_and(|exp| *exp > now);
            if !live {
                control.sessions.remove(token);
                return (Response::json(401, INVALID_REST_TOKEN.as_bytes().to_vec()), false);
            }
            control.rest_calls += 1;
            let periodic = control.rate_limit_every.is_some_and(|n| control.rest_calls.is_multiple_of(n));
            if periodic { Some(Fault::RateLimited) } else { control.faults.pop_front() }
        };
        let response = match fault {
            Some(Fault::RateLimited) => Response::json(429, RATE_LIMITED.as_bytes().to_vec()),
            Some(Fault::SessionExpired) => {
                self.control().sessions.remove(token);
                Response::json(401, INVALID_REST_TOKEN.as_bytes().to_vec())
            }
            Some(Fault::ServerError(status)) => rest_error(status, "Internal server error"),
            Some(Fault::Delay(delay)) => {
                let mut response = self.operation(method, operation, q);
                response.delay = Some(delay);
                response
            }
            None => self.operation(method, operation, q),
        };
        (response, true)
    }

    fn operation(&self, method: &str, operation: &str, q: &Query<'_>) -> Response {
        if method != "GET" {
            return rest_error(405, "Method not allowed (the fake is read-only)");
        }
        let segments: Vec<&str> = operation.split('/').collect();
        let result = match segments.as_slice() {
            ["ping"] => {
                let expires = self.now_ms + super::SESSION_TTL.as_millis() as i64;
                return ok(&json!({"sessionExpires": expires}));
            }
            ["search", entity] => self.list(entity, q, true),
            ["query", entity] => self.list(entity, q, false),
            _ => return rest_error(404, "Not found"),
        };
        result.unwrap_or_else(|(status, message)| rest_error(status, &message))
    }

    /// `search/{Entity}` (`lucene`) or `query/{Entity}`.
    fn list(&self, entity: &str, q: &Query<'_>, lucene: bool) -> Result<Response, (u16, String)> {
        let bad = |message: String| (400u16, message);
        let served = if lucene { SEARCH_ENTITIES } else { QUERY_ENTITIES };
        if !served.contains(&entity) {
            return Err(bad(format!(
                "Entity {entity} cannot be used with {}",
                if lucene { "search" } else { "query" }
            )));
        }
        let records = self.records(entity);
        let sample = self.sample(entity);
        let conditions = if lucene {
            let text = q.get("query").ok_or_else(|| bad("Missing query".to_owned()))?;
            lang::parse_lucene(text, |field| field.starts_with("date")).map_err(bad)?
        } else {
            let text = q.get("where").ok_or_else(|| bad("Missing where".to_owned()))?;
            lang::parse_where(text).map_err(bad)?
        };
        lang::check_paths(entity, &sample, &conditions).map_err(bad)?;
        let fields = match q.get("fields") {
            Some(text) => Some(lang::parse_fields(text).map_err(bad)?),
            None if lucene => None,
            None => return Err(bad("Missing fields (or layout)".to_owned())),
        };
        // Bullhorn answers a field that does not exist with a 404.
        let unknown = |message: String| (404u16, message);
        if let Some(fields) = &fields {
            lang::select(entity, &sample, fields).map_err(unknown)?;
        }
        let sort_text = if lucene { q.get("sort").or_else(|| q.get("orderBy")) } else { q.get("orderBy") };
        let sort = match sort_text {
            Some(text) => lang::parse_sort(text).map_err(bad)?,
            None => Vec::new(),
        };
        for key in &sort {
            if lang::lookup(&sample, &key.path).is_none() {
                return Err(bad(lang::invalid_field(entity, &key.path.join("."))));
            }
        }
        let start = parse_number(q, "start", 0)?;
        let count = parse_number(q, "count", DEFAULT_COUNT)?.min(MAX_COUNT);
        let mut matched: Vec<Map<String, Value>> =
            records.into_iter().filter(|r| lang::matches(r, &conditions)).collect();
        matched.sort_by(|a, b| lang::order(a, b, &sort));
        let total = matched.len();
        let page: Vec<Value> = matched
            .iter()
            .skip(start)
            .take(count)
            .map(|record| match &fields {
                None => Ok(record.get("id").cloned().unwrap_or(Value::Null)),
                Some(fields) => {
                    let mut item = lang::select(entity, record, fields).map_err(unknown)?;
                    if lucene && let Value::Object(map) = &mut item {
                        map.insert("_score".to_owned(), json!(1.0));
                    }
                    Ok(item)
                }
            })
            .collect::<Result<_, _>>()?;
        let mut body = Map::new();
        let show_total = lucene || q.get("showTotalMatched") == Some("true");
        if show_total {
            body.insert("total".to_owned(), json!(total));
        }
        body.insert("start".to_owned(), json!(start));
        body.insert("count".to_owned(), json!(page.len()));
        body.insert("data".to_owned(), Value::Array(page));
        Ok(ok(&Value::Object(body)))
    }

    /// A record with every field of the entity, for checking field names when no record
    /// exists.
    fn sample(&self, entity: &str) -> Map<String, Value> {
        let user = super::CorporateUser {
            id: 0,
            first_name: String::new(),
            last_name: String::new(),
            email: String::new(),
            enabled: true,
            is_deleted: false,
            date_last_modified: 0,
        };
        match entity {
            "Placement" => self.placement_json(&super::Placement {
                id: 0,
                candidate_id: 0,
                job_order_id: 0,
                owner_id: 0,
                date_added: 0,
                date_begin: 0,
                date_end: None,
                status: String::new(),
                employment_type: String::new(),
                salary_cents: 0,
                fee_e4: 0,
                flat_fee_cents: 0,
                termination_reason: None,
                date_last_modified: 0,
            }),
            "JobSubmission" => self.submission_json(&super::JobSubmission {
                id: 0,
                candidate_id: 0,
                job_order_id: 0,
                sending_user_id: 0,
                status: String::new(),
                source: String::new(),
                date_added: 0,
                date_web_response: None,
                is_deleted: false,
                salary_cents: 0,
                date_last_modified: 0,
            }),
            "CorporateUser" => user_json(&user, true),
            _ => self.records(entity).into_iter().next().unwrap_or_default(),
        }
    }

    /// Every record of an entity with all its fields.
    fn records(&self, entity: &str) -> Vec<Map<String, Value>> {
        match entity {
            "Placement" => self.placements.values().map(|p| self.placement_json(p)).collect(),
            "JobSubmission" => self.submissions.values().map(|s| self.submission_json(s)).collect(),
            "CorporateUser" => self.users.iter().map(|u| user_json(u, true)).collect(),
            "Candidate" => self.candidates.iter().map(|c| self.candidate_json(c)).collect(),
            "ClientContact" => self.contacts.iter().map(|c| self.contact_json(c)).collect(),
            "ClientCorporation" => self.corporations.iter().map(corporation_json).collect(),
            "JobOrder" => self.job_orders.iter().map(|j| self.job_json(j)).collect(),
            _ => Vec::new(),
        }
    }

    fn user_ref(&self, id: u64) -> Value {
        match self.user(id) {
            Some(u) => Value::Object(user_json(u, false)),
            None => json!({"id": id, "firstName": "", "lastName": "", "email": ""}),
        }
    }

    fn candidate_json(&self, c: &super::Candidate) -> Map<String, Value> {
        object(json!({
            "id": c.id,
            "firstName": c.first_name,
            "lastName": c.last_name,
            "name": format!("{} {}", c.first_name, c.last_name),
            "email": c.email,
            "mobile": c.mobile,
            "isDeleted": false,
        }))
    }

    fn candidate_ref(&self, id: u64) -> Value {
        match self.candidates.iter().find(|c| c.id == id) {
            Some(c) => json!({"id": c.id, "firstName": c.first_name, "lastName": c.last_name,
                              "email": c.email, "mobile": c.mobile}),
            None => Value::Null,
        }
    }

    fn contact_json(&self, c: &super::ClientContact) -> Map<String, Value> {
        let corporation = self.corporations.iter().find(|k| k.id == c.corporation_id);
        object(json!({
            "id": c.id,
            "firstName": c.first_name,
            "lastName": c.last_name,
            "name": format!("{} {}", c.first_name, c.last_name),
            "email": c.email,
            "phone": c.phone,
            "clientCorporation": corporation.map(|k| json!({"id": k.id, "name": k.name})),
            "isDeleted": false,
        }))
    }

    fn contact_ref(&self, id: u64) -> Value {
        match self.contacts.iter().find(|c| c.id == id) {
            Some(c) => json!({"id": c.id, "firstName": c.first_name, "lastName": c.last_name, "email": c.email}),
            None => Value::Null,
        }
    }

    fn corporation_ref(&self, id: u64) -> Value {
        match self.corporations.iter().find(|k| k.id == id) {
            Some(k) => json!({"id": k.id, "name": k.name}),
            None => Value::Null,
        }
    }

    fn job_json(&self, j: &super::JobOrder) -> Map<String, Value> {
        object(json!({
            "id": j.id,
            "title": j.title,
            "clientCorporation": self.corporation_ref(j.corporation_id),
            "clientContact": self.contact_ref(j.contact_id),
            "owner": self.user_ref(j.owner_id),
            "isDeleted": false,
        }))
    }

    fn job_ref(&self, id: u64) -> Value {
        match self.job_orders.iter().find(|j| j.id == id) {
            Some(j) => json!({"id": j.id, "title": j.title}),
            None => Value::Null,
        }
    }

    fn placement_json(&self, p: &super::Placement) -> Map<String, Value> {
        let job = self.job_orders.iter().find(|j| j.id == p.job_order_id);
        object(json!({
            "id": p.id,
            "dateAdded": p.date_added,
            "dateBegin": p.date_begin,
            "dateEnd": p.date_end,
            "status": p.status,
            "employmentType": p.employment_type,
            "salary": p.salary_cents as f64 / 100.0,
            "salaryUnit": "Yearly",
            "fee": p.fee_e4 as f64 / 10_000.0,
            "flatFee": p.flat_fee_cents as f64 / 100.0,
            "payRate": 0.0,
            "clientBillRate": 0.0,
            "terminationReason": p.termination_reason,
            "customText1": self.currency,
            "candidate": self.candidate_ref(p.candidate_id),
            "jobOrder": self.job_ref(p.job_order_id),
            "clientCorporation": job.map_or(Value::Null, |j| self.corporation_ref(j.corporation_id)),
            "clientContact": job.map_or(Value::Null, |j| self.contact_ref(j.contact_id)),
            "owner": self.user_ref(p.owner_id),
            "dateLastModified": p.date_last_modified,
        }))
    }

    fn submission_json(&self, s: &super::JobSubmission) -> Map<String, Value> {
        object(json!({
            "id": s.id,
            "status": s.status,
            "source": s.source,
            "dateAdded": s.date_added,
            "dateLastModified": s.date_last_modified,
            "dateWebResponse": s.date_web_response,
            "isDeleted": s.is_deleted,
            "salary": s.salary_cents as f64 / 100.0,
            "candidate": self.candidate_ref(s.candidate_id),
            "jobOrder": self.job_ref(s.job_order_id),
            "sendingUser": self.user_ref(s.sending_user_id),
        }))
    }
}

fn user_json(u: &super::CorporateUser, full: bool) -> Map<String, Value> {
    let mut map = object(json!({
        "id": u.id,
        "firstName": u.first_name,
        "lastName": u.last_name,
        "email": u.email,
    }));
    if full {
        map.insert("name".to_owned(), json!(u.name()));
        map.insert("enabled".to_owned(), json!(u.enabled));
        map.insert("isDeleted".to_owned(), json!(u.is_deleted));
        map.insert("dateLastModified".to_owned(), json!(u.date_last_modified));
    }
    map
}

fn corporation_json(k: &super::ClientCorporation) -> Map<String, Value> {
    object(json!({"id": k.id, "name": k.name}))
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn parse_number(q: &Query<'_>, name: &str, default: usize) -> Result<usize, (u16, String)> {
    match q.get(name) {
        None => Ok(default),
        Some(text) => text.parse::<usize>().map_err(|_| (400, format!("Invalid {name} '{text}'"))),
    }
}
