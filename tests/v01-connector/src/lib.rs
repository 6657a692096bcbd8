//! A connector built directly against `oneup:connector@0.1.0` (the contract file in
//! `wit/connector@0.1.0`, with wit-bindgen, not through the SDK, which follows the newest
//! contract): the host must keep running it unchanged after it learnt 0.2.
//!
//! It declares `deals_won` (count) and `revenue` (money), the config keys `base_url` and
//! `mode`, the cursor key `position` and the log code `v01_sync`. Its sync, from the
//! cursor `position = N` (0 on the first sync):
//!
//! 1. reads `mode` and the host clock, logs `v01_sync` with the field `v01_sync = N`;
//! 2. GETs `/v01` and fails with the code `http_failed` unless the answer is 200;
//! 3. emits `deals_won` 1 for `d-N-1` and `d-N-2` (owner `u-1`) and `revenue` 250.50 EUR for
//!    `d-N-1` (owner `u-2`), all at 2025-06-02T10:00:00Z, then checkpoints `position = N+1`;
//! 4. emits `deals_won` 1 for `d-N-3` (owner `u-2`) at 2025-06-03T10:00:00Z and retracts
//!    `deals_won` of `d-N-2`;
//! 5. ends `complete`, or `budget-exhausted` with `mode = budget`.
//!
//! So one sync commits, in two commits, the facts `d-N-1` (both metrics) and `d-N-3`. The
//! roster is `u-1` <v01.one@example.com> and `u-2` <v01.two@example.com>.

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({
        path: "../../wit/connector@0.1.0",
        world: "connector",
    });

    use oneup::connector::host;
    use oneup::connector::types::{
        Amount, AuthScheme, CursorMark, HttpRequest, KpiChange, KpiRetract, KpiUpsert, LogLevel, MetricDecl,
        MetricKind, Money, Setting,
    };

    /// 2025-06-02T10:00:00Z.
    const JUNE_2: i64 = 1_748_858_400_000;
    /// 2025-06-03T10:00:00Z.
    const JUNE_3: i64 = JUNE_2 + 86_400_000;

    struct V01;

    fn setting(key: &str, required: bool, default: Option<&str>) -> Setting {
        Setting { key: key.to_owned(), required, default_value: default.map(str::to_owned) }
    }

    fn count(source: String, owner: &str, at: i64) -> KpiChange {
        KpiChange::Upsert(KpiUpsert {
            metric: "deals_won".to_owned(),
            owner: owner.to_owned(),
            source_id: source,
            occurred_at: at,
            value: Amount::Count(1),
        })
    }

    fn refused(_: oneup::connector::types::EmitError) -> ConnectorError {
        ConnectorError { code: "emit_refused".to_owned(), http_status: None }
    }

    impl Guest for V01 {
        fn describe() -> Descriptor {
            Descriptor {
                id: "v01".to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                metrics: vec![
                    MetricDecl { slug: "deals_won".to_owned(), kind: MetricKind::Count },
                    MetricDecl { slug: "revenue".to_owned(), kind: MetricKind::Money },
                ],
                config: vec![setting("base_url", true, None), setting("mode", false, Some("ok"))],
                secrets: Vec::new(),
                base_url_key: "base_url".to_owned(),
                allowed_hosts: vec!["*.example.com".to_owned()],
                auth: AuthScheme::None,
                log_codes: vec!["v01_sync".to_owned(), "http_failed".to_owned(), "emit_refused".to_owned()],
                cursor_keys: vec!["position".to_owned()],
                default_sync_interval_secs: 900,
            }
        }

        fn sync(since: Option<Cursor>) -> Result<SyncOutcome, ConnectorError> {
            let n = since.and_then(|c| c.marks.into_iter().find(|m| m.key == "position")).map(|m| m.value).unwrap_or(0);
            let mode = host::config("mode").unwrap_or_default();
            let _ = host::now();
            host::log(LogLevel::Info, "v01_sync", &[("v01_sync".to_owned(), n)]);

            let request = HttpRequest { path: "/v01".to_owned(), query: Vec::new(), headers: Vec::new() };
            match host::http_get(&request) {
                Ok(answer) if answer.status == 200 => {}
                Ok(answer) => {
                    return Err(ConnectorError { code: "http_failed".to_owned(), http_status: Some(answer.status) });
                }
                Err(_) => return Err(ConnectorError { code: "http_failed".to_owned(), http_status: None }),
            }

            host::emit(&[
                count(format!("d-{n}-1"), "u-1", JUNE_2),
                count(format!("d-{n}-2"), "u-1", JUNE_2),
                KpiChange::Upsert(KpiUpsert {
                    metric: "revenue".to_owned(),
                    owner: "u-2".to_owned(),
                    source_id: format!("d-{n}-1"),
                    occurred_at: JUNE_2,
                    value: Amount::Money(Money { micros: 250_500_000, currency: "EUR".to_owned() }),
                }),
            ])
            .map_err(refused)?;
            host::checkpoint(&Cursor { marks: vec![CursorMark { key: "position".to_owned(), value: n + 1 }] })
                .map_err(refused)?;
            host::emit(&[
                count(format!("d-{n}-3"), "u-2", JUNE_3),
                KpiChange::Retract(KpiRetract { metric: "deals_won".to_owned(), source_id: format!("d-{n}-2") }),
            ])
            .map_err(refused)?;
            Ok(if mode == "budget" { SyncOutcome::BudgetExhausted } else { SyncOutcome::Complete })
        }

        fn roster() -> Result<Vec<RosterEntry>, ConnectorError> {
            Ok(vec![
                RosterEntry { crm_user_id: "u-1".to_owned(), email: "v01.one@example.com".to_owned() },
                RosterEntry { crm_user_id: "u-2".to_owned(), email: "v01.two@example.com".to_owned() },
            ])
        }
    }

    export!(V01);
}
