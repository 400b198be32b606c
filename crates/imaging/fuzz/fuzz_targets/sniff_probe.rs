//! `sniff` + `probe` (header-only; runs in the API process) on arbitrary bytes.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use photo_imaging::{ImagingError, Limits, probe, sniff};

fuzz_target!(|data: &[u8]| {
    let sniffed = sniff(data);
    for limits in [Limits::default(), common::small_limits()] {
        match probe(data, &limits) {
            Ok(info) => {
                assert_eq!(sniffed, Some(info.format));
                assert!(info.width >= 1 && info.width <= limits.max_width);
                assert!(info.height >= 1 && info.height <= limits.max_height);
                assert!(u64::from(info.width) * u64::from(info.height) <= limits.max_pixels);
                assert!(info.frames >= 1 && info.frames <= limits.max_frames);
            }
            Err(ImagingError::UnsupportedFormat) => assert_eq!(sniffed, None),
            Err(e @ (ImagingError::Corrupt(_) | ImagingError::TooLarge { .. })) => {
                assert!(sniffed.is_some(), "{e:?}");
            }
            Err(e) => panic!("probe returned {e:?}"),
        }
    }
});
