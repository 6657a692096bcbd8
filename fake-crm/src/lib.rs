//! Fake CRMs.
