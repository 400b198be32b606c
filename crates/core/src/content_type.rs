//! Content types we accept for uploads and produce as outputs.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An image content type photo-api accepts. Parsed from a declared MIME type; the bytes are
/// checked against it separately (by sniffing) before an upload becomes ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ContentType {
    /// `image/jpeg`
    Jpeg,
    /// `image/png`
    Png,
    /// `image/webp`
    Webp,
    /// `image/gif`
    Gif,
    /// `image/tiff`
    Tiff,
    /// `image/heic` (HEIF with HEVC images, e.g. iPhone photos)
    Heic,
    /// `image/heif` (HEIF; the same files are often declared either way)
    Heif,
    /// `image/avif`
    Avif,
}

/// The declared type is not one we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unsupported content type {0:?}; accepted: image/jpeg, image/png, image/webp, image/gif, \
     image/tiff, image/heic, image/heif, image/avif"
)]
pub struct UnsupportedContentType(pub String);

impl ContentType {
    /// Every accepted type.
    pub const ALL: [ContentType; 8] = [
        Self::Jpeg,
        Self::Png,
        Self::Webp,
        Self::Gif,
        Self::Tiff,
        Self::Heic,
        Self::Heif,
        Self::Avif,
    ];

    /// Parses a declared MIME type. Parameters (`; charset=…`) and case are ignored; `image/jpg`
    /// is accepted as a common alias of `image/jpeg`.
    pub fn parse(s: &str) -> Result<Self, UnsupportedContentType> {
        let essence = s.split(';').next().unwrap_or_default().trim();
        match essence.to_ascii_lowercase().as_str() {
            "image/jpeg" | "image/jpg" => Ok(Self::Jpeg),
            "image/png" => Ok(Self::Png),
            "image/webp" => Ok(Self::Webp),
            "image/gif" => Ok(Self::Gif),
            "image/tiff" => Ok(Self::Tiff),
            "image/heic" => Ok(Self::Heic),
            "image/heif" => Ok(Self::Heif),
            "image/avif" => Ok(Self::Avif),
            _ => Err(UnsupportedContentType(s.chars().take(100).collect())),
        }
    }

    /// The canonical MIME type.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Webp => "image/webp",
            Self::Gif => "image/gif",
            Self::Tiff => "image/tiff",
            Self::Heic => "image/heic",
            Self::Heif => "image/heif",
            Self::Avif => "image/avif",
        }
    }

    /// The usual file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Jpeg => "jpg",
            Self::Png => "png",
            Self::Webp => "webp",
            Self::Gif => "gif",
            Self::Tiff => "tiff",
            Self::Heic => "heic",
            Self::Heif => "heif",
            Self::Avif => "avif",
        }
    }

    /// Whether bytes sniffed as `sniffed` may be stored under this declared type: the same
    /// type, or HEIC and HEIF for each other (clients declare iPhone photos either way; the
    /// `ftyp` brands tell HEVC-coded HEIF, `heic`, from other HEIF, `mif1`).
    pub fn accepts(self, sniffed: ContentType) -> bool {
        self == sniffed
            || matches!(
                (self, sniffed),
                (Self::Heic, Self::Heif) | (Self::Heif, Self::Heic)
            )
    }
}

impl TryFrom<String> for ContentType {
    type Error = UnsupportedContentType;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<ContentType> for String {
    fn from(c: ContentType) -> Self {
        c.mime().to_owned()
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.mime())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_declared_types() {
        assert_eq!(ContentType::parse("image/jpeg"), Ok(ContentType::Jpeg));
        assert_eq!(ContentType::parse("IMAGE/JPG"), Ok(ContentType::Jpeg));
        assert_eq!(
            ContentType::parse("image/png; charset=binary"),
            Ok(ContentType::Png)
        );
        for bad in [
            "text/html",
            "image/svg+xml",
            "",
            "image/",
            "application/octet-stream",
        ] {
            assert!(ContentType::parse(bad).is_err(), "{bad}");
        }
        for c in ContentType::ALL {
            assert_eq!(ContentType::parse(c.mime()), Ok(c));
            assert!(c.accepts(c));
        }
        assert_eq!(ContentType::parse("image/TIFF"), Ok(ContentType::Tiff));
        assert_eq!(ContentType::parse("image/avif"), Ok(ContentType::Avif));
        assert_eq!(ContentType::parse("image/heif"), Ok(ContentType::Heif));
    }

    #[test]
    fn heic_and_heif_accept_each_other_and_nothing_else() {
        use ContentType::*;
        assert!(Heic.accepts(Heif) && Heif.accepts(Heic));
        assert!(!Heic.accepts(Avif) && !Avif.accepts(Heic) && !Heif.accepts(Avif));
        assert!(!Jpeg.accepts(Tiff) && !Tiff.accepts(Png));
        let distinct: std::collections::HashSet<_> =
            ContentType::ALL.iter().map(|c| c.extension()).collect();
        assert_eq!(distinct.len(), ContentType::ALL.len());
    }
}
