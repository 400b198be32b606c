//! Blur and unsharp-mask sharpening.

use image::DynamicImage;

/// Above this sigma the O(1)-per-pixel box approximation is used instead of
/// the exact separable Gaussian (whose cost grows with sigma).
const EXACT_GAUSSIAN_MAX_SIGMA: f32 = 3.0;

/// Gaussian blur (exact for small sigma, triple box blur above).
pub(super) fn blur(img: &DynamicImage, sigma: f32) -> DynamicImage {
    if sigma <= EXACT_GAUSSIAN_MAX_SIGMA {
        img.blur(sigma)
    } else {
        img.fast_blur(sigma)
    }
}

/// Unsharp mask on the colour channels; alpha is left untouched.
pub(super) fn sharpen(img: &DynamicImage, sigma: f32, amount: f32) -> DynamicImage {
    let blurred = blur(img, sigma);
    let mut out = img.clone();
    let (channels, src_blur) = match (&mut out, &blurred) {
        (DynamicImage::ImageRgb8(o), DynamicImage::ImageRgb8(b)) => {
            (3usize, Some((o.as_mut(), b.as_raw().as_slice())))
        }
        (DynamicImage::ImageRgba8(o), DynamicImage::ImageRgba8(b)) => {
            (4usize, Some((o.as_mut(), b.as_raw().as_slice())))
        }
        _ => (0, None),
    };
    let Some((dst, b)) = src_blur else {
        return out;
    };
    for (i, (d, &bv)) in dst.iter_mut().zip(b).enumerate() {
        if channels == 4 && i % 4 == 3 {
            continue;
        }
        let o = f32::from(*d);
        let v = o + amount * (o - f32::from(bv));
        *d = v.round().clamp(0.0, 255.0) as u8;
    }
    out
}
