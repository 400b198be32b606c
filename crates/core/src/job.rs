//! Jobs: their kinds, parameters and the status state machine.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Largest output side we accept in job parameters.
pub const MAX_OUTPUT_SIDE: u32 = 16_384;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Queued, waiting for a worker.
    Submitted,
    /// A worker holds the job's lease and is running it.
    Started,
    /// An attempt failed with a retryable error; waiting for its backoff to pass.
    Retrying,
    /// Done; outputs are recorded.
    Completed,
    /// Failed with a permanent error (bad input); not retried.
    Failed,
    /// Failed on every allowed attempt; in the dead-letter list.
    Dead,
    /// Cancelled before completion.
    Cancelled,
}

impl JobStatus {
    /// Every status.
    pub const ALL: [JobStatus; 7] = [
        Self::Submitted,
        Self::Started,
        Self::Retrying,
        Self::Completed,
        Self::Failed,
        Self::Dead,
        Self::Cancelled,
    ];

    /// The status as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submitted => "submitted",
            Self::Started => "started",
            Self::Retrying => "retrying",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Dead => "dead",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses [`JobStatus::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// No further transition happens on its own.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Dead | Self::Cancelled
        )
    }

    /// A worker may claim a job in this status (once its run time has come).
    pub fn is_claimable(self) -> bool {
        matches!(self, Self::Submitted | Self::Retrying)
    }

    /// Whether `self → next` is a legal transition. The queue's SQL encodes the same rules in
    /// its `WHERE` clauses; this is the reference they are tested against.
    pub fn can_transition_to(self, next: JobStatus) -> bool {
        use JobStatus::*;
        match (self, next) {
            // A worker claims a queued job, or re-claims one whose lease expired.
            (Submitted | Retrying, Started) | (Started, Started) => true,
            (Started, Completed | Failed | Retrying | Dead) => true,
            // Released on graceful shutdown without counting the attempt.
            (Started, Submitted) => true,
            // Cancellation (the cancel route lands with batches and webhooks).
            (Started, Cancelled) | (Submitted | Retrying, Cancelled) => true,
            // Manual retry of a failed or dead job.
            (Failed | Dead, Submitted) => true,
            _ => false,
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kinds of job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobType {
    /// Fit within a box; the classic thumbnail.
    Thumbnail,
    /// Resize with a fit mode, convert, orient, strip metadata.
    Transform,
    /// Several named sizes/formats from one decode of the source.
    Variants,
    /// Dimensions, format, EXIF summary, placeholders, hashes and colours; a result, no output.
    Analyze,
}

impl JobType {
    /// Every job type.
    pub const ALL: [JobType; 4] = [
        Self::Thumbnail,
        Self::Transform,
        Self::Variants,
        Self::Analyze,
    ];

    /// The type as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Thumbnail => "thumbnail",
            Self::Transform => "transform",
            Self::Variants => "variants",
            Self::Analyze => "analyze",
        }
    }

    /// Parses [`JobType::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl fmt::Display for JobType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Output encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// JPEG (`jpg` accepted).
    #[serde(alias = "jpg")]
    Jpeg,
    /// PNG.
    Png,
    /// WebP (lossy, with `quality`).
    Webp,
    /// AVIF (AV1, with `quality` and, in `transform`, `speed`).
    Avif,
    /// GIF (256 colours); in `transform`, `animated: true` keeps every frame of a GIF source.
    Gif,
}

impl OutputFormat {
    /// MIME type of the output.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Webp => "image/webp",
            Self::Avif => "image/avif",
            Self::Gif => "image/gif",
        }
    }

    /// File extension, no dot.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Jpeg => "jpg",
            Self::Png => "png",
            Self::Webp => "webp",
            Self::Avif => "avif",
            Self::Gif => "gif",
        }
    }
}

/// How a resize fits the requested box (the semantics of sharp and libvips).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Fit {
    /// Keep aspect ratio, fit within, pad to the exact box.
    Contain,
    /// Keep aspect ratio, fill the exact box, crop the overflow (centred).
    Cover,
    /// Stretch to the exact box.
    Fill,
    /// Keep aspect ratio, fit within the box (default).
    #[default]
    Inside,
    /// Keep aspect ratio, cover at least the box, no crop.
    Outside,
}

fn default_quality() -> u8 {
    80
}
fn yes() -> bool {
    true
}

/// Parameters of a `thumbnail` job: fit within `width`×`height`, never upscaled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ThumbnailParams {
    /// Box width in pixels (1..=16384).
    pub width: u32,
    /// Box height in pixels (1..=16384).
    pub height: u32,
    /// Output format (default `jpeg`).
    #[serde(default = "default_format")]
    pub format: OutputFormat,
    /// Encoder quality 1..=100 (default 80).
    #[serde(default = "default_quality")]
    pub quality: u8,
}

fn default_format() -> OutputFormat {
    OutputFormat::Jpeg
}

/// Parameters of a `transform` job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransformParams {
    /// Target width; with only one side given the other follows the aspect ratio.
    #[serde(default)]
    pub width: Option<u32>,
    /// Target height.
    #[serde(default)]
    pub height: Option<u32>,
    /// Fit mode (default `inside`).
    #[serde(default)]
    pub fit: Fit,
    /// Enlarge images smaller than the box (default false).
    #[serde(default)]
    pub upscale: bool,
    /// Output format (default `jpeg`).
    #[serde(default = "default_format")]
    pub format: OutputFormat,
    /// Encoder quality 1..=100 (default 80).
    #[serde(default = "default_quality")]
    pub quality: u8,
    /// Apply the EXIF orientation (default true).
    #[serde(default = "yes")]
    pub auto_orient: bool,
    /// Drop EXIF, XMP and ICC metadata (default true). When false the ICC profile is kept;
    /// GPS data is never kept.
    #[serde(default = "yes")]
    pub strip_metadata: bool,
    /// Crop this box (source pixels, after auto-orient) before anything else.
    #[serde(default)]
    pub crop: Option<CropBox>,
    /// Which part `cover` keeps and where `contain` places the image: a gravity (`centre`,
    /// `north`, `south`, `east`, `west`, `northeast`, …) or `entropy` / `attention` (smart crop).
    #[serde(default)]
    pub position: Position,
    /// Rotate clockwise by 0, 90, 180 or 270 degrees (after auto-orient and crop).
    #[serde(default)]
    pub rotate: u16,
    /// Mirror top ↔ bottom.
    #[serde(default)]
    pub flip: bool,
    /// Mirror left ↔ right.
    #[serde(default)]
    pub flop: bool,
    /// Gaussian blur sigma (0 < sigma ≤ 50), after the resize.
    #[serde(default)]
    pub blur: Option<f32>,
    /// Unsharp mask after the resize.
    #[serde(default)]
    pub sharpen: Option<Sharpen>,
    /// Colour transparent pixels are flattened onto for JPEG and `contain` padding (`#rrggbb`,
    /// default white).
    #[serde(default)]
    pub background: Option<String>,
    /// JPEG: progressive scans (default false).
    #[serde(default)]
    pub progressive: bool,
    /// JPEG: chroma subsampling `auto`, `420` or `444`.
    #[serde(default)]
    pub subsampling: Subsampling,
    /// JPEG: optimised Huffman tables (needs `progressive` or `subsampling: 444`).
    #[serde(default)]
    pub optimize_huffman: bool,
    /// PNG: `fast` (default), `balanced` or `best` compression.
    #[serde(default)]
    pub png_compression: PngCompression,
    /// WebP: lossless instead of lossy.
    #[serde(default)]
    pub lossless: bool,
    /// AVIF: encoder speed 0..=9 (0 slowest and smallest; default 8). Only with `format: avif`.
    #[serde(default)]
    pub speed: Option<u8>,
    /// GIF → GIF: keep every frame (resized, same delays and loop count) instead of the first.
    /// Only with `format: gif`, and only with resizing (`width`/`height`, `fit`, `upscale`).
    #[serde(default)]
    pub animated: bool,
}

/// Fastest AVIF `speed`.
pub const MAX_AVIF_SPEED: u8 = 9;

/// A crop box in source pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CropBox {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

/// Unsharp-mask parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Sharpen {
    /// Blur sigma of the mask (0 < sigma ≤ 50).
    pub sigma: f32,
    /// Strength (0 < amount ≤ 10, default 1).
    #[serde(default = "one")]
    pub amount: f32,
}

fn one() -> f32 {
    1.0
}

/// Where `cover` crops and `contain` places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Position {
    /// Centre (default).
    #[default]
    #[serde(alias = "center")]
    Centre,
    /// Top.
    North,
    /// Bottom.
    South,
    /// Right.
    East,
    /// Left.
    West,
    /// Top right.
    Northeast,
    /// Top left.
    Northwest,
    /// Bottom right.
    Southeast,
    /// Bottom left.
    Southwest,
    /// The window with the most detail (luminance entropy).
    Entropy,
    /// The window most likely to draw attention (saturation, skin tones, edges).
    Attention,
}

/// JPEG chroma subsampling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Subsampling {
    /// Encoder default.
    #[default]
    #[serde(rename = "auto")]
    Auto,
    /// 4:2:0.
    #[serde(rename = "420")]
    Yuv420,
    /// 4:4:4.
    #[serde(rename = "444")]
    Yuv444,
}

/// PNG compression effort.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PngCompression {
    /// Fast (default).
    #[default]
    Fast,
    /// Balanced.
    Balanced,
    /// Smallest files.
    Best,
}

/// Parses `#rrggbb`.
pub fn parse_hex_colour(s: &str) -> Option<[u8; 3]> {
    let h = s.strip_prefix('#')?;
    if h.len() != 6 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let c = |i: usize| u8::from_str_radix(&h[i..i + 2], 16).ok();
    Some([c(0)?, c(2)?, c(4)?])
}

/// Most variants of one `variants` job.
pub const MAX_VARIANTS: usize = 16;
/// Longest variant name.
pub const MAX_VARIANT_NAME: usize = 64;
/// Most dominant colours an `analyze` job may ask for.
pub const MAX_DOMINANT_COLORS: u8 = 8;

/// One named output of a `variants` job: fit the (auto-oriented) source into
/// `width`×`height` with `fit`, then encode. Never upscaled unless `upscale`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantParams {
    /// The output's name, unique within the job: 1..=64 characters of `a-z`, `0-9`, `_` and
    /// `-`, starting with a letter or digit. The output is stored as `{name}.{extension}`.
    #[schema(example = "small")]
    pub name: String,
    /// Box width (1..=16384); with only one side given the other follows the aspect ratio.
    #[serde(default)]
    pub width: Option<u32>,
    /// Box height (1..=16384).
    #[serde(default)]
    pub height: Option<u32>,
    /// Fit mode (default `inside`); `contain`, `cover` and `fill` need both sides.
    #[serde(default)]
    pub fit: Fit,
    /// Enlarge images smaller than the box (default false).
    #[serde(default)]
    pub upscale: bool,
    /// Output format (default `jpeg`).
    #[serde(default = "default_format")]
    pub format: OutputFormat,
    /// Encoder quality 1..=100 (default 80).
    #[serde(default = "default_quality")]
    pub quality: u8,
}

/// Parameters of a `variants` job: several named outputs from one decode of the source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VariantsParams {
    /// 1..=16 variants with distinct names.
    pub variants: Vec<VariantParams>,
}

fn five() -> u8 {
    5
}

/// Parameters of an `analyze` job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeParams {
    /// Include the EXIF GPS position in the result (default false: removed).
    #[serde(default)]
    pub keep_gps: bool,
    /// How many dominant colours to report, 1..=8 (default 5).
    #[serde(default = "five")]
    pub dominant_colors: u8,
}

impl Default for AnalyzeParams {
    fn default() -> Self {
        AnalyzeParams {
            keep_gps: false,
            dominant_colors: five(),
        }
    }
}

/// Whether `name` is a valid variant name (also a safe key segment).
pub fn valid_variant_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_VARIANT_NAME
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

/// A validated job: its type and parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "job_type", content = "params", rename_all = "snake_case")]
pub enum JobSpec {
    /// See [`ThumbnailParams`].
    Thumbnail(ThumbnailParams),
    /// See [`TransformParams`].
    Transform(TransformParams),
    /// See [`VariantsParams`].
    Variants(VariantsParams),
    /// See [`AnalyzeParams`].
    Analyze(AnalyzeParams),
}

/// Why job parameters were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidJobSpec(pub String);

impl JobSpec {
    /// Parses the parameters of a job of type `job_type`, then checks their ranges.
    pub fn parse(job_type: JobType, params: serde_json::Value) -> Result<Self, InvalidJobSpec> {
        let params = if params.is_null() {
            serde_json::Value::Object(Default::default())
        } else {
            params
        };
        let bad = |e: serde_json::Error| InvalidJobSpec(format!("invalid params: {e}"));
        let spec = match job_type {
            JobType::Thumbnail => Self::Thumbnail(serde_json::from_value(params).map_err(bad)?),
            JobType::Transform => Self::Transform(serde_json::from_value(params).map_err(bad)?),
            JobType::Variants => Self::Variants(serde_json::from_value(params).map_err(bad)?),
            JobType::Analyze => Self::Analyze(serde_json::from_value(params).map_err(bad)?),
        };
        spec.validate()?;
        Ok(spec)
    }

    /// The job's type.
    pub fn job_type(&self) -> JobType {
        match self {
            Self::Thumbnail(_) => JobType::Thumbnail,
            Self::Transform(_) => JobType::Transform,
            Self::Variants(_) => JobType::Variants,
            Self::Analyze(_) => JobType::Analyze,
        }
    }

    /// The names and formats of the outputs the job writes (each to
    /// `tenants/{tenant}/jobs/{job_id}/{name}.{extension}`); empty for `analyze`.
    pub fn outputs(&self) -> Vec<(&str, OutputFormat)> {
        match self {
            Self::Thumbnail(p) => vec![("thumbnail", p.format)],
            Self::Transform(p) => vec![("transform", p.format)],
            Self::Variants(p) => p
                .variants
                .iter()
                .map(|v| (v.name.as_str(), v.format))
                .collect(),
            Self::Analyze(_) => Vec::new(),
        }
    }

    fn validate(&self) -> Result<(), InvalidJobSpec> {
        let side = |name: &str, v: Option<u32>| match v {
            Some(v) if v == 0 || v > MAX_OUTPUT_SIDE => Err(InvalidJobSpec(format!(
                "{name} must be between 1 and {MAX_OUTPUT_SIDE}"
            ))),
            _ => Ok(()),
        };
        let quality = |q: u8| {
            if (1..=100).contains(&q) {
                Ok(())
            } else {
                Err(InvalidJobSpec("quality must be between 1 and 100".into()))
            }
        };
        match self {
            Self::Thumbnail(p) => {
                side("width", Some(p.width))?;
                side("height", Some(p.height))?;
                quality(p.quality)
            }
            Self::Transform(p) => {
                side("width", p.width)?;
                side("height", p.height)?;
                quality(p.quality)?;
                let needs_box = matches!(p.fit, Fit::Contain | Fit::Cover | Fit::Fill);
                if needs_box && (p.width.is_none() || p.height.is_none()) {
                    return Err(InvalidJobSpec(
                        "fit contain, cover and fill need both width and height".into(),
                    ));
                }
                if let Some(c) = p.crop {
                    side("crop.width", Some(c.width))?;
                    side("crop.height", Some(c.height))?;
                }
                if !matches!(p.rotate, 0 | 90 | 180 | 270) {
                    return Err(InvalidJobSpec("rotate must be 0, 90, 180 or 270".into()));
                }
                let sigma_ok = |v: f32| v.is_finite() && v > 0.0 && v <= 50.0;
                if p.blur.is_some_and(|b| !sigma_ok(b)) {
                    return Err(InvalidJobSpec("blur must be in (0, 50]".into()));
                }
                if let Some(sh) = p.sharpen
                    && !(sigma_ok(sh.sigma)
                        && sh.amount.is_finite()
                        && sh.amount > 0.0
                        && sh.amount <= 10.0)
                {
                    return Err(InvalidJobSpec(
                        "sharpen.sigma must be in (0, 50] and sharpen.amount in (0, 10]".into(),
                    ));
                }
                if let Some(bg) = &p.background
                    && parse_hex_colour(bg).is_none()
                {
                    return Err(InvalidJobSpec(
                        "background must be a colour like #ffffff".into(),
                    ));
                }
                if let Some(speed) = p.speed {
                    if p.format != OutputFormat::Avif {
                        return Err(InvalidJobSpec("speed needs format: \"avif\"".into()));
                    }
                    if speed > MAX_AVIF_SPEED {
                        return Err(InvalidJobSpec(format!(
                            "speed must be between 0 and {MAX_AVIF_SPEED}"
                        )));
                    }
                }
                if p.animated {
                    if p.format != OutputFormat::Gif {
                        return Err(InvalidJobSpec("animated needs format: \"gif\"".into()));
                    }
                    let resize_only = p.crop.is_none()
                        && p.position == Position::Centre
                        && p.rotate == 0
                        && !p.flip
                        && !p.flop
                        && p.blur.is_none()
                        && p.sharpen.is_none()
                        && p.background.is_none();
                    if !resize_only {
                        return Err(InvalidJobSpec(
                            "animated supports resizing only (width, height, fit, upscale)".into(),
                        ));
                    }
                }
                if p.optimize_huffman && !p.progressive && p.subsampling != Subsampling::Yuv444 {
                    return Err(InvalidJobSpec(
                        "optimize_huffman needs progressive: true or subsampling: \"444\"".into(),
                    ));
                }
                Ok(())
            }
            Self::Variants(p) => {
                if p.variants.is_empty() || p.variants.len() > MAX_VARIANTS {
                    return Err(InvalidJobSpec(format!(
                        "variants must hold 1 to {MAX_VARIANTS} entries"
                    )));
                }
                let mut seen = std::collections::HashSet::new();
                for v in &p.variants {
                    if !valid_variant_name(&v.name) {
                        return Err(InvalidJobSpec(format!(
                            "variant name {:?}: use 1 to {MAX_VARIANT_NAME} of a-z, 0-9, '_' and '-', starting with a letter or digit",
                            v.name.chars().take(80).collect::<String>()
                        )));
                    }
                    if !seen.insert(v.name.as_str()) {
                        return Err(InvalidJobSpec(format!(
                            "variant name {:?} is used twice",
                            v.name
                        )));
                    }
                    side("width", v.width)?;
                    side("height", v.height)?;
                    quality(v.quality)?;
                    if v.width.is_none() && v.height.is_none() {
                        return Err(InvalidJobSpec(format!(
                            "variant {:?} needs width or height",
                            v.name
                        )));
                    }
                    if matches!(v.fit, Fit::Contain | Fit::Cover | Fit::Fill)
                        && (v.width.is_none() || v.height.is_none())
                    {
                        return Err(InvalidJobSpec(format!(
                            "variant {:?}: fit contain, cover and fill need both width and height",
                            v.name
                        )));
                    }
                }
                Ok(())
            }
            Self::Analyze(p) => {
                if !(1..=MAX_DOMINANT_COLORS).contains(&p.dominant_colors) {
                    return Err(InvalidJobSpec(format!(
                        "dominant_colors must be between 1 and {MAX_DOMINANT_COLORS}"
                    )));
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn state_machine() {
        use JobStatus::*;
        assert!(Submitted.can_transition_to(Started));
        assert!(Started.can_transition_to(Completed));
        assert!(Started.can_transition_to(Retrying));
        assert!(Retrying.can_transition_to(Started));
        assert!(Started.can_transition_to(Dead));
        assert!(Dead.can_transition_to(Submitted));
        for terminal in [Completed, Cancelled] {
            for next in JobStatus::ALL {
                assert!(!terminal.can_transition_to(next), "{terminal} -> {next}");
            }
        }
        assert!(
            !Submitted.can_transition_to(Completed),
            "never completes unclaimed"
        );
        assert!(!Retrying.can_transition_to(Completed));
        assert!(!Completed.can_transition_to(Started), "exactly once");
        for s in JobStatus::ALL {
            assert_eq!(JobStatus::parse(s.as_str()), Some(s));
            assert_eq!(
                s.is_claimable(),
                s.can_transition_to(Started) && s != Started
            );
        }
    }

    #[test]
    fn thumbnail_params() {
        let spec = JobSpec::parse(
            JobType::Thumbnail,
            json!({"width": 256, "height": 256, "format": "webp", "quality": 70}),
        );
        assert_eq!(
            spec,
            Ok(JobSpec::Thumbnail(ThumbnailParams {
                width: 256,
                height: 256,
                format: OutputFormat::Webp,
                quality: 70
            }))
        );
        let defaults = JobSpec::parse(JobType::Thumbnail, json!({"width": 10, "height": 20}));
        assert!(matches!(
            defaults,
            Ok(JobSpec::Thumbnail(ThumbnailParams {
                quality: 80,
                format: OutputFormat::Jpeg,
                ..
            }))
        ));
        for bad in [
            json!({"width": 0, "height": 10}),
            json!({"width": 10}),
            json!({"width": 10, "height": 99999}),
            json!({"width": 10, "height": 10, "quality": 0}),
            json!({"width": 10, "height": 10, "quality": 101}),
            json!({"width": 10, "height": 10, "format": "bmp"}),
            json!({"width": 10, "height": 10, "colour": "red"}),
            json!({"width": -1, "height": 10}),
            json!("string"),
        ] {
            assert!(
                JobSpec::parse(JobType::Thumbnail, bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn transform_params() {
        let t = JobSpec::parse(
            JobType::Transform,
            json!({"width": 100, "fit": "inside", "format": "jpg"}),
        );
        let Ok(JobSpec::Transform(p)) = t else {
            panic!("expected transform, got {t:?}");
        };
        assert!(p.auto_orient && p.strip_metadata && !p.upscale);
        assert_eq!(p.format, OutputFormat::Jpeg);
        assert!(JobSpec::parse(JobType::Transform, json!({"width": 100, "fit": "cover"})).is_err());
        assert!(JobSpec::parse(JobType::Transform, json!({"fit": "squash"})).is_err());
        let avif = JobSpec::parse(
            JobType::Transform,
            json!({"width": 64, "format": "avif", "quality": 50, "speed": 9}),
        );
        let Ok(JobSpec::Transform(p)) = avif else {
            panic!("expected an avif transform, got {avif:?}");
        };
        assert_eq!((p.format, p.speed), (OutputFormat::Avif, Some(9)));
        assert_eq!(p.format.extension(), "avif");
        assert_eq!(p.format.mime(), "image/avif");
        for bad in [
            json!({"format": "avif", "speed": 10}),
            json!({"format": "webp", "speed": 5}),
            json!({"speed": 5}),
            json!({"format": "avif", "speed": -1}),
        ] {
            assert!(
                JobSpec::parse(JobType::Transform, bad.clone()).is_err(),
                "{bad}"
            );
        }
        assert!(
            JobSpec::parse(
                JobType::Thumbnail,
                json!({"width": 8, "height": 8, "format": "avif"})
            )
            .is_ok()
        );
        assert!(
            JobSpec::parse(JobType::Transform, serde_json::Value::Null).is_ok(),
            "convert only"
        );
    }

    #[test]
    fn variants_params() {
        let ok = JobSpec::parse(
            JobType::Variants,
            json!({"variants": [
                {"name": "small", "width": 64, "format": "webp"},
                {"name": "square-2x", "width": 128, "height": 128, "fit": "cover"}
            ]}),
        );
        let Ok(JobSpec::Variants(p)) = &ok else {
            panic!("expected variants, got {ok:?}");
        };
        assert_eq!(p.variants.len(), 2);
        assert_eq!(p.variants[1].quality, 80);
        let spec = ok.clone().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            spec.outputs(),
            vec![
                ("small", OutputFormat::Webp),
                ("square-2x", OutputFormat::Jpeg)
            ]
        );
        let many: Vec<_> = (0..=MAX_VARIANTS)
            .map(|i| json!({"name": format!("v{i}"), "width": 8}))
            .collect();
        for bad in [
            json!({"variants": []}),
            json!({"variants": many}),
            json!({"variants": [{"name": "a", "width": 8}, {"name": "a", "width": 9}]}),
            json!({"variants": [{"name": "../x", "width": 8}]}),
            json!({"variants": [{"name": "Big", "width": 8}]}),
            json!({"variants": [{"name": "", "width": 8}]}),
            json!({"variants": [{"name": "-a", "width": 8}]}),
            json!({"variants": [{"name": "x".repeat(65), "width": 8}]}),
            json!({"variants": [{"name": "a"}]}),
            json!({"variants": [{"name": "a", "width": 8, "fit": "cover"}]}),
            json!({"variants": [{"name": "a", "width": 0}]}),
            json!({"variants": [{"name": "a", "width": 8, "quality": 0}]}),
            json!({"variants": [{"name": "a", "width": 8, "blur": 1}]}),
            json!({}),
        ] {
            assert!(
                JobSpec::parse(JobType::Variants, bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn analyze_params() {
        assert_eq!(
            JobSpec::parse(JobType::Analyze, serde_json::Value::Null),
            Ok(JobSpec::Analyze(AnalyzeParams::default()))
        );
        let gps = JobSpec::parse(JobType::Analyze, json!({"keep_gps": true}));
        assert!(matches!(
            gps,
            Ok(JobSpec::Analyze(AnalyzeParams { keep_gps: true, .. }))
        ));
        for bad in [
            json!({"dominant_colors": 0}),
            json!({"dominant_colors": 9}),
            json!({"keep_gps": "yes"}),
            json!({"gps": true}),
        ] {
            assert!(
                JobSpec::parse(JobType::Analyze, bad.clone()).is_err(),
                "{bad}"
            );
        }
        assert!(JobSpec::parse(JobType::Analyze, json!({})).is_ok_and(|s| s.outputs().is_empty()));
    }

    #[test]
    fn spec_round_trips_through_storage_json() {
        let spec = JobSpec::parse(JobType::Thumbnail, json!({"width": 1, "height": 2}));
        let Ok(spec) = spec else { panic!("{spec:?}") };
        let stored = serde_json::to_string(&spec).unwrap_or_default();
        let back: Result<JobSpec, _> = serde_json::from_str(&stored);
        assert_eq!(back.ok(), Some(spec));
    }
}
