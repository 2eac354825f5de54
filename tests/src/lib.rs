//! Shared helpers of the integration tests.

pub mod bounded;
pub mod crabka;
pub mod crabka_secured;
pub mod e2e_config;
pub mod harness;
pub mod mock;
pub mod raw_request;
pub mod reader;
pub mod sim;
pub mod tansu;
pub mod tools;

/// The README's Rust snippets, compiled and run as doctests so they cannot rot.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
