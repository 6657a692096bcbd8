//! Whole databases: creating and dropping a Postgres database by name, so that every test
//! (and every `TestApp`) runs on a fresh database of its own and tests can run in parallel.
//! Also a dump of every table as text, for privacy sweeps. Not used to serve tenants.

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use super::error::StoreError;
use super::types::random_bytes;
use super::{Pool, Store};

/// A fresh database name: `prefix` and 16 random hexadecimal digits.
pub fn unique_database_name(prefix: &str) -> String {
    format!("{prefix}_{}", hex::encode(random_bytes::<8>()))
}

/// Whether `name` is safe to splice into `CREATE DATABASE` (lowercase ASCII letters,
/// digits and `_`, starting with a letter, at most 63 bytes).
fn is_plain_identifier(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_lowercase()
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
}

/// The URL of database `name` on the server of `admin_url`.
pub fn database_url(admin_url: &str, name: &str) -> Result<String, StoreError> {
    let mut url = url::Url::parse(admin_url).map_err(|_| StoreError::Invalid { what: "database url" })?;
    url.set_path(&format!("/{name}"));
    Ok(url.to_string())
}

/// Creates database `name` through the server of `admin_url` (a Postgres URL whose user may
/// create databases) and returns its URL.
pub async fn create_postgres_database(admin_url: &str, name: &str) -> Result<String, StoreError> {
    if !is_plain_identifier(name) {
        return Err(StoreError::Invalid { what: "database name" });
    }
    let mut conn = PgConnection::connect(admin_url).await?;
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await?;
    conn.close().await?;
    database_url(admin_url, name)
}

/// Drops database `name` (if it exists), closing whatever connections are still open to it.
pub async fn drop_postgres_database(admin_url: &str, name: &str) -> Result<(), StoreError> {
    if !is_plain_identifier(name) {
        return Err(StoreError::Invalid { what: "database name" });
    }
    let mut conn = PgConnection::connect(admin_url).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

/// One table's rows rendered as text, for privacy sweeps.
#[derive(Debug, Clone)]
pub struct TableDump {
    /// The table.
    pub table: String,
    /// Every row: its columns as text (blobs as lossy UTF-8, so text hidden in bytes shows).
    pub rows: Vec<String>,
}

impl Store {
    /// Every row of every table of the database, as text: what a privacy sweep searches
    /// (the demo does, and so do the tests). Reads across tenants; never used to answer a
    /// tenant's request.
    pub async fn dump_tables(&self) -> Result<Vec<TableDump>, StoreError> {
        use sqlx::{Column, Row, TypeInfo, ValueRef};
        let mut out = Vec::new();
        match &self.pool {
            Pool::Postgres(pool) => {
                let tables: Vec<String> = sqlx::query_scalar(
                    "SELECT table_name::text FROM information_schema.tables \
                     WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1",
                )
                .fetch_all(pool)
                .await?;
                for table in tables {
                    if !is_plain_identifier(&table) {
                        continue;
                    }
                    let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT row_to_json(t)::text FROM {table} t"))
                        .fetch_all(pool)
                        .await?;
                    out.push(TableDump { table, rows });
                }
            }
            Pool::Sqlite(pool) => {
                let tables: Vec<String> =
                    sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1")
                        .fetch_all(pool)
                        .await?;
                for table in tables {
                    if !is_plain_identifier(&table) {
                        continue;
                    }
                    let rows = sqlx::query(&format!("SELECT * FROM {table}")).fetch_all(pool).await?;
                    let rendered = rows
                        .iter()
                        .map(|row| {
                            let mut cells = Vec::new();
                            for (i, col) in row.columns().iter().enumerate() {
                                let raw = row.try_get_raw(i)?;
                                let cell = if raw.is_null() {
                                    "null".to_owned()
                                } else {
                                    match raw.type_info().name() {
                                        "INTEGER" | "BOOLEAN" => row.try_get::<i64, _>(i)?.to_string(),
                                        "REAL" => row.try_get::<f64, _>(i)?.to_string(),
                                        "BLOB" => String::from_utf8_lossy(&row.try_get::<Vec<u8>, _>(i)?).into_owned(),
                                        _ => row.try_get::<String, _>(i)?,
                                    }
                                };
                                cells.push(format!("{}={cell}", col.name()));
                            }
                            Ok(cells.join(" | "))
                        })
                        .collect::<Result<Vec<String>, sqlx::Error>>()?;
                    out.push(TableDump { table, rows: rendered });
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_urls() {
        let name = unique_database_name("oneup_test");
        assert!(is_plain_identifier(&name), "{name}");
        assert!(!is_plain_identifier("x; DROP TABLE y"));
        assert!(!is_plain_identifier("Upper"));
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5432/postgres", "abc").unwrap(),
            "postgres://postgres@127.0.0.1:5432/abc"
        );
        assert_eq!(
            database_url("postgres://u:p@h/postgres?sslmode=disable", "abc").unwrap(),
            "postgres://u:p@h/abc?sslmode=disable"
        );
    }
}
