//! Raw git trees: read from the object database and walked in place.
//!
//! libgit2 parses a tree into an array of entries on every load, and a library's top tree
//! (thousands of entries) is new in every commit. Walking the raw bytes instead costs one
//! inflate and no allocation per entry. A two-generation cache keeps the trees of the
//! commit being processed and of the one before it: the old side of each first-parent
//! diff is the new side of the previous one, so every tree is read once.

use crate::Error;
use crate::repo::FileRef;
use git2::{ObjectType, Oid, Repository};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// git's mode for a tree entry that is a tree.
pub const MODE_TREE: u32 = 0o040000;

/// One entry of a raw tree.
#[derive(Debug, Clone, Copy)]
pub struct RawEntry<'a> {
    /// Mode (`0o100644`, `0o040000`, …).
    pub mode: u32,
    /// Name bytes.
    pub name: &'a [u8],
    /// Object id bytes.
    pub id: &'a [u8],
}

impl RawEntry<'_> {
    /// The object id.
    pub fn oid(&self) -> Oid {
        Oid::from_bytes(self.id).unwrap_or(Oid::ZERO_SHA1)
    }

    /// Whether it is a subtree.
    pub fn is_tree(&self) -> bool {
        self.mode == MODE_TREE
    }

    /// The name, lossily as UTF-8.
    pub fn name_str(&self) -> String {
        String::from_utf8_lossy(self.name).into_owned()
    }
}

/// Digits of a mode as git writes it (`40000` has five, the others six).
fn mode_len(mode: u32) -> usize {
    format!("{mode:o}").len()
}

/// Compares two tree entries as git orders them (a tree's name as if it ended with `/`).
pub fn git_cmp(a: &[u8], a_tree: bool, b: &[u8], b_tree: bool) -> std::cmp::Ordering {
    let n = a.len().min(b.len());
    match a[..n].cmp(&b[..n]) {
        std::cmp::Ordering::Equal => {}
        other => return other,
    }
    let next = |name: &[u8], tree: bool| name.get(n).copied().or(tree.then_some(b'/'));
    next(a, a_tree).cmp(&next(b, b_tree))
}

/// Iterates the entries of raw tree bytes (`<octal mode> <name>\0<20-byte id>`…).
pub struct Entries<'a> {
    rest: &'a [u8],
}

impl<'a> Entries<'a> {
    /// The bytes not yet iterated.
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = RawEntry<'a>;

    fn next(&mut self) -> Option<RawEntry<'a>> {
        let sp = memchr::memchr(b' ', self.rest)?;
        let mode = self.rest[..sp].iter().try_fold(0u32, |m, &b| {
            (b'0'..=b'7')
                .contains(&b)
                .then(|| m * 8 + u32::from(b - b'0'))
        })?;
        let after = &self.rest[sp + 1..];
        let nul = memchr::memchr(0, after)?;
        let name = &after[..nul];
        let id = after.get(nul + 1..nul + 21)?;
        self.rest = &after[nul + 21..];
        Some(RawEntry { mode, name, id })
    }
}

/// The entries of raw tree bytes.
pub fn entries(raw: &[u8]) -> Entries<'_> {
    Entries { rest: raw }
}

/// A name looked up in a tree and the offset of its entry, if present.
type Found = (Box<[u8]>, Option<u32>);

/// A raw tree and, once a lookup needs it, the offsets of its entries.
pub struct TreeData {
    bytes: Box<[u8]>,
    offsets: OnceLock<Vec<u32>>,
    /// Names already looked up and the offset of their entry.
    found: Mutex<Vec<Found>>,
}

impl TreeData {
    /// The raw bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The entries.
    pub fn entries(&self) -> Entries<'_> {
        entries(&self.bytes)
    }

    fn entry_at(&self, offset: u32) -> Option<RawEntry<'_>> {
        entries(self.bytes.get(offset as usize..)?).next()
    }

    /// The entry named `name`.
    ///
    /// Large trees are searched for the bytes ` <name>\0` (SIMD `memmem`), which an entry
    /// with that name always contains; a hit is confirmed by the entry's shape, and any
    /// doubt (several hits, or a hit that does not parse) falls back to a binary search
    /// over the entry offsets.
    pub fn child(&self, name: &[u8]) -> Option<RawEntry<'_>> {
        if let Ok(found) = self.found.lock()
            && let Some((_, hit)) = found.iter().find(|(n, _)| &**n == name)
        {
            return hit.and_then(|off| self.entry_at(off));
        }
        let hit = self.find_child(name);
        if let Ok(mut found) = self.found.lock() {
            let off = hit.map(|e| (e.name.as_ptr() as usize - self.bytes.as_ptr() as usize) as u32);
            // The offset of the entry itself: back up over "<mode> ".
            let off = off.map(|o| o - 1 - mode_len(hit.map_or(0, |e| e.mode)) as u32);
            if found.len() < 64 {
                found.push((name.into(), off));
            }
        }
        hit
    }

    fn find_child(&self, name: &[u8]) -> Option<RawEntry<'_>> {
        if self.bytes.len() > 2048 && self.offsets.get().is_none() {
            let mut needle = Vec::with_capacity(name.len() + 2);
            needle.push(b' ');
            needle.extend_from_slice(name);
            needle.push(0);
            let mut hits = memchr::memmem::find_iter(&self.bytes, &needle);
            match (hits.next(), hits.next()) {
                (None, _) => return None,
                (Some(p), None) => {
                    // The mode before the space: 5 or 6 octal digits preceded by the
                    // previous entry's id or the start.
                    let start = (0..=p.saturating_sub(5)).rev().take(2).find(|&s| {
                        let digits = &self.bytes[s..p];
                        (5..=6).contains(&digits.len())
                            && digits.iter().all(|b| (b'0'..=b'7').contains(b))
                    });
                    if let Some(s) = start
                        && let Some(e) = entries(&self.bytes[s..]).next()
                        && e.name == name
                    {
                        return Some(e);
                    }
                }
                _ => {}
            }
        }
        self.child_by_offsets(name)
    }

    fn child_by_offsets(&self, name: &[u8]) -> Option<RawEntry<'_>> {
        let offsets = self.offsets.get_or_init(|| {
            // An entry is `<mode> <name>\0<20-byte id>`: the NUL ends the variable part.
            let mut out = Vec::new();
            let mut off = 0;
            while off < self.bytes.len() {
                out.push(off as u32);
                match memchr::memchr(0, &self.bytes[off..]) {
                    Some(nul) => off += nul + 21,
                    None => break,
                }
            }
            out
        });
        // A blob sorts by its name, a tree by its name plus `/`: try both.
        for as_tree in [false, true] {
            let found = offsets.binary_search_by(|&off| match self.entry_at(off) {
                Some(e) => git_cmp(e.name, e.is_tree(), name, as_tree),
                None => std::cmp::Ordering::Greater,
            });
            if let Ok(i) = found
                && let Some(e) = self.entry_at(offsets[i])
                && e.name == name
            {
                return Some(e);
            }
        }
        None
    }
}

/// Raw trees of one repository with a two-generation cache.
#[derive(Default)]
pub struct TreeCache {
    current: RefCell<HashMap<Oid, Arc<TreeData>>>,
    previous: RefCell<HashMap<Oid, Arc<TreeData>>>,
}

impl TreeCache {
    /// Starts a new generation: trees not used since the last call are dropped.
    pub fn rotate(&self) {
        let cur = std::mem::take(&mut *self.current.borrow_mut());
        *self.previous.borrow_mut() = cur;
    }

    /// The raw bytes of a tree.
    pub fn read(&self, git: &Repository, oid: Oid) -> Result<Arc<TreeData>, Error> {
        if let Some(hit) = self.current.borrow().get(&oid) {
            return Ok(hit.clone());
        }
        let bytes = match self.previous.borrow_mut().remove(&oid) {
            Some(b) => b,
            None => {
                let odb = git.odb()?;
                let obj = odb.read(oid)?;
                if obj.kind() != ObjectType::Tree {
                    return Err(Error::Git(git2::Error::from_str(&format!(
                        "{oid} is not a tree"
                    ))));
                }
                Arc::new(TreeData {
                    bytes: obj.data().into(),
                    offsets: OnceLock::new(),
                    found: Mutex::new(Vec::new()),
                })
            }
        };
        self.current.borrow_mut().insert(oid, bytes.clone());
        Ok(bytes)
    }

    /// The entry named `name` in tree `tree`.
    pub fn child(
        &self,
        git: &Repository,
        tree: Oid,
        name: &[u8],
    ) -> Result<Option<(Oid, u32)>, Error> {
        let raw = self.read(git, tree)?;
        Ok(raw.child(name).map(|e| (e.oid(), e.mode)))
    }

    /// The entry at a `/`-separated path below tree `tree` (`""` is the tree itself).
    pub fn lookup(
        &self,
        git: &Repository,
        tree: Oid,
        path: &str,
    ) -> Result<Option<(Oid, u32)>, Error> {
        let mut cur = (tree, MODE_TREE);
        for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
            if cur.1 != MODE_TREE {
                return Ok(None);
            }
            match self.child(git, cur.0, part.as_bytes())? {
                Some(next) => cur = next,
                None => return Ok(None),
            }
        }
        Ok(Some(cur))
    }

    /// Every non-tree entry below `tree`, paths relative to it, sorted by path.
    pub fn list_files(&self, git: &Repository, tree: Oid) -> Result<Vec<FileRef>, Error> {
        let mut out = Vec::new();
        self.walk(git, tree, "", &mut out)?;
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    fn walk(
        &self,
        git: &Repository,
        tree: Oid,
        prefix: &str,
        out: &mut Vec<FileRef>,
    ) -> Result<(), Error> {
        let raw = self.read(git, tree)?;
        for e in raw.entries() {
            let path = crate::units::join(prefix, &e.name_str());
            if e.is_tree() {
                self.walk(git, e.oid(), &path, out)?;
            } else {
                out.push(FileRef {
                    path,
                    mode: e.mode,
                    oid: e.oid().to_string(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_raw_entries() {
        let mut raw = Vec::new();
        raw.extend_from_slice(b"100644 a.txt\0");
        raw.extend_from_slice(&[1u8; 20]);
        raw.extend_from_slice(b"40000 dir\0");
        raw.extend_from_slice(&[2u8; 20]);
        let e: Vec<_> = entries(&raw).collect();
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].mode, e[0].name), (0o100644, &b"a.txt"[..]));
        assert!(e[1].is_tree());
        assert_eq!(e[1].oid(), Oid::from_bytes(&[2u8; 20]).expect("oid"));
        assert_eq!(entries(b"100644 broken").count(), 0);
        let data = TreeData {
            bytes: raw.clone().into(),
            offsets: OnceLock::new(),
            found: Mutex::new(Vec::new()),
        };
        assert!(data.child(b"dir").is_some_and(|e| e.is_tree()));
        assert!(data.child(b"a.txt").is_some());
        assert!(data.child(b"a").is_none());
    }

    #[test]
    fn binary_search_in_git_order() {
        // git order: "a-b" < "a" (tree, as "a/") < "a0"; "a.txt" (blob) < "a-" is false.
        let mut names: Vec<(&str, bool)> = vec![
            ("a-b", false),
            ("a", true),
            ("a.txt", false),
            ("a0", false),
            ("b", true),
            ("c", false),
        ];
        let key = |(n, t): &(&str, bool)| {
            let mut k = n.as_bytes().to_vec();
            if *t {
                k.push(b'/');
            }
            k
        };
        names.sort_by_key(key);
        let mut raw = Vec::new();
        for (i, (n, t)) in names.iter().enumerate() {
            raw.extend_from_slice(if *t { b"40000 " } else { b"100644 " });
            raw.extend_from_slice(n.as_bytes());
            raw.push(0);
            raw.extend_from_slice(&[i as u8; 20]);
        }
        let data = TreeData {
            bytes: raw.into(),
            offsets: OnceLock::new(),
            found: Mutex::new(Vec::new()),
        };
        for _ in 0..2 {
            for (n, t) in &names {
                let e = data.child(n.as_bytes()).unwrap_or_else(|| panic!("{n}"));
                assert_eq!(e.is_tree(), *t, "{n}");
                assert_eq!(e.name, n.as_bytes());
            }
        }
        assert!(data.child(b"zzz").is_none());
    }
}
