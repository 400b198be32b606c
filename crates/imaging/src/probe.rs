//! Header-only inspection: magic bytes + `imagesize`. Never runs a codec.

use crate::{ImageFormat, ImageInfo, ImagingError, Limits};

/// Magic-number sniffing (never the declared type or extension).
///
/// Returns `None` when the bytes do not start like a supported image.
pub fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageFormat::Jpeg)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageFormat::Png)
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some(ImageFormat::Gif)
    } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        Some(ImageFormat::Webp)
    } else if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        Some(ImageFormat::Tiff)
    } else {
        heif_brand(bytes)
    }
}

/// HEIF family from the leading `ftyp` box: the major brand decides when it is specific,
/// else the compatible brands (an AV1 brand first: `mif1` + `avif` is AVIF), else a plain
/// `mif1`/`msf1` is generic HEIF. Anything else (MP4 video, QuickTime, JPEG 2000) is `None`.
fn heif_brand(bytes: &[u8]) -> Option<ImageFormat> {
    if bytes.get(4..8) != Some(b"ftyp".as_slice()) {
        return None;
    }
    let size = usize::try_from(u32::from_be_bytes(bytes.get(0..4)?.try_into().ok()?)).ok()?;
    let classify = |brand: &[u8]| match brand {
        b"avif" | b"avis" | b"avio" => Some(ImageFormat::Avif),
        b"heic" | b"heix" | b"heim" | b"heis" | b"hevc" | b"hevx" => Some(ImageFormat::Heic),
        _ => None,
    };
    let major = bytes.get(8..12)?;
    if let Some(f) = classify(major) {
        return Some(f);
    }
    // Compatible brands follow the minor version, up to the end of the box.
    let end = size.clamp(16, 16 + 4 * 64).min(bytes.len());
    let compatible: Vec<&[u8]> = bytes.get(16..end)?.chunks_exact(4).collect();
    for wanted in [ImageFormat::Avif, ImageFormat::Heic] {
        if compatible.iter().any(|b| classify(b) == Some(wanted)) {
            return Some(wanted);
        }
    }
    let generic = |b: &[u8]| matches!(b, b"mif1" | b"msf1" | b"mif2" | b"miaf");
    (generic(major) || compatible.iter().any(|b| generic(b))).then_some(ImageFormat::Heif)
}

/// Header only: sniff + dimensions (via `imagesize`) + frame count + limit checks.
///
/// Does not decode pixel data. `bytes` may be only a prefix of the file
/// (e.g. the first 256 KiB); the dimensions must be within it. The reported
/// dimensions are the stored ones, before EXIF orientation.
///
/// Errors: [`ImagingError::UnsupportedFormat`] if the magic bytes are not a
/// supported image, [`ImagingError::Corrupt`] if the header is truncated or
/// invalid (or declares a zero dimension), [`ImagingError::TooLarge`] if the
/// declared dimensions, a frame's dimensions, the frame count or the pixels
/// summed over frames exceed `limits`.
///
/// Frames are counted by walking GIF blocks, PNG chunks (`acTL`/`fcTL`) and
/// WebP `ANMF` chunks without decompressing anything; the walk is linear in
/// `bytes.len()` and stops early once a limit is exceeded.
///
/// A JPEG whose end (EOI after the first scan) is within `bytes` and that
/// has less than one bit per 8×8 block of its declared size is
/// [`ImagingError::Corrupt`]: no Huffman-coded JPEG can be that small (each
/// block needs at least a DC code), so it is a truncated scan that the
/// decoder would silently fill in — the classic few-hundred-byte JPEG
/// that decodes to 100 megapixels.
pub fn probe(bytes: &[u8], limits: &Limits) -> Result<ImageInfo, ImagingError> {
    let format = sniff(bytes).ok_or(ImagingError::UnsupportedFormat)?;
    let size = std::panic::catch_unwind(|| imagesize::blob_size(bytes))
        .map_err(|_| ImagingError::Corrupt("unreadable image header".into()))?
        .map_err(|e| match e {
            imagesize::ImageError::NotSupported => {
                ImagingError::Corrupt(format!("unrecognised {} header", format.extension()))
            }
            imagesize::ImageError::CorruptedImage => {
                ImagingError::Corrupt(format!("corrupt {} header", format.extension()))
            }
            imagesize::ImageError::IoError(_) => ImagingError::Corrupt(format!(
                "truncated {} header (dimensions not found)",
                format.extension()
            )),
        })?;
    let too_big = |reason: &str| ImagingError::TooLarge {
        width: u32::try_from(size.width).unwrap_or(u32::MAX),
        height: u32::try_from(size.height).unwrap_or(u32::MAX),
        reason: reason.to_owned(),
    };
    let width = u32::try_from(size.width).map_err(|_| too_big("width does not fit in 32 bits"))?;
    let height =
        u32::try_from(size.height).map_err(|_| too_big("height does not fit in 32 bits"))?;
    if width == 0 || height == 0 {
        return Err(ImagingError::Corrupt(format!(
            "image declares a zero dimension ({width}x{height})"
        )));
    }
    limits.check_source(width, height)?;
    if format == ImageFormat::Jpeg {
        jpeg_check_density(bytes, width, height)?;
    }
    let frames = crate::frames::check(format, bytes, width, height, limits)?;
    Ok(ImageInfo {
        format,
        width,
        height,
        frames: frames.count,
    })
}

/// Refuses a complete JPEG with fewer bits than 8×8 blocks (see [`probe`]).
///
/// Walks the marker segments to the first SOS (so an EXIF thumbnail's EOI
/// does not count); without an EOI after it, `bytes` is a prefix and nothing
/// can be said.
fn jpeg_check_density(bytes: &[u8], width: u32, height: u32) -> Result<(), ImagingError> {
    let mut pos = 2usize;
    let scan = loop {
        if bytes.get(pos) != Some(&0xFF) {
            return Ok(());
        }
        while bytes.get(pos) == Some(&0xFF) {
            pos += 1;
        }
        let Some(&marker) = bytes.get(pos) else {
            return Ok(());
        };
        pos += 1;
        match marker {
            0x01 | 0xD0..=0xD7 => continue,
            0xD8 | 0xD9 => return Ok(()),
            _ => {}
        }
        let Some(len) = bytes
            .get(pos..pos + 2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        else {
            return Ok(());
        };
        pos += len;
        if marker == 0xDA {
            break pos;
        }
    };
    let complete = bytes
        .get(scan..)
        .is_some_and(|rest| rest.windows(2).any(|w| w == [0xFF, 0xD9]));
    let blocks = u64::from(width.div_ceil(8)) * u64::from(height.div_ceil(8));
    let bits = (bytes.len() as u64).saturating_mul(8);
    if complete && bits < blocks {
        return Err(ImagingError::Corrupt(format!(
            "{} bytes cannot encode a {width}x{height} JPEG ({blocks} blocks): truncated scan data",
            bytes.len()
        )));
    }
    Ok(())
}
