//! The wire contract between the quiver controller and its endpoint agents.
//!
//! The controller publishes a *snapshot*: a canonical, signed [`Catalog`] of every deployable
//! script version, a short-lived signed [`Timestamp`] naming that catalog, and blobs stored by
//! digest ([`layout`]). The agent pins the controller's [`PublicKey`] and trusts nothing it
//! downloads until [`verify`] has checked it. The HTTP request and response bodies both sides
//! exchange are in [`api`].
//!
//! This crate is deliberately small and synchronous: no git, no async, no network, no disk
//! except key files. Both the controller and the agent depend on it, so what it accepts is
//! exactly what the other side may send.
//!
//! ```
//! use quiver_catalog::{verify_catalog, verify_timestamp, Catalog, KeyPair, Limits, Timestamp};
//! use std::time::Duration;
//!
//! let keys = KeyPair::generate().unwrap();
//! let catalog = Catalog::new(7, "abc".into(), "def".into(), vec![], vec![]);
//! let cat_bytes = catalog.to_canonical_bytes();
//! let now = time::OffsetDateTime::now_utc();
//! let ts = Timestamp::new(&cat_bytes, 7, now, Duration::from_secs(3600));
//! let ts_bytes = ts.to_canonical_bytes();
//! let cat_sig = keys.signing.sign(&cat_bytes, "catalog 7").unwrap();
//! let ts_sig = keys.signing.sign(&ts_bytes, "timestamp 7").unwrap();
//!
//! // On the endpoint:
//! let limits = Limits::default();
//! let ts = verify_timestamp(&keys.public, &ts_bytes, &ts_sig, now, Some(6), &limits).unwrap();
//! let got = verify_catalog(&keys.public, &cat_bytes, &cat_sig, &ts, &limits).unwrap();
//! assert_eq!(got, catalog);
//! ```
#![deny(missing_docs)]

pub mod api;
pub mod catalog;
pub mod layout;
pub mod path;
pub mod sign;
pub mod timestamp;
pub mod verify;

pub use catalog::{
    Catalog, CatalogError, Entry, FileEntry, Group, Interpreter, Launch, ParamError, ParamType,
    Parameter, Platform, Risk,
};
pub use layout::{blob_rel_path, sha256_hex};
pub use path::{NameError, PathError, RelPath, ScriptName, Sha256Hex};
pub use sign::{KeyPair, PublicKey, SignError, SigningKey};
pub use timestamp::Timestamp;
pub use verify::{Limits, VerifyError, verify_blob, verify_catalog, verify_timestamp};
