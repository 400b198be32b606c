//! HEIC/HEIF/AVIF decoding and AVIF encoding through the system libheif (feature `heif`).
//!
//! libheif is a C library (with libde265, dav1d and aom behind it), so it must only ever run in
//! a worker process: nothing in [`crate::sniff`] / [`crate::probe`] (the API process's calls)
//! reaches this module; only the full decode/encode entry points do ([`crate::transform`],
//! [`crate::pipeline`], [`crate::variants`], [`crate::analyze`]), which only `photo-jobs` calls.
//!
//! Orientation: HEIF stores rotation and mirroring as mandatory item properties (`irot`,
//! `imir`) which libheif applies while decoding; an EXIF `Orientation` tag inside a HEIF file
//! describes the same rotation again (Apple writes both), so it is never applied on top — that
//! would rotate twice. The width and height we check against the limits are those of the
//! transformed image, read from the container before any pixel is decoded.

use std::sync::OnceLock;

use libheif_rs::{
    Channel, ColorSpace, CompressionFormat, DecodingOptions, EncoderParameterValue, EncoderQuality,
    HeifContext, HeifError, HeifErrorCode, Image, LibHeif, RgbChroma,
};

use crate::{ImagingError, Limits};

/// One process-wide libheif initialisation (it is reference-counted by libheif; keeping one
/// reference alive avoids re-initialising the plugin registry for every image).
fn lib() -> &'static LibHeif {
    static LIB: OnceLock<LibHeif> = OnceLock::new();
    LIB.get_or_init(LibHeif::new)
}

fn heif_error(what: &str, e: &HeifError) -> ImagingError {
    match e.code {
        HeifErrorCode::UnsupportedFileType | HeifErrorCode::UnsupportedFeature => {
            ImagingError::Corrupt(format!("{what}: unsupported HEIF content: {}", e.message))
        }
        HeifErrorCode::MemoryAllocationError => ImagingError::TooLarge {
            width: 0,
            height: 0,
            reason: format!("{what}: {}", e.message),
        },
        _ => ImagingError::Corrupt(format!("{what}: {}", e.message)),
    }
}

/// A decoded HEIF/AVIF primary image: 8-bit, oriented, tightly packed.
#[derive(Debug)]
pub(crate) struct HeifImage {
    pub width: u32,
    pub height: u32,
    /// RGBA when true, else RGB.
    pub alpha: bool,
    pub data: Vec<u8>,
    /// The embedded ICC profile (`colr` of type `prof`/`rICC`), if any.
    pub icc: Option<Vec<u8>>,
}

/// Decodes the primary image of a HEIF/AVIF file to 8-bit RGB(A), with its `irot`/`imir`
/// transformations applied (see the module docs).
///
/// The container is parsed first (no pixel data), and the primary image's size is checked
/// against `limits` (and the decoded buffer against `max_alloc_bytes`) before decoding.
pub(crate) fn decode(bytes: &[u8], limits: &Limits) -> Result<HeifImage, ImagingError> {
    let lib = lib();
    let mut ctx = HeifContext::read_from_bytes(bytes).map_err(|e| heif_error("heif", &e))?;
    // The worker pool already runs one job per core: no extra threads per image.
    ctx.set_max_decoding_threads(1);
    let handle = ctx
        .primary_image_handle()
        .map_err(|e| heif_error("heif primary image", &e))?;
    let (width, height) = (handle.width(), handle.height());
    if width == 0 || height == 0 {
        return Err(ImagingError::Corrupt(format!(
            "image declares a zero dimension ({width}x{height})"
        )));
    }
    limits.check_source(width, height)?;
    let alpha = handle.has_alpha_channel();
    let channels: u64 = if alpha { 4 } else { 3 };
    let total = u64::from(width) * u64::from(height) * channels;
    // libheif keeps the decoded YCbCr planes as well as the RGB result: count both.
    if total.saturating_mul(2) > limits.max_alloc_bytes {
        return Err(ImagingError::TooLarge {
            width,
            height,
            reason: format!(
                "decoding needs about {} bytes, above the allocation limit of {}",
                total.saturating_mul(2),
                limits.max_alloc_bytes
            ),
        });
    }
    let icc = handle
        .color_profile_raw()
        .map(|p| p.data)
        .filter(|p| crate::transform::is_rgb_icc(p));

    let mut options = DecodingOptions::new()
        .ok_or_else(|| ImagingError::Corrupt("heif: out of memory".into()))?;
    options.set_convert_hdr_to_8bit(true);
    options.set_ignore_transformations(false);
    let chroma = if alpha {
        RgbChroma::Rgba
    } else {
        RgbChroma::Rgb
    };
    let image = lib
        .decode(&handle, ColorSpace::Rgb(chroma), Some(options))
        .map_err(|e| heif_error("heif decode", &e))?;
    let (w, h) = (image.width(), image.height());
    if (w, h) != (width, height) {
        return Err(ImagingError::Corrupt(format!(
            "heif: decoded {w}x{h}, the header said {width}x{height}"
        )));
    }
    let planes = image.planes();
    let plane = planes
        .interleaved
        .ok_or_else(|| ImagingError::Corrupt("heif: no interleaved plane decoded".into()))?;
    if plane.bits_per_pixel != 8 && plane.storage_bits_per_pixel != 8 * channels as u8 {
        return Err(ImagingError::Corrupt(format!(
            "heif: unexpected {}-bit output",
            plane.bits_per_pixel
        )));
    }
    let row = width as usize * channels as usize;
    let mut data = Vec::with_capacity(row * height as usize);
    for y in 0..height as usize {
        let start = y * plane.stride;
        let src = plane
            .data
            .get(start..start + row)
            .ok_or_else(|| ImagingError::Corrupt("heif: decoded plane too small".into()))?;
        data.extend_from_slice(src);
    }
    Ok(HeifImage {
        width,
        height,
        alpha,
        data,
        icc,
    })
}

/// Slowest (best) to fastest libaom speed setting.
pub const AVIF_SPEED_MAX: u8 = 9;

/// Encodes 8-bit RGB(A) as AVIF (AV1 through libaom) at `quality` 1..=100 and libaom `speed`
/// 0..=9 (0 slowest and smallest), embedding `icc` when given.
pub(crate) fn encode_avif(
    data: &[u8],
    width: u32,
    height: u32,
    alpha: bool,
    quality: u8,
    speed: u8,
    icc: Option<&[u8]>,
) -> Result<Vec<u8>, ImagingError> {
    let enc_err = |what: &str, e: HeifError| ImagingError::Encode(format!("avif {what}: {e}"));
    let lib = lib();
    let channels = if alpha { 4 } else { 3 };
    let row = width as usize * channels;
    if data.len() != row * height as usize {
        return Err(ImagingError::Encode("avif: wrong buffer size".into()));
    }
    let chroma = if alpha {
        RgbChroma::Rgba
    } else {
        RgbChroma::Rgb
    };
    let mut image =
        Image::new(width, height, ColorSpace::Rgb(chroma)).map_err(|e| enc_err("image", e))?;
    image
        .create_plane(Channel::Interleaved, width, height, 8)
        .map_err(|e| enc_err("plane", e))?;
    {
        let mut planes = image.planes_mut();
        let plane = planes
            .interleaved
            .as_mut()
            .ok_or_else(|| ImagingError::Encode("avif: no plane".into()))?;
        let stride = plane.stride;
        for (y, src) in data.chunks_exact(row).enumerate() {
            let dst = plane
                .data
                .get_mut(y * stride..y * stride + row)
                .ok_or_else(|| ImagingError::Encode("avif: plane too small".into()))?;
            dst.copy_from_slice(src);
        }
    }
    if let Some(icc) = icc {
        let profile =
            libheif_rs::ColorProfileRaw::new(libheif_rs::color_profile_types::PROF, icc.to_vec());
        // An unusable profile is not an error: the image is still valid (as for JPEG/PNG).
        let _ = image.set_color_profile_raw(&profile);
    }
    let mut encoder = lib
        .encoder_for_format(CompressionFormat::Av1)
        .map_err(|e| enc_err("encoder (no AV1 encoder in this libheif)", e))?;
    encoder
        .set_quality(EncoderQuality::Lossy(quality.min(100)))
        .map_err(|e| enc_err("quality", e))?;
    encoder
        .set_parameter_value(
            "speed",
            EncoderParameterValue::Int(i32::from(speed.min(AVIF_SPEED_MAX))),
        )
        .map_err(|e| enc_err("speed", e))?;
    // One job per core already: libaom must not add threads of its own.
    encoder
        .set_parameter_value("threads", EncoderParameterValue::Int(1))
        .map_err(|e| enc_err("threads", e))?;
    let mut ctx = HeifContext::new().map_err(|e| enc_err("context", e))?;
    ctx.encode_image(&image, &mut encoder, None)
        .map_err(|e| enc_err("encode", e))?;
    ctx.write_to_bytes().map_err(|e| enc_err("write", e))
}
