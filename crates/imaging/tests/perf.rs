//! Timing of a large downscale. Ignored by default; run with
//! `cargo test -p photo-imaging --release --test perf -- --ignored --nocapture`.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Instant;

use photo_imaging::{Fit, Limits, OutputFormat, Transform, transform};

#[test]
#[ignore = "timing only; run in release"]
fn large_jpeg_to_thumbnail() {
    let src = common::jpeg(&common::gradient(6000, 4000), 90);
    for format in [OutputFormat::Jpeg, OutputFormat::Webp, OutputFormat::Png] {
        let t = Transform {
            width: Some(256),
            height: Some(256),
            fit: Fit::Inside,
            format,
            ..Transform::default()
        };
        let start = Instant::now();
        let out = transform(&src, &t, &Limits::default()).unwrap();
        let took = start.elapsed();
        println!(
            "24 MP JPEG ({} bytes) -> {}x{} {format:?}: {took:?}",
            src.len(),
            out.width,
            out.height
        );
        assert_eq!((out.width, out.height), (256, 171));
    }
    let t = Transform {
        format: OutputFormat::Jpeg,
        width: Some(2048),
        ..Transform::default()
    };
    let start = Instant::now();
    let out = transform(&src, &t, &Limits::default()).unwrap();
    println!(
        "24 MP JPEG -> {}x{} Jpeg: {:?}",
        out.width,
        out.height,
        start.elapsed()
    );
}
