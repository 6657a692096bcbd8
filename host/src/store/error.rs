//! The store's one error type.
//!
//! Policy: a method returns a typed variant for every outcome its caller is expected to act
//! on (an unknown id is [`StoreError::NotFound`], a unique key already taken is
//! [`StoreError::Conflict`], a run whose lease moved to another node is
//! [`StoreError::LeaseLost`], a commit for a disabled integration is
//! [`StoreError::IntegrationDisabled`]); everything else the database reports stays a
//! [`StoreError::Database`] for the caller to log and answer with a 5xx. Messages name what
//! went wrong, never the values involved (no e-mail address, no token, no secret), so an
//! error can be logged as it is. Every variant has a stable [`StoreError::code`].

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row asked for does not exist in this tenant (another tenant's ids included).
    #[error("{what} not found")]
    NotFound {
        /// What was looked for (`tenant`, `user`, `integration`, …).
        what: &'static str,
    },
    /// A unique key is already taken (for example an e-mail address within a tenant).
    #[error("{what} already exists")]
    Conflict {
        /// Which key (`email`, `team name`, …).
        what: &'static str,
    },
    /// A value handed to the store is out of its domain (a bad rate, a bad URL).
    #[error("invalid {what}")]
    Invalid {
        /// Which value.
        what: &'static str,
    },
    /// The change would leave the tenant without an admin: its only admin cannot be erased
    /// or given another role.
    #[error("the tenant's only admin")]
    LastAdmin,
    /// The sync run is no longer held by this lease: it expired and another node claimed
    /// the run, or the run finished. Stop without committing anything more.
    #[error("the lease on this sync run was lost")]
    LeaseLost,
    /// The integration was disabled while a sync was running; nothing was committed.
    #[error("the integration is disabled")]
    IntegrationDisabled,
    /// A sealed value could not be opened: the wrong master key, or tampered ciphertext.
    #[error("a sealed value could not be decrypted (wrong master key?)")]
    Decrypt,
    /// The master key is not the one the database's sealed values are sealed under (its
    /// fingerprint differs from the one recorded at first start, or a sealed value does not
    /// open): a node with another key would seal secrets the others cannot read.
    #[error("the master key does not match the database's (fingerprint recorded {recorded}, this key {given})")]
    MasterKeyMismatch {
        /// The first hex digits of the recorded fingerprint (`none` when only a sealed
        /// value refused to open).
        recorded: String,
        /// The first hex digits of this key's fingerprint.
        given: String,
    },
    /// A stored value does not parse (a bad role, bad JSON): the database was edited by hand
    /// or by an incompatible version.
    #[error("a stored {what} is malformed")]
    Corrupt {
        /// Which value.
        what: &'static str,
    },
    /// The master key file could not be read or created, or is readable by others.
    #[error("master key file: {0}")]
    KeyFile(#[source] std::io::Error),
    /// Applying the embedded migrations failed.
    #[error("applying migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Any other database failure (connection, constraint, timeout, …).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    /// A stable, machine-readable code for logs and API error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "not_found",
            Self::Conflict { .. } => "conflict",
            Self::Invalid { .. } => "invalid",
            Self::LastAdmin => "last_admin",
            Self::LeaseLost => "lease_lost",
            Self::IntegrationDisabled => "integration_disabled",
            Self::Decrypt => "decrypt_failed",
            Self::MasterKeyMismatch { .. } => "master_key_mismatch",
            Self::Corrupt { .. } => "corrupt",
            Self::KeyFile(_) => "master_key_file",
            Self::Migrate(_) => "migration_failed",
            Self::Database(_) => "database",
        }
    }

    /// Whether this is a unique-key violation reported by the database.
    pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
        err.as_database_error().is_some_and(|e| e.is_unique_violation())
    }

    /// Whether this is a foreign-key violation reported by the database.
    pub(crate) fn is_foreign_key_violation(err: &sqlx::Error) -> bool {
        err.as_database_error().is_some_and(|e| e.is_foreign_key_violation())
    }
}

/// Maps a unique violation to [`StoreError::Conflict`] and anything else to `Database`.
pub(crate) fn conflict_on_unique(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |err| {
        if StoreError::is_unique_violation(&err) { StoreError::Conflict { what } } else { StoreError::Database(err) }
    }
}

/// Maps a foreign-key violation to [`StoreError::NotFound`] and anything else to `Database`.
pub(crate) fn not_found_on_foreign_key(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |err| {
        if StoreError::is_foreign_key_violation(&err) {
            StoreError::NotFound { what }
        } else {
            StoreError::Database(err)
        }
    }
}
