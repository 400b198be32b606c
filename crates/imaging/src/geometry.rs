//! Output geometry for a [`Transform`]: pure arithmetic, no pixels.

use crate::{Fit, ImagingError, Limits, Transform};

/// What to do with the (oriented) source.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Plan {
    /// Size the (cropped) source is resized to.
    pub resize_w: u32,
    /// Size the (cropped) source is resized to.
    pub resize_h: u32,
    /// When true, the source is centre-cropped to the aspect ratio of
    /// `resize_w × resize_h` before resizing (cover).
    pub crop_to_aspect: bool,
    /// When set, the resized image is centred on a canvas of this size (contain).
    pub canvas: Option<(u32, u32)>,
}

impl Plan {
    /// Final output dimensions.
    pub fn output_size(&self) -> (u32, u32) {
        self.canvas.unwrap_or((self.resize_w, self.resize_h))
    }
}

/// Validates the parameters that do not depend on the source.
pub(crate) fn validate(op: &Transform, limits: &Limits) -> Result<(), ImagingError> {
    let invalid = |m: String| Err(ImagingError::InvalidParameters(m));
    crate::encode::check_output_format(op.format)?;
    if !(1..=100).contains(&op.quality) {
        return invalid(format!("quality must be 1..=100, got {}", op.quality));
    }
    if op.width == Some(0) {
        return invalid("width must be at least 1".into());
    }
    if op.height == Some(0) {
        return invalid("height must be at least 1".into());
    }
    if let Some(w) = op.width
        && w > limits.max_width
    {
        return invalid(format!(
            "width {w} exceeds the limit of {}",
            limits.max_width
        ));
    }
    if let Some(h) = op.height
        && h > limits.max_height
    {
        return invalid(format!(
            "height {h} exceeds the limit of {}",
            limits.max_height
        ));
    }
    if let (Some(w), Some(h)) = (op.width, op.height) {
        let px = u64::from(w) * u64::from(h);
        if px > limits.max_pixels {
            return invalid(format!(
                "{w}x{h} = {px} pixels exceeds the limit of {}",
                limits.max_pixels
            ));
        }
    }
    Ok(())
}

/// `v * scale`, rounded, at least 1. Returns `None` when not representable.
fn scaled(v: u32, scale: f64) -> Option<u32> {
    let r = (f64::from(v) * scale).round();
    if !r.is_finite() || r > f64::from(u32::MAX) {
        return None;
    }
    // Finite, non-negative and in range: the cast is exact.
    let r = r as u32;
    Some(r.max(1))
}

/// Computes the plan for an oriented source of `sw × sh` (both ≥ 1).
pub(crate) fn plan(
    sw: u32,
    sh: u32,
    op: &Transform,
    limits: &Limits,
) -> Result<Plan, ImagingError> {
    validate(op, limits)?;
    let too_big =
        || ImagingError::InvalidParameters("requested output size exceeds the limits".into());
    let fx = |w: u32| f64::from(w) / f64::from(sw);
    let fy = |h: u32| f64::from(h) / f64::from(sh);
    let cap = |s: f64| if op.upscale { s } else { s.min(1.0) };
    let simple = |rw: u32, rh: u32| Plan {
        resize_w: rw,
        resize_h: rh,
        crop_to_aspect: false,
        canvas: None,
    };

    let plan = match (op.width, op.height) {
        (None, None) => simple(sw, sh),
        (Some(w), None) => {
            let s = cap(fx(w));
            let rw = if s == fx(w) { w } else { sw };
            simple(rw, scaled(sh, s).ok_or_else(too_big)?)
        }
        (None, Some(h)) => {
            let s = cap(fy(h));
            let rh = if s == fy(h) { h } else { sh };
            simple(scaled(sw, s).ok_or_else(too_big)?, rh)
        }
        (Some(w), Some(h)) => match op.fit {
            Fit::Inside | Fit::Outside | Fit::Contain => {
                let s = if op.fit == Fit::Outside {
                    fx(w).max(fy(h))
                } else {
                    fx(w).min(fy(h))
                };
                let s = cap(s);
                let mut rw = scaled(sw, s).ok_or_else(too_big)?;
                let mut rh = scaled(sh, s).ok_or_else(too_big)?;
                if op.fit != Fit::Outside {
                    // Rounding must never overflow the box.
                    rw = rw.min(w);
                    rh = rh.min(h);
                }
                Plan {
                    resize_w: rw,
                    resize_h: rh,
                    crop_to_aspect: false,
                    canvas: (op.fit == Fit::Contain).then_some((w, h)),
                }
            }
            Fit::Cover => {
                let s = fx(w).max(fy(h));
                let (rw, rh) = if op.upscale || s <= 1.0 {
                    (w, h)
                } else {
                    (w.min(sw), h.min(sh))
                };
                Plan {
                    resize_w: rw,
                    resize_h: rh,
                    crop_to_aspect: true,
                    canvas: None,
                }
            }
            Fit::Fill => {
                if op.upscale {
                    simple(w, h)
                } else {
                    simple(w.min(sw), h.min(sh))
                }
            }
        },
    };

    let (ow, oh) = plan.output_size();
    let (mw, mh) = (plan.resize_w.max(ow), plan.resize_h.max(oh));
    if mw > limits.max_width
        || mh > limits.max_height
        || u64::from(mw) * u64::from(mh) > limits.max_pixels
    {
        return Err(ImagingError::InvalidParameters(format!(
            "output would be {mw}x{mh}, beyond the limits"
        )));
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::OutputFormat;

    fn op(w: Option<u32>, h: Option<u32>, fit: Fit, upscale: bool) -> Transform {
        Transform {
            width: w,
            height: h,
            fit,
            upscale,
            format: OutputFormat::Png,
            ..Transform::default()
        }
    }

    fn out(sw: u32, sh: u32, t: &Transform) -> (u32, u32) {
        match plan(sw, sh, t, &Limits::default()) {
            Ok(p) => p.output_size(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn fit_modes_400x200_into_100x100() {
        let b = |fit| op(Some(100), Some(100), fit, false);
        assert_eq!(out(400, 200, &b(Fit::Inside)), (100, 50));
        assert_eq!(out(400, 200, &b(Fit::Cover)), (100, 100));
        assert_eq!(out(400, 200, &b(Fit::Contain)), (100, 100));
        assert_eq!(out(400, 200, &b(Fit::Fill)), (100, 100));
        assert_eq!(out(400, 200, &b(Fit::Outside)), (200, 100));
    }

    #[test]
    fn single_dimension_follows_aspect() {
        assert_eq!(
            out(400, 200, &op(Some(100), None, Fit::Cover, false)),
            (100, 50)
        );
        assert_eq!(
            out(400, 200, &op(None, Some(50), Fit::Fill, false)),
            (100, 50)
        );
        assert_eq!(
            out(400, 200, &op(Some(800), None, Fit::Inside, false)),
            (400, 200)
        );
        assert_eq!(
            out(400, 200, &op(Some(800), None, Fit::Inside, true)),
            (800, 400)
        );
        // Extreme aspect ratio: never 0.
        assert_eq!(
            out(10000, 1, &op(Some(10), None, Fit::Inside, false)),
            (10, 1)
        );
    }

    #[test]
    fn no_upscale_by_default() {
        let t = |fit| op(Some(1000), Some(1000), fit, false);
        assert_eq!(out(400, 200, &t(Fit::Inside)), (400, 200));
        assert_eq!(out(400, 200, &t(Fit::Outside)), (400, 200));
        assert_eq!(out(400, 200, &t(Fit::Cover)), (400, 200));
        assert_eq!(out(400, 200, &t(Fit::Fill)), (400, 200));
        assert_eq!(out(400, 200, &t(Fit::Contain)), (1000, 1000));
        // Cover with one side smaller than the source crops without enlarging.
        assert_eq!(
            out(400, 200, &op(Some(300), Some(300), Fit::Cover, false)),
            (300, 200)
        );
    }

    #[test]
    fn upscale_when_asked() {
        let t = |fit| op(Some(1000), Some(1000), fit, true);
        assert_eq!(out(400, 200, &t(Fit::Inside)), (1000, 500));
        assert_eq!(out(400, 200, &t(Fit::Outside)), (2000, 1000));
        assert_eq!(out(400, 200, &t(Fit::Cover)), (1000, 1000));
        assert_eq!(out(400, 200, &t(Fit::Fill)), (1000, 1000));
    }

    #[test]
    fn invalid_parameters() {
        let l = Limits::default();
        let bad = |t: Transform| {
            matches!(
                plan(400, 200, &t, &l),
                Err(ImagingError::InvalidParameters(_))
            )
        };
        assert!(bad(op(Some(0), None, Fit::Inside, false)));
        assert!(bad(op(None, Some(0), Fit::Inside, false)));
        assert!(bad(op(Some(20000), None, Fit::Inside, false)));
        assert!(bad(op(Some(16000), Some(16000), Fit::Fill, true)));
        assert!(bad(Transform {
            quality: 0,
            ..Transform::default()
        }));
        assert!(bad(Transform {
            quality: 101,
            ..Transform::default()
        }));
        // Derived dimension too large: 1x10000 source, width 10000 with upscale.
        let t = op(Some(10000), None, Fit::Inside, true);
        assert!(matches!(
            plan(1, 10000, &t, &l),
            Err(ImagingError::InvalidParameters(_))
        ));
        // Outside can exceed the box; still bounded by the limits.
        let t = op(Some(16000), Some(10), Fit::Outside, true);
        assert!(matches!(
            plan(10, 1000, &t, &l),
            Err(ImagingError::InvalidParameters(_))
        ));
    }
}
