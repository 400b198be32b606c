//! Byte sizes as typed values, parsed from `25000000`, `25MB`, `5 MiB`, …

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "SizeRepr", into = "u64")]
pub struct ByteSize(pub u64);

#[derive(Deserialize)]
#[serde(untagged)]
enum SizeRepr {
    Int(u64),
    Text(String),
}

impl TryFrom<SizeRepr> for ByteSize {
    type Error = InvalidByteSize;
    fn try_from(r: SizeRepr) -> Result<Self, Self::Error> {
        match r {
            SizeRepr::Int(n) => Ok(Self(n)),
            SizeRepr::Text(s) => s.parse(),
        }
    }
}

impl From<ByteSize> for u64 {
    fn from(b: ByteSize) -> Self {
        b.0
    }
}

/// The text is not a byte size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid byte size {0:?}: use a number of bytes or a unit such as 25MB or 5MiB")]
pub struct InvalidByteSize(String);

impl ByteSize {
    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = InvalidByteSize;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || InvalidByteSize(s.to_owned());
        let t = s.trim();
        let split = t
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let unit = unit.trim().to_ascii_lowercase();
        let mult: u64 = match unit.as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "m" | "mb" => 1_000_000,
            "g" | "gb" => 1_000_000_000,
            "ki" | "kib" => 1 << 10,
            "mi" | "mib" => 1 << 20,
            "gi" | "gib" => 1 << 30,
            _ => return Err(err()),
        };
        if num.is_empty() {
            return Err(err());
        }
        if let Ok(n) = num.parse::<u64>() {
            return n.checked_mul(mult).map(Self).ok_or_else(err);
        }
        let f: f64 = num.parse().map_err(|_| err())?;
        let v = f * mult as f64;
        if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
            return Err(err());
        }
        Ok(Self(v.round() as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        let p = |s: &str| s.parse::<ByteSize>().map(|b| b.0);
        assert_eq!(p("25000000"), Ok(25_000_000));
        assert_eq!(p("25MB"), Ok(25_000_000));
        assert_eq!(p("5 MiB"), Ok(5 * 1024 * 1024));
        assert_eq!(p("1.5kb"), Ok(1500));
        assert_eq!(p("0"), Ok(0));
        for bad in ["", "MB", "-1", "12XB", "1e999GB", "99999999999999999999GB"] {
            assert!(p(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn deserializes_numbers_and_strings() {
        let a: ByteSize = serde_json::from_str("123").unwrap_or(ByteSize(0));
        let b: ByteSize = serde_json::from_str("\"2KiB\"").unwrap_or(ByteSize(0));
        assert_eq!((a.0, b.0), (123, 2048));
    }
}
