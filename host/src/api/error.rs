//! The API's one error type and how it becomes an HTTP answer.
//!
//! Policy: every error answers `{"error":{"code","message"}}` with the status the contract
//! names: 400 bad input, 401 no or bad token, 403 wrong role, 404 unknown (another
//! tenant's ids included: they are indistinguishable from unknown ones), 409 conflict, 422
//! a rule of the domain broken, 429 over a limit (with `Retry-After` when known); also 405 for a method a route does not take and 413 for a
//! body over the limit; 503 when the node is not ready (`/readyz`). 5xx answers never carry
//! internal detail: the detail is logged under the request's id (`x-request-id`, a field
//! of the request's span), and the body carries that id as `request_id`, the correlation
//! code to quote to an operator.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::store::StoreError;

/// An error answer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed (JSON, types, unknown fields, bad parameters).
    #[error("{message}")]
    BadRequest {
        /// A stable code (`bad_json`, `invalid_field`, …).
        code: &'static str,
        /// What is wrong, for a person.
        message: String,
    },
    /// 401: no token, or a token that is not valid.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// 401 with its own code and message: a credential that is refused for a reason the
    /// client should know (a full token in a URL).
    #[error("{message}")]
    UnauthorizedBecause {
        /// A stable code.
        code: &'static str,
        /// What to do instead.
        message: &'static str,
    },
    /// 429: too many failed authentications from an address, or too many open streams.
    #[error("{message}")]
    TooManyRequests {
        /// A stable code.
        code: &'static str,
        /// What is over which limit.
        message: String,
        /// Seconds to wait, sent as `Retry-After`.
        retry_after_secs: Option<u64>,
    },
    /// 403: a valid token whose role may not do this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// 404: nothing with that id in this tenant.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 413: the body is larger than the API accepts.
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// 409: a unique key taken, or a state that conflicts.
    #[error("{message}")]
    Conflict {
        /// A stable code.
        code: &'static str,
        /// What conflicts.
        message: String,
    },
    /// 422: well-formed but breaks a rule of the domain.
    #[error("{message}")]
    Unprocessable {
        /// A stable code.
        code: &'static str,
        /// Which rule.
        message: String,
    },
    /// 503: the node cannot serve this now (not ready, draining).
    #[error("{message}")]
    Unavailable {
        /// A stable code (the reason).
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// 500: anything else; details are logged, not returned.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// A 400 with a code and message.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest { code, message: message.into() }
    }

    /// A 422 with a code and message.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Unprocessable { code, message: message.into() }
    }

    /// A 409 with a code and message.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Conflict { code, message: message.into() }
    }

    /// A 503 with a code and message.
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Unavailable { code, message: message.into() }
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized | ApiError::UnauthorizedBecause { .. } => StatusCode::UNAUTHORIZED,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code of the body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. }
            | ApiError::Conflict { code, .. }
            | ApiError::Unprocessable { code, .. }
            | ApiError::Unavailable { code, .. }
            | ApiError::UnauthorizedBecause { code, .. }
            | ApiError::TooManyRequests { code, .. } => code,
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::PayloadTooLarge { .. } => "body_too_large",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            ApiError::Internal(err) => {
                tracing::error!(error = format!("{err:#}"), "internal error answering a request");
                "internal error; the details are in the server log".to_owned()
            }
            other => other.to_string(),
        };
        let mut error = json!({"code": self.code(), "message": message});
        if status.is_server_error()
            && let Some(id) = super::observe::current_request_id()
        {
            // The correlation code: the server log's lines of this request carry it.
            error["request_id"] = json!(&*id);
        }
        let mut response = (status, Json(json!({ "error": error }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert("www-authenticate", axum::http::HeaderValue::from_static("Bearer"));
        }
        if let ApiError::TooManyRequests { retry_after_secs: Some(secs), .. } = &self {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(*secs));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound { what } => ApiError::NotFound(what),
            StoreError::Conflict { what } => ApiError::conflict("conflict", format!("{what} already exists")),
            StoreError::Invalid { what } => ApiError::bad_request("invalid", format!("invalid {what}")),
            StoreError::LastAdmin => {
                ApiError::conflict("last_admin", "this is the tenant's only admin: make another user admin first")
            }
            StoreError::IntegrationDisabled => {
                ApiError::conflict("integration_disabled", "the integration is disabled")
            }
            other => ApiError::Internal(other.into()),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        ApiError::Internal(err)
    }
}

impl From<crate::scoring::ScoringError> for ApiError {
    fn from(err: crate::scoring::ScoringError) -> Self {
        use crate::scoring::ScoringError;
        match err {
            ScoringError::Store(e) => e.into(),
            ScoringError::NotFound(what) => ApiError::NotFound(what),
            ScoringError::Forbidden(why) => ApiError::Forbidden(why),
            ScoringError::Refused { code, message } => ApiError::Unprocessable { code, message },
            ScoringError::Internal(e) => ApiError::Internal(e),
        }
    }
}
