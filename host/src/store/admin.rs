//! Whole databases: creating and dropping a Postgres database by name, so that every test
//! (and every `TestApp`) runs on a fresh database of its own and tests can run in parallel.
//! Not used by the service itself.

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use super::error::StoreError;
use super::types::random_bytes;

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
