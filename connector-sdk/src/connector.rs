//! The [`Connector`] trait a connector implements, and the two functions that run one over
//! any [`Host`]: the wasm glue uses them inside the sandbox, [`crate::testing`] natively.

use crate::ctx::Ctx;
use crate::host::Host;
use crate::types::{ConnectorError, Cursor, Descriptor, RosterEntry, SyncOutcome};

/// A CRM connector.
///
/// Export it from the connector's `cdylib` crate with [`crate::export_connector!`].
pub trait Connector {
    /// What the connector is and needs. Called once at install; it must not depend on
    /// anything but constants.
    fn describe() -> Descriptor;

    /// One sync from `since`, the last committed cursor (`None` on the first run).
    ///
    /// Read what changed, push [`crate::KpiChange`]s and checkpoint the cursor as pages are
    /// done. Changes still pending when it returns `Ok` are handed to the host before the
    /// sync ends.
    fn sync(ctx: &mut Ctx<'_>, since: Option<Cursor>) -> Result<SyncOutcome, ConnectorError>;

    /// The CRM's users, for mapping CRM owners to oneup users by e-mail. The default is
    /// none, so that every owner waits for an admin to map it by hand.
    fn roster(ctx: &mut Ctx<'_>) -> Result<Vec<RosterEntry>, ConnectorError> {
        let _ = ctx;
        Ok(Vec::new())
    }
}

/// Runs one sync of `C` over `host`, handing the changes still pending to the host when the
/// sync succeeds.
pub fn drive_sync<C: Connector>(host: &mut dyn Host, since: Option<Cursor>) -> Result<SyncOutcome, ConnectorError> {
    let mut ctx = Ctx::new(host);
    let outcome = C::sync(&mut ctx, since)?;
    ctx.flush()?;
    Ok(outcome)
}

/// Reads the roster of `C` over `host`.
pub fn drive_roster<C: Connector>(host: &mut dyn Host) -> Result<Vec<RosterEntry>, ConnectorError> {
    C::roster(&mut Ctx::new(host))
}
