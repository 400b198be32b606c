//! Pipeline and variants API: one decode (+ orientation), then a list of
//! operations, then one or several encodes.
//!
//! Working images are always 8-bit RGB or RGBA [`DynamicImage`]s.

mod crop;
mod filter;
mod overlay;
pub(crate) mod resize;

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};

use image::DynamicImage;

use crate::encode::{EncodeOptions, encode_image};
use crate::{Encoded, Fit, ImagingError, Limits};

/// Largest blur / sharpen sigma accepted.
pub const MAX_SIGMA: f32 = 50.0;
/// Largest unsharp-mask amount accepted.
pub const MAX_SHARPEN_AMOUNT: f32 = 10.0;
/// Most operations in one [`Pipeline`] (or one [`VariantSpec`]).
pub const MAX_OPERATIONS: usize = 64;
/// Most outputs of one [`variants`] call.
pub const MAX_VARIANTS: usize = 32;

/// Where to anchor a crop window, a `contain` image on its canvas or an overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Gravity {
    /// Centred on both axes.
    #[default]
    Centre,
    /// Top edge, centred horizontally.
    North,
    /// Bottom edge, centred horizontally.
    South,
    /// Right edge, centred vertically.
    East,
    /// Left edge, centred vertically.
    West,
    /// Top-right corner.
    NorthEast,
    /// Top-left corner.
    NorthWest,
    /// Bottom-right corner.
    SouthEast,
    /// Bottom-left corner.
    SouthWest,
}

impl Gravity {
    /// Top-left offset of an `inner` box placed in an `outer` box
    /// (0 on an axis where inner is not smaller).
    pub(crate) fn offset(self, outer: (u32, u32), inner: (u32, u32)) -> (u32, u32) {
        use Gravity::*;
        let fx: u64 = match self {
            West | NorthWest | SouthWest => 0,
            East | NorthEast | SouthEast => 2,
            Centre | North | South => 1,
        };
        let fy: u64 = match self {
            North | NorthEast | NorthWest => 0,
            South | SouthEast | SouthWest => 2,
            Centre | East | West => 1,
        };
        let dx = u64::from(outer.0.saturating_sub(inner.0));
        let dy = u64::from(outer.1.saturating_sub(inner.1));
        let half = |d: u64, f: u64| u32::try_from(d * f / 2).unwrap_or(0);
        (half(dx, fx), half(dy, fy))
    }
}

/// How `cover` chooses the part of the image to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CropStrategy {
    /// A fixed position (default: centre, the existing behaviour).
    Gravity(Gravity),
    /// The window with the highest Shannon entropy of luminance
    /// (libvips `interesting=entropy`).
    Entropy,
    /// The window with the most "interesting" pixels: edges, saturated
    /// colour and skin tones (libvips `interesting=attention`, simplified).
    Attention,
}

impl Default for CropStrategy {
    fn default() -> Self {
        CropStrategy::Gravity(Gravity::Centre)
    }
}

/// A resize in the semantics of [`crate::Transform`] (same fit modes and
/// no-upscale rule), plus where `cover` crops and `contain` places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resize {
    /// Target box width; `None` = follow from aspect ratio.
    pub width: Option<u32>,
    /// Target box height; `None` = follow from aspect ratio.
    pub height: Option<u32>,
    /// Fit mode when both dimensions are given.
    pub fit: Fit,
    /// Allow enlarging beyond the source size.
    pub upscale: bool,
    /// `cover`: which window to keep; `contain`: the gravity places the image
    /// on the canvas (smart strategies place it centred).
    pub position: CropStrategy,
}

/// Quarter turns, clockwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rotation {
    /// 90° clockwise.
    Deg90,
    /// 180°.
    Deg180,
    /// 270° clockwise (90° counter-clockwise).
    Deg270,
}

/// An image composited on top of the working image.
#[derive(Clone, PartialEq)]
pub struct Overlay {
    /// The encoded overlay (any input format; its alpha is honoured).
    pub image: Vec<u8>,
    /// Where to place it.
    pub gravity: Gravity,
    /// 0.0..=1.0, multiplied with the overlay's own alpha.
    pub opacity: f32,
    /// Distance in pixels from the edges it is anchored to.
    pub margin: u32,
    /// Overlay width as a fraction of the base width, 0 < scale <= 1
    /// (aspect kept; also shrunk to fit within the base height).
    pub scale: f32,
}

impl std::fmt::Debug for Overlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay")
            .field("image", &format_args!("<{} bytes>", self.image.len()))
            .field("gravity", &self.gravity)
            .field("opacity", &self.opacity)
            .field("margin", &self.margin)
            .field("scale", &self.scale)
            .finish()
    }
}

/// One step of a [`Pipeline`].
#[derive(Debug, Clone, PartialEq)]
pub enum Operation {
    /// Keep the box `x, y, width × height` (current pixels; must lie inside).
    Crop {
        /// Left edge.
        x: u32,
        /// Top edge.
        y: u32,
        /// Box width (≥ 1).
        width: u32,
        /// Box height (≥ 1).
        height: u32,
    },
    /// Resize / fit.
    Resize(Resize),
    /// Rotate by quarter turns.
    Rotate(Rotation),
    /// Mirror top ↔ bottom (sharp's `flip`).
    Flip,
    /// Mirror left ↔ right (sharp's `flop`).
    Flop,
    /// Gaussian blur, `0 < sigma <= MAX_SIGMA`.
    Blur {
        /// Standard deviation in pixels.
        sigma: f32,
    },
    /// Unsharp mask: `out = in + amount * (in - blur(in, sigma))`.
    Sharpen {
        /// Blur sigma, `0 < sigma <= MAX_SIGMA`.
        sigma: f32,
        /// Strength, `0 < amount <= MAX_SHARPEN_AMOUNT`.
        amount: f32,
    },
    /// Composite onto an opaque background colour (drops alpha).
    Flatten {
        /// RGB background.
        background: [u8; 3],
    },
    /// Composite another image on top (watermark).
    Overlay(Overlay),
}

/// Decode → orient → operations → encode.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    /// Apply EXIF orientation first (default true).
    pub auto_orient: bool,
    /// Applied in order.
    pub operations: Vec<Operation>,
    /// Output encoding.
    pub output: EncodeOptions,
}

impl Default for Pipeline {
    fn default() -> Self {
        Pipeline {
            auto_orient: true,
            operations: Vec::new(),
            output: EncodeOptions::default(),
        }
    }
}

/// One named output of [`variants`].
#[derive(Debug, Clone, PartialEq)]
pub struct VariantSpec {
    /// Name returned with the output; non-empty, ≤ 128 bytes, unique per call.
    pub name: String,
    /// Resize applied to the (oriented) source.
    pub resize: Resize,
    /// Further operations after the resize (e.g. sharpen, overlay).
    pub operations: Vec<Operation>,
    /// Output encoding.
    pub output: EncodeOptions,
}

impl VariantSpec {
    /// A variant that fits the source into `width × height` with `fit`.
    pub fn new(
        name: impl Into<String>,
        width: Option<u32>,
        height: Option<u32>,
        fit: Fit,
        output: EncodeOptions,
    ) -> Self {
        VariantSpec {
            name: name.into(),
            resize: Resize {
                width,
                height,
                fit,
                ..Resize::default()
            },
            operations: Vec::new(),
            output,
        }
    }
}

fn invalid<T>(m: impl Into<String>) -> Result<T, ImagingError> {
    Err(ImagingError::InvalidParameters(m.into()))
}

/// Checks everything that does not depend on the image.
fn validate_ops(ops: &[Operation], limits: &Limits) -> Result<(), ImagingError> {
    if ops.len() > MAX_OPERATIONS {
        return invalid(format!(
            "at most {MAX_OPERATIONS} operations, got {}",
            ops.len()
        ));
    }
    let sigma_ok = |s: f32| s.is_finite() && s > 0.0 && s <= MAX_SIGMA;
    for op in ops {
        match op {
            Operation::Crop { width, height, .. } => {
                if *width == 0 || *height == 0 {
                    return invalid("crop width and height must be at least 1");
                }
            }
            Operation::Resize(r) => resize::validate(r, limits)?,
            Operation::Blur { sigma } => {
                if !sigma_ok(*sigma) {
                    return invalid(format!("blur sigma must be in (0, {MAX_SIGMA}]"));
                }
            }
            Operation::Sharpen { sigma, amount } => {
                if !sigma_ok(*sigma) {
                    return invalid(format!("sharpen sigma must be in (0, {MAX_SIGMA}]"));
                }
                if !(amount.is_finite() && *amount > 0.0 && *amount <= MAX_SHARPEN_AMOUNT) {
                    return invalid(format!(
                        "sharpen amount must be in (0, {MAX_SHARPEN_AMOUNT}]"
                    ));
                }
            }
            Operation::Overlay(o) => overlay::validate(o)?,
            Operation::Rotate(_)
            | Operation::Flip
            | Operation::Flop
            | Operation::Flatten { .. } => {}
        }
    }
    Ok(())
}

fn apply(
    img: DynamicImage,
    op: &Operation,
    out: &EncodeOptions,
    limits: &Limits,
) -> Result<DynamicImage, ImagingError> {
    Ok(match op {
        Operation::Crop {
            x,
            y,
            width,
            height,
        } => crop::crop_box(&img, *x, *y, *width, *height)?,
        Operation::Resize(r) => resize::resize(&img, r, out, limits)?,
        Operation::Rotate(Rotation::Deg90) => img.rotate90(),
        Operation::Rotate(Rotation::Deg180) => img.rotate180(),
        Operation::Rotate(Rotation::Deg270) => img.rotate270(),
        Operation::Flip => img.flipv(),
        Operation::Flop => img.fliph(),
        Operation::Blur { sigma } => filter::blur(&img, *sigma),
        Operation::Sharpen { sigma, amount } => filter::sharpen(&img, *sigma, *amount),
        Operation::Flatten { background } => crate::encode::flatten(img, *background),
        Operation::Overlay(o) => overlay::overlay(img, o, limits)?,
    })
}

fn run_ops(
    mut img: DynamicImage,
    ops: &[Operation],
    out: &EncodeOptions,
    limits: &Limits,
) -> Result<DynamicImage, ImagingError> {
    for op in ops {
        img = apply(img, op, out, limits)?;
    }
    Ok(img)
}

/// Decode (with limits) → EXIF orientation → `pipeline.operations` in order → encode.
///
/// Parameters are validated before decoding; an invalid one is
/// [`ImagingError::InvalidParameters`]. Never panics.
pub fn pipeline(
    bytes: &[u8],
    pipeline: &Pipeline,
    limits: &Limits,
) -> Result<Encoded, ImagingError> {
    validate_ops(&pipeline.operations, limits)?;
    pipeline.output.validate()?;
    // A leading resize lets JPEG sources shrink on load (the decoded image stays at least the
    // resize's size, so the result is the same).
    let shrink_hint = match pipeline.operations.first() {
        Some(Operation::Resize(r)) => Some(*r),
        _ => None,
    };
    let (img, icc) = crate::transform::decode_image_for(
        bytes,
        limits,
        pipeline.auto_orient,
        pipeline.output.keep_icc,
        shrink_hint.as_ref(),
    )?;
    catch_unwind(AssertUnwindSafe(|| {
        let img = run_ops(img, &pipeline.operations, &pipeline.output, limits)?;
        encode_image(img, &pipeline.output, icc.as_deref())
    }))
    .map_err(|_| ImagingError::Encode("processing panicked".into()))?
}

/// A source decoded once (with limits) and turned upright by its EXIF orientation: the input of
/// [`render_variants`], which renders any number of outputs from it without decoding again.
#[derive(Clone)]
pub struct DecodedImage {
    img: DynamicImage,
    icc: Option<Vec<u8>>,
}

impl DecodedImage {
    /// Width as displayed (after orientation).
    pub fn width(&self) -> u32 {
        self.img.width()
    }

    /// Height as displayed (after orientation).
    pub fn height(&self) -> u32 {
        self.img.height()
    }
}

impl std::fmt::Debug for DecodedImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodedImage")
            .field("width", &self.img.width())
            .field("height", &self.img.height())
            .field("icc", &self.icc.as_ref().map(Vec::len))
            .finish()
    }
}

/// Decodes `bytes` (with limits) and applies the EXIF orientation; keeps the ICC profile when
/// `keep_icc`. Never panics.
pub fn decode_oriented(
    bytes: &[u8],
    limits: &Limits,
    keep_icc: bool,
) -> Result<DecodedImage, ImagingError> {
    let (img, icc) = crate::transform::decode_image(bytes, limits, true, keep_icc)?;
    Ok(DecodedImage { img, icc })
}

/// A resize whose result needs at least as many source pixels as every spec's: the largest box
/// on each axis with fit `outside` (the mode that needs the most), never enlarging. Decoding for
/// it may shrink a JPEG or WebP on load and still leaves every variant its full resolution.
/// `None` (decode at full size) when a spec keeps the source size (neither width nor height).
fn shrink_hint(specs: &[VariantSpec]) -> Option<Resize> {
    if specs
        .iter()
        .any(|s| s.resize.width.is_none() && s.resize.height.is_none())
    {
        return None;
    }
    Some(Resize {
        width: specs.iter().filter_map(|s| s.resize.width).max(),
        height: specs.iter().filter_map(|s| s.resize.height).max(),
        fit: Fit::Outside,
        upscale: false,
        position: CropStrategy::default(),
    })
}

/// Checks `specs` ([`validate_variants`]), then decodes `bytes` once for all of them: with EXIF
/// orientation, the ICC profile when any spec keeps it, and shrunk on load (JPEG, WebP) only as
/// far as the largest variant allows. Never panics.
pub fn decode_for_variants(
    bytes: &[u8],
    specs: &[VariantSpec],
    limits: &Limits,
) -> Result<DecodedImage, ImagingError> {
    validate_variants(specs, limits)?;
    let keep_icc = specs.iter().any(|s| s.output.keep_icc);
    let (img, icc) = crate::transform::decode_image_for(
        bytes,
        limits,
        true,
        keep_icc,
        shrink_hint(specs).as_ref(),
    )?;
    Ok(DecodedImage { img, icc })
}

/// Checks a list of variant specs without any image: 1..=[`MAX_VARIANTS`] of them, names
/// non-empty, ≤ 128 bytes and unique, each resize, operation and encoding valid.
pub fn validate_variants(specs: &[VariantSpec], limits: &Limits) -> Result<(), ImagingError> {
    if specs.is_empty() {
        return invalid("at least one variant is required");
    }
    if specs.len() > MAX_VARIANTS {
        return invalid(format!(
            "at most {MAX_VARIANTS} variants, got {}",
            specs.len()
        ));
    }
    let mut names = HashSet::new();
    for spec in specs {
        if spec.name.is_empty() || spec.name.len() > 128 {
            return invalid("variant names must be 1..=128 bytes");
        }
        if !names.insert(spec.name.as_str()) {
            return invalid(format!("duplicate variant name {:?}", spec.name));
        }
        resize::validate(&spec.resize, limits)?;
        validate_ops(&spec.operations, limits)?;
        spec.output.validate()?;
    }
    Ok(())
}

/// For each spec, from the one decoded source: resize, its operations, encode. Outputs are
/// returned in the order of `specs`; fails as a whole if any spec is invalid or any output
/// fails. Never decodes: everything comes from `src`.
pub fn render_variants(
    src: &DecodedImage,
    specs: &[VariantSpec],
    limits: &Limits,
) -> Result<Vec<(String, Encoded)>, ImagingError> {
    validate_variants(specs, limits)?;
    catch_unwind(AssertUnwindSafe(|| {
        specs
            .iter()
            .map(|spec| {
                let img = resize::resize(&src.img, &spec.resize, &spec.output, limits)?;
                let img = run_ops(img, &spec.operations, &spec.output, limits)?;
                let enc = encode_image(img, &spec.output, src.icc.as_deref())?;
                Ok((spec.name.clone(), enc))
            })
            .collect::<Result<Vec<_>, ImagingError>>()
    }))
    .map_err(|_| ImagingError::Encode("processing panicked".into()))?
}

/// One decode (+ EXIF orientation), then for each spec: resize, its
/// operations, encode. Outputs are returned in the order of `specs`.
///
/// Fails as a whole if any spec is invalid (checked before decoding) or
/// any output fails.
pub fn variants(
    bytes: &[u8],
    specs: &[VariantSpec],
    limits: &Limits,
) -> Result<Vec<(String, Encoded)>, ImagingError> {
    let src = decode_for_variants(bytes, specs, limits)?;
    render_variants(&src, specs, limits)
}
