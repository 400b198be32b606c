//! `transform` with a small fixed operation and small limits: exercises the
//! decoders (with their limits) and the encoder on arbitrary bytes.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use photo_imaging::{Fit, ImagingError, OutputFormat, Transform, transform};

fuzz_target!(|data: &[u8]| {
    let op = Transform {
        width: Some(32),
        height: Some(32),
        fit: Fit::Inside,
        format: OutputFormat::Png,
        ..Transform::default()
    };
    match transform(data, &op, &common::small_limits()) {
        Ok(out) => {
            assert!(!out.bytes.is_empty());
            assert!(out.width >= 1 && out.width <= 32 && out.height >= 1 && out.height <= 32);
        }
        Err(ImagingError::InvalidParameters(e)) => panic!("valid op refused: {e}"),
        Err(_) => {}
    }
});
