//! Resize with the [`crate::Transform`] geometry, plus positioned cover
//! crops and contain padding.

use fast_image_resize as fr;
use image::{DynamicImage, ImageBuffer, Rgb, Rgba, RgbaImage};

use super::{CropStrategy, Gravity, Resize, crop};
use crate::encode::{EncodeOptions, flatten};
use crate::{ImagingError, Limits, OutputFormat, Transform, geometry};

fn as_transform(r: &Resize) -> Transform {
    Transform {
        width: r.width,
        height: r.height,
        fit: r.fit,
        upscale: r.upscale,
        format: OutputFormat::Png,
        ..Transform::default()
    }
}

/// Source-independent checks (same rules as [`crate::transform`]).
pub(super) fn validate(r: &Resize, limits: &Limits) -> Result<(), ImagingError> {
    geometry::validate(&as_transform(r), limits)
}

fn resize_err(e: impl std::fmt::Display) -> ImagingError {
    ImagingError::Encode(format!("resize failed: {e}"))
}

/// Resizes the `crop` box (`x, y, w, h`) of `src` to exactly `dw × dh`
/// (Lanczos3; big reductions go through a box pre-pass). Output is RGB8
/// or RGBA8 like the input.
pub(crate) fn resize_region(
    src: &DynamicImage,
    crop: (u32, u32, u32, u32),
    dw: u32,
    dh: u32,
) -> Result<DynamicImage, ImagingError> {
    let (sw, sh) = (src.width(), src.height());
    let (cx, cy, cw, ch) = crop;
    if (cw, ch) == (dw, dh) {
        if (cx, cy, cw, ch) == (0, 0, sw, sh) {
            return Ok(src.clone());
        }
        return Ok(src.crop_imm(cx, cy, cw, ch));
    }
    let (pixel_type, data, alpha) = match src {
        DynamicImage::ImageRgb8(b) => (fr::PixelType::U8x3, b.as_raw().as_slice(), false),
        DynamicImage::ImageRgba8(b) => (fr::PixelType::U8x4, b.as_raw().as_slice(), true),
        other => {
            let converted = if other.color().has_alpha() {
                DynamicImage::ImageRgba8(other.to_rgba8())
            } else {
                DynamicImage::ImageRgb8(other.to_rgb8())
            };
            return resize_region(&converted, crop, dw, dh);
        }
    };
    let full = fr::images::ImageRef::new(sw, sh, data, pixel_type).map_err(resize_err)?;
    // A real crop (the kernel never sees pixels outside the window), unlike
    // `ResizeOptions::crop`, which samples neighbours across the crop edge.
    let src_view = fr::images::CroppedImage::new(&full, cx, cy, cw, ch).map_err(resize_err)?;
    let mut resizer = fr::Resizer::new();
    let crop_opts = fr::ResizeOptions::new();
    let lanczos = fr::ResizeAlg::Convolution(fr::FilterType::Lanczos3);
    let mut dst = fr::images::Image::new(dw, dh, pixel_type);
    if cw / 4 >= dw && ch / 4 >= dh {
        let mut mid =
            fr::images::Image::new(dw.saturating_mul(2), dh.saturating_mul(2), pixel_type);
        let box_opts = crop_opts.resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Box));
        resizer
            .resize(&src_view, &mut mid, &box_opts)
            .map_err(resize_err)?;
        resizer
            .resize(
                &mid,
                &mut dst,
                &fr::ResizeOptions::new().resize_alg(lanczos),
            )
            .map_err(resize_err)?;
    } else {
        resizer
            .resize(&src_view, &mut dst, &crop_opts.resize_alg(lanczos))
            .map_err(resize_err)?;
    }
    let bad = || ImagingError::Encode("resize produced a wrong-sized buffer".into());
    Ok(if alpha {
        DynamicImage::ImageRgba8(ImageBuffer::from_raw(dw, dh, dst.into_vec()).ok_or_else(bad)?)
    } else {
        DynamicImage::ImageRgb8(ImageBuffer::from_raw(dw, dh, dst.into_vec()).ok_or_else(bad)?)
    })
}

/// Area-average downscale so that the longer side is at most `max_side`
/// (never enlarges), as RGBA8. Used for analysis and smart crops.
pub(crate) fn downscale_rgba(src: &DynamicImage, max_side: u32) -> Result<RgbaImage, ImagingError> {
    let (w, h) = (src.width(), src.height());
    let longest = w.max(h).max(1);
    let (tw, th) = if longest <= max_side {
        (w, h)
    } else {
        let s = f64::from(max_side) / f64::from(longest);
        let sc = |v: u32| ((f64::from(v) * s).round() as u32).clamp(1, max_side);
        (sc(w), sc(h))
    };
    let small = resize_region(src, (0, 0, w, h), tw, th)?;
    Ok(small.to_rgba8())
}

/// `round(a * b / c)` in u64, clamped to `1..=max`.
fn ratio(a: u32, b: u32, c: u32, max: u32) -> u32 {
    let c = u64::from(c.max(1));
    let v = (u64::from(a) * u64::from(b) + c / 2) / c;
    u32::try_from(v).unwrap_or(max).clamp(1, max.max(1))
}

/// Applies a [`Resize`]; `out` decides the `contain` padding (JPEG: opaque
/// `background`; otherwise transparent).
pub(super) fn resize(
    src: &DynamicImage,
    r: &Resize,
    out: &EncodeOptions,
    limits: &Limits,
) -> Result<DynamicImage, ImagingError> {
    let (sw, sh) = (src.width(), src.height());
    let plan = geometry::plan(sw, sh, &as_transform(r), limits)?;
    let (rw, rh) = (plan.resize_w, plan.resize_h);
    let mut window = (0, 0, sw, sh);
    if plan.crop_to_aspect {
        // Largest window of the target aspect ratio.
        let (cw, ch) = if u64::from(sw) * u64::from(rh) > u64::from(sh) * u64::from(rw) {
            (ratio(sh, rw, rh, sw), sh)
        } else {
            (sw, ratio(sw, rh, rw, sh))
        };
        let (cx, cy) = crop::position(src, (cw, ch), r.position)?;
        window = (cx, cy, cw, ch);
    }
    let resized = resize_region(src, window, rw, rh)?;
    let Some((cw, ch)) = plan.canvas else {
        return Ok(resized);
    };
    let gravity = match r.position {
        CropStrategy::Gravity(g) => g,
        CropStrategy::Entropy | CropStrategy::Attention => Gravity::Centre,
    };
    let (x, y) = gravity.offset((cw, ch), (resized.width(), resized.height()));
    if out.format == OutputFormat::Jpeg {
        let bg = out.background;
        let fg = flatten(resized, bg).to_rgb8();
        let mut canvas = ImageBuffer::from_pixel(cw, ch, Rgb(bg));
        image::imageops::replace(&mut canvas, &fg, i64::from(x), i64::from(y));
        Ok(DynamicImage::ImageRgb8(canvas))
    } else {
        let fg = resized.to_rgba8();
        let mut canvas = ImageBuffer::from_pixel(cw, ch, Rgba([0, 0, 0, 0]));
        image::imageops::replace(&mut canvas, &fg, i64::from(x), i64::from(y));
        Ok(DynamicImage::ImageRgba8(canvas))
    }
}
