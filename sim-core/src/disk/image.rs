//! The pure model of one node's disk: an image (names and contents), the operations that change
//! it, and path rules. No time, no randomness, no world: everything here is plain data.
//!
//! Files are inodes: a path names an inode and an open handle holds the inode, so a handle
//! follows its file through a rename, like a Unix file descriptor. There are no hard links, so
//! every inode has at most one name in an image.

use std::collections::BTreeMap;

/// The identity of a file on one node's disk; never reused within a run.
pub(crate) type InodeId = u64;

/// Longest accepted path, in bytes (Linux's `PATH_MAX`).
pub const PATH_BYTES_MAX: usize = 4096;
/// Longest accepted path component, in bytes (Linux's `NAME_MAX`).
pub const NAME_BYTES_MAX: usize = 255;

/// Names and contents of files, either as the disk holds them (the durable image) or as the
/// running node sees them (the volatile image: durable image plus the page cache).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Image {
    /// Path to inode.
    pub dir: BTreeMap<String, InodeId>,
    /// Inode to contents. May hold inodes without a name (data synced before the name was).
    pub files: BTreeMap<InodeId, Vec<u8>>,
    /// Inode to its path: the reverse of `dir`.
    pub names: BTreeMap<InodeId, String>,
}

/// One operation of the page cache that the disk has not made durable yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PendingOp {
    /// Bytes written at an offset (an append is a write at the end).
    Write {
        inode: InodeId,
        offset: u64,
        data: Vec<u8>,
    },
    /// The file's length set (shrunk or grown with zeros).
    Truncate { inode: InodeId, len: u64 },
    /// A new file's directory entry.
    Link { path: String, inode: InodeId },
    /// A directory entry removed.
    Unlink { path: String, inode: InodeId },
    /// A directory entry moved; an entry at `to` is replaced.
    Rename {
        from: String,
        to: String,
        inode: InodeId,
    },
}

impl PendingOp {
    /// The file this operation is about.
    pub fn inode(&self) -> InodeId {
        match self {
            PendingOp::Write { inode, .. }
            | PendingOp::Truncate { inode, .. }
            | PendingOp::Link { inode, .. }
            | PendingOp::Unlink { inode, .. }
            | PendingOp::Rename { inode, .. } => *inode,
        }
    }

    /// Whether it changes contents (made durable by a file sync) rather than names (made
    /// durable by a directory sync).
    pub fn is_data(&self) -> bool {
        matches!(self, PendingOp::Write { .. } | PendingOp::Truncate { .. })
    }

    /// Bytes of payload the page cache holds for it.
    pub fn payload_bytes(&self) -> u64 {
        match self {
            PendingOp::Write { data, .. } => data.len() as u64,
            _ => 0,
        }
    }

    /// The directories whose entries this name operation changes (twice the same one unless
    /// it is a rename across directories); `None` for data operations.
    pub fn dirs(&self) -> Option<[&str; 2]> {
        match self {
            PendingOp::Link { path, .. } | PendingOp::Unlink { path, .. } => {
                Some([parent(path), parent(path)])
            }
            PendingOp::Rename { from, to, .. } => Some([parent(from), parent(to)]),
            PendingOp::Write { .. } | PendingOp::Truncate { .. } => None,
        }
    }

    /// The path this operation gives a name to (whose former file it replaces).
    pub fn target_path(&self) -> Option<&str> {
        match self {
            PendingOp::Link { path, .. } => Some(path),
            PendingOp::Rename { to, .. } => Some(to),
            _ => None,
        }
    }

    /// A write cut down to its first `len` bytes (a torn write); `None` for other operations.
    pub fn write_prefix(&self, len: usize) -> Option<PendingOp> {
        match self {
            PendingOp::Write {
                inode,
                offset,
                data,
            } => Some(PendingOp::Write {
                inode: *inode,
                offset: *offset,
                data: data[..len.min(data.len())].to_vec(),
            }),
            _ => None,
        }
    }
}

impl Image {
    /// Applies one operation. Operations always apply in the order they were issued, so a name
    /// operation finds the state it expects; where it does not (data landing for a file whose
    /// name never did) the result is garbage that [`Image::retain_inodes`] collects.
    pub fn apply(&mut self, op: &PendingOp) {
        match op {
            PendingOp::Write {
                inode,
                offset,
                data,
            } => write_bytes(self.files.entry(*inode).or_default(), *offset, data),
            PendingOp::Truncate { inode, len } => {
                let len = usize::try_from(*len).expect("lengths are checked against capacity");
                self.files.entry(*inode).or_default().resize(len, 0);
            }
            PendingOp::Link { path, inode } => self.link(path, *inode),
            PendingOp::Unlink { path, inode } => {
                if self.dir.get(path) == Some(inode) {
                    self.dir.remove(path);
                }
                // Without hard links an unlinked inode is dead for good.
                self.drop_inode(*inode);
            }
            PendingOp::Rename { from, to, inode } => {
                if self.dir.get(from) == Some(inode) {
                    self.dir.remove(from);
                }
                self.link(to, *inode);
            }
        }
    }

    fn link(&mut self, path: &str, inode: InodeId) {
        if let Some(replaced) = self.dir.insert(path.to_string(), inode) {
            if replaced != inode {
                self.drop_inode(replaced);
            }
        }
        self.names.insert(inode, path.to_string());
        self.files.entry(inode).or_default();
    }

    fn drop_inode(&mut self, inode: InodeId) {
        self.files.remove(&inode);
        self.names.remove(&inode);
    }

    /// The contents of the file at `path`.
    pub fn file(&self, path: &str) -> Option<&Vec<u8>> {
        self.dir.get(path).and_then(|inode| self.files.get(inode))
    }

    /// Drops the contents of inodes for which `keep` is false.
    pub fn retain_inodes(&mut self, keep: impl Fn(InodeId) -> bool) {
        self.files.retain(|inode, _| keep(*inode));
        self.names.retain(|inode, _| keep(*inode));
    }

    /// Whether `path` is a directory: some file lies below it. The root always is.
    pub fn is_dir(&self, path: &str) -> bool {
        if path.is_empty() {
            return true;
        }
        let prefix = format!("{path}/");
        self.dir
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(name, _)| name.starts_with(&prefix))
    }

    /// The first ancestor directory of `path` that is a file, if any.
    pub fn file_ancestor(&self, path: &str) -> Option<String> {
        let mut end = 0;
        while let Some(slash) = path[end..].find('/') {
            let ancestor = &path[..end + slash];
            if self.dir.contains_key(ancestor) {
                return Some(ancestor.to_string());
            }
            end += slash + 1;
        }
        None
    }

    /// Paths of every file below `dir` (all files for the root), sorted.
    pub fn paths_under(&self, dir: &str) -> Vec<String> {
        if dir.is_empty() {
            return self.dir.keys().cloned().collect();
        }
        let prefix = format!("{dir}/");
        self.dir
            .range(prefix.clone()..)
            .take_while(|(name, _)| name.starts_with(&prefix))
            .map(|(name, _)| name.clone())
            .collect()
    }
}

/// Writes `data` at `offset`, growing `file` with zeros as needed.
fn write_bytes(file: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = usize::try_from(offset).expect("offsets are checked against capacity");
    let end = start + data.len();
    if file.len() < end {
        file.resize(end, 0);
    }
    file[start..end].copy_from_slice(data);
}

/// The directory of `path` (`""` for the root).
pub(crate) fn parent(path: &str) -> &str {
    path.rfind('/').map_or("", |slash| &path[..slash])
}

/// Why a path is not acceptable, or `None` when it is. `allow_root`: the empty path (the root
/// directory) is acceptable, as for directory operations.
pub(crate) fn path_problem(path: &str, allow_root: bool) -> Option<&'static str> {
    if path.is_empty() {
        return (!allow_root).then_some("empty path (the root directory is not a file)");
    }
    if path.len() > PATH_BYTES_MAX {
        return Some("longer than 4096 bytes");
    }
    if path.starts_with('/') {
        return Some("paths are relative to the node's disk: drop the leading '/'");
    }
    if path.contains('\0') {
        return Some("contains a NUL byte");
    }
    for component in path.split('/') {
        match component {
            "" => return Some("empty component ('//' or a trailing '/')"),
            "." | ".." => return Some("'.' and '..' are not supported"),
            name if name.len() > NAME_BYTES_MAX => {
                return Some("a component is longer than 255 bytes")
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(inode: InodeId, offset: u64, data: &[u8]) -> PendingOp {
        PendingOp::Write {
            inode,
            offset,
            data: data.to_vec(),
        }
    }

    #[test]
    fn apply_follows_names_through_rename_and_replace() {
        let mut image = Image::default();
        image.apply(&PendingOp::Link {
            path: "a".into(),
            inode: 1,
        });
        image.apply(&write(1, 2, b"xy"));
        image.apply(&PendingOp::Link {
            path: "b".into(),
            inode: 2,
        });
        image.apply(&PendingOp::Rename {
            from: "a".into(),
            to: "b".into(),
            inode: 1,
        });
        assert_eq!(image.file("b"), Some(&vec![0, 0, b'x', b'y']));
        assert_eq!(image.file("a"), None);
        assert!(!image.files.contains_key(&2), "the replaced file is gone");
        assert_eq!(image.names.get(&1).map(String::as_str), Some("b"));
        image.apply(&PendingOp::Truncate { inode: 1, len: 1 });
        assert_eq!(image.file("b"), Some(&vec![0]));
        image.apply(&PendingOp::Unlink {
            path: "b".into(),
            inode: 1,
        });
        assert!(image.dir.is_empty());
        assert!(image.files.is_empty());
    }

    #[test]
    fn directories_are_implicit() {
        let mut image = Image::default();
        image.apply(&PendingOp::Link {
            path: "wal/0001".into(),
            inode: 1,
        });
        image.apply(&PendingOp::Link {
            path: "walrus".into(),
            inode: 2,
        });
        assert!(image.is_dir("wal"));
        assert!(image.is_dir(""));
        assert!(!image.is_dir("walrus"));
        assert!(!image.is_dir("wa"));
        assert_eq!(image.paths_under("wal"), vec!["wal/0001".to_string()]);
        assert_eq!(image.paths_under("").len(), 2);
        assert_eq!(image.file_ancestor("walrus/x/y").as_deref(), Some("walrus"));
        assert_eq!(image.file_ancestor("wal/x"), None);
        assert_eq!(parent("wal/0001"), "wal");
        assert_eq!(parent("top"), "");
    }

    #[test]
    fn paths_are_validated() {
        assert_eq!(path_problem("a/b.log", false), None);
        assert_eq!(path_problem("", true), None);
        assert!(path_problem("", false).is_some());
        assert!(path_problem("/abs", false).is_some());
        assert!(path_problem("a//b", false).is_some());
        assert!(path_problem("a/", false).is_some());
        assert!(path_problem("a/../b", false).is_some());
        assert!(path_problem("a\0b", false).is_some());
        assert!(path_problem(&"x".repeat(256), false).is_some());
        assert!(path_problem(&"x/".repeat(2100), false).is_some());
    }

    #[test]
    fn write_prefix_tears_only_writes() {
        let op = write(1, 10, b"abcdef");
        assert_eq!(op.write_prefix(2), Some(write(1, 10, b"ab")));
        assert_eq!(
            PendingOp::Truncate { inode: 1, len: 0 }.write_prefix(1),
            None
        );
    }
}
