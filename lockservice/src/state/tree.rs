//! The tree of files. Every file has contents, a generation (the log index that created it or
//! last replaced its contents), an optional ephemeral session, and its children's names.
//!
//! Invariants: `/` exists and is not ephemeral; every other file's parent exists, lists it as a
//! child and is not ephemeral (ephemeral files have no children, so a session's end can always
//! delete them); `total_contents_bytes` is the sum of all contents. Locks live in `lock.rs`,
//! the session side of ephemeral files in `session.rs`; `machine.rs` keeps them in step.

use std::collections::{BTreeMap, BTreeSet};

use super::command::FailReason;
use super::lock::LockHolder;
use super::machine::Limits;
use super::path;

/// A file as a read sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileView {
    /// Contents.
    pub contents: Vec<u8>,
    /// The log index that created it or last replaced its contents.
    pub generation: u64,
    /// The session it dies with, if ephemeral.
    pub ephemeral_session: Option<u64>,
    /// Its lock holders, by session id (all shared, or one exclusive).
    pub lock_holders: Vec<LockHolder>,
}

/// One file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Node {
    pub(super) contents: Vec<u8>,
    pub(super) generation: u64,
    pub(super) ephemeral_session: Option<u64>,
    pub(super) children: BTreeSet<String>,
}

/// All files, by path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Tree {
    nodes: BTreeMap<String, Node>,
    total_contents_bytes: usize,
}

impl Default for Tree {
    fn default() -> Self {
        let root = Node {
            contents: Vec::new(),
            generation: 0,
            ephemeral_session: None,
            children: BTreeSet::new(),
        };
        Self {
            nodes: BTreeMap::from([(path::ROOT.to_owned(), root)]),
            total_contents_bytes: 0,
        }
    }
}

impl Tree {
    pub(super) fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&String, &Node)> {
        self.nodes.iter()
    }

    /// Creates a file under an existing, non-ephemeral parent. `path` is valid.
    pub(super) fn create(
        &mut self,
        path: &str,
        contents: &[u8],
        ephemeral_session: Option<u64>,
        index: u64,
        limits: &Limits,
    ) -> Result<(), FailReason> {
        if self.nodes.contains_key(path) {
            return Err(FailReason::AlreadyExists);
        }
        let Some((parent_path, name)) = path::split(path) else {
            return Err(FailReason::AlreadyExists); // `/`
        };
        let Some(parent) = self.nodes.get(parent_path) else {
            return Err(FailReason::NoParent);
        };
        if parent.ephemeral_session.is_some() {
            return Err(FailReason::Invalid(format!(
                "parent {parent_path:?} is ephemeral and cannot have children"
            )));
        }
        if self.nodes.len() >= limits.max_files {
            return Err(FailReason::ResourceExhausted(format!(
                "at most {} files",
                limits.max_files
            )));
        }
        self.check_total(0, contents.len(), limits)?;
        if let Some(parent) = self.nodes.get_mut(parent_path) {
            parent.children.insert(name.to_owned());
        }
        self.total_contents_bytes += contents.len();
        let node = Node {
            contents: contents.to_vec(),
            generation: index,
            ephemeral_session,
            children: BTreeSet::new(),
        };
        self.nodes.insert(path.to_owned(), node);
        Ok(())
    }

    /// Replaces a file's contents, if its generation is `if_generation` (when given).
    pub(super) fn set_contents(
        &mut self,
        path: &str,
        contents: &[u8],
        if_generation: Option<u64>,
        index: u64,
        limits: &Limits,
    ) -> Result<(), FailReason> {
        let node = self.nodes.get(path).ok_or(FailReason::NotFound)?;
        check_generation(node, if_generation)?;
        let old_len = node.contents.len();
        self.check_total(old_len, contents.len(), limits)?;
        if let Some(node) = self.nodes.get_mut(path) {
            node.contents = contents.to_vec();
            node.generation = index;
            self.total_contents_bytes = self.total_contents_bytes - old_len + contents.len();
        }
        Ok(())
    }

    /// Whether `path` may be deleted: it exists, is not `/`, matches `if_generation` and has no
    /// children.
    pub(super) fn check_delete(
        &self,
        path: &str,
        if_generation: Option<u64>,
    ) -> Result<(), FailReason> {
        if path == path::ROOT {
            return Err(FailReason::Invalid("cannot delete /".to_owned()));
        }
        let node = self.nodes.get(path).ok_or(FailReason::NotFound)?;
        check_generation(node, if_generation)?;
        if !node.children.is_empty() {
            return Err(FailReason::NotEmpty);
        }
        Ok(())
    }

    /// Removes a file that `check_delete` accepted; returns it.
    pub(super) fn remove(&mut self, path: &str) -> Option<Node> {
        let node = self.nodes.remove(path)?;
        self.total_contents_bytes -= node.contents.len();
        if let Some((parent_path, name)) = path::split(path)
            && let Some(parent) = self.nodes.get_mut(parent_path)
        {
            parent.children.remove(name);
        }
        Some(node)
    }

    /// Inserts a restored file (snapshot restore); links it to its parent later, in `relink`.
    pub(super) fn insert_restored(&mut self, path: String, node: Node) -> Result<(), String> {
        self.total_contents_bytes = self
            .total_contents_bytes
            .checked_add(node.contents.len())
            .ok_or("total contents overflow")?;
        let old = self.nodes.insert(path.clone(), node);
        if let Some(old) = old {
            if path != path::ROOT {
                return Err(format!("file {path:?} appears twice"));
            }
            self.total_contents_bytes -= old.contents.len();
        }
        Ok(())
    }

    /// Rebuilds every file's children from the paths (snapshot restore).
    pub(super) fn relink(&mut self) -> Result<(), String> {
        let links: Vec<(String, String)> = self
            .nodes
            .keys()
            .filter_map(|p| {
                path::split(p).map(|(parent, name)| (parent.to_owned(), name.to_owned()))
            })
            .collect();
        for node in self.nodes.values_mut() {
            node.children.clear();
        }
        for (parent, name) in links {
            let node = self
                .nodes
                .get_mut(&parent)
                .ok_or_else(|| format!("file {:?} has no parent", path::join(&parent, &name)))?;
            node.children.insert(name);
        }
        Ok(())
    }

    fn check_total(
        &self,
        old_len: usize,
        new_len: usize,
        limits: &Limits,
    ) -> Result<(), FailReason> {
        if self.total_contents_bytes - old_len + new_len > limits.max_total_contents_bytes {
            return Err(FailReason::ResourceExhausted(format!(
                "at most {} bytes of contents in all",
                limits.max_total_contents_bytes
            )));
        }
        Ok(())
    }

    /// Checks the invariants in the module comment.
    pub(super) fn check(&self, limits: &Limits, last_applied: u64) -> Result<(), String> {
        let root = self.nodes.get(path::ROOT).ok_or("no /")?;
        if root.ephemeral_session.is_some() {
            return Err("/ is ephemeral".to_owned());
        }
        if self.nodes.len() > limits.max_files {
            return Err(format!(
                "{} files, more than {}",
                self.nodes.len(),
                limits.max_files
            ));
        }
        let mut total = 0usize;
        for (p, node) in &self.nodes {
            path::validate(p)?;
            if node.generation > last_applied {
                return Err(format!(
                    "{p:?} has generation {} > {last_applied}",
                    node.generation
                ));
            }
            if node.contents.len() > limits.max_contents_bytes {
                return Err(format!("{p:?} has {} bytes", node.contents.len()));
            }
            total += node.contents.len();
            for name in &node.children {
                if !self.nodes.contains_key(&path::join(p, name)) {
                    return Err(format!("{p:?} lists a missing child {name:?}"));
                }
            }
            if let Some((parent_path, name)) = path::split(p) {
                let parent = self
                    .nodes
                    .get(parent_path)
                    .ok_or_else(|| format!("{p:?} has no parent"))?;
                if !parent.children.contains(name) {
                    return Err(format!("{p:?} is not listed by its parent"));
                }
                if parent.ephemeral_session.is_some() {
                    return Err(format!("{p:?} has an ephemeral parent"));
                }
            }
        }
        if total != self.total_contents_bytes {
            return Err(format!(
                "contents total {total}, recorded {}",
                self.total_contents_bytes
            ));
        }
        if total > limits.max_total_contents_bytes {
            return Err(format!("{total} bytes of contents in all"));
        }
        Ok(())
    }
}

fn check_generation(node: &Node, if_generation: Option<u64>) -> Result<(), FailReason> {
    match if_generation {
        Some(expected) if expected != node.generation => Err(FailReason::GenerationMismatch {
            actual: node.generation,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{Harness, create, delete, set};
    use super::super::{Event, EventKind, FailReason, Limits, Response};

    fn ev(revision: u64, path: &str, kind: EventKind) -> Event {
        Event {
            revision,
            path: path.to_owned(),
            kind,
        }
    }

    #[test]
    fn root_always_exists() {
        let mut h = Harness::new();
        let root = h.state.get("/").expect("root");
        assert_eq!(
            (root.contents.len(), root.generation, root.ephemeral_session),
            (0, 0, None)
        );
        assert_eq!(h.state.list("/"), Some(vec![]));
        assert_eq!(
            h.run(create("/", b"", None)),
            Response::Failed(FailReason::AlreadyExists)
        );
        assert!(matches!(
            h.run(delete("/", None)),
            Response::Failed(FailReason::Invalid(_))
        ));
        assert_eq!(
            h.run(set("/", b"r", None)),
            Response::Done { generation: 3 }
        );
        assert_eq!(
            h.state.get("/").map(|f| (f.contents, f.generation)),
            Some((b"r".to_vec(), 3))
        );
    }

    #[test]
    fn create_needs_parent_and_sets_generation() {
        let mut h = Harness::new();
        assert_eq!(
            h.run(create("/a/b", b"x", None)),
            Response::Failed(FailReason::NoParent)
        );
        assert_eq!(
            h.run(create("/a", b"hello", None)),
            Response::Done { generation: 2 }
        );
        assert_eq!(
            h.last_events(),
            vec![ev(
                2,
                "/a",
                EventKind::Created {
                    ephemeral_session: None
                }
            )]
        );
        assert_eq!(
            h.run(create("/a", b"again", None)),
            Response::Failed(FailReason::AlreadyExists)
        );
        assert_eq!(
            h.run(create("/a/c", b"", None)),
            Response::Done { generation: 4 }
        );
        assert_eq!(
            h.run(create("/a/b", b"", None)),
            Response::Done { generation: 5 }
        );
        let a = h.state.get("/a").expect("a");
        assert_eq!((a.contents, a.generation), (b"hello".to_vec(), 2));
        assert_eq!(
            h.state.list("/a"),
            Some(vec!["b".to_owned(), "c".to_owned()])
        );
        assert_eq!(h.state.list("/"), Some(vec!["a".to_owned()]));
        assert_eq!(h.state.list("/nope"), None);
        assert_eq!(h.state.get("/nope"), None);
    }

    #[test]
    fn set_contents_with_and_without_cas() {
        let mut h = Harness::new();
        h.mk("/f");
        assert_eq!(
            h.run(set("/f", b"v2", Some(7))),
            Response::Failed(FailReason::GenerationMismatch { actual: 1 })
        );
        assert_eq!(
            h.run(set("/f", b"v2", Some(1))),
            Response::Done { generation: 3 }
        );
        assert_eq!(h.last_events(), vec![ev(3, "/f", EventKind::Changed)]);
        assert_eq!(
            h.run(set("/f", b"v3", None)),
            Response::Done { generation: 4 }
        );
        assert_eq!(
            h.state.get("/f").map(|f| (f.contents, f.generation)),
            Some((b"v3".to_vec(), 4))
        );
        assert_eq!(
            h.run(set("/g", b"", None)),
            Response::Failed(FailReason::NotFound)
        );
        assert_eq!(h.last_events(), vec![]);
    }

    #[test]
    fn delete_needs_no_children_and_checks_generation() {
        let mut h = Harness::new();
        h.mk("/d");
        h.mk("/d/e");
        assert_eq!(
            h.run(delete("/d", None)),
            Response::Failed(FailReason::NotEmpty)
        );
        assert_eq!(
            h.run(delete("/d/e", Some(1))),
            Response::Failed(FailReason::GenerationMismatch { actual: 2 })
        );
        assert_eq!(
            h.run(delete("/d/e", Some(2))),
            Response::Done { generation: 5 }
        );
        assert_eq!(h.last_events(), vec![ev(5, "/d/e", EventKind::Deleted)]);
        assert_eq!(
            h.run(delete("/d/e", None)),
            Response::Failed(FailReason::NotFound)
        );
        assert_eq!(h.run(delete("/d", None)), Response::Done { generation: 7 });
        assert_eq!(h.state.list("/"), Some(vec![]));
        // Recreated: a fresh generation.
        assert_eq!(
            h.run(create("/d", b"", None)),
            Response::Done { generation: 8 }
        );
    }

    #[test]
    fn bad_paths_and_big_contents_are_invalid() {
        let mut h = Harness::new();
        for p in ["", "a", "/a/", "//a", "/a/../b"] {
            assert!(
                matches!(
                    h.run(create(p, b"", None)),
                    Response::Failed(FailReason::Invalid(_))
                ),
                "{p:?}"
            );
            assert!(
                matches!(
                    h.run(set(p, b"", None)),
                    Response::Failed(FailReason::Invalid(_))
                ),
                "{p:?}"
            );
            assert!(
                matches!(
                    h.run(delete(p, None)),
                    Response::Failed(FailReason::Invalid(_))
                ),
                "{p:?}"
            );
        }
        let big = vec![0u8; (1 << 20) + 1];
        assert!(matches!(
            h.run(create("/big", &big, None)),
            Response::Failed(FailReason::Invalid(_))
        ));
        assert_eq!(
            h.run(create("/big", &big[1..], None)),
            Response::Done {
                generation: h.index
            }
        );
        assert!(matches!(
            h.run(set("/big", &big, None)),
            Response::Failed(FailReason::Invalid(_))
        ));
    }

    #[test]
    fn ephemeral_files_have_no_children() {
        let mut h = Harness::new();
        let s = h.open();
        assert_eq!(
            h.run(create("/e", b"", Some(s))),
            Response::Done { generation: 2 }
        );
        assert_eq!(
            h.last_events(),
            vec![ev(
                2,
                "/e",
                EventKind::Created {
                    ephemeral_session: Some(s)
                }
            )]
        );
        assert_eq!(h.state.get("/e").and_then(|f| f.ephemeral_session), Some(s));
        assert!(matches!(
            h.run(create("/e/x", b"", None)),
            Response::Failed(FailReason::Invalid(_))
        ));
        assert_eq!(
            h.run(create("/x", b"", Some(99))),
            Response::Failed(FailReason::SessionGone)
        );
    }

    #[test]
    fn file_count_and_total_bytes_are_bounded() {
        let limits = Limits {
            max_files: 3,
            max_total_contents_bytes: 10,
            ..Limits::default()
        };
        let mut h = Harness::with_limits(limits);
        assert_eq!(
            h.run(create("/a", b"12345", None)),
            Response::Done { generation: 1 }
        );
        assert!(matches!(
            h.run(create("/b", b"123456", None)),
            Response::Failed(FailReason::ResourceExhausted(_))
        ));
        assert_eq!(
            h.run(create("/b", b"12345", None)),
            Response::Done { generation: 3 }
        );
        assert!(matches!(
            h.run(create("/c", b"", None)),
            Response::Failed(FailReason::ResourceExhausted(_))
        ));
        assert!(matches!(
            h.run(set("/a", b"123456", None)),
            Response::Failed(FailReason::ResourceExhausted(_))
        ));
        assert_eq!(
            h.run(set("/a", b"", None)),
            Response::Done { generation: 6 }
        );
        assert_eq!(
            h.run(set("/b", b"1234567890", None)),
            Response::Done { generation: 7 }
        );
        assert_eq!(h.run(delete("/b", None)), Response::Done { generation: 8 });
        assert_eq!(
            h.run(create("/c", b"1234567890", None)),
            Response::Done { generation: 9 }
        );
    }
}
