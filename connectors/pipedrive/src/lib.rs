//! Pipedrive.
