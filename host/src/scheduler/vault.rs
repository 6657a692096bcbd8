//! The database side of an integration's refreshing credentials, for the runtime's
//! [`TokenVault`]: the refresh token lives in the integration's sealed secrets, and a
//! refresh lease on the integration row ([`Store::take_refresh_lease`]) lets one refresh at
//! a time run, across every node of the database. No transaction stays open while the
//! token endpoint answers: taking the lease is one conditional `UPDATE`, and every later
//! write is fenced by the holder and by the sealed secrets it read, so a lease that expired
//! and was taken over, or secrets an admin replaced meanwhile, make the write a no-op that
//! reports [`VaultError::LockLost`].

use std::collections::BTreeMap;
use std::time::Duration;

use crate::runtime::BoxFuture;
use crate::runtime::auth::{GrantCache, REFRESH_TOKEN, RefreshLock, TokenVault, VaultError};
use crate::store::{LeaseRefusal, RefreshLease, Store, StoreError, TenantId};

/// How long a refresh waits for another one of the same integration to finish.
const REFRESH_WAIT: Duration = Duration::from_secs(130);

/// An integration's refresh-token vault. One vault serves one run (its roster and sync
/// calls share the access grant through it).
#[derive(Debug)]
pub struct IntegrationVault {
    store: Store,
    tenant: TenantId,
    connector_id: String,
    cache: GrantCache,
}

impl IntegrationVault {
    /// The vault of an integration, for one run.
    pub fn new(store: Store, tenant: TenantId, connector_id: &str) -> Self {
        IntegrationVault { store, tenant, connector_id: connector_id.to_owned(), cache: GrantCache::default() }
    }
}

fn vault_error(e: StoreError) -> VaultError {
    VaultError::Store(e.code().to_owned())
}

impl TokenVault for IntegrationVault {
    fn acquire(&self) -> BoxFuture<'_, Result<Box<dyn RefreshLock>, VaultError>> {
        Box::pin(async move {
            let holder = hex::encode(crate::store::types::random_bytes::<12>());
            let started = std::time::Instant::now();
            let mut pause = Duration::from_millis(25);
            loop {
                let taken = self
                    .store
                    .take_refresh_lease(self.tenant, &self.connector_id, &holder)
                    .await
                    .map_err(vault_error)?;
                if let Some(lease) = taken {
                    let opened = self.store.open_leased_secrets(&lease).map_err(|e| match e {
                        StoreError::Corrupt { .. } => VaultError::Store("corrupt".into()),
                        other => vault_error(other),
                    });
                    let mut lock = StoreRefreshLock {
                        store: self.store.clone(),
                        lease,
                        secrets: BTreeMap::new(),
                        released: false,
                    };
                    match opened {
                        Ok(secrets) => {
                            lock.secrets = secrets;
                            return Ok(Box::new(lock) as Box<dyn RefreshLock>);
                        }
                        Err(e) => {
                            Box::new(lock).release().await;
                            return Err(e);
                        }
                    }
                }
                match self.store.refresh_lease_refusal(self.tenant, &self.connector_id).await.map_err(vault_error)? {
                    LeaseRefusal::Gone => return Err(VaultError::Gone),
                    LeaseRefusal::NeedsReauthorization => return Err(VaultError::NeedsReauthorization),
                    LeaseRefusal::Held => {}
                }
                if started.elapsed() >= REFRESH_WAIT {
                    return Err(VaultError::Busy);
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(400));
            }
        })
    }

    fn grant_cache(&self) -> Option<&GrantCache> {
        Some(&self.cache)
    }
}

/// A held refresh lease of one integration.
struct StoreRefreshLock {
    store: Store,
    lease: RefreshLease,
    secrets: BTreeMap<String, String>,
    released: bool,
}

impl RefreshLock for StoreRefreshLock {
    fn refresh_token(&self) -> &str {
        self.secrets.get(REFRESH_TOKEN).map(String::as_str).unwrap_or_default()
    }

    fn store_rotated<'a>(&'a mut self, token: &'a str) -> BoxFuture<'a, Result<(), VaultError>> {
        Box::pin(async move {
            let mut secrets = self.secrets.clone();
            secrets.insert(REFRESH_TOKEN.to_owned(), token.to_owned());
            if !self.store.store_leased_secrets(&mut self.lease, &secrets).await.map_err(vault_error)? {
                return Err(VaultError::LockLost);
            }
            self.secrets = secrets;
            Ok(())
        })
    }

    fn refuse(mut self: Box<Self>) -> BoxFuture<'static, Result<(), VaultError>> {
        self.released = true;
        Box::pin(async move {
            if self.store.refuse_under_lease(&self.lease).await.map_err(vault_error)? {
                Ok(())
            } else {
                Err(VaultError::LockLost)
            }
        })
    }

    fn release(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        self.released = true;
        Box::pin(async move {
            if let Err(e) = self.store.release_refresh_lease(&self.lease).await {
                tracing::warn!(code = e.code(), "could not release a refresh lease; it will expire");
            }
        })
    }
}

impl Drop for StoreRefreshLock {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        // Dropped mid-refresh (the sync was cancelled): free the lease in the background
        // rather than make the next refresh wait for it to expire.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let store = self.store.clone();
            let lease = self.lease.clone();
            handle.spawn(async move {
                let _ = store.release_refresh_lease(&lease).await;
            });
        }
    }
}
