//! End-to-end tests: the real runtime and binary, real components, fake CRMs on loopback.

mod check_cli;
mod engine;
mod pipedrive;
mod sandbox;
mod service;
mod store;
