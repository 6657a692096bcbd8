//! Ids and small enums shared by the store's tables.
//!
//! Ids are random version 4 UUIDs made by the host ([`TenantId::new`] and friends), one
//! newtype per table so that a user id cannot be passed where a team id is wanted. They are
//! stored as Postgres `UUID` and as 16-byte SQLite `BLOB`s, and written as the usual
//! hyphenated lowercase text in JSON and logs. Random ids need no sequence shared between
//! nodes or shards and let nobody count another tenant's rows.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use super::error::StoreError;

/// A fresh random (version 4) UUID from the operating system's secure random source.
pub(crate) fn random_uuid() -> Uuid {
    uuid::Builder::from_random_bytes(random_bytes()).into_uuid()
}

/// `N` bytes from the operating system's secure random source.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system's random source is available");
    bytes
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh random id.
            pub fn new() -> Self {
                Self(random_uuid())
            }

            /// Wraps a UUID (read from a request path, say).
            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID inside.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            /// Parses the hyphenated (or simple) text form.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id_type!(
    /// The id of a tenant (the `tenant_id` every table starts its keys with).
    TenantId
);
id_type!(
    /// The id of a user within a tenant.
    UserId
);
id_type!(
    /// The id of a team within a tenant.
    TeamId
);
id_type!(
    /// The id of an API token within a tenant (not the token, which is never stored).
    TokenId
);
id_type!(
    /// The id of a sync run within a tenant.
    RunId
);
id_type!(
    /// The id of a contest within a tenant.
    ContestId
);
id_type!(
    /// The id of a target within a tenant.
    TargetId
);

/// What a user may do inside their tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Manages users, integrations, rates and everything a manager may.
    Admin,
    /// Reads KPIs and runs contests and targets.
    Manager,
    /// Sees their own progress and the leaderboards they take part in.
    Member,
}

impl Role {
    /// The stored and serialised name: `admin`, `manager` or `member`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Manager => "manager",
            Self::Member => "member",
        }
    }

    /// Reads a stored role.
    pub(crate) fn parse_stored(s: &str) -> Result<Self, StoreError> {
        match s {
            "admin" => Ok(Self::Admin),
            "manager" => Ok(Self::Manager),
            "member" => Ok(Self::Member),
            _ => Err(StoreError::Corrupt { what: "role" }),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who did something recorded in the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Actor {
    /// The operator of the service (the bearer of `ONEUP_OPERATOR_TOKEN`).
    Operator,
    /// A user of the tenant.
    User(UserId),
    /// The host itself (the scheduler, say).
    System,
}

impl Actor {
    /// The stored form: `operator`, `system` or `user:<uuid>`.
    pub fn to_stored(&self) -> String {
        match self {
            Self::Operator => "operator".to_owned(),
            Self::System => "system".to_owned(),
            Self::User(id) => format!("user:{id}"),
        }
    }

    /// Reads the stored form.
    pub(crate) fn parse_stored(s: &str) -> Result<Self, StoreError> {
        match s {
            "operator" => Ok(Self::Operator),
            "system" => Ok(Self::System),
            _ => s
                .strip_prefix("user:")
                .and_then(|id| id.parse().ok())
                .map(Self::User)
                .ok_or(StoreError::Corrupt { what: "audit actor" }),
        }
    }
}

/// The current time in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// A stored non-negative counter as `u64` (negative values, which the schema never holds,
/// read as zero).
pub(crate) fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// A count as a stored `BIGINT`, saturating.
pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_v4_and_round_trip() {
        let a = UserId::new();
        let b = UserId::new();
        assert_ne!(a, b);
        assert_eq!(a.as_uuid().get_version_num(), 4);
        assert_eq!(a.to_string().parse::<UserId>().unwrap(), a);
        assert_eq!(serde_json::to_string(&a).unwrap(), format!("\"{a}\""));
        assert!("not-a-uuid".parse::<UserId>().is_err());
        assert!(format!("{a:?}").starts_with("UserId("));
    }

    #[test]
    fn roles_and_actors_round_trip() {
        for role in [Role::Admin, Role::Manager, Role::Member] {
            assert_eq!(Role::parse_stored(role.as_str()).unwrap(), role);
        }
        assert!(Role::parse_stored("root").is_err());
        let user = UserId::new();
        for actor in [Actor::Operator, Actor::System, Actor::User(user)] {
            assert_eq!(Actor::parse_stored(&actor.to_stored()).unwrap(), actor);
        }
        assert!(Actor::parse_stored("user:nope").is_err());
    }
}
