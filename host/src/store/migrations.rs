//! The schema migrations, embedded in the binary: one list per backend, since the DDL
//! differs (`host/migrations/postgres/` and `host/migrations/sqlite/`).
//!
//! Each list names every file of its folder, in order; a unit test checks that list and
//! folder agree, so a new migration is one new file and one new line here. Files are
//! `NNNN_description.sql`, applied by sqlx's migrator (which records a SHA-384 of each file
//! and refuses to run if an applied one has changed: committed migrations are never edited).
//! Embedding with `include_str!` rather than `sqlx::migrate!` keeps sqlx's proc-macro
//! crate, and the second build of both database drivers it brings, out of the build.

use std::borrow::Cow;
use std::pin::Pin;

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

use super::error::StoreError;

/// One migration: version, description, SQL.
type Embedded = (i64, &'static str, &'static str);

/// The Postgres migrations, in order.
const POSTGRES: &[Embedded] = &[
    (1, "initial", include_str!("../../migrations/postgres/0001_initial.sql")),
    (2, "contests targets", include_str!("../../migrations/postgres/0002_contests_targets.sql")),
    (3, "auth", include_str!("../../migrations/postgres/0003_auth.sql")),
    (4, "engine", include_str!("../../migrations/postgres/0004_engine.sql")),
    (5, "incentives", include_str!("../../migrations/postgres/0005_incentives.sql")),
    (6, "privacy", include_str!("../../migrations/postgres/0006_privacy.sql")),
    (7, "standings", include_str!("../../migrations/postgres/0007_standings.sql")),
    (8, "calendar targets", include_str!("../../migrations/postgres/0008_calendar_targets.sql")),
    (9, "leaderboard cache", include_str!("../../migrations/postgres/0009_leaderboard_cache.sql")),
    (10, "facts by owner", include_str!("../../migrations/postgres/0010_facts_by_owner.sql")),
    (11, "tokens", include_str!("../../migrations/postgres/0011_tokens.sql")),
    (12, "identity and master key", include_str!("../../migrations/postgres/0012_identity_and_master_key.sql")),
    (13, "component approval", include_str!("../../migrations/postgres/0013_component_approval.sql")),
    (14, "runs truth", include_str!("../../migrations/postgres/0014_runs_truth.sql")),
    (16, "audit chain", include_str!("../../migrations/postgres/0016_audit_chain.sql")),
    (17, "retention", include_str!("../../migrations/postgres/0017_retention.sql")),
    (18, "tenant lifecycle", include_str!("../../migrations/postgres/0018_tenant_lifecycle.sql")),
];

/// The SQLite migrations, in order.
const SQLITE: &[Embedded] = &[
    (1, "initial", include_str!("../../migrations/sqlite/0001_initial.sql")),
    (2, "contests targets", include_str!("../../migrations/sqlite/0002_contests_targets.sql")),
    (3, "auth", include_str!("../../migrations/sqlite/0003_auth.sql")),
    (4, "engine", include_str!("../../migrations/sqlite/0004_engine.sql")),
    (5, "incentives", include_str!("../../migrations/sqlite/0005_incentives.sql")),
    (6, "privacy", include_str!("../../migrations/sqlite/0006_privacy.sql")),
    (7, "standings", include_str!("../../migrations/sqlite/0007_standings.sql")),
    (8, "calendar targets", include_str!("../../migrations/sqlite/0008_calendar_targets.sql")),
    (9, "leaderboard cache", include_str!("../../migrations/sqlite/0009_leaderboard_cache.sql")),
    (10, "facts by owner", include_str!("../../migrations/sqlite/0010_facts_by_owner.sql")),
    (11, "tokens", include_str!("../../migrations/sqlite/0011_tokens.sql")),
    (12, "identity and master key", include_str!("../../migrations/sqlite/0012_identity_and_master_key.sql")),
    (13, "component approval", include_str!("../../migrations/sqlite/0013_component_approval.sql")),
    (14, "runs truth", include_str!("../../migrations/sqlite/0014_runs_truth.sql")),
    (16, "audit chain", include_str!("../../migrations/sqlite/0016_audit_chain.sql")),
    (17, "retention", include_str!("../../migrations/sqlite/0017_retention.sql")),
    (18, "tenant lifecycle", include_str!("../../migrations/sqlite/0018_tenant_lifecycle.sql")),
];

/// A list of embedded migrations, as a source for sqlx's migrator.
#[derive(Debug, Clone, Copy)]
struct EmbeddedSource(&'static [Embedded]);

impl<'s> MigrationSource<'s> for EmbeddedSource {
    fn resolve(self) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 's>> {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|&(version, description, sql)| {
                    Migration::new(
                        version,
                        Cow::Borrowed(description),
                        MigrationType::Simple,
                        Cow::Borrowed(sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// The newest Postgres migration this binary embeds.
pub(crate) fn latest_postgres() -> i64 {
    POSTGRES.last().map_or(0, |m| m.0)
}

/// The newest SQLite migration this binary embeds.
pub(crate) fn latest_sqlite() -> i64 {
    SQLITE.last().map_or(0, |m| m.0)
}

/// The migrator of the Postgres schema.
pub(crate) async fn postgres() -> Result<Migrator, StoreError> {
    Ok(Migrator::new(EmbeddedSource(POSTGRES)).await?)
}

/// The migrator of the SQLite schema.
pub(crate) async fn sqlite() -> Result<Migrator, StoreError> {
    Ok(Migrator::new(EmbeddedSource(SQLITE)).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `.sql` file of `host/migrations/<folder>/` as (version, description), sorted.
    fn files(folder: &str) -> Vec<(i64, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(folder);
        let mut out: Vec<(i64, String)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter_map(|name| {
                let stem = name.strip_suffix(".sql")?;
                let (version, description) = stem.split_once('_')?;
                Some((version.parse().unwrap(), description.replace('_', " ")))
            })
            .collect();
        out.sort();
        out
    }

    fn listed(list: &[Embedded]) -> Vec<(i64, String)> {
        list.iter().map(|&(v, d, _)| (v, d.to_owned())).collect()
    }

    #[test]
    fn every_migration_file_is_embedded_in_order() {
        assert_eq!(listed(POSTGRES), files("postgres"));
        assert_eq!(listed(SQLITE), files("sqlite"));
        // The backends move in step: the same versions on both.
        let versions = |list: &[Embedded]| list.iter().map(|m| m.0).collect::<Vec<_>>();
        assert_eq!(versions(POSTGRES), versions(SQLITE));
    }
}
