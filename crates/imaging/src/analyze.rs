//! Image analysis: dimensions, frames, EXIF summary, blurhash, perceptual
//! hash, dominant colours, SHA-256.

use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};

use image::{DynamicImage, ImageDecoder, ImageReader};
use sha2::{Digest, Sha256};

use crate::ops::resize::{downscale_rgba, resize_region};
use crate::{ImageFormat, ImagingError, Limits, probe};

/// Largest raw EXIF block we parse (JPEG's APP1 is ≤ 64 KiB anyway).
const MAX_EXIF_BYTES: usize = 1 << 20;
/// Most dominant colours one may ask for.
pub const MAX_DOMINANT_COLORS: usize = 8;

/// What [`analyze_with`] computes beyond the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnalyzeOptions {
    /// Include the GPS position in [`ExifSummary::gps`] (default false).
    pub keep_gps: bool,
    /// Number of dominant colours, 1..=[`MAX_DOMINANT_COLORS`] (default 5).
    pub dominant_colors: usize,
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        AnalyzeOptions {
            keep_gps: false,
            dominant_colors: 5,
        }
    }
}

/// A GPS position from EXIF (only with [`AnalyzeOptions::keep_gps`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpsPosition {
    /// Degrees, north positive.
    pub latitude: f64,
    /// Degrees, east positive.
    pub longitude: f64,
    /// Metres above sea level, when recorded.
    pub altitude_m: Option<f64>,
}

/// The EXIF fields worth showing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ExifSummary {
    /// Camera maker.
    pub make: Option<String>,
    /// Camera model.
    pub model: Option<String>,
    /// `DateTimeOriginal` (or `DateTime`), as written (`YYYY:MM:DD HH:MM:SS`).
    pub datetime: Option<String>,
    /// Orientation tag 1..=8 as stored.
    pub orientation: Option<u16>,
    /// Exposure time as a fraction, e.g. `1/250`.
    pub exposure_time: Option<String>,
    /// F-number, e.g. 2.8.
    pub f_number: Option<f64>,
    /// ISO speed.
    pub iso: Option<u32>,
    /// Focal length in millimetres.
    pub focal_length_mm: Option<f64>,
    /// GPS position; `None` unless [`AnalyzeOptions::keep_gps`].
    pub gps: Option<GpsPosition>,
}

/// One dominant colour and the share of (opaque) pixels closest to it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DominantColor {
    /// sRGB colour.
    pub rgb: [u8; 3],
    /// 0..=1.
    pub fraction: f32,
}

/// Result of [`analyze`].
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// Sniffed format.
    pub format: ImageFormat,
    /// Width as displayed (after EXIF orientation).
    pub width: u32,
    /// Height as displayed (after EXIF orientation).
    pub height: u32,
    /// Number of frames (animated GIF, WebP, APNG); 1 for still images.
    pub frames: u32,
    /// Some pixel is not fully opaque.
    pub has_alpha: bool,
    /// EXIF summary, when the image has parseable EXIF.
    pub exif: Option<ExifSummary>,
    /// BlurHash placeholder (4×3 components, 3×4 for portrait).
    pub blurhash: String,
    /// 64-bit difference hash; compare with [`hamming_distance`].
    pub dhash: u64,
    /// Dominant colours, most common first.
    pub dominant_colors: Vec<DominantColor>,
    /// SHA-256 of the input bytes, lowercase hex.
    pub sha256: String,
}

/// Number of differing bits between two perceptual hashes (0..=64).
/// Near-duplicates typically differ in fewer than ~10 bits.
pub fn hamming_distance(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

/// [`analyze_with`] with the default options (no GPS, 5 colours).
pub fn analyze(bytes: &[u8], limits: &Limits) -> Result<Analysis, ImagingError> {
    analyze_with(bytes, &AnalyzeOptions::default(), limits)
}

/// Decodes (with limits) and analyses an image. Pure; never panics.
pub fn analyze_with(
    bytes: &[u8],
    opts: &AnalyzeOptions,
    limits: &Limits,
) -> Result<Analysis, ImagingError> {
    if !(1..=MAX_DOMINANT_COLORS).contains(&opts.dominant_colors) {
        return Err(ImagingError::InvalidParameters(format!(
            "dominant_colors must be 1..={MAX_DOMINANT_COLORS}"
        )));
    }
    let info = probe(bytes, limits)?;
    let (img, _) = crate::transform::decode_image(bytes, limits, true, false)?;
    let exif = catch_unwind(AssertUnwindSafe(|| {
        read_exif(bytes, info.format, limits, opts.keep_gps)
    }))
    .unwrap_or(None);
    // Counted by `probe` from the container structure, within the frame limits.
    let frames = info.frames.max(1);
    let sha256 = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    catch_unwind(AssertUnwindSafe(|| {
        Ok(Analysis {
            format: info.format,
            width: img.width(),
            height: img.height(),
            frames,
            has_alpha: img.color().has_alpha(),
            exif,
            blurhash: blurhash_of(&img)?,
            dhash: dhash(&img)?,
            dominant_colors: dominant_colors(&img, opts.dominant_colors)?,
            sha256,
        })
    }))
    .map_err(|_| ImagingError::Encode("analysis panicked".into()))?
}

fn blurhash_of(img: &DynamicImage) -> Result<String, ImagingError> {
    let small = downscale_rgba(img, 32)?;
    let flat = crate::encode::flatten(DynamicImage::ImageRgba8(small), [255, 255, 255]).to_rgba8();
    let (cx, cy) = if flat.width() >= flat.height() {
        (4, 3)
    } else {
        (3, 4)
    };
    blurhash::encode(cx, cy, flat.width(), flat.height(), flat.as_raw())
        .map_err(|e| ImagingError::Encode(format!("blurhash: {e:?}")))
}

/// dHash: 9×8 greyscale (aspect squashed, alpha flattened onto white);
/// bit `y*8+x` is set when pixel `x` is brighter than pixel `x+1`.
pub(crate) fn dhash(img: &DynamicImage) -> Result<u64, ImagingError> {
    let small = resize_region(img, (0, 0, img.width(), img.height()), 9, 8)?;
    let grey = crate::encode::flatten(small, [255, 255, 255]).to_luma8();
    let mut hash = 0u64;
    for y in 0..8u32 {
        for x in 0..8u32 {
            let (Some(l), Some(r)) = (
                grey.get_pixel_checked(x, y),
                grey.get_pixel_checked(x + 1, y),
            ) else {
                continue;
            };
            if l.0[0] > r.0[0] {
                hash |= 1 << (y * 8 + x);
            }
        }
    }
    Ok(hash)
}

/// K-means (k-means++ init with a fixed seed, ≤ 20 Lloyd rounds) on a
/// ≤ 64×64 copy, ignoring pixels with alpha < 128.
fn dominant_colors(img: &DynamicImage, k: usize) -> Result<Vec<DominantColor>, ImagingError> {
    let small = downscale_rgba(img, 64)?;
    let pts: Vec<[f32; 3]> = small
        .pixels()
        .filter(|p| p.0[3] >= 128)
        .map(|p| [f32::from(p.0[0]), f32::from(p.0[1]), f32::from(p.0[2])])
        .collect();
    if pts.is_empty() {
        return Ok(Vec::new());
    }
    let d2 = |a: &[f32; 3], b: &[f32; 3]| -> f32 {
        (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)
    };
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    // k-means++ seeding.
    let mut centres: Vec<[f32; 3]> = Vec::with_capacity(k);
    let first = pts.get(pts.len() / 2).copied().unwrap_or([0.0; 3]);
    centres.push(first);
    let mut dist: Vec<f32> = pts.iter().map(|p| d2(p, &first)).collect();
    while centres.len() < k {
        let total: f64 = dist.iter().map(|&d| f64::from(d)).sum();
        if total <= 0.0 {
            break; // fewer distinct colours than k
        }
        let target = (next() >> 11) as f64 / (1u64 << 53) as f64 * total;
        let mut acc = 0.0;
        let mut pick = pts.len() - 1;
        for (i, &d) in dist.iter().enumerate() {
            acc += f64::from(d);
            if acc >= target && d > 0.0 {
                pick = i;
                break;
            }
        }
        let c = pts.get(pick).copied().unwrap_or(first);
        centres.push(c);
        for (d, p) in dist.iter_mut().zip(&pts) {
            *d = d.min(d2(p, &c));
        }
    }
    let nearest = |p: &[f32; 3], centres: &[[f32; 3]]| -> usize {
        let mut best = (0, f32::INFINITY);
        for (i, c) in centres.iter().enumerate() {
            let d = d2(p, c);
            if d < best.1 {
                best = (i, d);
            }
        }
        best.0
    };
    let mut counts = vec![0usize; centres.len()];
    for _ in 0..20 {
        let mut sums = vec![[0f64; 3]; centres.len()];
        counts.iter_mut().for_each(|c| *c = 0);
        for p in &pts {
            let i = nearest(p, &centres);
            if let (Some(s), Some(n)) = (sums.get_mut(i), counts.get_mut(i)) {
                for c in 0..3 {
                    s[c] += f64::from(p[c]);
                }
                *n += 1;
            }
        }
        let mut moved = false;
        for ((c, s), &n) in centres.iter_mut().zip(&sums).zip(&counts) {
            if n == 0 {
                continue;
            }
            let new = [
                (s[0] / n as f64) as f32,
                (s[1] / n as f64) as f32,
                (s[2] / n as f64) as f32,
            ];
            if d2(c, &new) > 0.01 {
                moved = true;
            }
            *c = new;
        }
        if !moved {
            break;
        }
    }
    let total = pts.len() as f32;
    let mut out: Vec<(usize, [u8; 3])> = centres
        .iter()
        .zip(&counts)
        .filter(|(_, n)| **n > 0)
        .map(|(c, &n)| {
            let q = |v: f32| v.round().clamp(0.0, 255.0) as u8;
            (n, [q(c[0]), q(c[1]), q(c[2])])
        })
        .collect();
    out.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    Ok(out
        .into_iter()
        .map(|(n, rgb)| DominantColor {
            rgb,
            fraction: n as f32 / total,
        })
        .collect())
}

fn read_exif(
    bytes: &[u8],
    format: ImageFormat,
    limits: &Limits,
    keep_gps: bool,
) -> Option<ExifSummary> {
    let img_format = match format {
        ImageFormat::Jpeg => image::ImageFormat::Jpeg,
        ImageFormat::Png => image::ImageFormat::Png,
        ImageFormat::Webp => image::ImageFormat::WebP,
        ImageFormat::Tiff => image::ImageFormat::Tiff,
        // HEIF EXIF lives in an item libheif would have to read: not summarised yet.
        ImageFormat::Gif | ImageFormat::Heic | ImageFormat::Heif | ImageFormat::Avif => {
            return None;
        }
    };
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_image_width = Some(limits.max_width);
    decoder_limits.max_image_height = Some(limits.max_height);
    // Only headers are read here; the pixel decode has its own checks.
    decoder_limits.max_alloc = Some(limits.max_alloc_bytes);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), img_format);
    reader.limits(decoder_limits);
    let mut decoder = reader.into_decoder().ok()?;
    let raw = decoder.exif_metadata().ok().flatten()?;
    if raw.is_empty() || raw.len() > MAX_EXIF_BYTES {
        return None;
    }
    let exif = match exif::Reader::new().continue_on_error(true).read_raw(raw) {
        Ok(e) => e,
        Err(exif::Error::PartialResult(p)) => p.into_inner().0,
        Err(_) => return None,
    };
    Some(summarise(&exif, keep_gps))
}

fn ascii(exif: &exif::Exif, tag: exif::Tag) -> Option<String> {
    let f = exif.get_field(tag, exif::In::PRIMARY)?;
    let exif::Value::Ascii(ref parts) = f.value else {
        return None;
    };
    let s = String::from_utf8_lossy(parts.first()?);
    let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!s.is_empty()).then(|| s.chars().take(256).collect())
}

fn rationals(exif: &exif::Exif, tag: exif::Tag) -> Option<Vec<f64>> {
    let f = exif.get_field(tag, exif::In::PRIMARY)?;
    match f.value {
        exif::Value::Rational(ref v) => Some(
            v.iter()
                .filter(|r| r.denom != 0)
                .map(|r| f64::from(r.num) / f64::from(r.denom))
                .collect(),
        ),
        exif::Value::SRational(ref v) => Some(
            v.iter()
                .filter(|r| r.denom != 0)
                .map(|r| f64::from(r.num) / f64::from(r.denom))
                .collect(),
        ),
        _ => None,
    }
}

fn summarise(exif: &exif::Exif, keep_gps: bool) -> ExifSummary {
    use exif::Tag;
    let uint = |tag: Tag| {
        exif.get_field(tag, exif::In::PRIMARY)
            .and_then(|f| f.value.get_uint(0))
    };
    let first = |tag: Tag| rationals(exif, tag).and_then(|v| v.first().copied());
    let exposure_time = exif
        .get_field(Tag::ExposureTime, exif::In::PRIMARY)
        .and_then(|f| match f.value {
            exif::Value::Rational(ref v) => v.first().copied(),
            _ => None,
        })
        .filter(|r| r.denom != 0)
        .map(|r| {
            if r.num == 0 {
                "0".to_string()
            } else if r.num < r.denom && r.denom % r.num == 0 {
                format!("1/{}", r.denom / r.num)
            } else if r.num % r.denom == 0 {
                format!("{}", r.num / r.denom)
            } else {
                format!("{}/{}", r.num, r.denom)
            }
        });
    let gps = if keep_gps { gps(exif) } else { None };
    ExifSummary {
        make: ascii(exif, Tag::Make),
        model: ascii(exif, Tag::Model),
        datetime: ascii(exif, Tag::DateTimeOriginal).or_else(|| ascii(exif, Tag::DateTime)),
        orientation: uint(Tag::Orientation).and_then(|v| u16::try_from(v).ok()),
        exposure_time,
        f_number: first(Tag::FNumber),
        iso: uint(Tag::PhotographicSensitivity),
        focal_length_mm: first(Tag::FocalLength),
        gps,
    }
}

fn gps(exif: &exif::Exif) -> Option<GpsPosition> {
    use exif::Tag;
    let dms = |tag: Tag| -> Option<f64> {
        let v = rationals(exif, tag)?;
        let d = *v.first()?;
        let m = v.get(1).copied().unwrap_or(0.0);
        let s = v.get(2).copied().unwrap_or(0.0);
        Some(d + m / 60.0 + s / 3600.0)
    };
    let sign = |tag: Tag, neg: &str| -> f64 {
        if ascii(exif, tag).is_some_and(|r| r.eq_ignore_ascii_case(neg)) {
            -1.0
        } else {
            1.0
        }
    };
    let latitude = dms(Tag::GPSLatitude)? * sign(Tag::GPSLatitudeRef, "S");
    let longitude = dms(Tag::GPSLongitude)? * sign(Tag::GPSLongitudeRef, "W");
    if !(-90.0..=90.0).contains(&latitude) || !(-180.0..=180.0).contains(&longitude) {
        return None;
    }
    let below = exif
        .get_field(Tag::GPSAltitudeRef, exif::In::PRIMARY)
        .and_then(|f| f.value.get_uint(0))
        == Some(1);
    let altitude_m = rationals(exif, Tag::GPSAltitude)
        .and_then(|v| v.first().copied())
        .map(|a| if below { -a } else { a });
    Some(GpsPosition {
        latitude,
        longitude,
        altitude_m,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hamming() {
        assert_eq!(hamming_distance(0, 0), 0);
        assert_eq!(hamming_distance(0, u64::MAX), 64);
        assert_eq!(hamming_distance(0b1011, 0b0001), 2);
    }
}
