//! Pure image processing for photo-api: bytes in, bytes out.
//!
//! No I/O, no async. Two entry points matter:
//!
//! * [`sniff`] and [`probe`] are header-only (magic bytes + [`imagesize`]) and
//!   never run a codec, so they are safe and cheap to call from the API
//!   process on an untrusted upload prefix.
//! * [`transform`] fully decodes (with limits set on the decoder), applies
//!   EXIF orientation, resizes and encodes. It is meant for job workers.
//!
//! Nothing here panics on any input: decoder/encoder panics (should a codec
//! have a bug) are caught and reported as [`ImagingError::Corrupt`] /
//! [`ImagingError::Encode`].

mod animate;
pub mod colour;
mod decode;
mod decode_webp;
mod frames;
mod geometry;
#[cfg(feature = "heif")]
mod heif;
mod probe;
mod transform;
mod webp_mux;

pub use animate::{Animate, animate};
pub use encode::{AVIF_DEFAULT_SPEED, AVIF_MAX_SPEED};
pub use probe::{probe, sniff};
pub use transform::transform;

/// Formats we accept as input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    /// JPEG / JFIF / EXIF.
    Jpeg,
    /// PNG (first frame of APNG).
    Png,
    /// WebP (lossy or lossless; first frame if animated).
    Webp,
    /// GIF (first frame; all frames with [`animate`]).
    Gif,
    /// TIFF (first page; 8/16-bit, grey, RGB(A), CMYK as the `tiff` crate decodes them).
    Tiff,
    /// HEIC: HEIF with HEVC images (brands `heic`, `heix`, `heim`, `heis`, `hevc`, `hevx`).
    /// Decoding needs the `heif` feature (libheif).
    Heic,
    /// Other HEIF (brand `mif1`/`msf1` without a more specific one). Needs the `heif` feature.
    Heif,
    /// AVIF: HEIF with AV1 images (brands `avif`, `avis`). Needs the `heif` feature.
    Avif,
}

impl ImageFormat {
    /// The IANA media type, e.g. `image/jpeg`.
    pub fn mime(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "image/jpeg",
            ImageFormat::Png => "image/png",
            ImageFormat::Webp => "image/webp",
            ImageFormat::Gif => "image/gif",
            ImageFormat::Tiff => "image/tiff",
            ImageFormat::Heic => "image/heic",
            ImageFormat::Heif => "image/heif",
            ImageFormat::Avif => "image/avif",
        }
    }

    /// The canonical file extension without dot, e.g. `jpg`.
    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "jpg",
            ImageFormat::Png => "png",
            ImageFormat::Webp => "webp",
            ImageFormat::Gif => "gif",
            ImageFormat::Tiff => "tiff",
            ImageFormat::Heic => "heic",
            ImageFormat::Heif => "heif",
            ImageFormat::Avif => "avif",
        }
    }

    /// True for the HEIF family (HEIC, HEIF, AVIF), decoded by libheif.
    pub fn is_heif(self) -> bool {
        matches!(
            self,
            ImageFormat::Heic | ImageFormat::Heif | ImageFormat::Avif
        )
    }
}

/// Whether this build can decode the HEIF family and encode AVIF (the `heif` feature:
/// libheif). Without it, such inputs are refused with [`ImagingError::UnsupportedFormat`]
/// after the header checks, and AVIF output with [`ImagingError::InvalidParameters`].
pub const HEIF_SUPPORT: bool = cfg!(feature = "heif");

/// Formats we can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputFormat {
    /// Baseline JPEG; alpha is flattened onto white.
    Jpeg,
    /// 8-bit PNG (RGB or RGBA).
    Png,
    /// Lossy WebP (RGB or RGBA), quality-controlled.
    Webp,
    /// AVIF (AV1 through libaom via libheif; needs the `heif` feature), quality- and
    /// speed-controlled.
    Avif,
    /// GIF (256 colours per frame; all frames of an animated GIF with [`animate`]).
    Gif,
}

impl OutputFormat {
    /// The IANA media type, e.g. `image/webp`.
    pub fn mime(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "image/jpeg",
            OutputFormat::Png => "image/png",
            OutputFormat::Webp => "image/webp",
            OutputFormat::Avif => "image/avif",
            OutputFormat::Gif => "image/gif",
        }
    }

    /// The canonical file extension without dot, e.g. `jpg`.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "jpg",
            OutputFormat::Png => "png",
            OutputFormat::Webp => "webp",
            OutputFormat::Avif => "avif",
            OutputFormat::Gif => "gif",
        }
    }
}

/// Limits applied before and during decoding.
///
/// The same limits also bound the requested output size in [`transform`]
/// (a target beyond them is [`ImagingError::InvalidParameters`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum source (and target) width in pixels.
    pub max_width: u32,
    /// Maximum source (and target) height in pixels.
    pub max_height: u32,
    /// Maximum `width * height` of the source (and target).
    pub max_pixels: u64,
    /// Maximum bytes the decoder may allocate (passed to `image::Limits::max_alloc`).
    pub max_alloc_bytes: u64,
    /// Maximum number of frames (GIF, APNG, animated WebP), counted from the
    /// container structure (or the APNG `acTL` declaration) before decoding.
    pub max_frames: u32,
    /// Maximum pixels summed over all frames (`frames × canvas`), i.e. what
    /// decoding the whole animation would produce.
    pub max_total_pixels: u64,
}

impl Default for Limits {
    /// 16384 × 16384, 100 megapixels, 1 GiB of decoder allocations,
    /// 1000 frames and 500 megapixels summed over frames.
    fn default() -> Self {
        Limits {
            max_width: 16384,
            max_height: 16384,
            max_pixels: 100_000_000,
            max_alloc_bytes: 1 << 30,
            max_frames: 1000,
            max_total_pixels: 500_000_000,
        }
    }
}

impl Limits {
    /// Checks source dimensions against these limits.
    pub(crate) fn check_source(&self, width: u32, height: u32) -> Result<(), ImagingError> {
        let too_large = |reason: String| ImagingError::TooLarge {
            width,
            height,
            reason,
        };
        if width > self.max_width {
            return Err(too_large(format!(
                "width {width} exceeds the limit of {}",
                self.max_width
            )));
        }
        if height > self.max_height {
            return Err(too_large(format!(
                "height {height} exceeds the limit of {}",
                self.max_height
            )));
        }
        let pixels = u64::from(width) * u64::from(height);
        if pixels > self.max_pixels {
            return Err(too_large(format!(
                "{pixels} pixels exceed the limit of {}",
                self.max_pixels
            )));
        }
        Ok(())
    }
}

/// Result of [`probe`]: what the header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    /// Sniffed format.
    pub format: ImageFormat,
    /// Stored width in pixels (before any EXIF orientation is applied).
    pub width: u32,
    /// Stored height in pixels (before any EXIF orientation is applied).
    pub height: u32,
    /// Number of frames (1 for still images). Counted from the container
    /// structure within the bytes given, so on a prefix it is a lower bound
    /// (an APNG's declared `acTL` count is taken as is).
    pub frames: u32,
}

/// How to fit the source into a `width × height` box (sharp/libvips semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fit {
    /// Keep aspect ratio, fit within the box, then pad to exactly the box
    /// (white for JPEG, transparent for PNG/WebP).
    Contain,
    /// Keep aspect ratio, scale to cover the box, then centre-crop to exactly the box.
    Cover,
    /// Stretch to exactly the box, ignoring aspect ratio.
    Fill,
    /// Keep aspect ratio, fit within the box (the thumbnail mode).
    #[default]
    Inside,
    /// Keep aspect ratio, cover at least the box, no crop.
    Outside,
}

/// One resize/convert operation.
///
/// If only `width` or only `height` is set, the other follows from the aspect
/// ratio (and `fit` is irrelevant). If neither is set the image is only
/// re-encoded (after orientation).
///
/// With `upscale == false` (the default) the image itself is never enlarged:
/// * `inside`/`outside`/`contain`: the scale factor is capped at 1
///   (`contain` still pads to the full box);
/// * `cover`: the scale is capped at 1 and the centre crop is
///   `min(width, src_w) × min(height, src_h)` (libvips behaviour);
/// * `fill`: each axis is capped at the source size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transform {
    /// Target box width; `None` = follow from aspect ratio.
    pub width: Option<u32>,
    /// Target box height; `None` = follow from aspect ratio.
    pub height: Option<u32>,
    /// How to fit into the box when both dimensions are given.
    pub fit: Fit,
    /// Allow enlarging beyond the source size (default false).
    pub upscale: bool,
    /// Output encoding.
    pub format: OutputFormat,
    /// 1..=100; used by JPEG and (lossy) WebP, ignored by PNG.
    pub quality: u8,
    /// Apply EXIF orientation (default true).
    pub auto_orient: bool,
    /// Default true: output carries no EXIF/XMP/ICC. When false, the ICC
    /// profile is kept (JPEG, PNG and WebP). EXIF/XMP (and so GPS) are never
    /// copied in this version.
    pub strip_metadata: bool,
}

impl Default for Transform {
    /// No resize, JPEG quality 82, auto-orient, strip metadata.
    fn default() -> Self {
        Transform {
            width: None,
            height: None,
            fit: Fit::Inside,
            upscale: false,
            format: OutputFormat::Jpeg,
            quality: 82,
            auto_orient: true,
            strip_metadata: true,
        }
    }
}

/// An encoded output image.
#[derive(Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The encoded file.
    pub bytes: Vec<u8>,
    /// Its format.
    pub format: OutputFormat,
    /// Output width in pixels.
    pub width: u32,
    /// Output height in pixels.
    pub height: u32,
}

impl std::fmt::Debug for Encoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoded")
            .field("bytes", &format_args!("<{} bytes>", self.bytes.len()))
            .field("format", &self.format)
            .field("width", &self.width)
            .field("height", &self.height)
            .finish()
    }
}

/// Errors from [`probe`] and [`transform`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImagingError {
    /// Not an image format we know (code `unsupported_format`).
    #[error("unsupported image format")]
    UnsupportedFormat,
    /// Beyond the configured limits (code `image_too_large`).
    #[error("image too large ({width}x{height}): {reason}")]
    TooLarge {
        /// Width as declared by the image (0 if unknown).
        width: u32,
        /// Height as declared by the image (0 if unknown).
        height: u32,
        /// Which limit was exceeded.
        reason: String,
    },
    /// Truncated, corrupt or otherwise undecodable (code `corrupt_image`).
    #[error("corrupt image: {0}")]
    Corrupt(String),
    /// Bad transform parameters (code `invalid_parameters`).
    #[error("invalid parameters: {0}")]
    InvalidParameters(String),
    /// The encoder failed (code `encode_failed`); the only transient error.
    #[error("encoding failed: {0}")]
    Encode(String),
}

impl ImagingError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ImagingError::UnsupportedFormat => "unsupported_format",
            ImagingError::TooLarge { .. } => "image_too_large",
            ImagingError::Corrupt(_) => "corrupt_image",
            ImagingError::InvalidParameters(_) => "invalid_parameters",
            ImagingError::Encode(_) => "encode_failed",
        }
    }

    /// True when retrying with the same input cannot succeed (all but `Encode`).
    pub fn is_permanent(&self) -> bool {
        !matches!(self, ImagingError::Encode(_))
    }
}

// Pipeline, variants, encoder options and analysis (img-ops).
mod analyze;
mod encode;
mod ops;

pub use analyze::{
    Analysis, AnalyzeOptions, DominantColor, ExifSummary, GpsPosition, MAX_DOMINANT_COLORS,
    analyze, analyze_with, hamming_distance,
};
pub use encode::{ChromaSubsampling, EncodeOptions, PngCompression};
pub use ops::{
    CropStrategy, DecodedImage, Gravity, MAX_OPERATIONS, MAX_SHARPEN_AMOUNT, MAX_SIGMA,
    MAX_VARIANTS, Operation, Overlay, Pipeline, Resize, Rotation, VariantSpec, decode_for_variants,
    decode_oriented, pipeline, render_variants, validate_variants, variants,
};
