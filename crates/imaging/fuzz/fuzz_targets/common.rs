//! Shared by the fuzz targets.
#![allow(dead_code)]

use photo_imaging::Limits;

/// Small limits so that every input is cheap and any allocation far beyond
/// them (libFuzzer's `-malloc_limit_mb`) shows a missing limit.
pub fn small_limits() -> Limits {
    Limits {
        max_width: 4096,
        max_height: 4096,
        max_pixels: 4_000_000,
        max_alloc_bytes: 32 << 20,
        max_frames: 64,
        max_total_pixels: 16_000_000,
    }
}
