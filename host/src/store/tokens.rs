//! API tokens (issue, list, revoke, authenticate) and one-time stream tickets.
//!
//! A token is stored only as its SHA-256. Every request looks it up in the database (no
//! node keeps a cache of valid tokens), so a revocation or an expiry holds at once on every
//! node. Two reads do not start from a tenant: the token lookup by hash and the stream
//! ticket's consumption by hash (both learn the tenant from the row).
//!
//! Audited: `token.created` (by the API), `token.revoked` (by the API), `token.first_used`
//! and `token.used` (when a token is used after more than [`USE_AUDIT_GAP_MS`] without
//! use), `token.expired` (once, when an expired token is first presented).

use uuid::Uuid;

use super::audit::AuditEntry;
use super::error::{StoreError, not_found_on_foreign_key};
use super::tenants::{INSERT_TOKEN, IssuedToken, Principal, TOKEN_PREFIX, hash_token, new_token};
use super::types::{Actor, ContestId, Role, TenantId, TokenId, UserId, now_ms, random_bytes};
use super::{BeginWrite, Store};

/// `last_used_at` is written at most this often per token (milliseconds).
pub const LAST_USED_GRANULARITY_MS: i64 = 60_000;
/// A use is audited (`token.used`) when the token was not used for this long (milliseconds).
pub const USE_AUDIT_GAP_MS: i64 = 3_600_000;
/// The prefix of every stream ticket.
pub const TICKET_PREFIX: &str = "oneupst_";

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Everything the user's role allows.
    Full,
    /// Only reading leaderboards and their streams (office screens); names of participants
    /// are the only personal data it sees.
    Display,
}

impl Scope {
    /// The stored and serialised name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Scope::Full => "full",
            Scope::Display => "display",
        }
    }

    fn parse_stored(s: &str) -> Result<Self, StoreError> {
        match s {
            "full" => Ok(Scope::Full),
            "display" => Ok(Scope::Display),
            _ => Err(StoreError::Corrupt { what: "token scope" }),
        }
    }
}

/// What a new token is.
#[derive(Debug, Clone, Copy)]
pub struct NewToken<'a> {
    /// A label for people (`office TV`), already checked.
    pub label: Option<&'a str>,
    /// What it may do.
    pub scope: Scope,
    /// When it expires (milliseconds since the Unix epoch), `None` = never.
    pub expires_at_ms: Option<i64>,
}

/// A token's metadata: never the token or its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// Its id.
    pub id: TokenId,
    /// Its label.
    pub label: Option<String>,
    /// Its scope.
    pub scope: Scope,
    /// When it was issued (milliseconds since the Unix epoch).
    pub created_at_ms: i64,
    /// When it was last used, to the minute.
    pub last_used_at_ms: Option<i64>,
    /// When it expires; `None` = never.
    pub expires_at_ms: Option<i64>,
    /// When it was revoked.
    pub revoked_at_ms: Option<i64>,
}

type AuthRow = (Uuid, Uuid, Uuid, String, String, Option<i64>, Option<i64>, bool);

const SELECT_AUTH: &str = "SELECT t.tenant_id, t.id, t.user_id, u.role, t.scope, t.expires_at, t.last_used_at, \
     t.expiry_audited FROM api_tokens t JOIN users u ON u.tenant_id = t.tenant_id AND u.id = t.user_id \
     WHERE t.revoked_at IS NULL AND NOT u.former";

fn principal_of(row: &AuthRow) -> Result<Principal, StoreError> {
    let (tenant, token, user, role, scope, ..) = row;
    Ok(Principal {
        tenant_id: TenantId::from_uuid(*tenant),
        user_id: UserId::from_uuid(*user),
        role: Role::parse_stored(role)?,
        token_id: TokenId::from_uuid(*token),
        scope: Scope::parse_stored(scope)?,
    })
}

impl Store {
    /// Issues a `full` token that never expires (the store's plain default; the API sets
    /// its own defaults through [`Store::issue_token`]).
    pub async fn create_token(&self, tenant: TenantId, user: UserId) -> Result<IssuedToken, StoreError> {
        self.issue_token(tenant, user, &NewToken { label: None, scope: Scope::Full, expires_at_ms: None }).await
    }

    /// Issues a new API token for a user of the tenant. The token is in the answer only.
    pub async fn issue_token(
        &self,
        tenant: TenantId,
        user: UserId,
        new: &NewToken<'_>,
    ) -> Result<IssuedToken, StoreError> {
        let (token, hash) = new_token();
        let id = TokenId::new();
        on_pool!(self, pool => {
            sqlx::query(INSERT_TOKEN)
                .bind(tenant.as_uuid())
                .bind(id.as_uuid())
                .bind(user.as_uuid())
                .bind(&hash[..])
                .bind(now_ms())
                .bind(new.label)
                .bind(new.scope.as_str())
                .bind(new.expires_at_ms)
                .execute(pool)
                .await
                .map_err(not_found_on_foreign_key("user"))?;
        });
        Ok(IssuedToken { id, token })
    }

    /// A user's tokens, oldest first, revoked and expired ones included.
    pub async fn tokens(&self, tenant: TenantId, user: UserId) -> Result<Vec<TokenInfo>, StoreError> {
        type Row = (Uuid, Option<String>, String, i64, Option<i64>, Option<i64>, Option<i64>);
        let rows: Vec<Row> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, label, scope, created_at, last_used_at, expires_at, revoked_at FROM api_tokens \
                 WHERE tenant_id = $1 AND user_id = $2 ORDER BY created_at, id",
            )
            .bind(tenant.as_uuid())
            .bind(user.as_uuid())
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(id, label, scope, created, last_used, expires, revoked)| {
                Ok(TokenInfo {
                    id: TokenId::from_uuid(id),
                    label,
                    scope: Scope::parse_stored(&scope)?,
                    created_at_ms: created,
                    last_used_at_ms: last_used,
                    expires_at_ms: expires,
                    revoked_at_ms: revoked,
                })
            })
            .collect()
    }

    /// Revokes a token of the tenant; revoking twice is harmless. Another tenant's or an
    /// unknown token is `NotFound`.
    pub async fn revoke_token(&self, tenant: TenantId, token: TokenId) -> Result<(), StoreError> {
        self.revoke(tenant, None, token).await
    }

    /// Revokes one of a user's tokens; revoking twice is harmless. A token that is not
    /// this user's is `NotFound`.
    pub async fn revoke_user_token(&self, tenant: TenantId, user: UserId, token: TokenId) -> Result<(), StoreError> {
        self.revoke(tenant, Some(user), token).await
    }

    async fn revoke(&self, tenant: TenantId, user: Option<UserId>, token: TokenId) -> Result<(), StoreError> {
        let done = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $3) \
                 WHERE tenant_id = $1 AND id = $2 AND ($4 IS NULL OR user_id = $4)",
            )
            .bind(tenant.as_uuid())
            .bind(token.as_uuid())
            .bind(now_ms())
            .bind(user.map(|u| u.as_uuid()))
            .execute(pool)
            .await?
            .rows_affected()
        });
        if done == 0 {
            return Err(StoreError::NotFound { what: "token" });
        }
        Ok(())
    }

    /// Who a bearer token belongs to, or `None` for an unknown, revoked or expired token.
    ///
    /// The one read that does not start from a tenant: it looks the token up by its
    /// SHA-256, which is unique across tenants, and learns the tenant from the row. Notes
    /// the use (coarsely) and, once, the expiry of an expired token, in the audit log.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Principal>, StoreError> {
        if !token.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        let hash = hash_token(token);
        let row: Option<AuthRow> = on_pool!(self, pool => {
            sqlx::query_as(&format!("{SELECT_AUTH} AND t.token_hash = $1"))
                .bind(&hash[..])
                .fetch_optional(pool)
                .await?
        });
        let Some(row) = row else { return Ok(None) };
        let principal = principal_of(&row)?;
        let (.., expires_at, last_used_at, expiry_audited) = row;
        let now = now_ms();
        if expires_at.is_some_and(|e| e <= now) {
            if !expiry_audited {
                self.note_expiry(&principal).await?;
            }
            return Ok(None);
        }
        if last_used_at.is_none_or(|at| now - at >= LAST_USED_GRANULARITY_MS) {
            self.note_use(&principal, last_used_at, now).await?;
        }
        Ok(Some(principal))
    }

    /// Who a token (by id) belongs to while it is valid (not revoked, not expired, its user
    /// not erased): for stream tickets and streams that check again.
    pub async fn token_principal(&self, tenant: TenantId, token: TokenId) -> Result<Option<Principal>, StoreError> {
        let row: Option<AuthRow> = on_pool!(self, pool => {
            sqlx::query_as(&format!("{SELECT_AUTH} AND t.tenant_id = $1 AND t.id = $2"))
                .bind(tenant.as_uuid())
                .bind(token.as_uuid())
                .fetch_optional(pool)
                .await?
        });
        let Some(row) = row else { return Ok(None) };
        let expired = row.5.is_some_and(|e| e <= now_ms());
        if expired { Ok(None) } else { principal_of(&row).map(Some) }
    }

    /// Writes `last_used_at` (one node wins a race) and audits a first use or a use after a
    /// long gap.
    async fn note_use(&self, p: &Principal, before: Option<i64>, now: i64) -> Result<(), StoreError> {
        let won = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE api_tokens SET last_used_at = $3 WHERE tenant_id = $1 AND id = $2 \
                 AND (last_used_at IS NULL OR last_used_at <= $4)",
            )
            .bind(p.tenant_id.as_uuid())
            .bind(p.token_id.as_uuid())
            .bind(now)
            .bind(now - LAST_USED_GRANULARITY_MS)
            .execute(pool)
            .await?
            .rows_affected()
        }) == 1;
        let action = match before {
            None => "token.first_used",
            Some(at) if now - at >= USE_AUDIT_GAP_MS => "token.used",
            Some(_) => return Ok(()),
        };
        if won {
            let subject = format!("token {}", p.token_id);
            self.append_audit(p.tenant_id, &AuditEntry { actor: Actor::User(p.user_id), action, subject: &subject })
                .await?;
        }
        Ok(())
    }

    /// Audits an expiry once (one node wins a race).
    async fn note_expiry(&self, p: &Principal) -> Result<(), StoreError> {
        let won = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE api_tokens SET expiry_audited = TRUE WHERE tenant_id = $1 AND id = $2 AND NOT expiry_audited",
            )
            .bind(p.tenant_id.as_uuid())
            .bind(p.token_id.as_uuid())
            .execute(pool)
            .await?
            .rows_affected()
        }) == 1;
        if won {
            let subject = format!("token {}", p.token_id);
            self.append_audit(
                p.tenant_id,
                &AuditEntry { actor: Actor::System, action: "token.expired", subject: &subject },
            )
            .await?;
        }
        Ok(())
    }

    /// Issues a one-time ticket for one stream connection to `contest`, valid for `ttl_ms`,
    /// acting as `token`. Returns the ticket and when it expires. Drops the tenant's tickets
    /// that expired over a minute ago.
    pub async fn issue_stream_ticket(
        &self,
        tenant: TenantId,
        token: TokenId,
        contest: ContestId,
        ttl_ms: i64,
    ) -> Result<(String, i64), StoreError> {
        let ticket = format!("{TICKET_PREFIX}{}", hex::encode(random_bytes::<32>()));
        let hash = hash_token(&ticket);
        let now = now_ms();
        let expires = now + ttl_ms;
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query("DELETE FROM stream_tickets WHERE tenant_id = $1 AND expires_at < $2")
                .bind(tenant.as_uuid())
                .bind(now - 60_000)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO stream_tickets (tenant_id, ticket_hash, token_id, contest_id, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(tenant.as_uuid())
            .bind(&hash[..])
            .bind(token.as_uuid())
            .bind(contest.as_uuid())
            .bind(now)
            .bind(expires)
            .execute(&mut *tx)
            .await
            .map_err(not_found_on_foreign_key("token"))?;
            tx.commit().await?;
        });
        Ok((ticket, expires))
    }

    /// Uses up a stream ticket: the principal it acts as (its token's, still valid) and its
    /// contest, or `None` for an unknown, used or expired ticket. One atomic update, so a
    /// ticket opens one connection across all nodes.
    pub async fn consume_stream_ticket(&self, ticket: &str) -> Result<Option<(Principal, ContestId)>, StoreError> {
        if !ticket.starts_with(TICKET_PREFIX) {
            return Ok(None);
        }
        let hash = hash_token(ticket);
        let now = now_ms();
        let row: Option<(Uuid, Uuid, Uuid)> = on_pool!(self, pool => {
            sqlx::query_as(
                "UPDATE stream_tickets SET consumed_at = $2 \
                 WHERE ticket_hash = $1 AND consumed_at IS NULL AND expires_at > $2 \
                 RETURNING tenant_id, token_id, contest_id",
            )
            .bind(&hash[..])
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        let Some((tenant, token, contest)) = row else { return Ok(None) };
        let principal = self.token_principal(TenantId::from_uuid(tenant), TokenId::from_uuid(token)).await?;
        Ok(principal.map(|p| (p, ContestId::from_uuid(contest))))
    }
}
