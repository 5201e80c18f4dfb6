//! One module per command; each has an `Args` struct and a `run` function.

pub mod agents;
pub mod audit;
pub mod controller;
pub mod demo;
pub mod diff;
pub mod history;
pub mod keygen;
pub mod lint;
pub mod reconcile;
pub mod run;
pub mod runs;
pub mod status;
pub mod token;
