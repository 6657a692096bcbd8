//! A probe connector for the host's OAuth 2.0 refresh credentials (`oauth2-refresh`): it
//! GETs the paths it is configured with and shows the tests everything it saw; see
//! `probe.rs`. Its token URL is the config key `token_url`; its hosts are Salesforce's.

#![warn(missing_docs)]

use oneup_connector_sdk::{
    AuthScheme, Connector, ConnectorError, Ctx, Cursor, Descriptor, RosterEntry, Setting, SyncOutcome,
};

pub mod probe;

/// The connector.
pub struct OAuthProbe;

oneup_connector_sdk::export_connector!(OAuthProbe);

impl Connector for OAuthProbe {
    fn describe() -> Descriptor {
        probe::descriptor("auth-probe")
            .with_config(Setting::required("base_url"))
            .with_config(Setting::with_default("token_url", "https://login.salesforce.com/services/oauth2/token"))
            .with_allowed_host("*.salesforce.com")
            .with_allowed_host("login.salesforce.com")
            .with_auth(AuthScheme::oauth2_refresh("token_url"))
    }

    fn sync(ctx: &mut Ctx<'_>, _since: Option<Cursor>) -> Result<SyncOutcome, ConnectorError> {
        probe::sync(ctx)
    }

    fn roster(ctx: &mut Ctx<'_>) -> Result<Vec<RosterEntry>, ConnectorError> {
        probe::roster(ctx)
    }
}
