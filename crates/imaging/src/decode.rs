//! Fast decode paths: JPEG through libjpeg-turbo with shrink-on-load.
//!
//! When the target is much smaller than a JPEG source, libjpeg-turbo can
//! decode straight to 1/2, 1/4 or 1/8 of the size by scaling in the DCT
//! domain (the trick that makes libvips fast). We pick the largest reduction
//! that still leaves a factor of [`SHRINK_MARGIN`] for the final Lanczos3
//! pass (libvips' `thumbnail` leaves 2).
//!
//! For a 1/8 decode of a progressive JPEG, libjpeg-turbo uses only each luma
//! block's DC coefficient (and for 4:2:0 chroma, which it scales up in the
//! IDCT, the 2×2 lowest frequencies). In a progressive file those arrive in
//! their own scans (spectral selection `Ss`), apart from the bulk of the AC
//! data. We hand libjpeg-turbo a copy of the file without the scans it would
//! not use (but one low AC scan per component, see [`dc_scans_only`]): the
//! decoded pixels are identical, and most of the entropy decoding is skipped.
//!
//! Everything here is an optimisation: whenever this path declines (CMYK,
//! lossless or unusual JPEGs, libjpeg-turbo errors *or warnings*, anything
//! beyond the limits), [`jpeg`] returns `None` and the caller falls back to
//! the general `image`-crate decoder, which reports errors as before.

use image::metadata::Orientation;
use image::{DynamicImage, RgbImage};
use turbojpeg::{Colorspace, Decompressor, PixelFormat, ScalingFactor};

use crate::geometry;
use crate::{Limits, Transform};

/// A JPEG decoded to oriented 8-bit RGB.
#[derive(Debug)]
pub(crate) struct FastJpeg {
    /// Oriented width.
    pub width: u32,
    /// Oriented height.
    pub height: u32,
    /// Tightly packed RGB.
    pub rgb: Vec<u8>,
    /// The embedded ICC profile, only when metadata is kept (not checked for RGB).
    pub icc: Option<Vec<u8>>,
}

/// What the marker segments before the first scan say.
#[derive(Debug, Default)]
struct JpegHeader<'a> {
    width: u32,
    height: u32,
    components: u8,
    /// SOF2 (progressive Huffman).
    progressive: bool,
    /// SOF0, SOF1 or SOF2: the processes libjpeg-turbo can scale.
    scalable: bool,
    /// TIFF payload of the first `Exif\0\0` APP1.
    exif: Option<&'a [u8]>,
    /// `ICC_PROFILE` APP2 chunks: (sequence number, payload).
    icc_chunks: Vec<(u8, &'a [u8])>,
}

fn be16(bytes: &[u8], pos: usize) -> Option<usize> {
    bytes
        .get(pos..pos + 2)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
}

/// Walks the marker segments up to the first SOS. `None` on anything odd.
fn parse_header(bytes: &[u8]) -> Option<JpegHeader<'_>> {
    if bytes.get(..2) != Some(&[0xFF, 0xD8][..]) {
        return None;
    }
    let mut h = JpegHeader::default();
    let mut sof_seen = false;
    let mut pos = 2usize;
    loop {
        if *bytes.get(pos)? != 0xFF {
            return None;
        }
        while bytes.get(pos) == Some(&0xFF) {
            pos += 1;
        }
        let marker = *bytes.get(pos)?;
        pos += 1;
        match marker {
            0x01 | 0xD0..=0xD7 => continue,
            0xD8 | 0xD9 => return None,
            _ => {}
        }
        let len = be16(bytes, pos)?;
        if len < 2 {
            return None;
        }
        let body = bytes.get(pos + 2..pos + len)?;
        match marker {
            0xC0..=0xCF if marker != 0xC4 && marker != 0xC8 && marker != 0xCC => {
                if sof_seen {
                    return None;
                }
                sof_seen = true;
                if body.len() < 6 || body[0] != 8 {
                    return None; // 12-bit or broken
                }
                h.height = u32::try_from(be16(body, 1)?).ok()?;
                h.width = u32::try_from(be16(body, 3)?).ok()?;
                h.components = body[5];
                h.progressive = marker == 0xC2;
                h.scalable = matches!(marker, 0xC0..=0xC2);
            }
            0xE1 if h.exif.is_none() && body.starts_with(b"Exif\0\0") => {
                h.exif = body.get(6..);
            }
            0xE2 if body.starts_with(b"ICC_PROFILE\0") && body.len() >= 14 => {
                h.icc_chunks.push((body[12], &body[14..]));
            }
            0xDA => return sof_seen.then_some(h),
            _ => {}
        }
        pos += len;
    }
}

/// Reassembles a (possibly multi-chunk) ICC profile.
fn assemble_icc(mut chunks: Vec<(u8, &[u8])>) -> Option<Vec<u8>> {
    if chunks.is_empty() {
        return None;
    }
    chunks.sort_by_key(|c| c.0);
    let expected = (1..=chunks.len()).map(|i| u8::try_from(i).ok());
    if !chunks.iter().map(|c| Some(c.0)).eq(expected) {
        return None; // missing or duplicate chunks
    }
    Some(chunks.iter().flat_map(|c| c.1.iter().copied()).collect())
}

/// Highest zig-zag index libjpeg-turbo reads from a component's blocks when
/// decoding at 1/8 scale: it scales chroma up in the IDCT (jdmaster.c) rather
/// than upsampling, to an `n × n` IDCT that reads the top-left `n × n` block.
fn eighth_scale_max_zigzag(h: u8, v: u8, max_h: u8, max_v: u8) -> u8 {
    let (h, v, max_h, max_v) = (
        u32::from(h),
        u32::from(v),
        u32::from(max_h),
        u32::from(max_v),
    );
    let mut n = 1u32;
    while n < 8 && max_h % (h * n * 2) == 0 && max_v % (v * n * 2) == 0 {
        n *= 2;
    }
    match n {
        1 => 0,
        2 => 4,  // zig-zag 0, 1, 2, 4 = natural (0,0) (0,1) (1,0) (1,1)
        4 => 24, // the 4×4 corner ends at zig-zag 24
        _ => 63,
    }
}

/// A copy of a progressive JPEG without the AC scans a 1/8-scale decode does
/// not read (see [`eighth_scale_max_zigzag`]), keeping all headers, tables and
/// EOI. `None` if nothing can be dropped or the stream looks odd.
fn dc_scans_only(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len() / 4);
    out.extend_from_slice(bytes.get(..2)?);
    let mut pos = 2usize;
    let mut dropped_any = false;
    // (component id, highest zig-zag index needed, an AC scan kept)
    let mut needed: Vec<(u8, u8, bool)> = Vec::new();
    loop {
        if *bytes.get(pos)? != 0xFF {
            return None;
        }
        let start = pos;
        while bytes.get(pos) == Some(&0xFF) {
            pos += 1;
        }
        let marker = *bytes.get(pos)?;
        pos += 1;
        match marker {
            0xD9 => {
                out.extend_from_slice(&[0xFF, 0xD9]);
                return dropped_any.then_some(out);
            }
            0x01 | 0xD0..=0xD8 => return None,
            _ => {}
        }
        let len = be16(bytes, pos)?;
        if len < 2 {
            return None;
        }
        let seg_end = pos + len;
        let body = bytes.get(pos + 2..seg_end)?;
        if marker == 0xC2 {
            // SOF2: P, Y, X, Nf, Nf × (C, H/V, Tq)
            let nf = usize::from(*body.get(5)?);
            let comps: Vec<(u8, u8, u8)> = (0..nf)
                .map(|i| {
                    let c = body.get(6 + 3 * i..9 + 3 * i)?;
                    Some((c[0], c[1] >> 4, c[1] & 0x0F))
                })
                .collect::<Option<_>>()?;
            let max_h = comps.iter().map(|c| c.1).max()?;
            let max_v = comps.iter().map(|c| c.2).max()?;
            if comps.iter().any(|c| c.1 == 0 || c.2 == 0) {
                return None;
            }
            needed = comps
                .iter()
                .map(|&(id, h, v)| (id, eighth_scale_max_zigzag(h, v, max_h, max_v), false))
                .collect();
        }
        if marker != 0xDA {
            out.extend_from_slice(bytes.get(start..seg_end)?);
            pos = seg_end;
            continue;
        }
        // SOS: Ns, Ns × (Cs, Td/Ta), Ss, Se, Ah/Al.
        let ns = usize::from(*body.first()?);
        let ss = *body.get(1 + 2 * ns)?;
        let ah = *body.get(3 + 2 * ns)? >> 4;
        let mut keep = ss == 0;
        let mut first_low_ac = false;
        for i in 0..ns {
            let id = *body.get(1 + 2 * i)?;
            let c = needed.iter().find(|c| c.0 == id)?;
            keep |= ss <= c.1;
            // libjpeg-turbo's block smoothing rewrites the DC of blocks with
            // no AC data at all ("DC interpolation"): keep one low AC scan
            // per component so that the DC is left exactly as coded.
            first_low_ac |= ss > 0 && ss <= 9 && ah == 0 && !c.2;
        }
        keep |= first_low_ac;
        if keep && ss > 0 {
            for i in 0..ns {
                let id = *body.get(1 + 2 * i)?;
                if let Some(c) = needed.iter_mut().find(|c| c.0 == id) {
                    c.2 = true;
                }
            }
        }
        // Entropy-coded data runs to the next marker other than RSTn / stuffed 00.
        let mut end = seg_end;
        loop {
            let off = bytes.get(end..)?.iter().position(|&b| b == 0xFF)?;
            end += off;
            match *bytes.get(end + 1)? {
                0x00 | 0xD0..=0xD7 | 0xFF => end += 1,
                _ => break,
            }
        }
        if keep {
            out.extend_from_slice(bytes.get(start..end)?);
        } else {
            dropped_any = true;
        }
        pos = end;
    }
}

/// How much larger than the target the shrunk-on-load image must stay.
///
/// libvips' `thumbnail` keeps a factor of 2 for the final resize. Measured on
/// the bench/ corpus, 1.0 (decode to the smallest scale still ≥ the target)
/// is 1.3× (256 px) and 1.1× (1024 px) faster than 2.0, for a mean SSIM
/// against a full Lanczos reference 0.003 (256 px) and 0.001 (1024 px) below
/// libvips'; 1.5 matches libvips' SSIM. See the README's Benchmarks section.
const SHRINK_MARGIN: f64 = 1.0;

/// The DCT-domain reduction (1, 2, 4 or 8) for a total shrink of `shrink`:
/// the largest that leaves the decoded image at least [`SHRINK_MARGIN`]
/// times the target.
fn jpeg_shrink(shrink: f64) -> usize {
    [8, 4, 2]
        .into_iter()
        .find(|&k| shrink >= SHRINK_MARGIN * k as f64)
        .unwrap_or(1)
}

fn swaps_axes(o: Orientation) -> bool {
    matches!(
        o,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

/// Decodes a JPEG with libjpeg-turbo, shrinking on load when the target of
/// `op` is at least `2 × SHRINK_MARGIN` times smaller. `None`: not handled here, use the general path.
///
/// The caller has already checked the header against `limits` and that the
/// stream is not truncated.
pub(crate) fn jpeg(bytes: &[u8], op: &Transform, limits: &Limits) -> Option<FastJpeg> {
    let header = parse_header(bytes)?;
    if !header.scalable || !matches!(header.components, 1 | 3) {
        return None; // CMYK/YCCK, lossless, hierarchical, arithmetic: general path
    }
    let (w, h) = (header.width, header.height);
    if w == 0 || h == 0 || limits.check_source(w, h).is_err() {
        return None;
    }
    // RGB output, plus for progressive files libjpeg-turbo's whole-image
    // coefficient buffer (2 bytes per coefficient, at most 3 full planes).
    let px = u64::from(w) * u64::from(h);
    let coefficients = if header.progressive {
        px * 2 * u64::from(header.components)
    } else {
        0
    };
    if px * 3 + coefficients > limits.max_alloc_bytes {
        return None;
    }
    let orientation = if op.auto_orient {
        header
            .exif
            .and_then(Orientation::from_exif_chunk)
            .unwrap_or(Orientation::NoTransforms)
    } else {
        Orientation::NoTransforms
    };
    let (ow, oh) = if swaps_axes(orientation) {
        (h, w)
    } else {
        (w, h)
    };
    let plan = geometry::plan(ow, oh, op, limits).ok()?;
    let scale =
        (f64::from(plan.resize_w) / f64::from(ow)).max(f64::from(plan.resize_h) / f64::from(oh));
    let k = jpeg_shrink(1.0 / scale);

    let mut dec = Decompressor::new().ok()?;
    dec.set_scaling_factor(ScalingFactor::new(1, k)).ok()?;
    let mut rgb = None;
    if k == 8
        && header.progressive
        && let Some(dc) = dc_scans_only(bytes)
    {
        rgb = decompress_rgb(&mut dec, &dc);
    }
    let (dw, dh, data) = match rgb {
        Some(r) => r,
        None => decompress_rgb(&mut dec, bytes)?,
    };

    let (width, height, rgb) = if orientation == Orientation::NoTransforms {
        (dw, dh, data)
    } else {
        let mut img = DynamicImage::ImageRgb8(RgbImage::from_raw(dw, dh, data)?);
        img.apply_orientation(orientation);
        let buf = img.into_rgb8();
        (buf.width(), buf.height(), buf.into_raw())
    };
    // Always read: a stripped output is converted to sRGB with it (`crate::colour`).
    let icc = assemble_icc(header.icc_chunks);
    Some(FastJpeg {
        width,
        height,
        rgb,
        icc,
    })
}

/// Decompresses to RGB at the decompressor's scaling factor. Any error or
/// warning from libjpeg-turbo gives `None`.
fn decompress_rgb(dec: &mut Decompressor, data: &[u8]) -> Option<(u32, u32, Vec<u8>)> {
    let header = dec.read_header(data).ok()?;
    if !matches!(
        header.colorspace,
        Colorspace::YCbCr | Colorspace::Gray | Colorspace::RGB
    ) || header.is_lossless
    {
        return None;
    }
    let scaled = header.scaled(dec.scaling_factor());
    let (w, h) = (scaled.width, scaled.height);
    if w == 0 || h == 0 {
        return None;
    }
    let mut image = turbojpeg::Image {
        pixels: vec![0u8; w.checked_mul(h)?.checked_mul(3)?],
        width: w,
        pitch: w * 3,
        height: h,
        format: PixelFormat::RGB,
    };
    dec.decompress(data, image.as_deref_mut()).ok()?;
    Some((u32::try_from(w).ok()?, u32::try_from(h).ok()?, image.pixels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chroma_scaled_up_in_the_idct_needs_low_ac() {
        assert_eq!(eighth_scale_max_zigzag(2, 2, 2, 2), 0); // luma
        assert_eq!(eighth_scale_max_zigzag(1, 1, 2, 2), 4); // 4:2:0 chroma
        assert_eq!(eighth_scale_max_zigzag(1, 1, 2, 1), 0); // 4:2:2 chroma
        assert_eq!(eighth_scale_max_zigzag(1, 1, 1, 1), 0); // 4:4:4
    }

    #[test]
    fn shrink_leaves_the_margin() {
        let k = |shrink: f64| jpeg_shrink(shrink * SHRINK_MARGIN);
        assert_eq!(k(1.0), 1);
        assert_eq!(k(1.9), 1);
        assert_eq!(k(2.0), 2);
        assert_eq!(k(4.0), 4);
        assert_eq!(k(7.9), 4);
        assert_eq!(k(8.0), 8);
        assert_eq!(k(100.0), 8);
    }

    #[test]
    fn dc_scans_give_the_same_eighth_scale_pixels() -> Result<(), Box<dyn std::error::Error>> {
        let img = turbojpeg::Image::mandelbrot(640, 480, PixelFormat::RGB);
        let mut c = turbojpeg::Compressor::new()?;
        c.set_progressive(true)?;
        c.set_quality(90)?;
        let full = c.compress_to_vec(img.as_deref())?;
        let dc = dc_scans_only(&full).ok_or("no DC-only stream")?;
        assert!(
            dc.len() < full.len() * 2 / 3,
            "{} vs {}",
            dc.len(),
            full.len()
        );
        let mut dec = Decompressor::new()?;
        dec.set_scaling_factor(ScalingFactor::new(1, 8))?;
        let a = decompress_rgb(&mut dec, &full).ok_or("full decode failed")?;
        let b = decompress_rgb(&mut dec, &dc).ok_or("DC decode failed")?;
        assert_eq!((a.0, a.1), (80, 60));
        assert!(a == b, "1/8-scale pixels differ");
        // A baseline file has no AC scans to drop.
        c.set_progressive(false)?;
        let baseline = c.compress_to_vec(img.as_deref())?;
        assert!(dc_scans_only(&baseline).is_none());
        Ok(())
    }

    #[test]
    fn odd_input_is_declined_not_panicking() {
        assert!(parse_header(b"").is_none());
        assert!(parse_header(&[0xFF, 0xD8, 0xFF]).is_none());
        assert!(parse_header(&[0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x01]).is_none());
        assert!(dc_scans_only(&[0xFF, 0xD8, 0xFF, 0xDA, 0x00]).is_none());
        assert!(assemble_icc(vec![(2, b"x".as_slice())]).is_none());
        assert_eq!(
            assemble_icc(vec![(2, b"b".as_slice()), (1, b"a".as_slice())]),
            Some(b"ab".to_vec())
        );
    }
}
