//! Request extractors: JSON bodies and query strings whose rejections are `ApiError`s, and
//! the bearer-token principals (operator, tenant user).

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::AppState;
use super::error::ApiError;
use crate::store::{Principal, Role, Scope};

/// A JSON body; malformed JSON, wrong types and unknown fields answer 400.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        // Every body of this API is a JSON object; serde would also read a struct from a JSON
        // array (`[null, null]`), so the first byte is checked once the body has parsed.
        let (parts, body) = req.into_parts();
        let bytes = match axum::body::Bytes::from_request(Request::from_parts(parts.clone(), body), state).await {
            Ok(bytes) => bytes,
            Err(e) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(ApiError::PayloadTooLarge { limit: super::MAX_BODY_BYTES });
            }
            Err(other) => return Err(ApiError::bad_request("bad_body", other.body_text())),
        };
        let is_object = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        let req = Request::from_parts(parts, axum::body::Body::from(bytes));
        match axum::Json::<T>::from_request(req, state).await {
            Ok(_) if !is_object => Err(ApiError::bad_request("invalid_body", "the body must be a JSON object")),
            Ok(axum::Json(value)) => Ok(ApiJson(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => {
                Err(ApiError::bad_request("unsupported_content_type", "expected `Content-Type: application/json`"))
            }
            Err(JsonRejection::JsonSyntaxError(e)) => {
                Err(ApiError::bad_request("bad_json", format!("the body is not valid JSON: {}", e.body_text())))
            }
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::bad_request("invalid_body", e.body_text())),
            Err(e) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::PayloadTooLarge { limit: super::MAX_BODY_BYTES })
            }
            Err(other) => Err(ApiError::bad_request("bad_body", other.body_text())),
        }
    }
}

/// An optional JSON body: an empty body is `T::default()`, anything else is read as
/// [`ApiJson`] reads it.
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default + Send> FromRequest<AppState> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, super::MAX_BODY_BYTES)
            .await
            .map_err(|_| ApiError::PayloadTooLarge { limit: super::MAX_BODY_BYTES })?;
        if bytes.is_empty() {
            return Ok(OptionalJson(T::default()));
        }
        let req = Request::from_parts(parts, axum::body::Body::from(bytes));
        ApiJson::<T>::from_request(req, state).await.map(|ApiJson(v)| OptionalJson(v))
    }
}

/// A query string; bad parameters answer 400.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(value)) => Ok(ApiQuery(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                Err(ApiError::bad_request("invalid_query", e.body_text()))
            }
            Err(other) => Err(ApiError::bad_request("invalid_query", other.body_text())),
        }
    }
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts.headers.get(axum::http::header::AUTHORIZATION).ok_or(ApiError::Unauthorized)?;
    let value = value.to_str().map_err(|_| ApiError::Unauthorized)?;
    let (scheme, token) = value.split_once(' ').ok_or(ApiError::Unauthorized)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::Unauthorized);
    }
    Ok(token.trim())
}

/// Whether `token` is the operator's (`ONEUP_OPERATOR_TOKEN`), compared by digest without an
/// early exit.
fn is_operator_token(state: &AppState, token: &str) -> bool {
    let Some(expected) = state.operator_token_hash else { return false };
    let given: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    given.iter().zip(expected.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// The client's address (the socket peer), when the server was started with connection
/// info (`oneup serve` is).
pub(super) fn client_addr(parts: &Parts) -> Option<std::net::IpAddr> {
    parts.extensions.get::<ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip())
}

/// The client's address, when known (see [`client_addr`]).
pub(super) struct ClientAddr(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(client_addr(parts)))
    }
}

/// The operator, authenticated by `ONEUP_OPERATOR_TOKEN`. A valid tenant user's token is
/// the wrong role here (403); any other token is a bad token (401, counted as a failed
/// authentication).
pub struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let addr = client_addr(parts);
        let token = bearer(parts).map_err(|e| state.security.failed(addr, e))?;
        if state.operator_token_hash.is_none() {
            return Err(ApiError::Forbidden("no operator token is configured on this server (ONEUP_OPERATOR_TOKEN)"));
        }
        if is_operator_token(state, token) {
            return Ok(Operator);
        }
        match state.store.authenticate(token).await? {
            Some(_) => Err(ApiError::Forbidden("this needs the operator's token, not a tenant user's")),
            None => Err(state.security.failed(addr, ApiError::Unauthorized)),
        }
    }
}

/// The tenant user behind the `Authorization` header's token, whatever its scope. The
/// operator's token is the wrong role (403: the operator acts on tenants, never inside
/// one); a missing token or one that is not valid (unknown, revoked, expired) is 401 and
/// counted as a failed authentication from the client's address (429 over the limit).
pub(super) async fn bearer_principal(parts: &Parts, state: &AppState) -> Result<Principal, ApiError> {
    let addr = client_addr(parts);
    let token = bearer(parts).map_err(|e| state.security.failed(addr, e))?;
    principal_of_token(state, addr, token).await
}

/// [`bearer_principal`] for a token however it came.
pub(super) async fn principal_of_token(
    state: &AppState,
    addr: Option<std::net::IpAddr>,
    token: &str,
) -> Result<Principal, ApiError> {
    match state.store.authenticate(token).await? {
        Some(principal) => Ok(principal),
        None if is_operator_token(state, token) => {
            Err(ApiError::Forbidden("the operator's token does not act inside a tenant; use a user's token"))
        }
        None => Err(state.security.failed(addr, ApiError::Unauthorized)),
    }
}

/// The refusal of a `display` token on any route but the leaderboards.
pub(super) const DISPLAY_SCOPE_REFUSED: &str =
    "this is a display token: it only reads contest leaderboards and their streams";

/// A tenant user with a `full` token: what every route takes except the leaderboards. A
/// `display` token is refused here (403), so a new route cannot forget the scope; the
/// leaderboard routes take [`DisplayOrUser`] instead.
#[derive(Debug, Clone, Copy)]
pub struct User(pub Principal);

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = bearer_principal(parts, state).await?;
        match principal.scope {
            Scope::Full => Ok(User(principal)),
            Scope::Display => Err(ApiError::Forbidden(DISPLAY_SCOPE_REFUSED)),
        }
    }
}

/// A tenant user with a `full` or a `display` token: only for routes that read
/// leaderboards (the contest's leaderboard and its stream).
#[derive(Debug, Clone, Copy)]
pub struct DisplayOrUser(pub Principal);

impl FromRequestParts<AppState> for DisplayOrUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        bearer_principal(parts, state).await.map(DisplayOrUser)
    }
}

impl User {
    /// Fails with 403 unless the user is an admin.
    pub fn require_admin(&self) -> Result<Principal, ApiError> {
        match self.0.role {
            Role::Admin => Ok(self.0),
            _ => Err(ApiError::Forbidden("this needs the admin role")),
        }
    }

    /// Fails with 403 unless the user is a manager or an admin.
    pub fn require_manager(&self) -> Result<Principal, ApiError> {
        match self.0.role {
            Role::Admin | Role::Manager => Ok(self.0),
            Role::Member => Err(ApiError::Forbidden("this needs the manager or admin role")),
        }
    }
}
