//! A probe connector for the host's Bullhorn session credentials (`bullhorn-session`): the
//! OAuth URL is the config key `auth_url`, the login URL (also the base URL) `login_url`;
//! requests go to the `restUrl` the login answers. What it does is the OAuth probe's, see
//! `../src/probe.rs`.

#![warn(missing_docs)]

use oneup_connector_sdk::{
    AuthScheme, Connector, ConnectorError, Ctx, Cursor, Descriptor, RosterEntry, Setting, SyncOutcome,
};

#[path = "../../src/probe.rs"]
mod probe;

/// The connector.
pub struct BullhornProbe;

oneup_connector_sdk::export_connector!(BullhornProbe);

impl Connector for BullhornProbe {
    fn describe() -> Descriptor {
        probe::descriptor("auth-probe-bullhorn")
            .with_config(Setting::required("auth_url"))
            .with_config(Setting::required("login_url"))
            .with_base_url_key("login_url")
            .with_allowed_host("*.bullhornstaffing.com")
            .with_auth(AuthScheme::bullhorn_session("auth_url", "login_url"))
    }

    fn sync(ctx: &mut Ctx<'_>, _since: Option<Cursor>) -> Result<SyncOutcome, ConnectorError> {
        probe::sync(ctx)
    }

    fn roster(ctx: &mut Ctx<'_>) -> Result<Vec<RosterEntry>, ConnectorError> {
        probe::roster(ctx)
    }
}
