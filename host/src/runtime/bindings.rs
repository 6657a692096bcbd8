//! Host-side bindings of the connector contract, one module per WIT version.
//!
//! The newest version is re-exported as `latest`; the rest of the runtime speaks only
//! `latest`. When a `0.2` contract lands, `v0_1` stays here and its values are converted
//! into `latest` ones, so connectors built against `0.1` keep running.

/// Bindings of `oneup:connector@0.1.0`.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        world: "connector",
        path: "../wit/connector@0.1.0",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

pub use v0_1 as latest;

/// The contract versions this host serves, as (major, minor, patch) of the WIT package.
pub const SERVED_VERSIONS: &[(u64, u64, u64)] = &[(0, 1, 0)];

/// The WIT package name of the contract, without version.
pub const PACKAGE: &str = "oneup:connector";
