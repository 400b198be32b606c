//! Watermark / overlay compositing.

use image::DynamicImage;

use super::Overlay;
use super::resize::resize_region;
use crate::{ImagingError, Limits};

pub(super) fn validate(o: &Overlay) -> Result<(), ImagingError> {
    let bad = |m: &str| Err(ImagingError::InvalidParameters(m.into()));
    if o.image.is_empty() {
        return bad("overlay image is empty");
    }
    if !(o.opacity.is_finite() && (0.0..=1.0).contains(&o.opacity)) {
        return bad("overlay opacity must be in [0, 1]");
    }
    if !(o.scale.is_finite() && o.scale > 0.0 && o.scale <= 1.0) {
        return bad("overlay scale must be in (0, 1]");
    }
    Ok(())
}

/// Decodes `o.image`, scales it to `o.scale × base width` (and within the
/// base height), and composites it at the gravity position inset by `margin`.
pub(super) fn overlay(
    base: DynamicImage,
    o: &Overlay,
    limits: &Limits,
) -> Result<DynamicImage, ImagingError> {
    let (ov, _) = crate::transform::decode_image(&o.image, limits, true, false)?;
    let (bw, bh) = (base.width(), base.height());
    let (ow, oh) = (ov.width().max(1), ov.height().max(1));
    let mut tw = ((f64::from(bw) * f64::from(o.scale)).round() as u32).clamp(1, bw.max(1));
    let mut th = ((f64::from(oh) * f64::from(tw) / f64::from(ow)).round() as u32).max(1);
    if th > bh {
        th = bh.max(1);
        tw = ((f64::from(ow) * f64::from(th) / f64::from(oh)).round() as u32).clamp(1, bw.max(1));
    }
    let ov = resize_region(&ov, (0, 0, ov.width(), ov.height()), tw, th)?.to_rgba8();

    let m = o.margin;
    let inner = (
        bw.saturating_sub(m.saturating_mul(2)),
        bh.saturating_sub(m.saturating_mul(2)),
    );
    let (dx, dy) = o.gravity.offset(inner, (tw, th));
    let (x0, y0) = (
        u64::from(dx) + u64::from(m.min(bw)),
        u64::from(dy) + u64::from(m.min(bh)),
    );

    let mut base = match base {
        DynamicImage::ImageRgb8(_) | DynamicImage::ImageRgba8(_) => base,
        other if other.color().has_alpha() => DynamicImage::ImageRgba8(other.to_rgba8()),
        other => DynamicImage::ImageRgb8(other.to_rgb8()),
    };
    let (ch, data) = match &mut base {
        DynamicImage::ImageRgb8(b) => (3usize, b.as_mut()),
        DynamicImage::ImageRgba8(b) => (4usize, b.as_mut()),
        _ => return Ok(base),
    };
    let opacity = o.opacity;
    for (oy, row) in ov.rows().enumerate() {
        let y = y0 + oy as u64;
        if y >= u64::from(bh) {
            break;
        }
        for (ox, p) in row.enumerate() {
            let x = x0 + ox as u64;
            if x >= u64::from(bw) {
                break;
            }
            let a = f32::from(p.0[3]) / 255.0 * opacity;
            if a <= 0.0 {
                continue;
            }
            let Ok(idx) = usize::try_from((y * u64::from(bw) + x) * ch as u64) else {
                continue;
            };
            let Some(px) = data.get_mut(idx..idx + ch) else {
                continue;
            };
            let ba = if ch == 4 {
                f32::from(px[3]) / 255.0
            } else {
                1.0
            };
            let out_a = a + ba * (1.0 - a);
            for (dst, &src) in px.iter_mut().zip(&p.0).take(3) {
                let v = if out_a > 0.0 {
                    (f32::from(src) * a + f32::from(*dst) * ba * (1.0 - a)) / out_a
                } else {
                    0.0
                };
                *dst = v.round().clamp(0.0, 255.0) as u8;
            }
            if ch == 4 {
                px[3] = (out_a * 255.0).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    Ok(base)
}
