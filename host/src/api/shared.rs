//! What several resource groups render or parse alike: the tenant's zone, instants.

use jiff::tz::TimeZone;

use super::AppState;
use super::error::ApiError;
use crate::store::{Principal, Tenant};

/// The tenant and its time zone.
pub(super) async fn tenant_zone(state: &AppState, p: &Principal) -> Result<(Tenant, TimeZone), ApiError> {
    Ok(state.scoring.tenant_zone(p.tenant_id).await?)
}

/// An instant as RFC 3339 with the tenant's UTC offset at that instant
/// (`2025-06-01T00:00:00+01:00`).
pub(super) fn instant(ms: i64, tz: &TimeZone) -> String {
    crate::format::instant_in(ms, tz)
}

/// Parses an RFC 3339 instant into milliseconds since the Unix epoch.
pub(super) fn parse_instant(field: &'static str, text: &str) -> Result<i64, ApiError> {
    crate::format::parse_rfc3339_ms(text).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_field",
            format!("`{field}` must be an RFC 3339 instant with an offset, such as 2025-06-01T00:00:00Z"),
        )
    })
}

/// After a write that may award or revoke points: a settlement that failed is logged (the
/// write itself stands; the next change settles again), never the request's error.
pub(super) fn settled(result: Result<(), crate::scoring::ScoringError>) {
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not settle the awards after a change");
    }
}
