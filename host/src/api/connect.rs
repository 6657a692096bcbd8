//! The OAuth connect flow: an admin is sent to the CRM's authorisation page and the CRM
//! sends their browser back with a code, which the host exchanges for the refresh token
//! that its syncs use. Nobody pastes a refresh token.
//!
//! 1. The admin enables the integration with its config and the connected app's
//!    `client_id` and `client_secret`, without `refresh_token` (`PUT
//!    /v1/integrations/{connector}`): it waits for authorisation (`auth_status`
//!    `needs_reauthorization`, no run queued).
//! 2. `GET /v1/integrations/{connector}/connect` (admin) answers `302` to the CRM's
//!    authorisation endpoint with `state` (32 random bytes, single-use, bound to the tenant,
//!    the connector and the admin, valid [`STATE_TTL_MS`], stored only as its SHA-256) and
//!    PKCE S256 (`code_challenge`; the verifier stays in the store, sealed).
//! 3. The CRM redirects to `GET /oauth/callback?code&state` (no API token: the state is
//!    the credential). The state is taken (deleted) whatever happens next; the code is
//!    exchanged at the token endpoint with the `code_verifier`, and the refresh token is
//!    stored sealed with the other secrets, exactly where a pasted one goes. A run is due at
//!    once. The same flow re-authorises an integration whose grant was revoked.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiQuery, ClientAddr, User};
use super::openapi::ErrorBody;
use super::tenants::audit;
use crate::runtime::auth::{CLIENT_ID, CLIENT_SECRET, ExchangeError};
use crate::store::oauth::NewOAuthState;
use crate::store::types::{now_ms, random_bytes};
use crate::store::{Actor, StoreError};

/// How long a `state` is valid: the admin has this long to consent at the CRM.
pub(super) const STATE_TTL_MS: i64 = 10 * 60 * 1000;

/// The path the CRM sends the admin back to, under the public URL.
pub(super) const CALLBACK_PATH: &str = "/oauth/callback";

/// Unpadded URL-safe base64 (RFC 4648 section 5), as PKCE's S256 challenge is written.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// The S256 code challenge of a verifier.
fn challenge_of(verifier: &str) -> String {
    base64url(&Sha256::digest(verifier.as_bytes()))
}

/// The SHA-256 of a state, as stored.
fn state_hash(state: &str) -> [u8; 32] {
    Sha256::digest(state.as_bytes()).into()
}

/// `GET /v1/integrations/{connector}/connect`'s body (beside the `Location` header).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct ConnectAnswer {
    /// Where to send the admin's browser (also the `Location` header).
    authorize_url: String,
    /// When the authorisation must be completed by (RFC 3339, UTC).
    #[schema(format = DateTime)]
    expires_at: String,
}

/// Starts the OAuth connect flow (admin).
///
/// For a connector that authenticates with OAuth 2.0 (Salesforce) or Bullhorn's OAuth: the
/// integration must be enabled with its config and the connected app's `client_id` and
/// `client_secret` (a `refresh_token` is not needed: this flow brings it). Answers `302` to
/// the CRM's authorisation page (`…/authorize` beside the token endpoint) with
/// `response_type=code`, `client_id`, `redirect_uri` (`<public url>/oauth/callback`, which
/// must be registered with the connected app), a fresh single-use `state` valid for 10
/// minutes, and PKCE (`code_challenge`, `code_challenge_method=S256`). Audited
/// (`integration.connect_started`).
#[utoipa::path(get, path = "/v1/integrations/{connector}/connect", tag = "integrations", operation_id = "connect_integration",
    params(("connector" = String, Path, description = "The connector's id.")),
    responses(
        (status = 302, description = "To the CRM's authorisation page (`Location`).", body = ConnectAnswer,
            headers(("location" = String, description = "The authorisation URL."))),
        (status = 403, description = "Not an admin.", body = ErrorBody),
        (status = 404, description = "Not enabled in this tenant, or the connector is not installed.", body = ErrorBody),
        (status = 409, description = "The connector does not use OAuth (`not_oauth`), or the integration lacks `client_id` / `client_secret` (`missing_secret`), or this server has no public URL (`no_public_url`).", body = ErrorBody),
        (status = 422, description = "Settings the connector refuses (`invalid_settings`).", body = ErrorBody),
    ))]
pub(super) async fn connect(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let p = user.require_admin()?;
    let integration = state.store.integration(p.tenant_id, &id).await?;
    if !integration.enabled {
        return Err(ApiError::NotFound("integration"));
    }
    let loaded = state.registry.get(&id).ok_or(ApiError::NotFound("connector"))?;
    let secrets = state.store.integration_secrets(p.tenant_id, &id).await?;
    let public_url = state.public_url.as_deref().ok_or_else(|| {
        ApiError::conflict("no_public_url", "this server has no public URL (`--public-url`) for the OAuth callback")
    })?;
    let (Some(client_id), Some(client_secret)) = (secrets.get(CLIENT_ID), secrets.get(CLIENT_SECRET)) else {
        return Err(ApiError::conflict(
            "missing_secret",
            "enable the integration with `client_id` and `client_secret` first",
        ));
    };
    let grant = state
        .runtime
        .code_grant(loaded, &integration.config, client_id, client_secret)
        .map_err(|e| ApiError::unprocessable("invalid_settings", e.to_string()))?
        .ok_or_else(|| ApiError::conflict("not_oauth", format!("{id} does not authenticate with OAuth")))?;
    let oauth_state = hex::encode(random_bytes::<32>());
    let verifier = hex::encode(random_bytes::<32>());
    let redirect_uri = format!("{public_url}{CALLBACK_PATH}");
    let expires_at_ms = now_ms() + STATE_TTL_MS;
    state
        .store
        .insert_oauth_state(
            p.tenant_id,
            &NewOAuthState {
                connector_id: &id,
                user: p.user_id,
                state_hash: state_hash(&oauth_state),
                verifier: &verifier,
                redirect_uri: &redirect_uri,
                expires_at_ms,
            },
        )
        .await?;
    audit(&state, p.tenant_id, Actor::User(p.user_id), "integration.connect_started", &id).await?;
    let url = grant.authorize_url(&redirect_uri, &oauth_state, &challenge_of(&verifier));
    let body = ConnectAnswer { authorize_url: url.to_string(), expires_at: super::tenants::utc(expires_at_ms) };
    Ok((
        StatusCode::FOUND,
        [(header::LOCATION, url.to_string()), (header::CACHE_CONTROL, "no-store".to_owned())],
        axum::Json(body),
    )
        .into_response())
}

/// What the CRM sends back: a code and the state, or an error and the state.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct CallbackQuery {
    /// The authorisation code.
    code: Option<String>,
    /// The `state` the connect route sent.
    state: Option<String>,
    /// The CRM's refusal (`access_denied`, …), instead of a code.
    error: Option<String>,
    /// The CRM's explanation of its refusal (not shown: it comes from outside).
    #[allow(dead_code)]
    error_description: Option<String>,
}

/// `/oauth/callback`'s answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(super) struct Connected {
    /// The connector now authorised.
    connector: String,
    /// `connected`.
    status: &'static str,
}

/// Where the CRM sends the admin back (no API token: the `state` is the credential).
///
/// Takes the pending authorisation of `state` (a state works once, whatever happens next),
/// exchanges `code` at the CRM's token endpoint with the PKCE `code_verifier` and the same
/// `redirect_uri`, and stores the refresh token sealed with the integration's secrets, as a
/// pasted one would be; the integration is authorised (`auth_status` `ok`) and a sync is due
/// at once. Audited (`integration.authorized`). Nothing is stored when anything fails.
#[utoipa::path(get, path = "/oauth/callback", tag = "integrations", operation_id = "oauth_callback",
    params(CallbackQuery),
    responses(
        (status = 200, description = "Authorised.", body = Connected),
        (status = 400, description = "No `state`, or one that is unknown, used already or forged (`invalid_state`); expired (`state_expired`); no `code` (`invalid_query`); the CRM refused the consent (`authorization_refused`) or the code (`code_refused`: an unknown or used code, or a PKCE verifier that does not match).", body = ErrorBody),
        (status = 404, description = "The integration was disabled meanwhile.", body = ErrorBody),
        (status = 422, description = "The CRM's token endpoint did not answer usefully (`token_endpoint_failed`, `no_refresh_token`).", body = ErrorBody),
        (status = 429, description = "Too many wrong states from this address (`too_many_failed_authentications`), counted with failed authentications; `Retry-After` says when to try again.", body = ErrorBody),
    ))]
pub(super) async fn callback(
    State(state): State<AppState>,
    ClientAddr(addr): ClientAddr,
    ApiQuery(q): ApiQuery<CallbackQuery>,
) -> Result<Response, ApiError> {
    // The state is the credential here: a wrong one counts as a failed authentication.
    let invalid = || {
        state.security.failed(
            addr,
            ApiError::bad_request("invalid_state", "`state` is not one this server issued, or it was used already"),
        )
    };
    let raw_state = q.state.as_deref().filter(|s| !s.is_empty() && s.len() <= 256).ok_or_else(invalid)?;
    let pending = state.store.take_oauth_state(&state_hash(raw_state)).await?.ok_or_else(invalid)?;
    if pending.expires_at_ms <= now_ms() {
        return Err(ApiError::bad_request(
            "state_expired",
            "the authorisation took longer than 10 minutes: start again (GET /v1/integrations/{connector}/connect)",
        ));
    }
    let tenant = pending.tenant_id;
    let id = pending.connector_id.clone();
    if let Some(error) = q.error.as_deref() {
        // The CRM's own code is outside text: only whether it was a refusal is kept.
        let refused = error == "access_denied";
        audit(&state, tenant, Actor::User(pending.user), "integration.connect_refused", &id).await?;
        return Err(ApiError::bad_request(
            "authorization_refused",
            if refused {
                "the CRM says the consent was refused"
            } else {
                "the CRM answered with an error instead of a code"
            },
        ));
    }
    let code = q.code.as_deref().filter(|c| !c.is_empty() && c.len() <= 2048).ok_or_else(|| {
        ApiError::bad_request("invalid_query", "`code` is missing: the CRM sent no authorisation code")
    })?;
    let integration = state.store.integration(tenant, &id).await?;
    if !integration.enabled {
        return Err(ApiError::NotFound("integration"));
    }
    let loaded = state.registry.get(&id).ok_or(ApiError::NotFound("connector"))?;
    let secrets = state.store.integration_secrets(tenant, &id).await?;
    let client_id = secrets.get(CLIENT_ID).unwrap_or_default();
    let client_secret = secrets.get(CLIENT_SECRET).unwrap_or_default();
    let grant = state
        .runtime
        .code_grant(loaded, &integration.config, client_id, client_secret)
        .map_err(|e| ApiError::unprocessable("invalid_settings", e.to_string()))?
        .ok_or_else(|| ApiError::conflict("not_oauth", format!("{id} does not authenticate with OAuth")))?;
    let refresh_token =
        state.runtime.exchange_code(&grant, code, &pending.verifier, &pending.redirect_uri).await.map_err(|e| {
            tracing::warn!(connector = %id, error = %e, "the OAuth code exchange failed");
            match e {
                ExchangeError::Refused => ApiError::bad_request(
                    "code_refused",
                    "the CRM refused the authorisation code (unknown, used or expired, or the PKCE verifier \
                     does not match): start again",
                ),
                ExchangeError::NoRefreshToken => ApiError::unprocessable(
                    "no_refresh_token",
                    "the CRM granted no refresh token: give the connected app the offline (refresh_token) scope",
                ),
                ExchangeError::Unavailable(code) => ApiError::unprocessable(
                    "token_endpoint_failed",
                    format!("the CRM's token endpoint did not answer usefully ({code}): try again"),
                ),
            }
        })?;
    state.store.store_authorized_refresh_token(tenant, &id, &refresh_token, Actor::User(pending.user)).await.map_err(
        |e| match e {
            StoreError::NotFound { .. } => ApiError::NotFound("integration"),
            other => other.into(),
        },
    )?;
    state.scheduler.wake();
    tracing::info!(%tenant, connector = %id, "integration authorised through the OAuth connect flow");
    Ok(([(header::CACHE_CONTROL, "no-store")], axum::Json(Connected { connector: id, status: "connected" }))
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_seals_the_refresh_token_under_the_name_the_runtime_reads() {
        assert_eq!(crate::store::oauth::REFRESH_TOKEN_SECRET, crate::runtime::auth::REFRESH_TOKEN);
    }

    #[test]
    fn the_s256_challenge_is_rfc_7636s() {
        // RFC 7636 appendix B.
        assert_eq!(
            challenge_of("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }
}
