//! The quiver domain, pure: script manifests, policies, library assembly, the scanner
//! and the approval decisions.
//!
//! Nothing here does I/O, spawns, or reads a clock: the edges (the linter reading a
//! folder, `quiver-git` reading objects, the controller) hand in bytes and get back
//! decisions, so every rule can be tested as a plain function.
//!
//! ```
//! use quiver_core::{FileTree, Library, Policy};
//! let policy = Policy::load(&[]).unwrap().policy;
//! let mut tree = FileTree::new();
//! tree.insert_file("ps/script.toml",
//!     "name = \"ps\"\nplatforms = [\"linux\"]\n[entry.linux]\nfile = \"ps.sh\"\ninterpreter = \"bash\"\n");
//! tree.insert_file("ps/ps.sh", "#!/bin/sh\nps -ef\n");
//! let lib = Library::assemble("library", &tree, &policy);
//! assert_eq!(lib.scripts[0].name, "ps");
//! ```
#![deny(missing_docs)]

pub mod approval;
pub mod diag;
pub mod library;
pub mod manifest;
pub mod par;
pub mod policy;
pub mod scan;
pub mod tree;

pub use diag::{ConfigError, Location, Severity};
pub use library::{Library, Script};
pub use manifest::{Interpreter, Language, Manifest, Platform, Risk};
pub use policy::{Permission, Policy};
pub use scan::{Finding, ScanReport, Scanner};
pub use tree::{FileTree, TreeEntry};
