//! Animated GIF → animated GIF: every frame resized, delays and loop count kept.
//!
//! The frame limits are checked from the header first ([`crate::probe`]: `max_frames`, and
//! `max_total_pixels` summed over frames), and again while decoding. Frames are decoded one at
//! a time (each composited onto the full canvas, as the GIF's disposal methods say) and
//! resized at once, so memory holds one full-size canvas plus the small output frames.

use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};

use image::codecs::gif::{GifDecoder, GifEncoder, Repeat};
use image::metadata::LoopCount;
use image::{AnimationDecoder, Frame, ImageDecoder};

use crate::geometry;
use crate::transform::{Raster, resize};
use crate::{Encoded, Fit, ImageFormat, ImagingError, Limits, OutputFormat, Transform, probe};

/// What [`animate`] does to each frame: a resize with the semantics of [`Transform`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Animate {
    /// Target box width; `None` = follow from the aspect ratio.
    pub width: Option<u32>,
    /// Target box height; `None` = follow from the aspect ratio.
    pub height: Option<u32>,
    /// Fit mode when both sides are given (`contain` pads with transparency).
    pub fit: Fit,
    /// Allow enlarging beyond the source size.
    pub upscale: bool,
}

/// Resizes every frame of a GIF and writes an animated GIF with the same frame delays and
/// loop count. A still GIF gives a one-frame GIF; any other source format is
/// [`ImagingError::InvalidParameters`] (only GIF → GIF keeps the frames).
///
/// Errors as [`crate::transform`]; a file with more frames than `limits.max_frames`, or more
/// pixels summed over its frames than `limits.max_total_pixels`, is [`ImagingError::TooLarge`]
/// before any frame is decoded.
pub fn animate(bytes: &[u8], op: &Animate, limits: &Limits) -> Result<Encoded, ImagingError> {
    let t = Transform {
        width: op.width,
        height: op.height,
        fit: op.fit,
        upscale: op.upscale,
        format: OutputFormat::Gif,
        ..Transform::default()
    };
    geometry::validate(&t, limits)?;
    let info = probe(bytes, limits)?;
    if info.format != ImageFormat::Gif {
        return Err(ImagingError::InvalidParameters(format!(
            "keeping all frames needs a GIF source, this is {}",
            info.format.mime()
        )));
    }
    let plan = geometry::plan(info.width, info.height, &t, limits)?;
    catch_unwind(AssertUnwindSafe(|| {
        run(bytes, &plan, info.width, info.height, limits)
    }))
    .map_err(|_| ImagingError::Corrupt("decoder panicked".into()))?
}

fn run(
    bytes: &[u8],
    plan: &geometry::Plan,
    width: u32,
    height: u32,
    limits: &Limits,
) -> Result<Encoded, ImagingError> {
    let corrupt = |e: image::ImageError| match e {
        image::ImageError::Limits(l) => ImagingError::TooLarge {
            width,
            height,
            reason: l.to_string(),
        },
        other => ImagingError::Corrupt(other.to_string()),
    };
    let mut decoder = GifDecoder::new(Cursor::new(bytes)).map_err(corrupt)?;
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_image_width = Some(limits.max_width);
    decoder_limits.max_image_height = Some(limits.max_height);
    decoder_limits.max_alloc = Some(limits.max_alloc_bytes);
    decoder.set_limits(decoder_limits).map_err(corrupt)?;
    let repeat = match decoder.loop_count() {
        LoopCount::Infinite => Repeat::Infinite,
        LoopCount::Finite(n) => Repeat::Finite(u16::try_from(n.get()).unwrap_or(u16::MAX)),
    };
    let (out_w, out_h) = plan.output_size();
    let mut out = Vec::new();
    let mut count = 0u32;
    {
        let mut encoder = GifEncoder::new_with_speed(&mut out, 10);
        encoder
            .set_repeat(repeat)
            .map_err(|e| ImagingError::Encode(format!("gif: {e}")))?;
        for frame in decoder.into_frames() {
            let frame = frame.map_err(corrupt)?;
            count += 1;
            // The header walk already counted the frames; this guards a walk that stopped early.
            if count > limits.max_frames
                || u64::from(count) * u64::from(width) * u64::from(height) > limits.max_total_pixels
            {
                return Err(ImagingError::TooLarge {
                    width,
                    height,
                    reason: format!("more than {} frames decoded", count - 1),
                });
            }
            let delay = frame.delay();
            let buffer = frame.into_buffer();
            let raster = Raster {
                width: buffer.width(),
                height: buffer.height(),
                alpha: true,
                data: buffer.into_raw(),
            };
            let mut small = resize(raster, plan)?;
            if let Some((cw, ch)) = plan.canvas {
                small = small.pad(cw, ch, &[0, 0, 0, 0]);
            }
            let rgba = image::RgbaImage::from_raw(small.width, small.height, small.data)
                .ok_or_else(|| ImagingError::Encode("gif: wrong frame size".into()))?;
            encoder
                .encode_frame(Frame::from_parts(rgba, 0, 0, delay))
                .map_err(|e| ImagingError::Encode(format!("gif: {e}")))?;
        }
    }
    if count == 0 {
        return Err(ImagingError::Corrupt("GIF has no frames".into()));
    }
    Ok(Encoded {
        bytes: out,
        format: OutputFormat::Gif,
        width: out_w,
        height: out_h,
    })
}
