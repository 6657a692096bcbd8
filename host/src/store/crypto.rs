//! Secrets at rest: integration credentials and tenant pseudonymisation keys are sealed
//! with XChaCha20-Poly1305 (RustCrypto) under the host's master key before they reach the
//! database.
//!
//! A sealed value is `0x01 ‖ 24-byte random nonce ‖ ciphertext and tag`. The associated
//! data names the purpose and the row (tenant id, connector id), so a sealed value copied
//! into another row or column does not open. The master key comes from `ONEUP_MASTER_KEY`
//! (64 hexadecimal digits) or from a key file created on first start with owner-only
//! permissions ([`MasterKey::load_or_create`]); losing it makes every sealed value
//! unreadable, which is also how secrets of a deleted tenant are destroyed for good.

use std::fmt;
use std::io::Write;
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use super::error::StoreError;
use super::types::random_bytes;

/// The version byte at the start of every sealed value.
const SEALED_V1: u8 = 1;
/// XChaCha20 nonce length.
const NONCE_LEN: usize = 24;

/// The host's 32-byte master key. `Debug` never prints it and there is no `Display`.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// Wraps 32 key bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A fresh key from the operating system's secure random source.
    pub fn random() -> Self {
        Self(random_bytes())
    }

    /// Reads a key written as 64 hexadecimal digits (surrounding whitespace ignored), the
    /// form of `ONEUP_MASTER_KEY` and of the key file.
    pub fn from_hex(s: &str) -> Result<Self, StoreError> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut bytes).map_err(|_| StoreError::Invalid { what: "master key" })?;
        Ok(Self(bytes))
    }

    /// Reads the key file at `path`, or creates it with a fresh key, readable and writable
    /// by its owner only, if it does not exist. Refuses a file that others can read.
    pub fn load_or_create(path: &Path) -> Result<Self, StoreError> {
        match Self::load(path)? {
            Some(key) => Ok(key),
            None => {
                let key = Self::random();
                key.write_new(path)?;
                Ok(key)
            }
        }
    }

    /// Reads the key file at `path`; `None` if there is none. Refuses a file that others
    /// can read.
    pub fn load(path: &Path) -> Result<Option<Self>, StoreError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                check_private(path)?;
                Self::from_hex(&text).map(Some)
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(StoreError::KeyFile(err)),
        }
    }

    /// Writes this key to a new file at `path` (never over an existing one), readable and
    /// writable by its owner only.
    pub fn write_new(&self, path: &Path) -> Result<(), StoreError> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(StoreError::KeyFile)?;
        file.write_all(hex::encode(self.0).as_bytes()).map_err(StoreError::KeyFile)?;
        file.write_all(b"\n").map_err(StoreError::KeyFile)?;
        file.sync_all().map_err(StoreError::KeyFile)?;
        Ok(())
    }

    /// The key's fingerprint: HMAC-SHA-256 of a fixed label under the key. It identifies
    /// the key (the database records it) and reveals nothing about it.
    pub fn fingerprint(&self) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(b"oneup/master-key-fingerprint/v1");
        mac.finalize().into_bytes().into()
    }

    /// A 32-byte key for another purpose (e.g. the compile cache's MAC), derived with
    /// HMAC-SHA-256 under the master key, so that it never has to be stored.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        use hmac::Mac;
        let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.0).expect("any key length");
        mac.update(b"oneup derived key\0");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Encrypts `plaintext`, bound to `aad`.
    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = random_bytes();
        let cipher = XChaCha20Poly1305::new(&self.0.into());
        let ciphertext = cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext, aad })
            .expect("XChaCha20-Poly1305 encrypts any in-memory message");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        out.push(SEALED_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        out
    }

    /// Decrypts a value made by [`MasterKey::seal`] with the same `aad`.
    pub(crate) fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        let Some((&SEALED_V1, rest)) = sealed.split_first() else {
            return Err(StoreError::Decrypt);
        };
        if rest.len() < NONCE_LEN {
            return Err(StoreError::Decrypt);
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let cipher = XChaCha20Poly1305::new(&self.0.into());
        cipher.decrypt(XNonce::from_slice(nonce), Payload { msg: ciphertext, aad }).map_err(|_| StoreError::Decrypt)
    }
}

/// Refuses a key file that its group or others may read or write.
fn check_private(path: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map_err(StoreError::KeyFile)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(StoreError::KeyFile(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                "the master key file must be accessible by its owner only (chmod 600)",
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// The associated data for a tenant's sealed pseudonymisation key.
pub(crate) fn tenant_key_aad(tenant: uuid::Uuid) -> Vec<u8> {
    let mut aad = b"oneup/tenant-key/v1/".to_vec();
    aad.extend_from_slice(tenant.as_bytes());
    aad
}

/// The associated data for an integration's sealed secrets.
pub(crate) fn secrets_aad(tenant: uuid::Uuid, connector_id: &str) -> Vec<u8> {
    let mut aad = b"oneup/secrets/v1/".to_vec();
    aad.extend_from_slice(tenant.as_bytes());
    aad.push(b'/');
    aad.extend_from_slice(connector_id.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_opens_only_with_the_same_key_and_aad() {
        let key = MasterKey::random();
        let sealed = key.seal(b"a", b"secret");
        assert_eq!(sealed[0], SEALED_V1);
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(key.open(b"a", &sealed).unwrap(), b"secret");
        assert!(matches!(key.open(b"b", &sealed), Err(StoreError::Decrypt)));
        assert!(matches!(MasterKey::random().open(b"a", &sealed), Err(StoreError::Decrypt)));
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(matches!(key.open(b"a", &tampered), Err(StoreError::Decrypt)));
        assert!(matches!(key.open(b"a", &[]), Err(StoreError::Decrypt)));
        assert!(matches!(key.open(b"a", &[SEALED_V1, 1, 2]), Err(StoreError::Decrypt)));
        // Two seals of the same text differ (fresh nonces).
        assert_ne!(key.seal(b"a", b"secret"), sealed);
    }

    #[test]
    fn key_file_is_created_private_and_read_back() {
        let dir = std::env::temp_dir().join(format!("oneup-key-test-{}", hex::encode(random_bytes::<8>())));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("master.key");
        let key = MasterKey::load_or_create(&path).unwrap();
        let again = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(key.0, again.0);
        assert_eq!(format!("{key:?}"), "MasterKey(..)");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(MasterKey::load_or_create(&path), Err(StoreError::KeyFile(_))));
        }
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(MasterKey::from_hex("zz").is_err());
        assert!(MasterKey::from_hex(&"ab".repeat(32)).is_ok());
    }
}
