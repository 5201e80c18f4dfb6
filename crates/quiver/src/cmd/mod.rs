//! One module per command; each has an `Args` struct and a `run` function.

pub mod lint;
