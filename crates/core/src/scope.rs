//! What a credential may do. Every route requires exactly one scope, derived from the route
//! itself (see the API's `auth::required_scope`), so no handler can forget to check.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A permission carried by an API key or a token.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Read the tenant's resources (`GET`).
    Read,
    /// Create and change the tenant's resources (every other method).
    Write,
    /// Manage the tenant's keys and read its audit log (`/admin/*`).
    Admin,
    /// With `admin`: manage every tenant's keys, not only its own. Held by the bootstrap key
    /// (`API_KEY`), the key generated on first start, and keys an operator creates with it.
    Global,
}

/// Why a scope list did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope {0:?}: use read, write, admin or global")]
pub struct UnknownScope(pub String);

impl Scope {
    /// Every scope, in order.
    pub const ALL: [Scope; 4] = [Scope::Read, Scope::Write, Scope::Admin, Scope::Global];

    /// The scope's name on the wire and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Admin => "admin",
            Self::Global => "global",
        }
    }

    /// Parses one scope name.
    pub fn parse(s: &str) -> Result<Self, UnknownScope> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s.trim())
            .ok_or_else(|| UnknownScope(s.trim().to_owned()))
    }

    /// Parses a list separated by commas or spaces (`read,write`, OAuth's `read write`),
    /// sorted and without duplicates. Empty items are skipped.
    pub fn parse_list(s: &str) -> Result<Vec<Self>, UnknownScope> {
        let mut out = s
            .split([',', ' '])
            .filter(|p| !p.trim().is_empty())
            .map(Self::parse)
            .collect::<Result<Vec<_>, _>>()?;
        out.sort();
        out.dedup();
        Ok(out)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_sorted_and_deduplicated() {
        assert_eq!(
            Scope::parse_list("write,read write").ok(),
            Some(vec![Scope::Read, Scope::Write])
        );
        assert_eq!(Scope::parse_list("").ok(), Some(vec![]));
        assert!(Scope::parse_list("read,root").is_err());
        assert!(Scope::parse("READ").is_err(), "case matters");
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()).ok(), Some(s));
        }
    }
}
