//! Object keys. Keys are built from validated parts only, so a key can never escape its tenant's
//! prefix: no empty, `.` or `..` segments, no backslash, NUL or control characters.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{JobId, TenantId, UploadId};

/// Longest key we build or accept, in bytes (S3's own limit is 1024).
pub const MAX_KEY_LEN: usize = 1024;
/// Longest single segment, in bytes.
pub const MAX_SEGMENT_LEN: usize = 255;

/// The prefix of the raw bucket under which uploads wait for their malware scan (when a scanner
/// is configured). Nothing under it is ever served, signed for download or read by a job; an
/// object leaves it only by promotion (a clean scan) or deletion.
pub const QUARANTINE_PREFIX: &str = "quarantine/";

/// Where, inside the quarantine, the copies being scanned live (one per `complete` attempt,
/// written only by the server). The sweeper removes any left behind by a crash.
pub const QUARANTINE_CHECKS_PREFIX: &str = "quarantine/checks/";

/// The two logical buckets of the design documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    /// Raw uploads; they expire.
    Raw,
    /// Processed outputs; kept.
    Processed,
}

impl Bucket {
    /// Stable name used in signed URLs and on disk.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Processed => "processed",
        }
    }

    /// Parses [`Bucket::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "raw" => Some(Self::Raw),
            "processed" => Some(Self::Processed),
            _ => None,
        }
    }
}

/// Why a key or segment was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidKey {
    /// Empty key or segment.
    #[error("empty key or path segment")]
    Empty,
    /// `.` or `..`.
    #[error("'.' and '..' segments are not allowed")]
    DotSegment,
    /// A forbidden character.
    #[error("backslash, NUL and control characters are not allowed")]
    ForbiddenChar,
    /// Too long.
    #[error("key or segment too long")]
    TooLong,
}

/// Validates one path segment.
pub fn validate_segment(seg: &str) -> Result<(), InvalidKey> {
    if seg.is_empty() {
        return Err(InvalidKey::Empty);
    }
    if seg == "." || seg == ".." {
        return Err(InvalidKey::DotSegment);
    }
    if seg.len() > MAX_SEGMENT_LEN {
        return Err(InvalidKey::TooLong);
    }
    if seg.chars().any(|c| c == '\\' || c == '/' || c.is_control()) {
        return Err(InvalidKey::ForbiddenChar);
    }
    Ok(())
}

/// A validated object key: `/`-separated segments, each valid.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Parses a key, validating each segment.
    pub fn parse(s: &str) -> Result<Self, InvalidKey> {
        if s.is_empty() {
            return Err(InvalidKey::Empty);
        }
        if s.len() > MAX_KEY_LEN {
            return Err(InvalidKey::TooLong);
        }
        s.split('/').try_for_each(validate_segment)?;
        Ok(Self(s.to_owned()))
    }

    fn from_segments(segs: &[&str]) -> Result<Self, InvalidKey> {
        segs.iter().try_for_each(|s| validate_segment(s))?;
        Self::parse(&segs.join("/"))
    }

    /// Where a raw upload's bytes live: `tenants/{tenant}/uploads/{upload_id}`.
    pub fn raw_upload(tenant: &TenantId, upload: UploadId) -> Self {
        // Tenant ids and UUIDs are always valid segments.
        Self(format!("tenants/{tenant}/uploads/{upload}"))
    }

    /// Where a raw upload waits for its malware scan:
    /// `quarantine/tenants/{tenant}/uploads/{upload_id}` (see [`QUARANTINE_PREFIX`]).
    pub fn quarantined_upload(tenant: &TenantId, upload: UploadId) -> Self {
        Self(format!(
            "{QUARANTINE_PREFIX}tenants/{tenant}/uploads/{upload}"
        ))
    }

    /// A private copy of a quarantined upload that one `complete` attempt scans and checks:
    /// `quarantine/checks/{tenant}/{upload_id}/{attempt}` (see [`QUARANTINE_CHECKS_PREFIX`]).
    /// `attempt` must be a valid segment (a random hex string).
    pub fn quarantine_check(
        tenant: &TenantId,
        upload: UploadId,
        attempt: &str,
    ) -> Result<Self, InvalidKey> {
        validate_segment(attempt)?;
        Ok(Self(format!(
            "{QUARANTINE_CHECKS_PREFIX}{tenant}/{upload}/{attempt}"
        )))
    }

    /// Whether this key lies under [`QUARANTINE_PREFIX`].
    pub fn is_quarantined(&self) -> bool {
        self.0.starts_with(QUARANTINE_PREFIX)
    }

    /// The key a quarantined upload is promoted to (the key without [`QUARANTINE_PREFIX`]);
    /// `None` for a key outside the quarantine (or a scan copy inside it).
    pub fn promoted(&self) -> Option<Self> {
        self.0
            .strip_prefix(QUARANTINE_PREFIX)
            .filter(|rest| rest.starts_with("tenants/"))
            .map(|rest| Self(rest.to_owned()))
    }

    /// The deterministic key of a job output, so a retried job overwrites instead of
    /// duplicating: `tenants/{tenant}/jobs/{job_id}/{name}.{ext}`.
    pub fn job_output(
        tenant: &TenantId,
        job: JobId,
        name: &str,
        ext: &str,
    ) -> Result<Self, InvalidKey> {
        Self::from_segments(&[
            "tenants",
            tenant.as_str(),
            "jobs",
            &job.to_string(),
            &format!("{name}.{ext}"),
        ])
    }

    /// The key as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The segments of the key.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// Whether this key lies under `tenants/{tenant}/`.
    pub fn belongs_to(&self, tenant: &TenantId) -> bool {
        let mut s = self.segments();
        s.next() == Some("tenants") && s.next() == Some(tenant.as_str())
    }
}

impl TryFrom<String> for ObjectKey {
    type Error = InvalidKey;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<ObjectKey> for String {
    fn from(k: ObjectKey) -> Self {
        k.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_escapes() {
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "a/../b",
            "..",
            "./a",
            "a\\b",
            "a\0b",
            "a\nb",
            "tenants/t1/\u{7f}",
        ] {
            assert!(ObjectKey::parse(bad).is_err(), "{bad:?}");
        }
        assert!(ObjectKey::parse(&"a".repeat(MAX_KEY_LEN + 1)).is_err());
        assert!(ObjectKey::parse(&"a".repeat(MAX_SEGMENT_LEN + 1)).is_err());
        assert!(ObjectKey::parse("tenants/t1/uploads/x.jpg").is_ok());
    }

    #[test]
    fn builders_stay_in_tenant_prefix() {
        let t = TenantId::parse("t1").unwrap_or_else(|_| TenantId::default_tenant());
        let up = UploadId::new();
        let k = ObjectKey::raw_upload(&t, up);
        assert_eq!(k.as_str(), format!("tenants/t1/uploads/{up}"));
        assert!(k.belongs_to(&t));
        assert!(ObjectKey::parse(k.as_str()).is_ok());
        let job = JobId::new();
        let out = ObjectKey::job_output(&t, job, "thumbnail", "jpg");
        assert_eq!(
            out.as_ref().map(|k| k.as_str().to_owned()),
            Ok(format!("tenants/t1/jobs/{job}/thumbnail.jpg"))
        );
        assert!(
            ObjectKey::job_output(&t, job, "..", "x").is_ok(),
            "'...x' is one harmless segment"
        );
        assert_eq!(
            ObjectKey::job_output(&t, job, "a/../../t2/x", "jpg"),
            Err(InvalidKey::ForbiddenChar)
        );
        let q = ObjectKey::quarantined_upload(&t, up);
        assert_eq!(q.as_str(), format!("quarantine/tenants/t1/uploads/{up}"));
        assert!(q.is_quarantined() && !k.is_quarantined());
        assert!(
            !q.belongs_to(&t),
            "a quarantined key is no tenant's servable key"
        );
        assert_eq!(q.promoted(), Some(k.clone()));
        assert_eq!(k.promoted(), None);
        let c = ObjectKey::quarantine_check(&t, up, "00ff").unwrap_or_else(|_| q.clone());
        assert_eq!(c.as_str(), format!("quarantine/checks/t1/{up}/00ff"));
        assert!(c.is_quarantined() && c.promoted().is_none());
        assert!(ObjectKey::quarantine_check(&t, up, "../x").is_err());
        let other = TenantId::parse("t2").unwrap_or_else(|_| TenantId::default_tenant());
        assert!(!k.belongs_to(&other));
    }
}
