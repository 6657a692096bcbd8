//! Tenants, users, tokens, teams, exchange rates and the user's own record.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, Operator, OptionalJson, User};
use super::openapi::{Created, ErrorBody};
use crate::ingest::Currency;
use crate::store::{
    Actor, AuditEntry, FxRate, NewTenant, NewToken, NewUser, Principal, Role, Scope, TeamId, TenantId, TokenId, UserId,
    UserUpdate,
};

/// Checks a display name: 1 to 200 characters, no control characters.
pub(super) fn check_name(field: &'static str, name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request("invalid_field", format!("`{field}` must be 1 to 200 characters")));
    }
    Ok(name.to_owned())
}

/// Checks an e-mail address's shape (one `@`, a dotted domain, no spaces, at most 254).
pub(super) fn check_email(field: &'static str, email: &str) -> Result<String, ApiError> {
    let email = email.trim();
    let ok = email.len() <= 254
        && email.bytes().all(|b| b.is_ascii_graphic() || b >= 0x80)
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    if !ok {
        return Err(ApiError::bad_request("invalid_field", format!("`{field}` is not an e-mail address")));
    }
    Ok(email.to_owned())
}

/// Parses an id from a path: anything that is not one of this tenant's ids is 404.
pub(super) fn parse_id<T: std::str::FromStr>(what: &'static str, raw: &str) -> Result<T, ApiError> {
    raw.parse().map_err(|_| ApiError::NotFound(what))
}

/// Records an audit entry; a failure to audit fails the request.
pub(super) async fn audit(
    state: &AppState,
    tenant: TenantId,
    actor: Actor,
    action: &str,
    subject: &str,
) -> Result<(), ApiError> {
    state.store.append_audit(tenant, &AuditEntry { actor, action, subject }).await?;
    Ok(())
}

/// A new tenant and its first admin.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewTenantBody {
    /// Display name, 1 to 200 characters.
    name: String,
    /// IANA time zone; every date and period of the tenant is in it.
    #[schema(example = "Europe/London")]
    timezone: String,
    /// ISO 4217 code of the tenant currency; money figures are converted to it.
    #[schema(example = "GBP")]
    currency: String,
    /// The first admin.
    admin: NewAdminBody,
}

/// The first admin of a new tenant.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewAdminBody {
    /// Display name.
    name: String,
    /// Work e-mail.
    email: String,
}

/// A created tenant and its admin's first token.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct CreatedTenant {
    /// The tenant's id.
    id: uuid::Uuid,
    /// Its admin.
    admin: CreatedAdmin,
}

/// The admin of a created tenant.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct CreatedAdmin {
    /// The admin's user id.
    id: uuid::Uuid,
    /// The admin's API token, shown this once (only its hash is kept). A `full` token that
    /// never expires (labelled `first admin token`): the admin should issue their own and
    /// revoke this one.
    token: String,
}

/// Creates a tenant with its first admin (operator).
#[utoipa::path(post, path = "/v1/tenants", tag = "tenants", operation_id = "create_tenant",
    request_body = NewTenantBody,
    responses(
        (status = 201, description = "Created.", body = CreatedTenant),
        (status = 400, description = "Bad input: name, IANA zone, ISO 4217 currency or e-mail.", body = ErrorBody),
        (status = 403, description = "Not the operator's token.", body = ErrorBody),
    ))]
pub(super) async fn create_tenant(
    State(state): State<AppState>,
    _: Operator,
    ApiJson(body): ApiJson<NewTenantBody>,
) -> Result<impl IntoResponse, ApiError> {
    let name = check_name("name", &body.name)?;
    if jiff::tz::TimeZone::get(&body.timezone).is_err() {
        return Err(ApiError::bad_request("invalid_field", "`timezone` is not an IANA time zone (e.g. Europe/London)"));
    }
    let currency = Currency::parse(&body.currency)
        .ok_or_else(|| ApiError::bad_request("invalid_field", "`currency` is not an ISO 4217 code (e.g. GBP)"))?;
    let admin_name = check_name("admin.name", &body.admin.name)?;
    let admin_email = check_email("admin.email", &body.admin.email)?;
    let created = state
        .store
        .create_tenant(&NewTenant {
            name: &name,
            timezone: &body.timezone,
            currency,
            admin_name: &admin_name,
            admin_email: &admin_email,
        })
        .await?;
    let tenant = created.tenant.id;
    audit(&state, tenant, Actor::Operator, "tenant.created", &tenant.to_string()).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedTenant {
            id: tenant.as_uuid(),
            admin: CreatedAdmin { id: created.admin.id.as_uuid(), token: created.admin_token.token },
        }),
    ))
}

/// A new user.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewUserBody {
    /// Display name, 1 to 200 characters.
    name: String,
    /// Work e-mail, unique in the tenant (case-insensitively); CRM users are matched by it.
    email: String,
    /// Their role.
    #[schema(value_type = super::openapi::RoleSchema)]
    role: Role,
}

/// Adds a user to the tenant (admin).
#[utoipa::path(post, path = "/v1/users", tag = "tenants", operation_id = "create_user",
    request_body = NewUserBody,
    responses(
        (status = 201, description = "Created.", body = Created),
        (status = 400, description = "Bad input.", body = ErrorBody),
        (status = 403, description = "Not an admin.", body = ErrorBody),
        (status = 409, description = "The e-mail is taken in this tenant (`email_taken`).", body = ErrorBody),
    ))]
pub(super) async fn create_user(
    State(state): State<AppState>,
    user: User,
    ApiJson(body): ApiJson<NewUserBody>,
) -> Result<impl IntoResponse, ApiError> {
    let admin = user.require_admin()?;
    let name = check_name("name", &body.name)?;
    let email = check_email("email", &body.email)?;
    let created = state
        .store
        .create_user(admin.tenant_id, &NewUser { name: &name, email: &email, role: body.role })
        .await
        .map_err(email_conflict)?;
    audit(&state, admin.tenant_id, Actor::User(admin.user_id), "user.created", &created.id.to_string()).await?;
    Ok((StatusCode::CREATED, axum::Json(Created { id: created.id.as_uuid() })))
}

/// A taken e-mail address is a 409 with its own code.
fn email_conflict(e: crate::store::StoreError) -> ApiError {
    match e {
        crate::store::StoreError::Conflict { .. } => {
            ApiError::conflict("email_taken", "a user with this e-mail address already exists in the tenant")
        }
        other => other.into(),
    }
}

/// Rates as a JSON object of decimal strings by currency code.
fn rates_json(rates: &BTreeMap<Currency, FxRate>) -> Value {
    Value::Object(rates.iter().map(|(c, r)| (c.as_str().to_owned(), Value::String(r.to_string()))).collect())
}

fn user_json(u: &crate::store::User) -> Value {
    json!({"id": u.id, "name": u.name, "email": u.email, "role": u.role})
}

/// A user as the API shows it.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct UserView {
    /// Their id.
    id: uuid::Uuid,
    /// Display name.
    name: String,
    /// Work e-mail.
    email: String,
    /// Their role.
    #[schema(value_type = super::openapi::RoleSchema)]
    role: Role,
}

/// `GET /v1/users`' answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct UserList {
    /// Every user of the tenant.
    users: Vec<UserView>,
}

/// The user's own record with their tenant.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct MeView {
    /// Their id.
    id: uuid::Uuid,
    /// Display name.
    name: String,
    /// Work e-mail.
    email: String,
    /// Their role.
    #[schema(value_type = super::openapi::RoleSchema)]
    role: Role,
    /// Their tenant.
    tenant: TenantView,
}

/// A tenant as its users see it.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct TenantView {
    /// Its id.
    id: uuid::Uuid,
    /// Display name.
    name: String,
    /// IANA time zone.
    timezone: String,
    /// ISO 4217 tenant currency.
    currency: String,
}

/// Lists the tenant's users (manager+).
#[utoipa::path(get, path = "/v1/users", tag = "tenants", operation_id = "list_users",
    responses(
        (status = 200, description = "Every user.", body = UserList),
        (status = 403, description = "A member.", body = ErrorBody),
    ))]
pub(super) async fn list_users(State(state): State<AppState>, user: User) -> Result<impl IntoResponse, ApiError> {
    let p = user.require_manager()?;
    let users = state.store.users(p.tenant_id).await?;
    Ok(axum::Json(json!({"users": users.iter().map(user_json).collect::<Vec<_>>()})))
}

/// The user acted on: the admin may act on anyone of the tenant, others only on themselves.
fn self_or_admin(p: &Principal, target: UserId) -> Result<(), ApiError> {
    if p.role == Role::Admin || p.user_id == target {
        Ok(())
    } else {
        Err(ApiError::Forbidden("only an admin or that user may do this"))
    }
}

/// The most days a token may live.
const MAX_TOKEN_DAYS: i64 = 3650;
/// The lifetime of a token when the request does not say.
const DEFAULT_TOKEN_DAYS: i64 = 90;

/// What token to issue; every field is optional, and so is the body.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewTokenBody {
    /// A label for people, 1 to 100 characters (`office TV`).
    label: Option<String>,
    /// Days until it expires, 1 to 3650; absent = 90; `null` = never expires.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, nullable, minimum = 1, maximum = 3650)]
    expires_in_days: Option<Option<i64>>,
    /// `full` (default): everything the user's role allows. `display`: only reads contest
    /// leaderboards and their streams (office screens), and may be put in a stream URL.
    scope: Option<TokenScope>,
}

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum TokenScope {
    /// Everything the user's role allows.
    Full,
    /// Only reads contest leaderboards and their streams; may be put in a stream URL.
    Display,
}

impl From<Scope> for TokenScope {
    fn from(scope: Scope) -> Self {
        match scope {
            Scope::Full => TokenScope::Full,
            Scope::Display => TokenScope::Display,
        }
    }
}

impl From<TokenScope> for Scope {
    fn from(scope: TokenScope) -> Self {
        match scope {
            TokenScope::Full => Scope::Full,
            TokenScope::Display => Scope::Display,
        }
    }
}

/// A field that is present, possibly `null` (absent stays `None` through `default`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

/// An instant as RFC 3339 in UTC.
pub(super) fn utc(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map(|t| t.to_string()).unwrap_or_default()
}

/// Issues an API token for a user (admin, or that user).
///
/// The token is shown once; only its hash is kept. The body is optional: `label`,
/// `expires_in_days` (default 90; `null` for a token that never expires) and `scope`
/// (`full` by default; `display` for a screen that shows leaderboards). A `display` token
/// cannot issue tokens (no route but the leaderboards takes it). Audited (`token.created`).
#[utoipa::path(post, path = "/v1/users/{id}/tokens", tag = "tenants", operation_id = "create_token",
    params(("id" = uuid::Uuid, Path, description = "The user.")),
    request_body(content = NewTokenBody, description = "Optional."),
    responses(
        (status = 201, description = "Issued.", body = inline(IssuedTokenView)),
        (status = 400, description = "A malformed body, or `label` / `expires_in_days` out of range (`invalid_field`).", body = ErrorBody),
        (status = 403, description = "Neither an admin nor that user, or a display token.", body = ErrorBody),
        (status = 404, description = "No such user in this tenant.", body = ErrorBody),
    ))]
pub(super) async fn create_token(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<NewTokenBody>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.0;
    let target: UserId = parse_id("user", &id)?;
    let label = match &body.label {
        Some(label) => {
            let label = label.trim();
            if label.is_empty() || label.chars().count() > 100 || label.chars().any(char::is_control) {
                return Err(ApiError::bad_request("invalid_field", "`label` must be 1 to 100 characters"));
            }
            Some(label.to_owned())
        }
        None => None,
    };
    let days = body.expires_in_days.unwrap_or(Some(DEFAULT_TOKEN_DAYS));
    if let Some(d) = days
        && !(1..=MAX_TOKEN_DAYS).contains(&d)
    {
        return Err(ApiError::bad_request(
            "invalid_field",
            "`expires_in_days` must be 1 to 3650, or null for a token that never expires",
        ));
    }
    let scope = body.scope.map_or(Scope::Full, Scope::from);
    // Existence first, so that another tenant's id is 404 whoever asks.
    state.store.user(p.tenant_id, target).await?;
    self_or_admin(&p, target)?;
    let expires_at_ms = days.map(|d| crate::store::types::now_ms() + d * 86_400_000);
    let new = NewToken { label: label.as_deref(), scope, expires_at_ms };
    let issued = state.store.issue_token(p.tenant_id, target, &new).await?;
    let subject = format!("user {target} token {} scope {}", issued.id, scope.as_str());
    audit(&state, p.tenant_id, Actor::User(p.user_id), "token.created", &subject).await?;
    let view = IssuedTokenView {
        id: issued.id.as_uuid(),
        token: issued.token,
        label,
        scope: scope.into(),
        expires_at: expires_at_ms.map(utc),
    };
    Ok((StatusCode::CREATED, axum::Json(view)))
}

/// A freshly issued API token.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct IssuedTokenView {
    /// The token's id (to list or revoke it).
    id: uuid::Uuid,
    /// The bearer token, shown this once.
    token: String,
    /// Its label.
    label: Option<String>,
    /// What it may do.
    scope: TokenScope,
    /// When it expires (RFC 3339, UTC); `null` = never.
    expires_at: Option<String>,
}

/// A token's metadata (never the token).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct TokenInfoView {
    /// Its id.
    id: uuid::Uuid,
    /// Its label.
    label: Option<String>,
    /// What it may do.
    scope: TokenScope,
    /// When it was issued (RFC 3339, UTC).
    created_at: String,
    /// When it was last used, to the minute; `null` = never.
    last_used_at: Option<String>,
    /// When it expires; `null` = never.
    expires_at: Option<String>,
    /// When it was revoked; `null` = not revoked.
    revoked_at: Option<String>,
}

/// A user's tokens.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct TokenList {
    /// Oldest first, revoked and expired ones included.
    tokens: Vec<TokenInfoView>,
}

/// Lists a user's API tokens (admin, or that user): metadata only, never a token.
#[utoipa::path(get, path = "/v1/users/{id}/tokens", tag = "tenants", operation_id = "list_tokens",
    params(("id" = uuid::Uuid, Path, description = "The user.")),
    responses(
        (status = 200, description = "The tokens.", body = TokenList),
        (status = 403, description = "Neither an admin nor that user, or a display token.", body = ErrorBody),
        (status = 404, description = "No such user in this tenant.", body = ErrorBody),
    ))]
pub(super) async fn list_tokens(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.0;
    let target: UserId = parse_id("user", &id)?;
    state.store.user(p.tenant_id, target).await?;
    self_or_admin(&p, target)?;
    let tokens = state.store.tokens(p.tenant_id, target).await?;
    let tokens = tokens
        .into_iter()
        .map(|t| TokenInfoView {
            id: t.id.as_uuid(),
            label: t.label,
            scope: t.scope.into(),
            created_at: utc(t.created_at_ms),
            last_used_at: t.last_used_at_ms.map(utc),
            expires_at: t.expires_at_ms.map(utc),
            revoked_at: t.revoked_at_ms.map(utc),
        })
        .collect();
    Ok(axum::Json(TokenList { tokens }))
}

/// Revokes one of a user's API tokens (admin, or that user).
///
/// The token answers 401 from the next request on, on every node (every request looks the
/// token up in the database). Revoking twice is harmless. Audited (`token.revoked`).
#[utoipa::path(delete, path = "/v1/users/{id}/tokens/{token_id}", tag = "tenants", operation_id = "revoke_token",
    params(("id" = uuid::Uuid, Path, description = "The user."), ("token_id" = uuid::Uuid, Path, description = "The token.")),
    responses(
        (status = 204, description = "Revoked."),
        (status = 403, description = "Neither an admin nor that user, or a display token.", body = ErrorBody),
        (status = 404, description = "No such user in this tenant, or no such token of theirs.", body = ErrorBody),
    ))]
pub(super) async fn revoke_token(
    State(state): State<AppState>,
    user: User,
    Path((id, token_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let p = user.0;
    let target: UserId = parse_id("user", &id)?;
    state.store.user(p.tenant_id, target).await?;
    self_or_admin(&p, target)?;
    let token: TokenId = parse_id("token", &token_id)?;
    state.store.revoke_user_token(p.tenant_id, target, token).await?;
    let subject = format!("user {target} token {token}");
    audit(&state, p.tenant_id, Actor::User(p.user_id), "token.revoked", &subject).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Erases a user (admin, or that user).
///
/// Erasure keeps the team totals and no trace of the person. In one transaction: the user's
/// facts and team places go to an anonymous *former member* (a fresh random id, no name, no
/// e-mail, no token; hidden from user lists, its figures count for its teams and, in tenant
/// figures, as `unattributed`), under a random owner hash no CRM id maps to; the user's CRM
/// identities are remembered only as erased, so later syncs never attribute their records
/// to anyone again (edits and retractions in the CRM still correct the totals); the user,
/// their tokens, owner mappings, targets and individual contest places are deleted; the
/// erasure is audited (`user.erased`, by id). On the embedded store the database file is
/// then rewritten, so the deleted name and e-mail are not left in it. Erasing again: 404.
#[utoipa::path(delete, path = "/v1/users/{id}", tag = "tenants", operation_id = "erase_user",
    params(("id" = uuid::Uuid, Path, description = "The user.")),
    responses(
        (status = 204, description = "Erased."),
        (status = 403, description = "Neither an admin nor that user.", body = ErrorBody),
        (status = 404, description = "No such user in this tenant (or already erased).", body = ErrorBody),
        (status = 409, description = "The tenant's only admin (`last_admin`): make another user admin first; nothing is erased.", body = ErrorBody),
    ))]
pub(super) async fn delete_user(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let p = user.0;
    let target: UserId = parse_id("user", &id)?;
    state.store.user(p.tenant_id, target).await?;
    self_or_admin(&p, target)?;
    // Audited inside the erasure's transaction.
    state.store.erase_user(p.tenant_id, target, Actor::User(p.user_id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One user of the tenant (manager+, or that user).
#[utoipa::path(get, path = "/v1/users/{id}", tag = "tenants", operation_id = "get_user",
    params(("id" = uuid::Uuid, Path, description = "The user.")),
    responses(
        (status = 200, description = "The user.", body = UserView),
        (status = 403, description = "A member asking for someone else.", body = ErrorBody),
        (status = 404, description = "No such user in this tenant.", body = ErrorBody),
    ))]
pub(super) async fn get_user(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.0;
    let target: UserId = parse_id("user", &id)?;
    let found = state.store.user(p.tenant_id, target).await?;
    if p.role == Role::Member && p.user_id != target {
        return Err(ApiError::Forbidden("a member sees only themselves"));
    }
    Ok(axum::Json(user_json(&found)))
}

/// What an admin changes about a user; at least one field.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateUserBody {
    /// A new display name, 1 to 200 characters.
    name: Option<String>,
    /// A new work e-mail, unique in the tenant.
    email: Option<String>,
    /// A new role.
    #[schema(value_type = Option<super::openapi::RoleSchema>)]
    role: Option<Role>,
}

/// Changes a user's name, e-mail or role (admin). The tenant's only admin keeps the admin
/// role (409 `last_admin`): make another user admin first. A new role applies to the
/// user's existing tokens from their next request. Audited (`user.updated`).
#[utoipa::path(patch, path = "/v1/users/{id}", tag = "tenants", operation_id = "update_user",
    params(("id" = uuid::Uuid, Path, description = "The user.")),
    request_body = UpdateUserBody,
    responses(
        (status = 200, description = "The user now.", body = UserView),
        (status = 400, description = "Bad input, or nothing to change.", body = ErrorBody),
        (status = 403, description = "Not an admin.", body = ErrorBody),
        (status = 404, description = "No such user in this tenant.", body = ErrorBody),
        (status = 409, description = "The e-mail is taken (`email_taken`), or the tenant's only admin would lose the role (`last_admin`).", body = ErrorBody),
    ))]
pub(super) async fn update_user(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateUserBody>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.0;
    let target: UserId = parse_id("user", &id)?;
    // Existence first, so that another tenant's id is 404 whoever asks.
    state.store.user(p.tenant_id, target).await?;
    if p.role != Role::Admin {
        return Err(ApiError::Forbidden("this needs the admin role"));
    }
    let name = body.name.as_deref().map(|n| check_name("name", n)).transpose()?;
    let email = body.email.as_deref().map(|e| check_email("email", e)).transpose()?;
    if name.is_none() && email.is_none() && body.role.is_none() {
        return Err(ApiError::bad_request("invalid_body", "nothing to change: give `name`, `email` and/or `role`"));
    }
    let update = UserUpdate { name: name.as_deref(), email: email.as_deref(), role: body.role, self_service: false };
    let updated = state.store.update_user(p.tenant_id, target, &update).await.map_err(email_conflict)?;
    audit(&state, p.tenant_id, Actor::User(p.user_id), "user.updated", &target.to_string()).await?;
    Ok(axum::Json(user_json(&updated)))
}

/// A new team.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewTeamBody {
    /// Display name, unique in the tenant.
    name: String,
}

/// Creates a team (admin).
#[utoipa::path(post, path = "/v1/teams", tag = "tenants", operation_id = "create_team",
    request_body = NewTeamBody,
    responses(
        (status = 201, description = "Created.", body = Created),
        (status = 400, description = "Bad input.", body = ErrorBody),
        (status = 403, description = "Not an admin.", body = ErrorBody),
        (status = 409, description = "A team of this name exists (`team_exists`).", body = ErrorBody),
    ))]
pub(super) async fn create_team(
    State(state): State<AppState>,
    user: User,
    ApiJson(body): ApiJson<NewTeamBody>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.require_admin()?;
    let name = check_name("name", &body.name)?;
    let team = state.store.create_team(p.tenant_id, &name).await.map_err(|e| match e {
        crate::store::StoreError::Conflict { .. } => {
            ApiError::conflict("team_exists", "a team with this name already exists")
        }
        other => other.into(),
    })?;
    audit(&state, p.tenant_id, Actor::User(p.user_id), "team.created", &team.id.to_string()).await?;
    Ok((StatusCode::CREATED, axum::Json(Created { id: team.id.as_uuid() })))
}

/// A team with its members.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct TeamView {
    /// Its id.
    id: uuid::Uuid,
    /// Display name.
    name: String,
    /// Its members' user ids.
    members: Vec<uuid::Uuid>,
    /// How many anonymous former members (erased users) it keeps: their figures still
    /// count for the team.
    former_members: u64,
}

/// `GET /v1/teams`' answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct TeamList {
    /// Every team.
    teams: Vec<TeamView>,
}

/// Lists the teams with their members (manager+).
#[utoipa::path(get, path = "/v1/teams", tag = "tenants", operation_id = "list_teams",
    responses(
        (status = 200, description = "Every team.", body = TeamList),
        (status = 403, description = "A member.", body = ErrorBody),
    ))]
pub(super) async fn list_teams(State(state): State<AppState>, user: User) -> Result<impl IntoResponse, ApiError> {
    let p = user.require_manager()?;
    let former = state.store.former_members(p.tenant_id).await?;
    let mut teams = Vec::new();
    for team in state.store.teams(p.tenant_id).await? {
        let (gone, members): (Vec<UserId>, Vec<UserId>) =
            state.store.team_members(p.tenant_id, team.id).await?.into_iter().partition(|m| former.contains(m));
        teams.push(json!({"id": team.id, "name": team.name, "members": members, "former_members": gone.len()}));
    }
    Ok(axum::Json(json!({"teams": teams})))
}

/// Adds a user to a team (admin).
#[utoipa::path(put, path = "/v1/teams/{id}/members/{user_id}", tag = "tenants", operation_id = "add_team_member",
    params(("id" = uuid::Uuid, Path, description = "The team."), ("user_id" = uuid::Uuid, Path, description = "The user.")),
    responses(
        (status = 204, description = "A member (also when already one)."),
        (status = 403, description = "Not an admin.", body = ErrorBody),
        (status = 404, description = "No such team or user in this tenant.", body = ErrorBody),
    ))]
pub(super) async fn add_member(
    State(state): State<AppState>,
    user: User,
    Path((team, member)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let p = user.require_admin()?;
    let team: TeamId = parse_id("team", &team)?;
    let member: UserId = parse_id("user", &member)?;
    state.store.add_team_member(p.tenant_id, team, member).await?;
    audit(&state, p.tenant_id, Actor::User(p.user_id), "team.member_added", &format!("{team} {member}")).await?;
    // Figures or goals may have moved: points are settled now, not at a read.
    super::shared::settled(state.scoring.settle_tenant(p.tenant_id).await);
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a user from a team (admin).
#[utoipa::path(delete, path = "/v1/teams/{id}/members/{user_id}", tag = "tenants", operation_id = "remove_team_member",
    params(("id" = uuid::Uuid, Path, description = "The team."), ("user_id" = uuid::Uuid, Path, description = "The user.")),
    responses(
        (status = 204, description = "Not a member any more."),
        (status = 403, description = "Not an admin.", body = ErrorBody),
        (status = 404, description = "No such team or user in this tenant.", body = ErrorBody),
    ))]
pub(super) async fn remove_member(
    State(state): State<AppState>,
    user: User,
    Path((team, member)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let p = user.require_admin()?;
    let team: TeamId = parse_id("team", &team)?;
    let member: UserId = parse_id("user", &member)?;
    state.store.remove_team_member(p.tenant_id, team, member).await?;
    audit(&state, p.tenant_id, Actor::User(p.user_id), "team.member_removed", &format!("{team} {member}")).await?;
    // Figures or goals may have moved: points are settled now, not at a read.
    super::shared::settled(state.scoring.settle_tenant(p.tenant_id).await);
    Ok(StatusCode::NO_CONTENT)
}

/// Exchange rates to set.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct FxBody {
    /// ISO 4217 code → what one unit of it is worth in the tenant currency, as a positive
    /// decimal string.
    #[schema(example = json!({"EUR": "0.85"}))]
    rates: BTreeMap<String, String>,
}

/// `PUT /v1/fx-rates`' answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct FxSet {
    /// Every rate of the tenant now.
    rates: BTreeMap<String, String>,
    /// How many amounts that waited for a rate were converted.
    converted: u64,
}

/// `GET /v1/fx-rates`' answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct FxView {
    /// ISO 4217 code → its rate.
    rates: BTreeMap<String, String>,
    /// ISO 4217 code → how many amounts wait for its rate.
    waiting_for_rate: BTreeMap<String, u64>,
}

/// Sets exchange rates (admin).
///
/// One unit of each currency is worth `rate` of the tenant currency. Amounts waiting for a
/// rate are converted at once.
#[utoipa::path(put, path = "/v1/fx-rates", tag = "tenants", operation_id = "set_fx_rates",
    request_body = FxBody,
    responses(
        (status = 200, description = "Set.", body = FxSet),
        (status = 400, description = "Not an ISO 4217 code, or not a positive decimal.", body = ErrorBody),
        (status = 403, description = "Not an admin.", body = ErrorBody),
    ))]
pub(super) async fn set_fx_rates(
    State(state): State<AppState>,
    user: User,
    ApiJson(body): ApiJson<FxBody>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.require_admin()?;
    if body.rates.is_empty() {
        return Err(ApiError::bad_request("invalid_field", "`rates` is empty"));
    }
    let mut rates = Vec::with_capacity(body.rates.len());
    for (code, rate) in &body.rates {
        let currency = Currency::parse(code)
            .ok_or_else(|| ApiError::bad_request("invalid_field", format!("`{code}` is not an ISO 4217 code")))?;
        let parsed = FxRate::parse(rate).map_err(|_| {
            ApiError::bad_request(
                "invalid_field",
                format!("the rate of {code} must be a positive decimal string such as \"0.85\""),
            )
        })?;
        rates.push((currency, parsed));
    }
    state.store.set_fx_rates(p.tenant_id, &rates).await?;
    let converted = state.store.convert_waiting(p.tenant_id).await?;
    let codes: Vec<&str> = rates.iter().map(|(c, _)| c.as_str()).collect();
    audit(&state, p.tenant_id, Actor::User(p.user_id), "fx_rates.set", &codes.join(",")).await?;
    let all = state.store.fx_rates(p.tenant_id).await?;
    // Figures or goals may have moved: points are settled now, not at a read.
    super::shared::settled(state.scoring.settle_tenant(p.tenant_id).await);
    Ok(axum::Json(json!({
        "rates": rates_json(&all),
        "converted": converted,
    })))
}

/// The tenant's exchange rates (manager+).
#[utoipa::path(get, path = "/v1/fx-rates", tag = "tenants", operation_id = "get_fx_rates",
    responses(
        (status = 200, description = "The rates and what waits for one.", body = FxView),
        (status = 403, description = "A member.", body = ErrorBody),
    ))]
pub(super) async fn get_fx_rates(State(state): State<AppState>, user: User) -> Result<impl IntoResponse, ApiError> {
    let p = user.require_manager()?;
    let all = state.store.fx_rates(p.tenant_id).await?;
    let waiting = state.store.waiting_for_rate(p.tenant_id).await?;
    Ok(axum::Json(json!({
        "rates": rates_json(&all),
        "waiting_for_rate": waiting.iter().map(|(c, n)| (c.as_str().to_owned(), json!(n))).collect::<serde_json::Map<_, _>>(),
    })))
}

/// The caller's own record (any user).
#[utoipa::path(get, path = "/v1/me", tag = "tenants", operation_id = "get_me",
    responses((status = 200, description = "Their record and tenant.", body = MeView)))]
pub(super) async fn me(State(state): State<AppState>, user: User) -> Result<impl IntoResponse, ApiError> {
    let p = user.0;
    let me = state.store.user(p.tenant_id, p.user_id).await?;
    let tenant = state.store.tenant(p.tenant_id).await?;
    let mut body = user_json(&me);
    body["tenant"] = json!({"id": tenant.id, "name": tenant.name, "timezone": tenant.timezone, "currency": tenant.currency.as_str()});
    Ok(axum::Json(body))
}

/// What to rectify; at least one field.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateMeBody {
    /// A new display name.
    name: Option<String>,
    /// A new work e-mail.
    email: Option<String>,
}

/// Rectifies the caller's own name or e-mail (any user). A new e-mail address changes no
/// CRM owner mapping: a CRM user with that address is mapped to the caller only once an
/// admin confirms it (listed as pending on `GET /v1/integrations/{connector}/owners`).
#[utoipa::path(patch, path = "/v1/me", tag = "tenants", operation_id = "update_me",
    request_body = UpdateMeBody,
    responses(
        (status = 200, description = "The record now.", body = UserView),
        (status = 400, description = "Bad input, or nothing to change.", body = ErrorBody),
        (status = 409, description = "The e-mail is taken (`email_taken`).", body = ErrorBody),
    ))]
pub(super) async fn update_me(
    State(state): State<AppState>,
    user: User,
    ApiJson(body): ApiJson<UpdateMeBody>,
) -> Result<impl IntoResponse, ApiError> {
    let p = user.0;
    let name = body.name.as_deref().map(|n| check_name("name", n)).transpose()?;
    let email = body.email.as_deref().map(|e| check_email("email", e)).transpose()?;
    if name.is_none() && email.is_none() {
        return Err(ApiError::bad_request("invalid_body", "nothing to change: give `name` and/or `email`"));
    }
    let updated = state
        .store
        .update_user(
            p.tenant_id,
            p.user_id,
            // A new address set by its owner maps no CRM identity until an admin confirms it
            // (an admin's own change is an admin's).
            &UserUpdate {
                name: name.as_deref(),
                email: email.as_deref(),
                role: None,
                self_service: p.role != Role::Admin,
            },
        )
        .await
        .map_err(email_conflict)?;
    audit(&state, p.tenant_id, Actor::User(p.user_id), "user.rectified", &p.user_id.to_string()).await?;
    Ok(axum::Json(user_json(&updated)))
}

/// `GET /v1/me/export` takes no parameters: a user exports only themselves.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(super) struct ExportQuery {}

/// Facts per page read while streaming an export.
const EXPORT_PAGE: u32 = 5000;

/// The caller's complete personal export (any user, of themselves only).
///
/// One JSON document, sent as a download (`Content-Disposition: attachment`): `format`
/// (`oneup-personal-export/1`), `exported_at`, `tenant`, `account` (id, name, e-mail, role,
/// created), `teams`, `tokens` (ids and times only: tokens are kept as hashes and never
/// shown), `crm_identities` (how many CRM identities are mapped to the user per connector:
/// the CRM ids themselves are not held, only keyed hashes), `targets` (the user's and their
/// teams'; `goal` a count, or micros of the tenant currency), `contests` (those the user
/// takes part in, themselves or through a team), `points` (their points ledger: awards and
/// revocations of incentives), `audit` (entries the user made or that name them), then every KPI fact attributed to them, last: `facts`, each with `connector`,
/// `metric`, `occurred_at` (RFC 3339, UTC), `value` (a count, or the exact amount as a
/// decimal string), `currency` (money) and `value_in_tenant_currency` (money, `null` while
/// it waits for a rate). Instants are RFC 3339 UTC. The facts are streamed page by page,
/// so exports of any size use little memory; a failure while streaming them ends the
/// connection before the closing bracket (the document is then not valid JSON).
#[utoipa::path(get, path = "/v1/me/export", tag = "tenants", operation_id = "export_me", params(ExportQuery),
    responses(
        (status = 200, description = "The export, as an attachment.", content_type = "application/json", body = Object),
        (status = 400, description = "A query parameter (there are none: a user exports only themselves).", body = ErrorBody),
    ))]
pub(super) async fn export_me(
    State(state): State<AppState>,
    user: User,
    ApiQuery(_): ApiQuery<ExportQuery>,
) -> Result<axum::response::Response, ApiError> {
    use crate::format::{micros_to_decimal, rfc3339_ms};
    let p = user.0;
    let data = state.store.personal_export(p.tenant_id, p.user_id).await?;
    let tenant = state.store.tenant(p.tenant_id).await?;
    let u = &data.user;
    let joined_on = state.store.joined_on(p.tenant_id).await?.get(&p.user_id).map(ToString::to_string);
    let head = json!({
        "format": "oneup-personal-export/1",
        "exported_at": rfc3339_ms(crate::store::types::now_ms()),
        "tenant": {"id": tenant.id, "name": tenant.name, "timezone": tenant.timezone, "currency": tenant.currency.as_str()},
        "account": {"id": u.id, "name": u.name, "email": u.email, "role": u.role, "created_at": rfc3339_ms(u.created_at_ms),
            "joined_on": joined_on},
        "teams": data.teams.iter().map(|(id, name)| json!({"id": id, "name": name})).collect::<Vec<_>>(),
        "tokens": data.tokens.iter().map(|t| json!({
            "id": t.id,
            "created_at": rfc3339_ms(t.created_at_ms),
            "revoked_at": t.revoked_at_ms.map(rfc3339_ms),
        })).collect::<Vec<_>>(),
        "crm_identities": data.crm_identities.iter().map(|(c, n)| json!({"connector": c, "mapped": n})).collect::<Vec<_>>(),
        "targets": data.targets.iter().map(|t| json!({
            "id": t.id,
            "assignee": match t.team { Some(team) => json!({"team_id": team}), None => json!({"user_id": u.id}) },
            "metric": t.metric,
            "period": t.period,
            "goal": t.goal,
            "starts_on": t.starts_on,
            "recurring": t.recurring,
        })).collect::<Vec<_>>(),
        "contests": data.contests.iter().map(|c| json!({
            "id": c.id,
            "name": c.name,
            "metric": c.metric,
            "format": c.format,
            "starts_at": rfc3339_ms(c.starts_at_ms),
            "ends_at": rfc3339_ms(c.ends_at_ms),
            "through_team": c.team,
        })).collect::<Vec<_>>(),
        "points": data.points.iter().map(|e| json!({
            "incentive_id": e.incentive_id,
            "points": e.points,
            "reason": e.reason,
            "label": e.label,
            "target_id": e.target_id,
            "contest_id": e.contest_id,
            "at": rfc3339_ms(e.at_ms),
        })).collect::<Vec<_>>(),
        "audit": data.audit.iter().map(|e| json!({
            "seq": e.seq,
            "at": rfc3339_ms(e.at_ms),
            "actor": e.actor.to_stored(),
            "action": e.action,
            "subject": e.subject,
        })).collect::<Vec<_>>(),
    });
    // The head without its closing brace, then the facts streamed as the last member.
    let mut head = serde_json::to_string(&head).map_err(|e| ApiError::Internal(e.into()))?;
    head.pop();
    head.push_str(",\"facts\":[");

    struct Cursor {
        head: Option<String>,
        after: Option<crate::store::erasure::FactKey>,
        first: bool,
        done: bool,
    }
    let store = state.store.clone();
    let (tenant_id, user_id) = (p.tenant_id, p.user_id);
    let start = Cursor { head: Some(head), after: None, first: true, done: false };
    let stream = futures_util::stream::unfold(start, move |mut cur| {
        let store = store.clone();
        async move {
            if let Some(head) = cur.head.take() {
                return Some((Ok::<_, crate::store::StoreError>(head), cur));
            }
            if cur.done {
                return None;
            }
            let page = match store.user_facts_page(tenant_id, user_id, cur.after.as_ref(), EXPORT_PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::error!(code = e.code(), "personal export failed while streaming facts");
                    cur.done = true;
                    return Some((Err(e), cur));
                }
            };
            let mut chunk = String::new();
            for f in &page {
                if !std::mem::take(&mut cur.first) {
                    chunk.push(',');
                }
                let (value, currency) = match &f.value {
                    crate::ingest::Value::Count(n) => (json!(n), Value::Null),
                    crate::ingest::Value::Money { micros, currency } => {
                        (json!(micros_to_decimal(i128::from(*micros))), json!(currency.as_str()))
                    }
                };
                let mut fact = json!({
                    "connector": f.connector_id,
                    "metric": f.metric,
                    "occurred_at": rfc3339_ms(f.occurred_at_ms),
                    "value": value,
                });
                if !currency.is_null() {
                    fact["currency"] = currency;
                    fact["value_in_tenant_currency"] =
                        json!(f.amount_tenant_micros.map(|m| micros_to_decimal(i128::from(m))));
                }
                chunk.push_str(&fact.to_string());
            }
            if page.len() < EXPORT_PAGE as usize {
                cur.done = true;
                chunk.push_str("]}");
            } else {
                cur.after = page.last().map(|f| f.key.clone());
            }
            Some((Ok(chunk), cur))
        }
    });
    let disposition = format!("attachment; filename=\"oneup-export-{user_id}.json\"");
    axum::response::Response::builder()
        .status(StatusCode::OK)
        .header(axum::http::header::CONTENT_TYPE, "application/json")
        .header(axum::http::header::CONTENT_DISPOSITION, disposition)
        .header(axum::http::header::CACHE_CONTROL, "no-store")
        .body(axum::body::Body::from_stream(stream))
        .map_err(|e| ApiError::Internal(e.into()))
}
