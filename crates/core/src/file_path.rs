//! Paths of the tenant file API (`documents/2024/contract.jpg`).
//!
//! A [`FilePath`] is what a tenant calls a file or folder. It is validated segment by segment,
//! once, on the value the HTTP layer has already decoded exactly once; nothing decodes it again.
//! It never becomes part of an object key: file bytes live under id-based keys built by
//! [`ObjectKey::tenant_file`], so no path — however crafted, and whatever a storage server does
//! with `..`, `%2e` or backslashes — can name an object outside its tenant's prefix.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ObjectKey;
use crate::ids::TenantId;
use crate::key::{InvalidKey, MAX_SEGMENT_LEN, validate_segment};

/// Longest path, in bytes.
pub const MAX_PATH_LEN: usize = 1024;
/// Deepest nesting, in segments.
pub const MAX_DEPTH: usize = 32;

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPath {
    /// A segment is invalid.
    #[error("invalid path segment: {0}")]
    Segment(InvalidKey),
    /// Longer than [`MAX_PATH_LEN`] bytes.
    #[error("path longer than {MAX_PATH_LEN} bytes")]
    TooLong,
    /// More than [`MAX_DEPTH`] segments.
    #[error("path deeper than {MAX_DEPTH} segments")]
    TooDeep,
    /// The empty path (the root) where a file or folder is needed.
    #[error("the path is empty")]
    Empty,
}

/// A validated, non-empty file or folder path: `/`-separated segments, none empty, `.` or `..`,
/// none with a backslash, NUL or control character, each at most 255 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FilePath(String);

impl FilePath {
    /// Parses a path. One leading `/` is accepted and dropped (`/a/b` is `a/b`); a trailing
    /// `/` is accepted for folders (`a/b/` is `a/b`). Anything else must be exact.
    pub fn parse(s: &str) -> Result<Self, InvalidPath> {
        let s = s.strip_prefix('/').unwrap_or(s);
        let s = s.strip_suffix('/').unwrap_or(s);
        if s.is_empty() {
            return Err(InvalidPath::Empty);
        }
        if s.len() > MAX_PATH_LEN {
            return Err(InvalidPath::TooLong);
        }
        let mut depth = 0;
        for seg in s.split('/') {
            validate_segment(seg).map_err(InvalidPath::Segment)?;
            depth += 1;
            if depth > MAX_DEPTH {
                return Err(InvalidPath::TooDeep);
            }
        }
        Ok(Self(s.to_owned()))
    }

    /// A folder parameter: empty (or `/`) is the root, `None`.
    pub fn parse_folder(s: &str) -> Result<Option<Self>, InvalidPath> {
        match s {
            "" | "/" => Ok(None),
            s => Self::parse(s).map(Some),
        }
    }

    /// `folder/name`, or `name` at the root. `name` must be one valid segment.
    pub fn join(folder: Option<&FilePath>, name: &str) -> Result<Self, InvalidPath> {
        validate_segment(name).map_err(InvalidPath::Segment)?;
        match folder {
            None => Self::parse(name),
            Some(f) => Self::parse(&format!("{}/{name}", f.0)),
        }
    }

    /// The path as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last segment.
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// The containing folder; `""` at the root.
    pub fn parent(&self) -> &str {
        self.0.rsplit_once('/').map_or("", |(p, _)| p)
    }

    /// Every ancestor folder, outermost first (`a/b/c` → `a`, `a/b`).
    pub fn ancestors(&self) -> Vec<&str> {
        self.0
            .match_indices('/')
            .map(|(i, _)| &self.0[..i])
            .collect()
    }

    /// Whether `self` lies strictly inside folder `other`.
    pub fn is_inside(&self, other: &FilePath) -> bool {
        self.0.len() > other.0.len()
            && self.0.starts_with(&other.0)
            && self.0.as_bytes()[other.0.len()] == b'/'
    }

    /// Number of segments.
    pub fn depth(&self) -> usize {
        self.0.split('/').count()
    }
}

impl TryFrom<String> for FilePath {
    type Error = InvalidPath;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<FilePath> for String {
    fn from(p: FilePath) -> Self {
        p.0
    }
}

impl fmt::Display for FilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Longest file name kept from a client's multipart part.
pub const MAX_FILENAME: usize = MAX_SEGMENT_LEN;

impl ObjectKey {
    /// Where a tenant file's bytes live: `tenants/{tenant}/files/{id}.{ext}`. `id` is generated
    /// by the server (hex or UUID text) and `ext` comes from the sniffed content type; the
    /// user's path is not an input, so the key cannot leave the tenant's prefix.
    pub fn tenant_file(tenant: &TenantId, id: &str, ext: &str) -> Result<Self, InvalidKey> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(InvalidKey::ForbiddenChar);
        }
        if ext.is_empty() || !ext.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(InvalidKey::ForbiddenChar);
        }
        ObjectKey::parse(&format!("tenants/{tenant}/files/{id}.{ext}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_paths_and_normalises_outer_slashes() {
        for (input, want) in [
            ("a", "a"),
            ("/a/b.jpg", "a/b.jpg"),
            ("docs/2024/", "docs/2024"),
            ("caf\u{e9}/photo (1).jpg", "caf\u{e9}/photo (1).jpg"),
            ("%2e%2e/x", "%2e%2e/x"),
            ("...", "..."),
        ] {
            assert_eq!(FilePath::parse(input).map(String::from), Ok(want.into()));
        }
    }

    #[test]
    fn refuses_traversal_and_odd_characters() {
        for bad in [
            "", "/", "//a", "a//b", "a/../b", "..", ".", "./a", "a/.", "a\\b", "a\0b", "a\nb",
            "a\u{7f}", "a/b//", "../t2/x",
        ] {
            assert!(FilePath::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            FilePath::parse(&"a".repeat(MAX_SEGMENT_LEN + 1)),
            Err(InvalidPath::Segment(InvalidKey::TooLong))
        );
        let deep = vec!["d"; MAX_DEPTH + 1].join("/");
        assert_eq!(FilePath::parse(&deep), Err(InvalidPath::TooDeep));
        let long = vec!["x".repeat(200); 6].join("/");
        assert_eq!(FilePath::parse(&long), Err(InvalidPath::TooLong));
    }

    #[test]
    fn parts_and_relations() {
        let p = FilePath::parse("a/b/c.jpg").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.name(), "c.jpg");
        assert_eq!(p.parent(), "a/b");
        assert_eq!(p.ancestors(), vec!["a", "a/b"]);
        assert_eq!(p.depth(), 3);
        let a = FilePath::parse("a").unwrap_or_else(|e| panic!("{e}"));
        assert!(p.is_inside(&a));
        assert!(!a.is_inside(&a));
        let ab = FilePath::parse("ab").unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !ab.is_inside(&a),
            "a sibling sharing a prefix is not inside"
        );
        assert_eq!(a.parent(), "");
        assert!(a.ancestors().is_empty());
        assert_eq!(
            FilePath::join(Some(&a), "x.jpg").map(String::from),
            Ok("a/x.jpg".into())
        );
        assert!(FilePath::join(Some(&a), "../x").is_err());
        assert!(FilePath::join(None, "x/y").is_err());
        assert_eq!(FilePath::parse_folder("/"), Ok(None));
    }

    #[test]
    fn file_keys_are_built_from_server_values_only() {
        let t = TenantId::parse("t1").unwrap_or_else(|_| TenantId::default_tenant());
        let k = ObjectKey::tenant_file(&t, "0193ab", "jpg").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(k.as_str(), "tenants/t1/files/0193ab.jpg");
        assert!(k.belongs_to(&t));
        assert!(ObjectKey::tenant_file(&t, "../t2", "jpg").is_err());
        assert!(ObjectKey::tenant_file(&t, "a", "j/pg").is_err());
        assert!(ObjectKey::tenant_file(&t, "", "jpg").is_err());
    }
}
