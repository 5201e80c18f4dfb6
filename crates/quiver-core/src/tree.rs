//! An in-memory file tree: the library as bytes, wherever it came from.
//!
//! The linter reads a folder, the controller reads git objects; both hand the core a
//! `FileTree`, so every decision about a library is made on exactly the bytes that will
//! be delivered and never touches the disk itself.

use std::collections::BTreeMap;
use std::sync::Arc;

/// One entry of a file tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeEntry {
    /// A regular file.
    File {
        /// Exact bytes, as stored.
        bytes: Arc<[u8]>,
        /// Whether the executable bit is set (git mode 100755).
        executable: bool,
    },
    /// A symbolic link (never delivered; the scanner refuses the script).
    Symlink {
        /// The link target as stored.
        target: String,
    },
    /// A git submodule (gitlink); never delivered.
    Submodule,
}

/// Files keyed by `/`-separated paths relative to the tree's root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileTree {
    entries: BTreeMap<String, TreeEntry>,
}

impl FileTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces an entry.
    pub fn insert(&mut self, path: impl Into<String>, entry: TreeEntry) {
        self.entries.insert(path.into(), entry);
    }

    /// Adds a regular, non-executable file.
    pub fn insert_file(&mut self, path: impl Into<String>, bytes: impl Into<Vec<u8>>) {
        let bytes: Vec<u8> = bytes.into();
        self.insert(
            path,
            TreeEntry::File {
                bytes: bytes.into(),
                executable: false,
            },
        );
    }

    /// The entry at `path`.
    pub fn get(&self, path: &str) -> Option<&TreeEntry> {
        self.entries.get(path)
    }

    /// Removes an entry.
    pub fn remove(&mut self, path: &str) -> Option<TreeEntry> {
        self.entries.remove(path)
    }

    /// All entries in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &TreeEntry)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Entries under `prefix/` with the prefix stripped.
    pub fn subtree(&self, prefix: &str) -> FileTree {
        let prefix = prefix.trim_end_matches('/');
        if prefix.is_empty() || prefix == "." {
            return self.clone();
        }
        let with_slash = format!("{prefix}/");
        FileTree {
            entries: self
                .entries
                .range(with_slash.clone()..)
                .take_while(|(k, _)| k.starts_with(&with_slash))
                .map(|(k, v)| (k[with_slash.len()..].to_string(), v.clone()))
                .collect(),
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the tree has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl FromIterator<(String, TreeEntry)> for FileTree {
    fn from_iter<I: IntoIterator<Item = (String, TreeEntry)>>(iter: I) -> Self {
        FileTree {
            entries: iter.into_iter().collect(),
        }
    }
}
