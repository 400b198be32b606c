//! Identifiers. Tenant ids become part of object keys, so they are restricted to a safe alphabet.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: {reason}")]
pub struct InvalidId {
    what: &'static str,
    reason: &'static str,
}

/// A tenant: `[a-z0-9][a-z0-9_-]{0,62}`. Used as one object-key segment, so it can never contain a
/// separator, a dot segment or anything a storage server might interpret.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    /// The tenant that bootstrap keys belong to until multi-tenancy is configured.
    pub fn default_tenant() -> Self {
        Self("default".to_owned())
    }

    /// Parses and validates a tenant id.
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        let err = |reason| InvalidId {
            what: "tenant id",
            reason,
        };
        if s.is_empty() || s.len() > 63 {
            return Err(err("length must be 1..=63"));
        }
        let mut chars = s.chars();
        if !chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return Err(err("must start with a lowercase letter or digit"));
        }
        if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_') {
            return Err(err(
                "only lowercase letters, digits, '-' and '_' are allowed",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantId {
    type Error = InvalidId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<TenantId> for String {
    fn from(t: TenantId) -> Self {
        t.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! uuid_id {
    ($name:ident, $what:literal) => {
        #[doc = concat!("A ", $what, " id: a UUIDv7, so ids sort by creation time.")]
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::try_parse(s).map(Self).map_err(|_| InvalidId {
                    what: $what,
                    reason: "not a UUID",
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Hyphenated lowercase: the same form is stored, signed and shown.
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                Self(u)
            }
        }
    };
}

uuid_id!(JobId, "job");
uuid_id!(UploadId, "upload");
uuid_id!(BatchId, "batch");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids() {
        for ok in ["default", "t1", "acme-corp_2", "0"] {
            assert!(TenantId::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "_a",
            "A",
            "a/b",
            "..",
            "a.b",
            "a b",
            "é",
            &"a".repeat(64),
        ] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn uuid_ids_parse_and_order() {
        let a = JobId::new();
        let b = JobId::new();
        assert!(a < b, "v7 ids are time ordered");
        assert_eq!(a.to_string().parse::<JobId>(), Ok(a));
        assert!("not-a-uuid".parse::<JobId>().is_err());
        assert!("../etc/passwd".parse::<UploadId>().is_err());
    }
}
