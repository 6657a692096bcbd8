//! The API's guards around tokens: the per-address limit on failed authentications, the
//! stream ticket lifetime, and the caps on open leaderboard streams.
//!
//! Failed authentications (no token, an unknown, revoked or expired token, a used or
//! expired stream ticket) are counted per client address with a keyed GCRA limiter
//! (`governor`): `auth_failures_per_minute` of them in a burst, then one more per
//! `60 / n` seconds; over that, the failure answers 429 with `Retry-After` instead of 401.
//! A request with a valid token is never counted nor refused, whatever others at the same
//! address do. The client address is the socket peer: behind a reverse proxy that is the
//! proxy's address, so the limit then applies to all clients behind it together.
//!
//! Stream caps count this node's open streams per token (a ticket's stream counts for the
//! token that asked for the ticket) and per tenant.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::error::ApiError;
use crate::store::{Principal, TenantId, TokenId};

/// Settings (`oneup serve` flags).
#[derive(Debug, Clone, Copy)]
pub struct SecurityConfig {
    /// Failed authentications allowed per client address and minute (also the burst).
    pub auth_failures_per_minute: u32,
    /// How long a stream ticket is valid (at most 60 s).
    pub stream_ticket_ttl: Duration,
    /// Open leaderboard streams per token on this node.
    pub max_streams_per_token: usize,
    /// Open leaderboard streams per tenant on this node.
    pub max_streams_per_tenant: usize,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            auth_failures_per_minute: 60,
            stream_ticket_ttl: Duration::from_secs(60),
            max_streams_per_token: 10,
            max_streams_per_tenant: 200,
        }
    }
}

/// The guards of one node.
pub struct Security {
    config: SecurityConfig,
    failures: DefaultKeyedRateLimiter<IpAddr>,
    streams: Arc<Mutex<StreamCounts>>,
}

#[derive(Default)]
struct StreamCounts {
    per_token: HashMap<TokenId, usize>,
    per_tenant: HashMap<TenantId, usize>,
}

/// Addresses remembered by the failure limiter before old ones are forgotten.
const MAX_TRACKED_ADDRESSES: usize = 10_000;

impl Security {
    /// Guards with these settings.
    pub fn new(config: SecurityConfig) -> Self {
        let n = NonZeroU32::new(config.auth_failures_per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        Self { config, failures: RateLimiter::keyed(Quota::per_minute(n)), streams: Arc::default() }
    }

    /// The settings.
    pub fn config(&self) -> &SecurityConfig {
        &self.config
    }

    /// Counts a failed authentication from `addr` and returns the answer: `refusal` (a
    /// 401), or a 429 with `Retry-After` once the address is over its budget. Without an
    /// address (a request not from a socket), nothing is counted.
    pub(super) fn failed(&self, addr: Option<IpAddr>, refusal: ApiError) -> ApiError {
        let Some(addr) = addr else { return refusal };
        if self.failures.len() > MAX_TRACKED_ADDRESSES {
            self.failures.retain_recent();
        }
        match self.failures.check_key(&addr) {
            Ok(()) => refusal,
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.failures.clock().now());
                ApiError::TooManyRequests {
                    code: "too_many_failed_authentications",
                    message: "too many failed authentications from this address; try again later".to_owned(),
                    retry_after_secs: Some(wait.as_secs().max(1)),
                }
            }
        }
    }

    /// Leaderboard streams open on this node.
    pub(super) fn open_streams(&self) -> usize {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner).per_tenant.values().sum()
    }

    /// Takes a stream slot for `p`'s token and tenant, or answers 429 when either is at
    /// its cap. The slot is given back when the guard is dropped (the stream ends).
    pub(super) fn open_stream(&self, p: &Principal) -> Result<StreamSlot, ApiError> {
        let mut counts = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        let token = counts.per_token.get(&p.token_id).copied().unwrap_or(0);
        let tenant = counts.per_tenant.get(&p.tenant_id).copied().unwrap_or(0);
        if token >= self.config.max_streams_per_token {
            return Err(ApiError::TooManyRequests {
                code: "too_many_streams",
                message: format!(
                    "this token already has {token} open leaderboard streams (the most allowed); close one first"
                ),
                retry_after_secs: None,
            });
        }
        if tenant >= self.config.max_streams_per_tenant {
            return Err(ApiError::TooManyRequests {
                code: "too_many_streams",
                message: format!(
                    "this tenant already has {tenant} open leaderboard streams (the most allowed); close one first"
                ),
                retry_after_secs: None,
            });
        }
        *counts.per_token.entry(p.token_id).or_default() += 1;
        *counts.per_tenant.entry(p.tenant_id).or_default() += 1;
        Ok(StreamSlot { counts: self.streams.clone(), token: p.token_id, tenant: p.tenant_id })
    }
}

/// One open stream's place in the counts.
pub(super) struct StreamSlot {
    counts: Arc<Mutex<StreamCounts>>,
    token: TokenId,
    tenant: TenantId,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        decrement(&mut counts.per_token, self.token);
        decrement(&mut counts.per_tenant, self.tenant);
    }
}

fn decrement<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: K) {
    if let Some(n) = map.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            map.remove(&key);
        }
    }
}
