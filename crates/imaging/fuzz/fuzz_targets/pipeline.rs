//! The full pipeline with arbitrary operation parameters: the first 8 bytes
//! choose the operation, the rest is the image.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use photo_imaging::{Fit, OutputFormat, Transform, transform};

/// Header layout: w (u16 LE, 0 = none), h (u16 LE, 0 = none), fit/format, quality, flags, spare.
fn op_from(h: &[u8; 8]) -> Transform {
    let dim = |lo: u8, hi: u8| match u16::from_le_bytes([lo, hi]) % 1024 {
        0 => None,
        v => Some(u32::from(v)),
    };
    let fit = match h[4] % 5 {
        0 => Fit::Inside,
        1 => Fit::Cover,
        2 => Fit::Contain,
        3 => Fit::Fill,
        _ => Fit::Outside,
    };
    let format = match (h[4] / 5) % 3 {
        0 => OutputFormat::Jpeg,
        1 => OutputFormat::Png,
        _ => OutputFormat::Webp,
    };
    Transform {
        width: dim(h[0], h[1]),
        height: dim(h[2], h[3]),
        fit,
        format,
        // Out-of-range qualities too (0, > 100): they must be refused, not crash.
        quality: h[5],
        upscale: h[6] & 1 != 0,
        auto_orient: h[6] & 2 != 0,
        strip_metadata: h[6] & 4 != 0,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((head, image)) = data.split_first_chunk::<8>() else {
        return;
    };
    let op = op_from(head);
    let limits = common::small_limits();
    if let Ok(out) = transform(image, &op, &limits) {
        assert_eq!(out.format, op.format);
        assert!(!out.bytes.is_empty());
        assert!(out.width >= 1 && out.width <= limits.max_width);
        assert!(out.height >= 1 && out.height <= limits.max_height);
    }
});
