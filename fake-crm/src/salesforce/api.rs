//! Salesforce's REST API over a [`Crm`]: the token endpoint, sessions and the request
//! allocation, SOQL evaluation over the records, query locators, `describe`, the `deleted`
//! feed, and the JSON shapes of the fixtures.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::{Map, Value, json};

use super::soql::{self, Literal, Op, Soql};
use super::{API_VERSION, Crm, Fault, Locator, RequestRecord, TOKEN_PATH};
use crate::http::{Query, Responder, Response};
use crate::time::{Date, Timestamp};

/// The largest (and default) page of a query, and the smallest `batchSize` honoured.
pub(crate) const MAX_BATCH: usize = 2000;
const MIN_BATCH: usize = 200;
/// Open query locators kept per org; older ones expire first.
const MAX_LOCATORS: usize = 100;
/// The oldest and newest API versions served.
const VERSIONS: std::ops::RangeInclusive<u32> = 31..=62;

/// The type of a field, as `describe` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FieldType {
    Id,
    Reference,
    String,
    Textarea,
    Email,
    Phone,
    Picklist,
    Boolean,
    Currency,
    Int,
    Date,
    DateTime,
}

impl FieldType {
    fn describe_name(self) -> &'static str {
        match self {
            FieldType::Id => "id",
            FieldType::Reference => "reference",
            FieldType::String => "string",
            FieldType::Textarea => "textarea",
            FieldType::Email => "email",
            FieldType::Phone => "phone",
            FieldType::Picklist => "picklist",
            FieldType::Boolean => "boolean",
            FieldType::Currency => "currency",
            FieldType::Int => "int",
            FieldType::Date => "date",
            FieldType::DateTime => "datetime",
        }
    }

    /// The SOQL type a filter literal must have.
    fn literal_kind(self) -> &'static str {
        match self {
            FieldType::Boolean => "boolean",
            FieldType::Currency | FieldType::Int => "number",
            FieldType::Date => "date",
            FieldType::DateTime => "dateTime",
            _ => "string",
        }
    }
}

use FieldType as T;

/// The objects the fake serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ObjectKind {
    Opportunity,
    Task,
    Event,
    User,
    Contact,
    Account,
    Organization,
}

/// A lookup from one object to another: `Owner` through `OwnerId` to a `User`.
struct Relation {
    name: &'static str,
    id_field: &'static str,
    target: ObjectKind,
    /// The `attributes.type` of the nested object (`Name` for polymorphic lookups).
    attributes_type: &'static str,
}

const OWNER: Relation =
    Relation { name: "Owner", id_field: "OwnerId", target: ObjectKind::User, attributes_type: "User" };
const ACCOUNT: Relation =
    Relation { name: "Account", id_field: "AccountId", target: ObjectKind::Account, attributes_type: "Account" };
const WHO: Relation = Relation { name: "Who", id_field: "WhoId", target: ObjectKind::Contact, attributes_type: "Name" };
const WHAT: Relation =
    Relation { name: "What", id_field: "WhatId", target: ObjectKind::Opportunity, attributes_type: "Name" };

impl ObjectKind {
    const ALL: [ObjectKind; 7] = [
        ObjectKind::Opportunity,
        ObjectKind::Task,
        ObjectKind::Event,
        ObjectKind::User,
        ObjectKind::Contact,
        ObjectKind::Account,
        ObjectKind::Organization,
    ];

    fn name(self) -> &'static str {
        match self {
            ObjectKind::Opportunity => "Opportunity",
            ObjectKind::Task => "Task",
            ObjectKind::Event => "Event",
            ObjectKind::User => "User",
            ObjectKind::Contact => "Contact",
            ObjectKind::Account => "Account",
            ObjectKind::Organization => "Organization",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name().eq_ignore_ascii_case(name))
    }

    /// Every field, `CurrencyIsoCode` included (see [`Crm::fields`]).
    fn fields(self) -> &'static [(&'static str, FieldType)] {
        match self {
            ObjectKind::Opportunity => &[
                ("Id", T::Id),
                ("IsDeleted", T::Boolean),
                ("AccountId", T::Reference),
                ("Name", T::String),
                ("Description", T::Textarea),
                ("StageName", T::Picklist),
                ("Amount", T::Currency),
                ("CloseDate", T::Date),
                ("IsClosed", T::Boolean),
                ("IsWon", T::Boolean),
                ("CurrencyIsoCode", T::Picklist),
                ("OwnerId", T::Reference),
                ("CreatedDate", T::DateTime),
                ("LastModifiedDate", T::DateTime),
                ("SystemModstamp", T::DateTime),
            ],
            ObjectKind::Task => &[
                ("Id", T::Id),
                ("WhoId", T::Reference),
                ("WhatId", T::Reference),
                ("Subject", T::String),
                ("ActivityDate", T::Date),
                ("Status", T::Picklist),
                ("OwnerId", T::Reference),
                ("Description", T::Textarea),
                ("Type", T::Picklist),
                ("IsDeleted", T::Boolean),
                ("IsClosed", T::Boolean),
                ("CallDurationInSeconds", T::Int),
                ("CallType", T::Picklist),
                ("CallDisposition", T::String),
                ("TaskSubtype", T::Picklist),
                ("CompletedDateTime", T::DateTime),
                ("CreatedDate", T::DateTime),
                ("LastModifiedDate", T::DateTime),
                ("SystemModstamp", T::DateTime),
            ],
            ObjectKind::Event => &[
                ("Id", T::Id),
                ("WhoId", T::Reference),
                ("WhatId", T::Reference),
                ("Subject", T::String),
                ("Location", T::String),
                ("IsAllDayEvent", T::Boolean),
                ("ActivityDateTime", T::DateTime),
                ("ActivityDate", T::Date),
                ("DurationInMinutes", T::Int),
                ("StartDateTime", T::DateTime),
                ("EndDateTime", T::DateTime),
                ("OwnerId", T::Reference),
                ("Type", T::Picklist),
                ("EventSubtype", T::Picklist),
                ("IsDeleted", T::Boolean),
                ("CreatedDate", T::DateTime),
                ("LastModifiedDate", T::DateTime),
                ("SystemModstamp", T::DateTime),
            ],
            ObjectKind::User => &[
                ("Id", T::Id),
                ("Username", T::String),
                ("LastName", T::String),
                ("FirstName", T::String),
                ("Name", T::String),
                ("Email", T::Email),
                ("IsActive", T::Boolean),
                ("LastModifiedDate", T::DateTime),
                ("SystemModstamp", T::DateTime),
            ],
            ObjectKind::Contact => &[
                ("Id", T::Id),
                ("IsDeleted", T::Boolean),
                ("AccountId", T::Reference),
                ("LastName", T::String),
                ("FirstName", T::String),
                ("Name", T::String),
                ("Phone", T::Phone),
                ("Email", T::Email),
                ("OwnerId", T::Reference),
                ("SystemModstamp", T::DateTime),
            ],
            ObjectKind::Account => &[
                ("Id", T::Id),
                ("IsDeleted", T::Boolean),
                ("Name", T::String),
                ("BillingStreet", T::Textarea),
                ("OwnerId", T::Reference),
                ("SystemModstamp", T::DateTime),
            ],
            ObjectKind::Organization => &[("Id", T::Id), ("Name", T::String), ("DefaultCurrencyIsoCode", T::Picklist)],
        }
    }

    fn relations(self) -> &'static [Relation] {
        match self {
            ObjectKind::Opportunity => &[OWNER, ACCOUNT],
            ObjectKind::Task | ObjectKind::Event => &[OWNER, WHO, WHAT],
            ObjectKind::Contact => &[OWNER, ACCOUNT],
            ObjectKind::Account => &[OWNER],
            ObjectKind::User | ObjectKind::Organization => &[],
        }
    }
}

/// A selected or filtered field: on the object itself, or through a relation.
#[derive(Clone, Debug)]
pub(crate) struct FieldRef {
    relation: Option<&'static str>,
    name: &'static str,
    ty: FieldType,
}

/// A field's value.
#[derive(Clone, Debug)]
enum Val<'a> {
    Null,
    Bool(bool),
    Str(Cow<'a, str>),
    Cents(i64),
    Int(i64),
    Date(Date),
    DateTime(Timestamp),
}

impl Val<'_> {
    fn to_json(&self) -> Value {
        match self {
            Val::Null => Value::Null,
            Val::Bool(b) => Value::Bool(*b),
            Val::Str(s) => Value::String(s.to_string()),
            // Salesforce sends currency fields as JSON doubles (`185000.0`, `12750.5`).
            Val::Cents(c) => json!(*c as f64 / 100.0),
            Val::Int(n) => json!(n),
            Val::Date(d) => Value::String(d.to_string()),
            Val::DateTime(t) => Value::String(sf_datetime(*t)),
        }
    }

    /// Orders two values of one field (nulls are handled by the caller).
    fn cmp(&self, other: &Val<'_>) -> Ordering {
        match (self, other) {
            (Val::Bool(a), Val::Bool(b)) => a.cmp(b),
            (Val::Str(a), Val::Str(b)) => a.to_lowercase().cmp(&b.to_lowercase()),
            (Val::Cents(a), Val::Cents(b)) | (Val::Int(a), Val::Int(b)) => a.cmp(b),
            (Val::Date(a), Val::Date(b)) => a.cmp(b),
            (Val::DateTime(a), Val::DateTime(b)) => a.cmp(b),
            _ => Ordering::Equal,
        }
    }

    /// Compares with a literal of the right kind; `None` for a null or a mismatch.
    fn cmp_literal(&self, literal: &Literal) -> Option<Ordering> {
        match (self, literal) {
            (Val::Bool(a), Literal::Bool(b)) => Some(a.cmp(b)),
            (Val::Str(a), Literal::Str(b)) => Some(a.to_lowercase().cmp(&b.to_lowercase())),
            (Val::Cents(a), Literal::Number(b)) => (*a as f64 / 100.0).partial_cmp(b),
            (Val::Int(a), Literal::Number(b)) => (*a as f64).partial_cmp(b),
            (Val::Date(a), Literal::Date(b)) => Some(a.cmp(b)),
            (Val::DateTime(a), Literal::DateTime(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }

    fn matches(&self, op: Op, values: &[Literal]) -> bool {
        if op == Op::In {
            return values.iter().any(|v| self.matches(Op::Eq, std::slice::from_ref(v)));
        }
        let literal = &values[0];
        let is_null = matches!(self, Val::Null);
        if matches!(literal, Literal::Null) {
            return match op {
                Op::Eq => is_null,
                Op::Ne => !is_null,
                _ => false,
            };
        }
        let Some(order) = self.cmp_literal(literal) else {
            return op == Op::Ne;
        };
        match op {
            Op::Eq => order == Ordering::Equal,
            Op::Ne => order != Ordering::Equal,
            Op::Lt => order == Ordering::Less,
            Op::Le => order != Ordering::Greater,
            Op::Gt => order == Ordering::Greater,
            Op::Ge => order != Ordering::Less,
            Op::In => false,
        }
    }
}

/// Salesforce's datetime format: `2025-06-02T11:04:12.000+0000`.
pub(crate) fn sf_datetime(t: Timestamp) -> String {
    let text = t.to_string();
    format!("{}.000+0000", text.trim_end_matches('Z'))
}

/// An error in Salesforce's shape: a JSON array of `{"message","errorCode"}`.
#[derive(Debug)]
struct ApiError {
    status: u16,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    fn malformed(message: impl Into<String>) -> Self {
        Self::new(400, "MALFORMED_QUERY", message)
    }

    fn not_found() -> Self {
        Self::new(404, "NOT_FOUND", "The requested resource does not exist")
    }

    fn into_response(self) -> Response {
        error_response(self.status, self.code, &self.message)
    }
}

fn error_response(status: u16, code: &str, message: &str) -> Response {
    let body = json!([{ "message": message, "errorCode": code }]);
    Response::json(status, serde_json::to_vec(&body).unwrap_or_default())
}

fn json_response(status: u16, value: &Value) -> Response {
    Response::json(status, serde_json::to_vec(value).unwrap_or_default())
}

impl Responder for Crm {
    fn respond(&self, method: &str, path: &str, query: &str, headers: &[(&str, &str)]) -> Response {
        self.respond_with_body(method, path, query, headers, &[])
    }
}

fn header<'h>(headers: &[(&str, &'h str)], name: &str) -> Option<&'h str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
}

impl Crm {
    /// Answers one request: the token endpoint (the [`crate::oauth::TokenAuthority`]'s, with the
    /// form parameters in `body`), or an API request, which needs a valid session, is counted against the
    /// allocation, may meet a pending [`Fault`], and is answered with `Sforce-Limit-Info`.
    /// Never does IO; an injected delay is returned in [`Response::delay`].
    pub fn respond_with_body(
        &self,
        method: &str,
        path: &str,
        query: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        if path == TOKEN_PATH {
            let response = self.authority.respond_token(method, query, headers, body);
            self.log(method, path, "", None, None, false, response.status);
            return response;
        }
        let session_ok = self.authority.bearer_token_valid(headers);
        let (session_ok, fault, used) = {
            let mut control = self.control();
            control.requests += 1;
            let expired = session_ok && self.session_budget.is_some_and(|n| control.since_expiry >= n);
            if expired {
                control.since_expiry = 0;
            }
            if !session_ok || expired {
                drop(control);
                if expired {
                    self.expire_sessions();
                }
                (false, None, self.api_usage())
            } else {
                control.since_expiry += 1;
                control.api_used += 1;
                let fault = control.faults.pop_front();
                (true, fault, control.api_used)
            }
        };
        let q = Query::parse(query);
        let soql = q.get("q").map(str::to_owned);
        let query_options = header(headers, "sforce-query-options").map(str::to_owned);
        let mut response = match (session_ok, fault) {
            (false, _) => {
                let mut r = error_response(401, "INVALID_SESSION_ID", "Session expired or invalid");
                r.headers.push(("www-authenticate", "Token".to_owned()));
                r
            }
            (true, Some(Fault::SessionExpired)) => {
                self.expire_sessions();
                error_response(401, "INVALID_SESSION_ID", "Session expired or invalid")
            }
            (true, Some(Fault::RequestLimitExceeded)) => error_response(
                403,
                "REQUEST_LIMIT_EXCEEDED",
                "ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
            ),
            (true, Some(Fault::ServerError(status))) => {
                error_response(status, "SERVER_UNAVAILABLE", "Server temporarily unavailable")
            }
            (true, _) if used > self.api_limit => {
                error_response(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            }
            (true, fault) => {
                let mut r =
                    self.serve(method, path, &q, query_options.as_deref()).unwrap_or_else(ApiError::into_response);
                if let Some(Fault::Delay(delay)) = fault {
                    r.delay = Some(delay);
                }
                r
            }
        };
        if session_ok {
            response.headers.push(("sforce-limit-info", format!("api-usage={used}/{}", self.api_limit)));
        }
        self.log(method, path, query, soql, query_options, session_ok, response.status);
        response
    }

    #[allow(clippy::too_many_arguments)]
    fn log(
        &self,
        method: &str,
        path: &str,
        query: &str,
        soql: Option<String>,
        query_options: Option<String>,
        session_ok: bool,
        status: u16,
    ) {
        let mut control = self.control();
        if path == TOKEN_PATH {
            control.requests += 1;
        }
        let seq = control.requests;
        control.log.push(RequestRecord {
            seq,
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            soql,
            query_options,
            session_ok,
            status,
        });
    }

    /// Serves an API request with a valid session.
    fn serve(&self, method: &str, path: &str, q: &Query<'_>, options: Option<&str>) -> Result<Response, ApiError> {
        let rest = path.strip_prefix("/services/data/").ok_or_else(ApiError::not_found)?;
        let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
        let version = segments[0];
        let supported = version
            .strip_prefix('v')
            .and_then(|v| v.strip_suffix(".0"))
            .and_then(|v| v.parse::<u32>().ok())
            .is_some_and(|v| VERSIONS.contains(&v));
        if !supported {
            return Err(ApiError::not_found());
        }
        if method != "GET" && method != "HEAD" {
            return Err(ApiError::new(
                405,
                "METHOD_NOT_ALLOWED",
                format!("HTTP Method '{method}' not allowed. Allowed are GET,HEAD"),
            ));
        }
        let value = match &segments[1..] {
            ["query"] | ["queryAll"] => {
                let all = segments[1] == "queryAll";
                let text = q.get("q").ok_or_else(|| ApiError::malformed("A query string has to be specified"))?;
                self.query(text, all, batch_size(options))?
            }
            ["query" | "queryAll", locator] => self.more(locator)?,
            ["sobjects", object, "describe"] => self.describe(object)?,
            ["sobjects", object, "deleted"] => self.deleted(object, q)?,
            ["limits"] => json!({
                "DailyApiRequests": { "Max": self.api_limit, "Remaining": self.api_limit.saturating_sub(self.api_usage()) }
            }),
            _ => return Err(ApiError::not_found()),
        };
        Ok(json_response(200, &value))
    }

    /// The fields of `kind` in this org: `CurrencyIsoCode` only in a multi-currency org.
    fn fields(&self, kind: ObjectKind) -> impl Iterator<Item = &'static (&'static str, FieldType)> {
        let multi = self.org.multi_currency;
        kind.fields().iter().filter(move |(name, _)| multi || *name != "CurrencyIsoCode")
    }

    fn resolve(&self, kind: ObjectKind, written: &str) -> Result<FieldRef, ApiError> {
        let no_such = || {
            ApiError::new(
                400,
                "INVALID_FIELD",
                format!(
                    "No such column '{written}' on entity '{}'. If you are attempting to use a custom field, be sure \
                     to append the '__c' after the custom field name. Please reference your WSDL or the describe call \
                     for the appropriate names.",
                    kind.name()
                ),
            )
        };
        let (relation, field, target) = match written.split_once('.') {
            None => (None, written, kind),
            Some((rel, field)) => {
                let relation =
                    kind.relations().iter().find(|r| r.name.eq_ignore_ascii_case(rel)).ok_or_else(no_such)?;
                (Some(relation.name), field, relation.target)
            }
        };
        let (name, ty) = self.fields(target).find(|(n, _)| n.eq_ignore_ascii_case(field)).ok_or_else(no_such)?;
        Ok(FieldRef { relation, name, ty: *ty })
    }

    fn row_count(&self, kind: ObjectKind) -> usize {
        match kind {
            ObjectKind::Opportunity => self.opportunities.len(),
            ObjectKind::Task => self.tasks.len(),
            ObjectKind::Event => self.events.len(),
            ObjectKind::User => self.users.len(),
            ObjectKind::Contact => self.contacts.len(),
            ObjectKind::Account => self.accounts.len(),
            ObjectKind::Organization => 1,
        }
    }

    fn deleted_at(&self, kind: ObjectKind, row: usize) -> Option<Timestamp> {
        match kind {
            ObjectKind::Opportunity => self.opportunities[row].deleted_at,
            ObjectKind::Task => self.tasks[row].deleted_at,
            ObjectKind::Event => self.events[row].deleted_at,
            _ => None,
        }
    }

    /// The row of the record `id` of `kind` (tables are sorted by id).
    fn find(&self, kind: ObjectKind, id: &str) -> Option<usize> {
        fn search<R>(rows: &[R], id: &str, key: impl Fn(&R) -> &str) -> Option<usize> {
            rows.binary_search_by(|r| key(r).cmp(id)).ok()
        }
        match kind {
            ObjectKind::Opportunity => search(&self.opportunities, id, |r| &r.id),
            ObjectKind::Task => search(&self.tasks, id, |r| &r.id),
            ObjectKind::Event => search(&self.events, id, |r| &r.id),
            ObjectKind::User => search(&self.users, id, |r| &r.id),
            ObjectKind::Contact => search(&self.contacts, id, |r| &r.id),
            ObjectKind::Account => search(&self.accounts, id, |r| &r.id),
            ObjectKind::Organization => (id == self.org.id).then_some(0),
        }
    }

    /// The value of a field of the object itself.
    fn value(&self, kind: ObjectKind, row: usize, field: &str) -> Val<'_> {
        let s = |text: &str| Val::Str(Cow::Owned(text.to_owned()));
        let opt = |text: &Option<String>| text.as_deref().map_or(Val::Null, s);
        let dt = |t: Option<Timestamp>| t.map_or(Val::Null, Val::DateTime);
        match kind {
            ObjectKind::Opportunity => {
                let o = &self.opportunities[row];
                match field {
                    "Id" => s(&o.id),
                    "IsDeleted" => Val::Bool(o.deleted_at.is_some()),
                    "AccountId" => s(&o.account_id),
                    "Name" => s(&o.name),
                    "Description" => opt(&o.description),
                    "StageName" => s(&o.stage_name),
                    "Amount" => o.amount_cents.map_or(Val::Null, Val::Cents),
                    "CloseDate" => Val::Date(o.close_date),
                    "IsClosed" => Val::Bool(o.is_closed),
                    "IsWon" => Val::Bool(o.is_won),
                    "CurrencyIsoCode" => s(&o.currency),
                    "OwnerId" => s(&o.owner_id),
                    "CreatedDate" => Val::DateTime(o.created),
                    "LastModifiedDate" => Val::DateTime(o.last_modified),
                    "SystemModstamp" => Val::DateTime(o.system_modstamp),
                    _ => Val::Null,
                }
            }
            ObjectKind::Task => {
                let t = &self.tasks[row];
                match field {
                    "Id" => s(&t.id),
                    "WhoId" => opt(&t.who_id),
                    "WhatId" => opt(&t.what_id),
                    "Subject" => s(&t.subject),
                    "ActivityDate" => t.activity_date.map_or(Val::Null, Val::Date),
                    "Status" => s(&t.status),
                    "OwnerId" => s(&t.owner_id),
                    "Description" => opt(&t.description),
                    "Type" => s(&t.subtype),
                    "IsDeleted" => Val::Bool(t.deleted_at.is_some()),
                    "IsClosed" => Val::Bool(t.is_closed),
                    "CallDurationInSeconds" => t.call_duration_secs.map_or(Val::Null, Val::Int),
                    "CallType" => opt(&t.call_type),
                    "CallDisposition" => {
                        if t.subtype == "Call" && t.is_closed {
                            s("Connected")
                        } else {
                            Val::Null
                        }
                    }
                    "TaskSubtype" => s(&t.subtype),
                    "CompletedDateTime" => dt(t.completed),
                    "CreatedDate" => Val::DateTime(t.created),
                    "LastModifiedDate" | "SystemModstamp" => Val::DateTime(t.system_modstamp),
                    _ => Val::Null,
                }
            }
            ObjectKind::Event => {
                let e = &self.events[row];
                match field {
                    "Id" => s(&e.id),
                    "WhoId" => opt(&e.who_id),
                    "WhatId" => opt(&e.what_id),
                    "Subject" => s(&e.subject),
                    "Location" => opt(&e.location),
                    "IsAllDayEvent" => Val::Bool(false),
                    "ActivityDateTime" | "StartDateTime" => Val::DateTime(e.start),
                    "ActivityDate" => Val::Date(e.start.date()),
                    "DurationInMinutes" => Val::Int(e.duration_minutes),
                    "EndDateTime" => Val::DateTime(e.start.plus_secs(e.duration_minutes * 60)),
                    "OwnerId" => s(&e.owner_id),
                    "Type" => s("Meeting"),
                    "EventSubtype" => s("Event"),
                    "IsDeleted" => Val::Bool(e.deleted_at.is_some()),
                    "CreatedDate" => Val::DateTime(e.created),
                    "LastModifiedDate" | "SystemModstamp" => Val::DateTime(e.system_modstamp),
                    _ => Val::Null,
                }
            }
            ObjectKind::User => {
                let u = &self.users[row];
                match field {
                    "Id" => s(&u.id),
                    "Username" => s(&u.email),
                    "LastName" => s(&u.last_name),
                    "FirstName" => s(&u.first_name),
                    "Name" => Val::Str(Cow::Owned(u.name())),
                    "Email" => s(&u.email),
                    "IsActive" => Val::Bool(u.is_active),
                    "LastModifiedDate" | "SystemModstamp" => Val::DateTime(u.system_modstamp),
                    _ => Val::Null,
                }
            }
            ObjectKind::Contact => {
                let c = &self.contacts[row];
                match field {
                    "Id" => s(&c.id),
                    "IsDeleted" => Val::Bool(false),
                    "AccountId" => s(&c.account_id),
                    "LastName" => s(&c.last_name),
                    "FirstName" => s(&c.first_name),
                    "Name" => Val::Str(Cow::Owned(c.name())),
                    "Phone" => s(&c.phone),
                    "Email" => s(&c.email),
                    "OwnerId" => s(&c.owner_id),
                    "SystemModstamp" => Val::DateTime(self.now),
                    _ => Val::Null,
                }
            }
            ObjectKind::Account => {
                let a = &self.accounts[row];
                match field {
                    "Id" => s(&a.id),
                    "IsDeleted" => Val::Bool(false),
                    "Name" => s(&a.name),
                    "BillingStreet" => s(&a.billing_street),
                    "OwnerId" => s(&a.owner_id),
                    "SystemModstamp" => Val::DateTime(self.now),
                    _ => Val::Null,
                }
            }
            ObjectKind::Organization => match field {
                "Id" => s(&self.org.id),
                "Name" => s(&self.org.name),
                "DefaultCurrencyIsoCode" => s(&self.org.default_currency),
                _ => Val::Null,
            },
        }
    }

    /// The related row of `relation` on a record, if the lookup is set.
    fn related(&self, kind: ObjectKind, row: usize, relation: &str) -> Option<(&'static Relation, usize)> {
        let rel = kind.relations().iter().find(|r| r.name == relation)?;
        let Val::Str(id) = self.value(kind, row, rel.id_field) else {
            return None;
        };
        Some((rel, self.find(rel.target, &id)?))
    }

    fn field_value(&self, kind: ObjectKind, row: usize, field: &FieldRef) -> Val<'_> {
        match field.relation {
            None => self.value(kind, row, field.name),
            Some(relation) => match self.related(kind, row, relation) {
                Some((rel, target_row)) => self.value(rel.target, target_row, field.name),
                None => Val::Null,
            },
        }
    }

    fn attributes(kind: ObjectKind, id: &str, type_name: &str) -> Value {
        json!({ "type": type_name, "url": format!("/services/data/{API_VERSION}/sobjects/{}/{id}", kind.name()) })
    }

    /// One record with the selected fields, relationship fields nested.
    fn render(&self, kind: ObjectKind, row: usize, fields: &[FieldRef]) -> Value {
        let mut record = Map::new();
        let Val::Str(id) = self.value(kind, row, "Id") else { return Value::Null };
        record.insert("attributes".to_owned(), Self::attributes(kind, &id, kind.name()));
        for field in fields {
            match field.relation {
                None => {
                    record.insert(field.name.to_owned(), self.value(kind, row, field.name).to_json());
                }
                Some(relation) => {
                    let Some((rel, target_row)) = self.related(kind, row, relation) else {
                        record.insert(relation.to_owned(), Value::Null);
                        continue;
                    };
                    let nested = record.entry(relation.to_owned()).or_insert_with(|| {
                        let Val::Str(target_id) = self.value(rel.target, target_row, "Id") else { return Value::Null };
                        json!({ "attributes": Self::attributes(rel.target, &target_id, rel.attributes_type) })
                    });
                    if let Value::Object(nested) = nested {
                        nested.insert(field.name.to_owned(), self.value(rel.target, target_row, field.name).to_json());
                    }
                }
            }
        }
        Value::Object(record)
    }

    /// Runs a query and answers its first page, opening a locator when there are more.
    fn query(&self, text: &str, all: bool, batch: usize) -> Result<Value, ApiError> {
        let parsed: Soql = soql::parse(text).map_err(ApiError::malformed)?;
        let kind = ObjectKind::parse(&parsed.object).ok_or_else(|| {
            ApiError::new(
                400,
                "INVALID_TYPE",
                format!(
                    "sObject type '{}' is not supported. If you are attempting to use a custom object, be sure to \
                     append the '__c' after the entity name.",
                    parsed.object
                ),
            )
        })?;
        let mut fields: Vec<FieldRef> = Vec::with_capacity(parsed.fields.len());
        for written in &parsed.fields {
            let field = self.resolve(kind, written)?;
            if fields.iter().any(|f| f.relation == field.relation && f.name == field.name) {
                return Err(ApiError::malformed(format!("duplicate field selected: {written}")));
            }
            fields.push(field);
        }
        let mut conditions = Vec::with_capacity(parsed.conditions.len());
        for condition in &parsed.conditions {
            let field = self.resolve(kind, &condition.field)?;
            let expected = field.ty.literal_kind();
            for literal in &condition.values {
                if !matches!(literal, Literal::Null) && literal.kind() != expected {
                    let hint = match expected {
                        "date" | "dateTime" | "boolean" | "number" => " and should not be enclosed in quotes",
                        _ => "",
                    };
                    return Err(ApiError::new(
                        400,
                        "INVALID_FIELD",
                        format!(
                            "value of filter criterion for field '{}' must be of type {expected}{hint}",
                            field.name
                        ),
                    ));
                }
            }
            conditions.push((field, condition.op, &condition.values));
        }
        let order = match &parsed.order {
            Some((written, ascending, nulls_first)) => Some((self.resolve(kind, written)?, *ascending, *nulls_first)),
            None => None,
        };
        let mut rows: Vec<usize> = (0..self.row_count(kind))
            .filter(|&row| match self.deleted_at(kind, row) {
                None => true,
                Some(at) => all && self.in_recycle_bin(Some(at)),
            })
            .filter(|&row| {
                conditions.iter().all(|(field, op, values)| self.field_value(kind, row, field).matches(*op, values))
            })
            .collect();
        if let Some((field, ascending, nulls_first)) = &order {
            let keyed: Vec<(Val<'_>, usize)> = rows.iter().map(|&r| (self.field_value(kind, r, field), r)).collect();
            let mut keyed = keyed;
            keyed.sort_by(|(a, ra), (b, rb)| {
                let order = match (a, b) {
                    (Val::Null, Val::Null) => Ordering::Equal,
                    (Val::Null, _) => return if *nulls_first { Ordering::Less } else { Ordering::Greater },
                    (_, Val::Null) => return if *nulls_first { Ordering::Greater } else { Ordering::Less },
                    _ if *ascending => a.cmp(b),
                    _ => b.cmp(a),
                };
                order.then(ra.cmp(rb))
            });
            rows = keyed.into_iter().map(|(_, r)| r).collect();
        }
        if let Some(limit) = parsed.limit {
            rows.truncate(limit);
        }
        let batch = batch.min(self.page_cap);
        let total = rows.len();
        let page: Vec<Value> = rows.iter().take(batch).map(|&r| self.render(kind, r, &fields)).collect();
        let mut answer = json!({ "totalSize": total, "done": total <= batch, "records": page });
        if total > batch {
            let mut control = self.control();
            control.locators_issued += 1;
            let id = control.locators_issued;
            control.locators.insert(id, Locator { object: kind, fields, rows, batch });
            while control.locators.len() > MAX_LOCATORS {
                control.locators.pop_first();
            }
            answer["nextRecordsUrl"] = Value::String(next_url(id, batch));
        }
        Ok(answer)
    }

    /// The page of an open query at `01gFk…AAA-<offset>`.
    fn more(&self, locator: &str) -> Result<Value, ApiError> {
        let invalid = || ApiError::new(400, "INVALID_QUERY_LOCATOR", "invalid query locator");
        let (name, offset) = locator.rsplit_once('-').ok_or_else(invalid)?;
        let id: u64 = name
            .strip_prefix("01gFk")
            .and_then(|n| n.strip_suffix("AAA"))
            .and_then(|n| n.parse().ok())
            .ok_or_else(invalid)?;
        let offset: usize = offset.parse().map_err(|_| invalid())?;
        let mut control = self.control();
        let open = control.locators.get(&id).ok_or_else(invalid)?;
        if offset >= open.rows.len() {
            return Err(invalid());
        }
        let end = (offset + open.batch).min(open.rows.len());
        let page: Vec<Value> =
            open.rows[offset..end].iter().map(|&r| self.render(open.object, r, &open.fields)).collect();
        let total = open.rows.len();
        let mut answer = json!({ "totalSize": total, "done": end == total, "records": page });
        if end < total {
            answer["nextRecordsUrl"] = Value::String(next_url(id, end));
        } else {
            control.locators.remove(&id);
        }
        Ok(answer)
    }

    fn describe(&self, object: &str) -> Result<Value, ApiError> {
        let kind = ObjectKind::parse(object).ok_or_else(ApiError::not_found)?;
        let fields: Vec<Value> = self
            .fields(kind)
            .map(|(name, ty)| {
                json!({
                    "name": name,
                    "type": ty.describe_name(),
                    "label": name,
                    "nillable": !matches!(ty, T::Id | T::Boolean),
                    "filterable": *ty != T::Textarea,
                    "sortable": *ty != T::Textarea,
                })
            })
            .collect();
        Ok(json!({
            "name": kind.name(),
            "label": kind.name(),
            "queryable": true,
            "retrieveable": true,
            "replicateable": kind != ObjectKind::Organization,
            "fields": fields,
        }))
    }

    /// `sobjects/{type}/deleted/?start=&end=`.
    fn deleted(&self, object: &str, q: &Query<'_>) -> Result<Value, ApiError> {
        let kind = ObjectKind::parse(object).ok_or_else(ApiError::not_found)?;
        let when = |name: &str| {
            let text = q
                .get(name)
                .ok_or_else(|| ApiError::new(400, "MISSING_ARGUMENT", format!("Missing required parameter: {name}")))?;
            soql::parse_datetime(text).ok_or_else(|| {
                ApiError::new(400, "INVALID_REPLICATION_DATE", format!("Invalid {name} date: expected ISO 8601"))
            })
        };
        let (start, end) = (when("start")?, when("end")?);
        if end <= start {
            return Err(ApiError::new(400, "INVALID_REPLICATION_DATE", "end date must be after start date"));
        }
        let minute = |t: Timestamp| Timestamp::from_unix(t.unix() - t.unix().rem_euclid(60));
        let earliest = minute(self.now.plus_secs(-super::RECYCLE_BIN_SECS));
        let latest = minute(end.min(self.now));
        let records: Vec<Value> = (0..self.row_count(kind))
            .filter_map(|row| {
                let at = self.deleted_at(kind, row)?;
                (at >= start && at <= latest && self.in_recycle_bin(Some(at))).then(|| {
                    let Val::Str(id) = self.value(kind, row, "Id") else { return Value::Null };
                    json!({ "id": id, "deletedDate": sf_datetime(at) })
                })
            })
            .collect();
        Ok(json!({
            "deletedRecords": records,
            "earliestDateAvailable": sf_datetime(earliest),
            "latestDateCovered": sf_datetime(latest),
        }))
    }
}

fn next_url(locator: u64, offset: usize) -> String {
    format!("/services/data/{API_VERSION}/query/01gFk{locator:010}AAA-{offset}")
}

/// The page size a `Sforce-Query-Options: batchSize=N` header asks for, within 200 to 2000.
fn batch_size(options: Option<&str>) -> usize {
    options
        .and_then(|o| o.split(',').find_map(|part| part.trim().strip_prefix("batchSize=")))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .map_or(MAX_BATCH, |n| n.clamp(MIN_BATCH, MAX_BATCH))
}
