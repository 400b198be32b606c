//! Client file names, made safe to store and to echo: only the last path component is kept,
//! control and invisible formatting characters (bidi overrides such as U+202E, which can disguise
//! `gpj.exe` as `exe.jpg`, zero-width characters, BOM) are removed, surrounding spaces and dots
//! are trimmed, and the result is capped at 255 bytes with its extension kept.

use std::fmt;

/// Longest stored file name, bytes.
pub const MAX_FILENAME_BYTES: usize = 255;

/// A sanitised client file name (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName(String);

/// The name had nothing usable left after sanitising.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the file name is empty once path components and control characters are removed")]
pub struct EmptyFileName;

fn invisible(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}' | '\u{061C}' | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}')
}

fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl FileName {
    /// Sanitises a client-supplied name.
    pub fn sanitize(raw: &str) -> Result<Self, EmptyFileName> {
        let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
        let clean: String = last.chars().filter(|c| !invisible(*c)).collect();
        let clean = clean.trim_matches(|c: char| c.is_whitespace() || c == '.');
        if clean.is_empty() {
            return Err(EmptyFileName);
        }
        if clean.len() <= MAX_FILENAME_BYTES {
            return Ok(Self(clean.to_owned()));
        }
        // Keep a short extension; shorten the stem.
        let out = match clean.rsplit_once('.') {
            Some((stem, ext)) if !ext.is_empty() && ext.len() <= 16 => {
                format!("{}.{ext}", cut(stem, MAX_FILENAME_BYTES - ext.len() - 1))
            }
            _ => cut(clean, MAX_FILENAME_BYTES).to_owned(),
        };
        Ok(Self(out))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Option<String> {
        FileName::sanitize(x).ok().map(|f| f.0)
    }

    #[test]
    fn names_are_sanitised_and_capped() {
        assert_eq!(s("holiday.jpg").as_deref(), Some("holiday.jpg"));
        assert_eq!(s("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(s("C:\\Users\\me\\cat.png").as_deref(), Some("cat.png"));
        assert_eq!(s("photo\u{202E}gpj.exe").as_deref(), Some("photogpj.exe"));
        assert_eq!(
            s("a\u{0000}b\u{0007}\u{200B}c\r\n.jpg").as_deref(),
            Some("abc.jpg")
        );
        assert_eq!(s("  .hidden.  ").as_deref(), Some("hidden"));
        assert_eq!(s("Ünïcødé 写真.heic").as_deref(), Some("Ünïcødé 写真.heic"));
        for empty in ["", "../", "..", " \u{202E} ", "dir/", "\u{0001}"] {
            assert_eq!(s(empty), None, "{empty:?}");
        }
        let long = format!("{}.jpeg", "写".repeat(200));
        let got = s(&long).unwrap_or_default();
        assert!(
            got.len() <= MAX_FILENAME_BYTES && got.ends_with(".jpeg"),
            "{got}"
        );
        assert!(got.starts_with('写'));
        let no_ext = "x".repeat(1000);
        assert_eq!(s(&no_ext).map(|g| g.len()), Some(MAX_FILENAME_BYTES));
    }
}
