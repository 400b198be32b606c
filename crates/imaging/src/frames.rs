//! Header-only frame accounting for animated images (GIF, APNG, WebP).
//!
//! Walks the container structure (GIF blocks, PNG chunks, RIFF chunks)
//! without decompressing any image data, so it is cheap and safe to run in
//! the API process on an untrusted prefix. Every frame's own rectangle is
//! checked against the per-image limits, and the frame count and the summed
//! decoded size (`frames × canvas`, what an animation decoder produces) are
//! checked against [`Limits::max_frames`] / [`Limits::max_total_pixels`].
//!
//! The walk stops at the end of `bytes` (a prefix gives a lower bound) or at
//! the first structure it does not understand: judging corruption is the
//! decoder's job, this module only refuses what is provably over a limit.
//! It stops as soon as a limit is exceeded, so its work is bounded by
//! `max_frames` as well as by the input length.

use crate::{ImageFormat, ImagingError, Limits};

/// Frame accounting result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frames {
    /// Number of frames (at least 1).
    pub count: u32,
}

/// Counts frames and checks the frame limits.
///
/// `width × height` is the canvas (logical screen) already checked by the caller.
pub(crate) fn check(
    format: ImageFormat,
    bytes: &[u8],
    width: u32,
    height: u32,
    limits: &Limits,
) -> Result<Frames, ImagingError> {
    let mut acc = Acc {
        width,
        height,
        limits,
        count: 0,
    };
    match format {
        // Still formats (a TIFF's later pages, a HEIF's other items, are never decoded).
        ImageFormat::Jpeg
        | ImageFormat::Tiff
        | ImageFormat::Heic
        | ImageFormat::Heif
        | ImageFormat::Avif => {}
        ImageFormat::Gif => gif(bytes, &mut acc)?,
        ImageFormat::Png => png(bytes, &mut acc)?,
        ImageFormat::Webp => webp(bytes, &mut acc)?,
    }
    let count = acc.count.max(1);
    acc.check_totals(u64::from(count))?;
    Ok(Frames { count })
}

struct Acc<'a> {
    width: u32,
    height: u32,
    limits: &'a Limits,
    count: u32,
}

impl Acc<'_> {
    fn too_large(&self, reason: String) -> ImagingError {
        ImagingError::TooLarge {
            width: self.width,
            height: self.height,
            reason,
        }
    }

    /// Checks a (possibly declared) frame count and the pixels summed over frames.
    fn check_totals(&self, frames: u64) -> Result<(), ImagingError> {
        if frames > u64::from(self.limits.max_frames) {
            return Err(self.too_large(format!(
                "{frames} frames exceed the limit of {}",
                self.limits.max_frames
            )));
        }
        let total = frames.saturating_mul(u64::from(self.width) * u64::from(self.height));
        if total > self.limits.max_total_pixels {
            return Err(self.too_large(format!(
                "{total} pixels summed over {frames} frames exceed the limit of {}",
                self.limits.max_total_pixels
            )));
        }
        Ok(())
    }

    /// Records one frame whose own rectangle is `w × h`.
    fn frame(&mut self, w: u32, h: u32) -> Result<(), ImagingError> {
        self.limits.check_source(w, h).map_err(|e| match e {
            ImagingError::TooLarge { reason, .. } => {
                self.too_large(format!("frame {} is {w}x{h}: {reason}", self.count + 1))
            }
            other => other,
        })?;
        self.count = self.count.saturating_add(1);
        self.check_totals(u64::from(self.count))
    }
}

fn u16_le(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at.checked_add(2)?)
        .map(|s| u32::from(u16::from_le_bytes([s[0], s[1]])))
}

fn u24_le(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at.checked_add(3)?)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], 0]))
}

fn u32_le(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at.checked_add(4)?)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u32_be(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at.checked_add(4)?)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// GIF: header, optional global colour table, then blocks until the trailer.
fn gif(b: &[u8], acc: &mut Acc<'_>) -> Result<(), ImagingError> {
    let Some(&flags) = b.get(10) else {
        return Ok(());
    };
    let mut pos = 13usize;
    if flags & 0x80 != 0 {
        pos += 3 << ((flags & 7) + 1);
    }
    // Skips data sub-blocks starting at `pos`; `None` when truncated.
    let skip_sub_blocks = |mut pos: usize| -> Option<usize> {
        loop {
            let len = usize::from(*b.get(pos)?);
            pos += 1;
            if len == 0 {
                return Some(pos);
            }
            pos += len;
        }
    };
    loop {
        match b.get(pos) {
            // Extension: introducer, label, sub-blocks.
            Some(0x21) => match skip_sub_blocks(pos + 2) {
                Some(next) => pos = next,
                None => return Ok(()),
            },
            // Image descriptor: left, top, width, height, flags.
            Some(0x2C) => {
                let (Some(w), Some(h), Some(&flags)) =
                    (u16_le(b, pos + 5), u16_le(b, pos + 7), b.get(pos + 9))
                else {
                    return Ok(());
                };
                acc.frame(w, h)?;
                pos += 10;
                if flags & 0x80 != 0 {
                    pos += 3 << ((flags & 7) + 1);
                }
                // LZW minimum code size, then the image data sub-blocks.
                match skip_sub_blocks(pos + 1) {
                    Some(next) => pos = next,
                    None => return Ok(()),
                }
            }
            // Trailer, end of data, or something the decoder will judge.
            _ => return Ok(()),
        }
    }
}

/// PNG / APNG: walks the chunks; counts `fcTL` and honours the `acTL` frame count.
fn png(b: &[u8], acc: &mut Acc<'_>) -> Result<(), ImagingError> {
    let mut pos = 8usize;
    // `pos < len` keeps the `pos + k` below from overflowing (even on 32 bits).
    while pos < b.len() {
        let (Some(len), Some(kind)) = (u32_be(b, pos), b.get(pos + 4..pos + 8)) else {
            break;
        };
        let data = pos + 8;
        match kind {
            b"acTL" => {
                if let Some(declared) = u32_be(b, data) {
                    // The declared count alone is enough to refuse the file.
                    acc.check_totals(u64::from(declared))?;
                }
            }
            b"fcTL" => {
                let (Some(w), Some(h)) = (u32_be(b, data + 4), u32_be(b, data + 8)) else {
                    return Ok(());
                };
                acc.frame(w, h)?;
            }
            b"IEND" => return Ok(()),
            _ => {}
        }
        // Length + type + data + CRC; a length over 2^31 is invalid anyway.
        let Some(next) = usize::try_from(len)
            .ok()
            .and_then(|l| data.checked_add(l))
            .and_then(|p| p.checked_add(4))
        else {
            return Ok(());
        };
        pos = next;
    }
    Ok(())
}

/// WebP: walks the RIFF chunks and counts `ANMF` frames.
fn webp(b: &[u8], acc: &mut Acc<'_>) -> Result<(), ImagingError> {
    let mut pos = 12usize;
    while pos < b.len() {
        let (Some(kind), Some(size)) = (b.get(pos..pos + 4), u32_le(b, pos + 4)) else {
            break;
        };
        let data = pos + 8;
        if kind == b"ANMF" {
            // X, Y (3 bytes each), then width-1 and height-1 (3 bytes each).
            let (Some(w), Some(h)) = (u24_le(b, data + 6), u24_le(b, data + 9)) else {
                return Ok(());
            };
            acc.frame(w + 1, h + 1)?;
        }
        // Chunks are padded to an even size.
        let Some(next) = usize::try_from(size)
            .ok()
            .and_then(|s| data.checked_add(s))
            .and_then(|p| p.checked_add(usize::from(size & 1 == 1)))
        else {
            return Ok(());
        };
        pos = next;
    }
    Ok(())
}
