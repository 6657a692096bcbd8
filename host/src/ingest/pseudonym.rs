//! Keyed hashes that replace CRM ids the moment they cross the boundary.
//!
//! A connector names the CRM user credited with a fact (the owner) and the CRM record behind
//! it (the source). Both are identifiers of people and deals in the customer's CRM, and a
//! malicious connector could hide a customer's name in one. The host keeps neither: it keeps
//! `HMAC-SHA-256(tenant key, message)` truncated to 16 bytes, which still lets a later sync
//! correct or withdraw the same record and lets an operator map the same owner to a user,
//! but cannot be reversed or recomputed without the tenant's key.
//!
//! The message is domain-separated and framed without ambiguity:
//!
//! ```text
//! "oneup/pseudonym/v1" 0x00 <domain tag> 0x00 <len(connector id) as u32 BE> <connector id> <raw id>
//! ```
//!
//! * The domain tag (`owner` or `source`) keeps a user id and a record id that happen to be
//!   equal (`42`) from producing the same hash, so a hash in one column says nothing about
//!   the other.
//! * The connector id is included for owners *and* sources because CRM ids are only unique
//!   within one CRM: Pipedrive deal `123` and Salesforce record `123`, or Pipedrive user `42`
//!   and Bullhorn user `42`, are different things. Without it, a retraction from one
//!   integration could withdraw another's fact, and an owner mapping made for one CRM would
//!   silently credit the same oneup user with another CRM's user. A consequence worth
//!   knowing: if a tenant ever runs two integrations of the *same* connector (two Pipedrive
//!   accounts), pass an id that tells them apart (for example `pipedrive/<integration id>`)
//!   as the connector id.
//! * The connector id is length-prefixed, so no choice of connector id and raw id can
//!   collide with another; the raw id comes last and needs no prefix.
//! * 16 bytes (128 bits) make accidental collisions negligible at any realistic volume and
//!   halve the storage of a full digest.
//!
//! Changing the message format changes every stored hash; the known-answer test below pins
//! it.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::model::KeyedHash;

/// HMAC-SHA-256, the keyed hash behind every pseudonym.
type HmacSha256 = Hmac<Sha256>;

/// The version label at the start of every hashed message.
const MESSAGE_LABEL: &[u8] = b"oneup/pseudonym/v1";

/// A tenant's 32-byte pseudonymisation key.
///
/// `Debug` never prints it and there is no `Display`. It is stored encrypted by the host and
/// destroyed with the tenant, which makes every hash made with it meaningless.
#[derive(Clone)]
pub struct TenantKey([u8; 32]);

/// Why a tenant key could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The text is not 64 hexadecimal digits.
    #[error("a tenant key must be 64 hexadecimal digits")]
    BadHex,
}

impl TenantKey {
    /// Wraps 32 key bytes (from a secure random source or the key store).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A fresh key from the operating system's secure random source.
    pub fn random() -> Self {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the operating system's random source is available");
        Self(bytes)
    }

    /// Reads a key written as 64 hexadecimal digits.
    pub fn from_hex(s: &str) -> Result<Self, KeyError> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| KeyError::BadHex)?;
        Ok(Self(bytes))
    }

    /// The key's bytes, for the key store only. Named so that every use stands out.
    pub fn expose_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for TenantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TenantKey(<redacted>)")
    }
}

/// What kind of CRM id is hashed; part of the hashed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Domain {
    /// A CRM user id: the owner of a fact, or a roster entry.
    Owner,
    /// A CRM record id: the source of a fact.
    Source,
}

impl Domain {
    /// The tag written into the hashed message.
    fn tag(self) -> &'static [u8] {
        match self {
            Self::Owner => b"owner",
            Self::Source => b"source",
        }
    }
}

/// Hashes CRM ids for one tenant and one connector, cheaply.
///
/// Holds one HMAC state per domain, already keyed and fed with the message prefix, and
/// clones it per id, so hashing an id costs one clone and the hash of the id itself rather
/// than re-keying.
#[derive(Clone)]
pub struct Pseudonymizer {
    /// The keyed state with the owner prefix absorbed.
    owner: HmacSha256,
    /// The keyed state with the source prefix absorbed.
    source: HmacSha256,
}

impl Pseudonymizer {
    /// Prepares the hashing states for `connector_id` under `key`.
    pub fn new(key: &TenantKey, connector_id: &str) -> Self {
        Self { owner: prefixed(key, Domain::Owner, connector_id), source: prefixed(key, Domain::Source, connector_id) }
    }

    /// The keyed hash of `raw` in `domain`.
    pub fn hash(&self, domain: Domain, raw: &str) -> KeyedHash {
        let state = match domain {
            Domain::Owner => &self.owner,
            Domain::Source => &self.source,
        };
        let mut mac = state.clone();
        mac.update(raw.as_bytes());
        truncate(mac)
    }

    /// The keyed hash of a CRM user id.
    pub fn owner(&self, raw: &str) -> KeyedHash {
        self.hash(Domain::Owner, raw)
    }

    /// The keyed hash of a CRM record id.
    pub fn source(&self, raw: &str) -> KeyedHash {
        self.hash(Domain::Source, raw)
    }
}

impl fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pseudonymizer(<keyed>)")
    }
}

/// A keyed HMAC state with the message prefix for `domain` and `connector_id` absorbed.
fn prefixed(key: &TenantKey, domain: Domain, connector_id: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(&key.0).expect("HMAC accepts a key of any length");
    mac.update(MESSAGE_LABEL);
    mac.update(&[0]);
    mac.update(domain.tag());
    mac.update(&[0]);
    // Connector ids are short; saturating keeps the framing total even for absurd input.
    let len = u32::try_from(connector_id.len()).unwrap_or(u32::MAX);
    mac.update(&len.to_be_bytes());
    mac.update(connector_id.as_bytes());
    mac
}

/// Finishes an HMAC and keeps its first 16 bytes.
fn truncate(mac: HmacSha256) -> KeyedHash {
    let digest = mac.finalize().into_bytes();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    KeyedHash::from_bytes(out)
}

/// The keyed hash of one CRM id. For many ids, build a [`Pseudonymizer`] once instead.
pub fn keyed_hash(key: &TenantKey, domain: Domain, connector_id: &str, raw: &str) -> KeyedHash {
    let mut mac = prefixed(key, domain, connector_id);
    mac.update(raw.as_bytes());
    truncate(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> TenantKey {
        TenantKey::from_bytes([byte; 32])
    }

    #[test]
    fn known_answer_pins_the_message_format() {
        // Computed independently: HMAC-SHA-256 with key 0x07 * 32 over
        // b"oneup/pseudonym/v1\0source\0\0\0\0\x09pipedrive" + b"12345", first 16 bytes.
        let hash = keyed_hash(&key(7), Domain::Source, "pipedrive", "12345");
        assert_eq!(hash.to_string(), KNOWN_SOURCE_HASH);
    }

    /// See `known_answer_pins_the_message_format`.
    const KNOWN_SOURCE_HASH: &str = "e04a42935edb76089c3d07d33dacb686";

    #[test]
    fn deterministic_and_matches_the_prepared_states() {
        let p = Pseudonymizer::new(&key(1), "pipedrive");
        assert_eq!(p.source("12345"), p.source("12345"));
        assert_eq!(p.source("12345"), keyed_hash(&key(1), Domain::Source, "pipedrive", "12345"));
        assert_eq!(p.owner("9101"), keyed_hash(&key(1), Domain::Owner, "pipedrive", "9101"));
    }

    #[test]
    fn depends_on_the_key() {
        assert_ne!(
            keyed_hash(&key(1), Domain::Source, "pipedrive", "12345"),
            keyed_hash(&key(2), Domain::Source, "pipedrive", "12345")
        );
    }

    #[test]
    fn domains_are_separated() {
        assert_ne!(
            keyed_hash(&key(1), Domain::Owner, "pipedrive", "42"),
            keyed_hash(&key(1), Domain::Source, "pipedrive", "42")
        );
    }

    #[test]
    fn connectors_are_separated() {
        assert_ne!(
            keyed_hash(&key(1), Domain::Source, "pipedrive", "42"),
            keyed_hash(&key(1), Domain::Source, "salesforce", "42")
        );
        // The length prefix keeps a shifted boundary from colliding.
        assert_ne!(keyed_hash(&key(1), Domain::Source, "ab", "c"), keyed_hash(&key(1), Domain::Source, "a", "bc"));
    }

    #[test]
    fn nothing_prints_the_key_or_the_raw_id() {
        let k = TenantKey::from_hex(&"5a".repeat(32)).unwrap();
        let p = Pseudonymizer::new(&k, "pipedrive");
        let raw = "John.Smith:SuperBigCorp";
        let hash = p.owner(raw);
        let shown = format!("{k:?} {p:?} {hash} {hash:?}");
        assert!(!shown.contains("5a5a"), "{shown}");
        assert!(!shown.contains("John"), "{shown}");
        assert!(!shown.contains("SuperBigCorp"), "{shown}");
        assert_eq!(format!("{k:?}"), "TenantKey(<redacted>)");
    }

    #[test]
    fn key_from_hex() {
        let k = TenantKey::from_hex(&"0f".repeat(32)).unwrap();
        assert_eq!(k.expose_bytes(), &[0x0f; 32]);
        assert_eq!(TenantKey::from_hex("0f").unwrap_err(), KeyError::BadHex);
        assert_eq!(TenantKey::from_hex(&"zz".repeat(32)).unwrap_err(), KeyError::BadHex);
    }
}
