//! Colour management: pixels tagged with an RGB ICC profile are converted to sRGB, so an output
//! without a profile (the default, metadata stripped) shows the same colours. Runs after the
//! resize, on the small image, as libvips' thumbnail does.

use moxcms::{ColorProfile, DataColorSpace, Layout, TransformOptions};

/// Profiles larger than this are ignored rather than parsed (a "huge ICC" attack).
pub const MAX_ICC_BYTES: usize = 4 << 20;

/// Converts tightly packed 8-bit RGB (`alpha == false`) or RGBA pixels from `icc` to sRGB in
/// place. Returns whether a conversion happened: profiles that are not RGB, that fail to parse
/// or that are too large leave the pixels as they are (the image is then treated as sRGB, as
/// browsers do).
pub fn to_srgb(data: &mut [u8], alpha: bool, icc: &[u8]) -> bool {
    if icc.is_empty() || icc.len() > MAX_ICC_BYTES {
        return false;
    }
    let Ok(src) = ColorProfile::new_from_slice(icc) else {
        return false;
    };
    if src.color_space != DataColorSpace::Rgb || is_srgb(&src) {
        return false;
    }
    let layout = if alpha { Layout::Rgba } else { Layout::Rgb };
    let dst = ColorProfile::new_srgb();
    let Ok(t) = src.create_transform_8bit(layout, &dst, layout, TransformOptions::default()) else {
        return false;
    };
    let input = data.to_vec();
    t.transform(&input, data).is_ok()
}

/// sRGB-equivalent profiles need no work. Compared by primaries (the colorants); a profile with
/// sRGB primaries but another tone curve is rare enough to be treated as sRGB.
fn is_srgb(p: &ColorProfile) -> bool {
    let s = ColorProfile::new_srgb();
    let close = |a: f64, b: f64| (a - b).abs() < 2e-3;
    let xyz_close =
        |a: moxcms::Xyzd, b: moxcms::Xyzd| close(a.x, b.x) && close(a.y, b.y) && close(a.z, b.z);
    xyz_close(p.red_colorant, s.red_colorant)
        && xyz_close(p.green_colorant, s.green_colorant)
        && xyz_close(p.blue_colorant, s.blue_colorant)
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn display_p3_red_becomes_a_more_saturated_srgb_red() {
        let p3 = ColorProfile::new_display_p3().encode().unwrap();
        // Pure P3 green is outside sRGB: converted it clips to sRGB green with red 0 and the
        // mid-grey stays grey.
        let mut px = vec![0u8, 255, 0, 128, 128, 128];
        assert!(to_srgb(&mut px, false, &p3));
        assert_eq!(px[1], 255);
        assert!(px[0] < 10 && px[2] < 60, "{px:?}");
        assert!(
            (i16::from(px[3]) - 128).abs() <= 2 && (i16::from(px[4]) - 128).abs() <= 2,
            "{px:?}"
        );
        // A desaturated P3 colour gets more saturated in sRGB numbers.
        let mut px = vec![200u8, 100, 100, 255];
        assert!(to_srgb(&mut px, true, &p3));
        assert!(px[0] > 200, "{px:?}");
        assert_eq!(px[3], 255, "alpha untouched");
    }

    #[test]
    fn srgb_garbage_gray_and_huge_profiles_are_left_alone() {
        let srgb = ColorProfile::new_srgb().encode().unwrap();
        let mut px = vec![10u8, 20, 30];
        assert!(!to_srgb(&mut px, false, &srgb));
        assert!(!to_srgb(&mut px, false, b"not a profile"));
        let gray = ColorProfile::new_gray_with_gamma(2.2).encode().unwrap();
        assert!(!to_srgb(&mut px, false, &gray));
        assert!(!to_srgb(&mut px, false, &vec![0u8; MAX_ICC_BYTES + 1]));
        assert_eq!(px, [10, 20, 30]);
    }
}
