//! Box crops and crop-window placement (gravity, entropy, attention).

use image::{DynamicImage, RgbaImage};

use super::CropStrategy;
use super::resize::downscale_rgba;
use crate::ImagingError;

/// Longest side of the copy that smart crops are scored on.
const SMART_MAX_SIDE: u32 = 256;

/// Keeps `width × height` at `(x, y)`; the box must lie inside the image.
pub(super) fn crop_box(
    img: &DynamicImage,
    x: u32,
    y: u32,
    width: u32,
    height: u32,
) -> Result<DynamicImage, ImagingError> {
    let (iw, ih) = (img.width(), img.height());
    let fits = |o: u32, len: u32, max: u32| o.checked_add(len).is_some_and(|end| end <= max);
    if width == 0 || height == 0 || !fits(x, width, iw) || !fits(y, height, ih) {
        return Err(ImagingError::InvalidParameters(format!(
            "crop box {width}x{height}+{x}+{y} is not inside the {iw}x{ih} image"
        )));
    }
    Ok(img.crop_imm(x, y, width, height))
}

/// Top-left corner of a `window` (not larger than the image) per `strategy`.
pub(super) fn position(
    img: &DynamicImage,
    window: (u32, u32),
    strategy: CropStrategy,
) -> Result<(u32, u32), ImagingError> {
    let dims = (img.width(), img.height());
    match strategy {
        CropStrategy::Gravity(g) => Ok(g.offset(dims, window)),
        CropStrategy::Entropy => smart(img, window, Score::Entropy),
        CropStrategy::Attention => smart(img, window, Score::Attention),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Score {
    Entropy,
    Attention,
}

fn luma(p: &[u8]) -> u8 {
    let (r, g, b) = (u32::from(p[0]), u32::from(p[1]), u32::from(p[2]));
    u8::try_from((r * 299 + g * 587 + b * 114 + 500) / 1000).unwrap_or(u8::MAX)
}

/// Shannon entropy (bits) of a 256-bin histogram.
fn entropy(hist: &[u32; 256], total: u32) -> f64 {
    if total == 0 {
        return 0.0;
    }
    let n = f64::from(total);
    hist.iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Per-pixel "interest": luminance edges, saturation and skin tones.
fn attention_map(small: &RgbaImage) -> Vec<f64> {
    let (w, h) = (small.width() as usize, small.height() as usize);
    let raw = small.as_raw();
    let lum: Vec<i32> = raw.chunks_exact(4).map(|p| i32::from(luma(p))).collect();
    let at = |x: usize, y: usize| lum.get(y * w + x).copied().unwrap_or(0);
    let mut out = Vec::with_capacity(w * h);
    for (i, p) in raw.chunks_exact(4).enumerate() {
        let (x, y) = (i % w, i / w);
        let c = at(x, y);
        let l = if x > 0 { at(x - 1, y) } else { c };
        let r = if x + 1 < w { at(x + 1, y) } else { c };
        let u = if y > 0 { at(x, y - 1) } else { c };
        let d = if y + 1 < h { at(x, y + 1) } else { c };
        let edge = f64::from((4 * c - l - r - u - d).abs());
        let (pr, pg, pb) = (i32::from(p[0]), i32::from(p[1]), i32::from(p[2]));
        let max = pr.max(pg).max(pb);
        let min = pr.min(pg).min(pb);
        let sat = if max > 0 {
            f64::from(max - min) / f64::from(max)
        } else {
            0.0
        };
        let saturation = if sat > 0.4 && max > 50 {
            255.0 * sat
        } else {
            0.0
        };
        let skin = pr > 95
            && pg > 40
            && pb > 20
            && pr > pg
            && pr > pb
            && (pr - pg) > 15
            && (max - min) > 15;
        let skin = if skin { 255.0 } else { 0.0 };
        let alpha = f64::from(p[3]) / 255.0;
        out.push((edge + saturation + skin) * alpha);
    }
    out
}

/// Picks the window position (along the one axis where it can move) that
/// maximises the score, measured on a downscaled copy. Ties go to the
/// position closest to the centre.
fn smart(img: &DynamicImage, window: (u32, u32), score: Score) -> Result<(u32, u32), ImagingError> {
    let (iw, ih) = (img.width(), img.height());
    let (ww, wh) = (window.0.min(iw), window.1.min(ih));
    if (ww, wh) == (iw, ih) {
        return Ok((0, 0));
    }
    let horizontal = ww < iw; // slide along x (window spans the full height)
    let small = downscale_rgba(img, SMART_MAX_SIDE)?;
    let (sw, sh) = (small.width() as usize, small.height() as usize);
    if sw == 0 || sh == 0 {
        return Ok(super::Gravity::Centre.offset((iw, ih), (ww, wh)));
    }
    // Window extent along the sliding axis, in thumbnail pixels.
    let (len_full, len_win, len_img) = if horizontal {
        (sw, ww, iw)
    } else {
        (sh, wh, ih)
    };
    let scale = len_full as f64 / f64::from(len_img);
    let win = ((f64::from(len_win) * scale).round() as usize).clamp(1, len_full);
    let positions = len_full - win + 1;
    // Per-line (column when sliding along x, row otherwise) contributions.
    let lines = len_full;
    let across = if horizontal { sh } else { sw };
    let raw = small.as_raw();
    let px = |line: usize, k: usize| -> usize {
        if horizontal {
            k * sw + line
        } else {
            line * sw + k
        }
    };
    let scores: Vec<f64> = match score {
        Score::Entropy => {
            let lum: Vec<u8> = raw.chunks_exact(4).map(luma).collect();
            let mut hist = [0u32; 256];
            let add = |line: usize, sign: bool, hist: &mut [u32; 256]| {
                for k in 0..across {
                    if let Some(&v) = lum.get(px(line, k)) {
                        let slot = &mut hist[usize::from(v)];
                        *slot = if sign {
                            slot.saturating_add(1)
                        } else {
                            slot.saturating_sub(1)
                        };
                    }
                }
            };
            for line in 0..win {
                add(line, true, &mut hist);
            }
            let total = u32::try_from(win * across).unwrap_or(u32::MAX);
            let mut scores = Vec::with_capacity(positions);
            scores.push(entropy(&hist, total));
            for start in 1..positions {
                add(start - 1, false, &mut hist);
                add(start + win - 1, true, &mut hist);
                scores.push(entropy(&hist, total));
            }
            scores
        }
        Score::Attention => {
            let map = attention_map(&small);
            let line_sum: Vec<f64> = (0..lines)
                .map(|line| {
                    (0..across)
                        .map(|k| map.get(px(line, k)).copied().unwrap_or(0.0))
                        .sum()
                })
                .collect();
            let mut sum: f64 = line_sum.iter().take(win).sum();
            let mut scores = Vec::with_capacity(positions);
            scores.push(sum);
            for start in 1..positions {
                sum += line_sum.get(start + win - 1).copied().unwrap_or(0.0)
                    - line_sum.get(start - 1).copied().unwrap_or(0.0);
                scores.push(sum);
            }
            scores
        }
    };
    let best = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let tol = best.abs() * 1e-9 + 1e-9;
    let centre = (positions - 1) as f64 / 2.0;
    let chosen = scores
        .iter()
        .enumerate()
        .filter(|(_, s)| **s >= best - tol)
        .map(|(i, _)| i)
        .min_by(|a, b| {
            let da = (*a as f64 - centre).abs();
            let db = (*b as f64 - centre).abs();
            da.total_cmp(&db)
        })
        .unwrap_or(0);
    // Back to source pixels.
    let max_off = len_img - len_win;
    let off = ((chosen as f64 / scale).round() as u32).min(max_off);
    Ok(if horizontal { (off, 0) } else { (0, off) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_of_uniform_and_two_values() {
        let mut h = [0u32; 256];
        h[7] = 100;
        assert_eq!(entropy(&h, 100), 0.0);
        h[8] = 100;
        assert!((entropy(&h, 200) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn box_crop_outside_is_rejected() {
        let img = DynamicImage::new_rgb8(10, 10);
        assert!(crop_box(&img, 5, 5, 6, 1).is_err());
        assert!(crop_box(&img, u32::MAX, 0, 2, 1).is_err());
        assert!(crop_box(&img, 0, 0, 0, 1).is_err());
        assert!(crop_box(&img, 5, 5, 5, 5).is_ok());
    }
}
