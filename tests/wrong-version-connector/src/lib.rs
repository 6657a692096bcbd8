//! A connector built against `oneup:connector@1.0.0`, a major version the host does not
//! speak: the host must refuse to load it.
//!
//! Its contract, `wit/connector.wit`, is a copy of `wit/connector@0.1.0/connector.wit` with
//! only the package version changed, so the one thing wrong with it is the version. It uses
//! wit-bindgen directly rather than the SDK, which binds 0.1.0. Were it ever run, it would
//! describe itself, sync nothing (after reading the host's clock, so that it imports the
//! host interface of its version too) and list no users.

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({
        path: "wit",
        world: "connector",
    });

    use oneup::connector::types::{AuthScheme, MetricDecl, MetricKind, Setting};

    /// The connector.
    struct WrongVersion;

    impl Guest for WrongVersion {
        fn describe() -> Descriptor {
            Descriptor {
                id: "wrong-version".to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                metrics: vec![MetricDecl { slug: "deals_won".to_owned(), kind: MetricKind::Count }],
                config: vec![Setting { key: "base_url".to_owned(), required: true, default_value: None }],
                secrets: Vec::new(),
                base_url_key: "base_url".to_owned(),
                allowed_hosts: vec!["*.example.com".to_owned()],
                auth: AuthScheme::None,
                log_codes: Vec::new(),
                cursor_keys: Vec::new(),
                default_sync_interval_secs: 900,
            }
        }

        fn sync(_since: Option<Cursor>) -> Result<SyncOutcome, ConnectorError> {
            // Calling an import makes the component import `host@1.0.0` as well as
            // `types@1.0.0`, as any real connector of that version would.
            let _ = oneup::connector::host::now();
            Ok(SyncOutcome::Complete)
        }

        fn roster() -> Result<Vec<RosterEntry>, ConnectorError> {
            Ok(Vec::new())
        }
    }

    export!(WrongVersion);
}
