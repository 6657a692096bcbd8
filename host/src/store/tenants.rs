//! Tenants, users, API tokens, teams and exchange rates.

use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::crypto::tenant_key_aad;
use super::error::{StoreError, conflict_on_unique, not_found_on_foreign_key};
use super::fx::FxRate;
use super::tokens::Scope;
use super::types::{Actor, Role, TeamId, TenantId, TokenId, UserId, now_ms, random_bytes};
use super::{BeginWrite, Store};
use crate::ingest::{Currency, TenantKey};

/// The prefix of every API token, so a leaked one is recognisable (and greppable).
pub const TOKEN_PREFIX: &str = "oneup_";

/// A tenant: one customer organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Its id.
    pub id: TenantId,
    /// Its display name.
    pub name: String,
    /// Its IANA time zone (`Europe/London`), in which periods are cut.
    pub timezone: String,
    /// The currency KPIs are reported in.
    pub currency: Currency,
    /// When it was created, in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

/// What it takes to create a tenant: the tenant and its first admin.
#[derive(Debug, Clone, Copy)]
pub struct NewTenant<'a> {
    /// Display name.
    pub name: &'a str,
    /// IANA time zone, already checked by the caller.
    pub timezone: &'a str,
    /// The tenant currency.
    pub currency: Currency,
    /// The first admin's name.
    pub admin_name: &'a str,
    /// The first admin's e-mail address.
    pub admin_email: &'a str,
}

/// A tenant just created, with its first admin and that admin's first token.
#[derive(Debug, Clone)]
pub struct CreatedTenant {
    /// The tenant.
    pub tenant: Tenant,
    /// Its first admin.
    pub admin: User,
    /// The admin's token: shown once, stored only as a hash.
    pub admin_token: IssuedToken,
}

/// A new API token. The token itself exists only here: the store keeps its SHA-256.
#[derive(Clone)]
pub struct IssuedToken {
    /// The token's id (for revocation).
    pub id: TokenId,
    /// The bearer token, `oneup_` and 64 hexadecimal digits.
    pub token: String,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken").field("id", &self.id).field("token", &"<redacted>").finish()
    }
}

/// A user of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Their tenant.
    pub tenant_id: TenantId,
    /// Their id.
    pub id: UserId,
    /// Their name.
    pub name: String,
    /// Their e-mail address as entered.
    pub email: String,
    /// Their role.
    pub role: Role,
    /// When they were created, in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

/// What it takes to create a user.
#[derive(Debug, Clone, Copy)]
pub struct NewUser<'a> {
    /// Name.
    pub name: &'a str,
    /// E-mail address; unique within the tenant, case-insensitively.
    pub email: &'a str,
    /// Role.
    pub role: Role,
}

/// A change to a user (rectification); `None` leaves a field as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct UserUpdate<'a> {
    /// A new name.
    pub name: Option<&'a str>,
    /// A new e-mail address.
    pub email: Option<&'a str>,
    /// A new role.
    pub role: Option<Role>,
    /// Whether the user changes their own address (self-service, not an admin): a CRM
    /// owner is then mapped through the new address only once an admin confirms it.
    pub self_service: bool,
}

/// Who a valid API token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The user.
    pub user_id: UserId,
    /// The user's role now (not when the token was made).
    pub role: Role,
    /// The token used.
    pub token_id: TokenId,
    /// What the token may do.
    pub scope: Scope,
}

/// A team of users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Team {
    /// Its id.
    pub id: TeamId,
    /// Its name.
    pub name: String,
    /// When it was created, in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

/// The form of an e-mail address that is compared and kept unique: trimmed, lowercased.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// A fresh bearer token and its SHA-256.
/// The tenant's admins (`$1`), locked on Postgres with `lock` ([`Store::for_update`]) so
/// that two transactions removing admins at once cannot both see another one left.
pub(super) fn admins_sql(lock: &str) -> String {
    format!("SELECT id FROM users WHERE tenant_id = $1 AND role = 'admin' AND NOT former ORDER BY id{lock}")
}

/// Whether `user` is the one admin in `admins` (rows of [`admins_sql`]).
pub(super) fn is_only_admin(admins: &[(Uuid,)], user: UserId) -> bool {
    admins.iter().map(|(id,)| *id).eq([user.as_uuid()])
}

pub(super) fn new_token() -> (String, [u8; 32]) {
    let token = format!("{TOKEN_PREFIX}{}", hex::encode(random_bytes::<32>()));
    let hash = hash_token(&token);
    (token, hash)
}

/// The SHA-256 of a bearer token, as stored.
pub(super) fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Reads a stored currency code.
pub(crate) fn parse_currency(code: &str) -> Result<Currency, StoreError> {
    Currency::parse(code.trim_end()).ok_or(StoreError::Corrupt { what: "currency" })
}

const INSERT_USER: &str = "INSERT INTO users (tenant_id, id, name, email, email_norm, role, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";
pub(super) const INSERT_TOKEN: &str = "INSERT INTO api_tokens \
     (tenant_id, id, user_id, token_hash, created_at, label, scope, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
/// The label of a tenant's first admin token.
pub const FIRST_ADMIN_TOKEN_LABEL: &str = "first admin token";
const SELECT_USER: &str = "SELECT id, name, email, role, created_at FROM users";

type UserRow = (Uuid, String, String, String, i64);

fn user_from_row(tenant_id: TenantId, (id, name, email, role, created_at): UserRow) -> Result<User, StoreError> {
    Ok(User {
        tenant_id,
        id: UserId::from_uuid(id),
        name,
        email,
        role: Role::parse_stored(&role)?,
        created_at_ms: created_at,
    })
}

impl Store {
    /// Creates a tenant with a fresh pseudonymisation key (sealed), its first admin and the
    /// admin's first token, in one transaction.
    pub async fn create_tenant(&self, new: &NewTenant<'_>) -> Result<CreatedTenant, StoreError> {
        let now = now_ms();
        let tenant = Tenant {
            id: TenantId::new(),
            name: new.name.to_owned(),
            timezone: new.timezone.to_owned(),
            currency: new.currency,
            created_at_ms: now,
        };
        let admin = User {
            tenant_id: tenant.id,
            id: UserId::new(),
            name: new.admin_name.to_owned(),
            email: new.admin_email.to_owned(),
            role: Role::Admin,
            created_at_ms: now,
        };
        let pseudonym_key = TenantKey::random();
        let sealed_key = self.key.seal(&tenant_key_aad(tenant.id.as_uuid()), pseudonym_key.expose_bytes());
        let (token, token_hash) = new_token();
        let token_id = TokenId::new();
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "INSERT INTO tenants (tenant_id, name, timezone, currency, pseudonym_key, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(tenant.id.as_uuid())
            .bind(&tenant.name)
            .bind(&tenant.timezone)
            .bind(tenant.currency.as_str())
            .bind(&sealed_key)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(INSERT_USER)
                .bind(tenant.id.as_uuid())
                .bind(admin.id.as_uuid())
                .bind(&admin.name)
                .bind(&admin.email)
                .bind(normalize_email(&admin.email))
                .bind(admin.role.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query(INSERT_TOKEN)
                .bind(tenant.id.as_uuid())
                .bind(token_id.as_uuid())
                .bind(admin.id.as_uuid())
                .bind(&token_hash[..])
                .bind(now)
                .bind(FIRST_ADMIN_TOKEN_LABEL)
                .bind(Scope::Full.as_str())
                // The first admin token never expires: the operator cannot issue tenant
                // tokens, so an expired one would lock the tenant out. The admin replaces it
                // (a token of their own, then revoking this one).
                .bind(None::<i64>)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(CreatedTenant { tenant, admin, admin_token: IssuedToken { id: token_id, token } })
    }

    /// A tenant by id.
    pub async fn tenant(&self, tenant: TenantId) -> Result<Tenant, StoreError> {
        let row: Option<(String, String, String, i64)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT name, timezone, currency, created_at FROM tenants WHERE tenant_id = $1")
                .bind(tenant.as_uuid())
                .fetch_optional(pool)
                .await?
        });
        let (name, timezone, currency, created_at) = row.ok_or(StoreError::NotFound { what: "tenant" })?;
        Ok(Tenant { id: tenant, name, timezone, currency: parse_currency(&currency)?, created_at_ms: created_at })
    }

    /// The tenant's pseudonymisation key, unsealed: for the ingest validator only.
    pub async fn tenant_key(&self, tenant: TenantId) -> Result<TenantKey, StoreError> {
        let sealed: Option<Vec<u8>> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT pseudonym_key FROM tenants WHERE tenant_id = $1")
                .bind(tenant.as_uuid())
                .fetch_optional(pool)
                .await?
        });
        let sealed = sealed.ok_or(StoreError::NotFound { what: "tenant" })?;
        let bytes = self.key.open(&tenant_key_aad(tenant.as_uuid()), &sealed)?;
        let bytes = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| StoreError::Corrupt { what: "tenant key" })?;
        Ok(TenantKey::from_bytes(bytes))
    }

    /// Creates a user. The e-mail address is unique within the tenant, case-insensitively:
    /// [`StoreError::Conflict`] (`email`) if taken; [`StoreError::NotFound`] if the tenant
    /// does not exist.
    pub async fn create_user(&self, tenant: TenantId, new: &NewUser<'_>) -> Result<User, StoreError> {
        let user = User {
            tenant_id: tenant,
            id: UserId::new(),
            name: new.name.to_owned(),
            email: new.email.to_owned(),
            role: new.role,
            created_at_ms: now_ms(),
        };
        let result = on_pool!(self, pool => {
            sqlx::query(INSERT_USER)
                .bind(tenant.as_uuid())
                .bind(user.id.as_uuid())
                .bind(&user.name)
                .bind(&user.email)
                .bind(normalize_email(&user.email))
                .bind(user.role.as_str())
                .bind(user.created_at_ms)
                .execute(pool)
                .await
                .map(|_| ())
        });
        result.map_err(|err| {
            if StoreError::is_foreign_key_violation(&err) {
                StoreError::NotFound { what: "tenant" }
            } else {
                conflict_on_unique("email")(err)
            }
        })?;
        Ok(user)
    }

    /// A user of the tenant by id.
    pub async fn user(&self, tenant: TenantId, user: UserId) -> Result<User, StoreError> {
        let row: Option<UserRow> = on_pool!(self, pool => {
            sqlx::query_as(&format!("{SELECT_USER} WHERE tenant_id = $1 AND id = $2 AND NOT former"))
                .bind(tenant.as_uuid())
                .bind(user.as_uuid())
                .fetch_optional(pool)
                .await?
        });
        user_from_row(tenant, row.ok_or(StoreError::NotFound { what: "user" })?)
    }

    /// A user of the tenant by e-mail address, compared case-insensitively (roster matching).
    pub async fn user_by_email(&self, tenant: TenantId, email: &str) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = on_pool!(self, pool => {
            sqlx::query_as(&format!("{SELECT_USER} WHERE tenant_id = $1 AND email_norm = $2 AND NOT former"))
                .bind(tenant.as_uuid())
                .bind(normalize_email(email))
                .fetch_optional(pool)
                .await?
        });
        row.map(|row| user_from_row(tenant, row)).transpose()
    }

    /// Every user of the tenant, oldest first.
    pub async fn users(&self, tenant: TenantId) -> Result<Vec<User>, StoreError> {
        let rows: Vec<UserRow> = on_pool!(self, pool => {
            sqlx::query_as(&format!("{SELECT_USER} WHERE tenant_id = $1 AND NOT former ORDER BY created_at, id"))
                .bind(tenant.as_uuid())
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(|row| user_from_row(tenant, row)).collect()
    }

    /// Changes a user's name, e-mail address or role (rectification). [`StoreError::Conflict`]
    /// (`email`) if the new address is taken in the tenant.
    pub async fn update_user(
        &self,
        tenant: TenantId,
        user: UserId,
        update: &UserUpdate<'_>,
    ) -> Result<User, StoreError> {
        let email_norm = update.email.map(normalize_email);
        let lock = self.for_update();
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            if update.role.is_some_and(|r| r != Role::Admin) {
                // The admins are locked, so two demotions at once cannot both pass.
                let admins: Vec<(Uuid,)> =
                    sqlx::query_as(&admins_sql(lock)).bind(tenant.as_uuid()).fetch_all(&mut *tx).await?;
                if is_only_admin(&admins, user) {
                    return Err(StoreError::LastAdmin);
                }
            }
            let done = sqlx::query(
                "UPDATE users SET name = COALESCE($3, name), email = COALESCE($4, email), \
                 email_self_set = CASE WHEN $5 IS NULL OR $5 = email_norm THEN email_self_set ELSE $7 END, \
                 email_norm = COALESCE($5, email_norm), role = COALESCE($6, role) \
                 WHERE tenant_id = $1 AND id = $2 AND NOT former",
            )
            .bind(tenant.as_uuid())
            .bind(user.as_uuid())
            .bind(update.name)
            .bind(update.email)
            .bind(email_norm.as_deref())
            .bind(update.role.map(|r| r.as_str()))
            .bind(update.self_service)
            .execute(&mut *tx)
            .await
            .map_err(conflict_on_unique("email"))?
            .rows_affected();
            if done == 0 {
                return Err(StoreError::NotFound { what: "user" });
            }
            tx.commit().await?;
        });
        self.user(tenant, user).await
    }

    /// Erases a user, audited as done by the host ([`Actor::System`]); the API calls
    /// [`Store::erase_user`] with the requester. Their facts and team places go to an
    /// anonymous former member, so team and tenant totals stay as they were, their CRM
    /// identities are marked erased, and the user is deleted with tokens, memberships, owner
    /// mappings, participations and targets (see [`super::erasure`]).
    pub async fn delete_user(&self, tenant: TenantId, user: UserId) -> Result<(), StoreError> {
        self.erase_user(tenant, user, Actor::System).await.map(drop)
    }

    /// Creates a team.
    pub async fn create_team(&self, tenant: TenantId, name: &str) -> Result<Team, StoreError> {
        let team = Team { id: TeamId::new(), name: name.to_owned(), created_at_ms: now_ms() };
        on_pool!(self, pool => {
            sqlx::query("INSERT INTO teams (tenant_id, id, name, created_at) VALUES ($1, $2, $3, $4)")
                .bind(tenant.as_uuid())
                .bind(team.id.as_uuid())
                .bind(&team.name)
                .bind(team.created_at_ms)
                .execute(pool)
                .await
                .map_err(not_found_on_foreign_key("tenant"))?;
        });
        Ok(team)
    }

    /// Every team of the tenant, oldest first.
    pub async fn teams(&self, tenant: TenantId) -> Result<Vec<Team>, StoreError> {
        let rows: Vec<(Uuid, String, i64)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT id, name, created_at FROM teams WHERE tenant_id = $1 ORDER BY created_at, id")
                .bind(tenant.as_uuid())
                .fetch_all(pool)
                .await?
        });
        Ok(rows
            .into_iter()
            .map(|(id, name, created_at)| Team { id: TeamId::from_uuid(id), name, created_at_ms: created_at })
            .collect())
    }

    /// Adds a user to a team (adding twice is harmless). [`StoreError::NotFound`] if either
    /// is not in the tenant.
    pub async fn add_team_member(&self, tenant: TenantId, team: TeamId, user: UserId) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO team_members (tenant_id, team_id, user_id) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant_id, team_id, user_id) DO NOTHING",
            )
            .bind(tenant.as_uuid())
            .bind(team.as_uuid())
            .bind(user.as_uuid())
            .execute(pool)
            .await
            .map_err(not_found_on_foreign_key("team or user"))?;
        });
        Ok(())
    }

    /// Removes a user from a team (removing a non-member is harmless).
    pub async fn remove_team_member(&self, tenant: TenantId, team: TeamId, user: UserId) -> Result<(), StoreError> {
        on_pool!(self, pool => {
            sqlx::query("DELETE FROM team_members WHERE tenant_id = $1 AND team_id = $2 AND user_id = $3")
                .bind(tenant.as_uuid())
                .bind(team.as_uuid())
                .bind(user.as_uuid())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The members of a team of the tenant, former members (the anonymous stand-ins of
    /// erased users, see [`super::erasure`]) included: team totals are sums over them.
    pub async fn team_members(&self, tenant: TenantId, team: TeamId) -> Result<Vec<UserId>, StoreError> {
        let rows: Vec<Uuid> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT user_id FROM team_members WHERE tenant_id = $1 AND team_id = $2 ORDER BY user_id",
            )
            .bind(tenant.as_uuid())
            .bind(team.as_uuid())
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().map(UserId::from_uuid).collect())
    }

    /// Sets exchange rates into the tenant currency (other currencies' rates stay). Call
    /// [`Store::convert_waiting`] afterwards to convert amounts that waited for them.
    pub async fn set_fx_rates(&self, tenant: TenantId, rates: &[(Currency, FxRate)]) -> Result<(), StoreError> {
        let now = now_ms();
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            for (currency, rate) in rates {
                sqlx::query(
                    "INSERT INTO fx_rates (tenant_id, currency, rate, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (tenant_id, currency) DO UPDATE SET rate = excluded.rate, updated_at = excluded.updated_at",
                )
                .bind(tenant.as_uuid())
                .bind(currency.as_str())
                .bind(rate.to_string())
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(not_found_on_foreign_key("tenant"))?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// The tenant's exchange rates.
    pub async fn fx_rates(&self, tenant: TenantId) -> Result<BTreeMap<Currency, FxRate>, StoreError> {
        let rows: Vec<(String, String)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT currency, rate FROM fx_rates WHERE tenant_id = $1")
                .bind(tenant.as_uuid())
                .fetch_all(pool)
                .await?
        });
        rows.into_iter()
            .map(|(currency, rate)| {
                let rate = FxRate::parse(&rate).map_err(|_| StoreError::Corrupt { what: "exchange rate" })?;
                Ok((parse_currency(&currency)?, rate))
            })
            .collect()
    }
}
