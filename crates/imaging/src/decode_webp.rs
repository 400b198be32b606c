//! WebP shrink-on-load: libwebp decodes straight to a smaller size.
//!
//! libwebp's decoder can scale while it decodes (`use_scaling`): rows are
//! reduced as they come out of the VP8/VP8L decoder, so the full-size image is
//! never held in memory. Measured on a 4000×2250 photo: 64 ms → 53 ms and a
//! peak of 29 MB → 3 MB for a 256 px target (`dwebp`), and libwebp is faster
//! than the pure-Rust decoder the general path uses. We decode at twice the
//! target size and leave the last step to the usual Lanczos3 resize, as the
//! JPEG path leaves a margin (libwebp's own rescaler is a box filter).
//!
//! Only plain files take this path: lossy or lossless, with or without alpha,
//! but no animation, ICC profile or EXIF (those need the general path's
//! colour management and orientation). Like [`crate::decode::jpeg`], this is
//! an optimisation: whenever it declines or libwebp reports anything, it
//! returns `None` and the caller falls back to the general decoder, which
//! reports errors as before.
#![expect(
    unsafe_code,
    reason = "libwebp's advanced decoding API (WebPDecode with a WebPDecoderConfig) has no safe wrapper"
)]

use libwebp_sys::{
    VP8StatusCode, WEBP_CSP_MODE, WebPDecode, WebPDecoderConfig, WebPFreeDecBuffer,
    WebPGetFeatures, WebPRGBABuffer,
};

use crate::geometry;
use crate::{Limits, Transform};

/// A WebP decoded to 8-bit RGB or RGBA at a reduced size.
#[derive(Debug)]
pub(crate) struct FastWebp {
    pub width: u32,
    pub height: u32,
    /// RGBA when true, else RGB; tightly packed.
    pub alpha: bool,
    pub data: Vec<u8>,
}

/// RIFF/WEBP with a `VP8 ` or `VP8L` chunk, or `VP8X` without animation, ICC or
/// EXIF flags.
fn plain_webp(bytes: &[u8]) -> bool {
    const ICC: u8 = 0x20;
    const EXIF: u8 = 0x08;
    const ANIMATION: u8 = 0x02;
    if bytes.len() < 30 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WEBP" {
        return false;
    }
    match &bytes[12..16] {
        b"VP8 " | b"VP8L" => true,
        b"VP8X" => bytes[20] & (ICC | EXIF | ANIMATION) == 0,
        _ => false,
    }
}

/// Decodes a plain WebP at about twice the size `op` needs, when that is at
/// least 2× smaller than the source. `None`: not handled here.
///
/// The caller has already checked the header against `limits`.
pub(crate) fn webp(bytes: &[u8], op: &Transform, limits: &Limits) -> Option<FastWebp> {
    if !plain_webp(bytes) {
        return None;
    }
    let mut config = WebPDecoderConfig::new().ok()?;
    // SAFETY: `bytes` is a live slice of `bytes.len()` bytes; `config.input` is
    // a valid, initialised features struct that libwebp only writes to.
    let status = unsafe { WebPGetFeatures(bytes.as_ptr(), bytes.len(), &mut config.input) };
    if status != VP8StatusCode::VP8_STATUS_OK || config.input.has_animation != 0 {
        return None;
    }
    let w = u32::try_from(config.input.width).ok()?;
    let h = u32::try_from(config.input.height).ok()?;
    if w == 0 || h == 0 || limits.check_source(w, h).is_err() {
        return None;
    }
    let plan = geometry::plan(w, h, op, limits).ok()?;
    let scale = 2.0
        * (f64::from(plan.resize_w) / f64::from(w)).max(f64::from(plan.resize_h) / f64::from(h));
    if scale > 0.5 {
        return None; // not worth it: the general path decodes at full size
    }
    let sw = ((f64::from(w) * scale).round() as u32).max(1);
    let sh = ((f64::from(h) * scale).round() as u32).max(1);
    let alpha = config.input.has_alpha != 0;
    let channels: u32 = if alpha { 4 } else { 3 };
    let stride = sw.checked_mul(channels)?;
    let size = usize::try_from(u64::from(stride) * u64::from(sh)).ok()?;
    if size as u64 > limits.max_alloc_bytes {
        return None;
    }
    let mut data = vec![0u8; size];
    config.options.use_scaling = 1;
    config.options.scaled_width = i32::try_from(sw).ok()?;
    config.options.scaled_height = i32::try_from(sh).ok()?;
    config.options.use_threads = 0;
    config.output.colorspace = if alpha {
        WEBP_CSP_MODE::MODE_RGBA
    } else {
        WEBP_CSP_MODE::MODE_RGB
    };
    // Decode into our buffer: libwebp allocates nothing for the pixels.
    config.output.is_external_memory = 1;
    config.output.u.RGBA = WebPRGBABuffer {
        rgba: data.as_mut_ptr(),
        stride: i32::try_from(stride).ok()?,
        size,
    };
    // SAFETY: `bytes` is a live slice; `config` was initialised by
    // WebPDecoderConfig::new and filled by WebPGetFeatures for these bytes; the
    // output buffer points at `data`, which holds exactly `stride × sh` bytes,
    // is not otherwise touched during the call, and outlives it. libwebp writes
    // at most `size` bytes with the given stride (it checks the buffer against
    // the scaled size before decoding).
    let status = unsafe { WebPDecode(bytes.as_ptr(), bytes.len(), &mut config) };
    // SAFETY: frees only what libwebp itself allocated in `config.output` (nothing
    // for external memory); `data` stays ours.
    unsafe { WebPFreeDecBuffer(&mut config.output) };
    if status != VP8StatusCode::VP8_STATUS_OK {
        return None;
    }
    Some(FastWebp {
        width: sw,
        height: sh,
        alpha,
        data,
    })
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used)]
    use super::*;

    fn encode(w: u32, h: u32, alpha: bool) -> Vec<u8> {
        let img = image::RgbaImage::from_fn(w, h, |x, y| {
            image::Rgba([
                (x * 255 / w) as u8,
                (y * 255 / h) as u8,
                128,
                if alpha { 200 } else { 255 },
            ])
        });
        let enc = if alpha {
            webp::Encoder::from_rgba(img.as_raw(), w, h)
        } else {
            let rgb = image::DynamicImage::ImageRgba8(img).into_rgb8();
            return webp::Encoder::from_rgb(rgb.as_raw(), w, h)
                .encode(80.0)
                .to_vec();
        };
        enc.encode(80.0).to_vec()
    }

    fn thumb(width: u32) -> Transform {
        Transform {
            width: Some(width),
            ..Transform::default()
        }
    }

    #[test]
    fn decodes_at_twice_the_target() {
        for alpha in [false, true] {
            let bytes = encode(1600, 1200, alpha);
            let out = webp(&bytes, &thumb(200), &Limits::default()).unwrap();
            assert_eq!((out.width, out.height, out.alpha), (400, 300, alpha));
            let channels = if alpha { 4 } else { 3 };
            assert_eq!(out.data.len(), 400 * 300 * channels);
            // The gradient survives: red grows left to right.
            let px = |x: usize| out.data[(150 * 400 + x) * channels];
            assert!(px(10) < px(390), "{} {}", px(10), px(390));
        }
    }

    #[test]
    fn declines_small_shrinks_corrupt_and_special_files() {
        let bytes = encode(400, 300, false);
        assert!(
            webp(&bytes, &thumb(300), &Limits::default()).is_none(),
            "shrink < 2"
        );
        let mut corrupt = encode(1600, 1200, false);
        let n = corrupt.len();
        corrupt.truncate(n / 2);
        assert!(webp(&corrupt, &thumb(100), &Limits::default()).is_none());
        // VP8X with the ICC, EXIF or animation flag.
        for flag in [0x20u8, 0x08, 0x02] {
            let mut x = b"RIFF\0\0\0\0WEBPVP8X\x0a\0\0\0".to_vec();
            x.push(flag);
            x.extend_from_slice(&[0; 20]);
            assert!(!plain_webp(&x), "flag {flag:#x}");
        }
        assert!(plain_webp(&bytes));
        assert!(!plain_webp(b"RIFF\0\0\0\0WAVEfmt "));
    }
}
