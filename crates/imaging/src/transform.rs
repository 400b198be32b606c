//! Full decode → orient → resize → encode.

use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};

use fast_image_resize as fr;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::metadata::Orientation;
use image::{DynamicImage, ExtendedColorType, ImageDecoder, ImageEncoder, ImageReader};

use crate::geometry::{self, Plan};
use crate::{Encoded, Fit, ImageFormat, ImagingError, Limits, OutputFormat, Transform, probe};

/// Largest dimension libwebp can encode.
const WEBP_MAX_DIMENSION: u32 = 16383;

/// Full decode (with limits set on the decoder), then EXIF orientation,
/// resize and encode.
///
/// The format is taken from [`crate::sniff`], and the header dimensions are
/// checked against `limits` before any pixel is decoded. Output is always
/// 8-bit RGB(A); the first frame is used for animated GIF/WebP/APNG.
pub fn transform(bytes: &[u8], op: &Transform, limits: &Limits) -> Result<Encoded, ImagingError> {
    // Cheap checks first: parameters, then header + limits (no decoding).
    geometry::validate(op, limits)?;
    let info = probe(bytes, limits)?;

    let decoded = catch_unwind(AssertUnwindSafe(|| decode(bytes, info.format, op, limits)))
        .map_err(|_| ImagingError::Corrupt("decoder panicked".into()))??;

    catch_unwind(AssertUnwindSafe(|| process(decoded, op, limits)))
        .map_err(|_| ImagingError::Encode("encoder panicked".into()))?
}

/// 8-bit pixels, tightly packed, 3 (RGB) or 4 (RGBA) channels.
#[derive(Debug)]
pub(crate) struct Raster {
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) alpha: bool,
    pub(crate) data: Vec<u8>,
}

impl Raster {
    fn channels(&self) -> usize {
        if self.alpha { 4 } else { 3 }
    }

    fn pixel_type(&self) -> fr::PixelType {
        if self.alpha {
            fr::PixelType::U8x4
        } else {
            fr::PixelType::U8x3
        }
    }

    /// Drops the alpha channel when every pixel is opaque.
    fn drop_opaque_alpha(self) -> Raster {
        if !self.alpha || !self.data.chunks_exact(4).all(|p| p[3] == 255) {
            return self;
        }
        let data = self
            .data
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect();
        Raster {
            alpha: false,
            data,
            ..self
        }
    }

    /// Composites onto white and drops alpha.
    fn flatten_on_white(self) -> Raster {
        if !self.alpha {
            return self;
        }
        let blend = |c: u8, a: u16| -> u8 {
            let v = (u16::from(c) * a + 255 * (255 - a) + 127) / 255;
            u8::try_from(v).unwrap_or(u8::MAX)
        };
        let data = self
            .data
            .chunks_exact(4)
            .flat_map(|p| {
                let a = u16::from(p[3]);
                [blend(p[0], a), blend(p[1], a), blend(p[2], a)]
            })
            .collect();
        Raster {
            alpha: false,
            data,
            ..self
        }
    }

    /// Adds an opaque alpha channel.
    fn with_alpha(self) -> Raster {
        if self.alpha {
            return self;
        }
        let data = self
            .data
            .chunks_exact(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect();
        Raster {
            alpha: true,
            data,
            ..self
        }
    }

    /// Centres `self` on a `w × h` canvas filled with `bg` (per-channel).
    pub(crate) fn pad(self, w: u32, h: u32, bg: &[u8]) -> Raster {
        let ch = self.channels();
        if (w, h) == (self.width, self.height) || bg.len() != ch {
            return self;
        }
        let (w_us, h_us) = (w as usize, h as usize);
        let mut data = Vec::with_capacity(w_us * h_us * ch);
        for _ in 0..w_us * h_us {
            data.extend_from_slice(bg);
        }
        let left = (w.saturating_sub(self.width) / 2) as usize;
        let top = (h.saturating_sub(self.height) / 2) as usize;
        let row_len = (self.width as usize).min(w_us) * ch;
        for (y, row) in self.data.chunks_exact(self.width as usize * ch).enumerate() {
            let ty = top + y;
            if ty >= h_us {
                break;
            }
            let start = (ty * w_us + left) * ch;
            if let (Some(dst), Some(src)) =
                (data.get_mut(start..start + row_len), row.get(..row_len))
            {
                dst.copy_from_slice(src);
            }
        }
        Raster {
            width: w,
            height: h,
            alpha: self.alpha,
            data,
        }
    }
}

/// Decoded, oriented image plus the metadata we may carry over.
#[derive(Debug)]
struct Decoded {
    raster: Raster,
    icc: Option<Vec<u8>>,
}

fn image_error(e: image::ImageError, width: u32, height: u32) -> ImagingError {
    match e {
        image::ImageError::Limits(l) => ImagingError::TooLarge {
            width,
            height,
            reason: l.to_string(),
        },
        other => ImagingError::Corrupt(other.to_string()),
    }
}

fn decode(
    bytes: &[u8],
    format: ImageFormat,
    op: &Transform,
    limits: &Limits,
) -> Result<Decoded, ImagingError> {
    // Fast path: libjpeg-turbo with shrink-on-load (see `crate::decode`);
    // it declines (None) anything unusual, which then takes the path below.
    if format == ImageFormat::Jpeg
        && jpeg_has_eoi(bytes)
        && let Some(fast) = crate::decode::jpeg(bytes, op, limits)
    {
        return Ok(Decoded {
            raster: Raster {
                width: fast.width,
                height: fast.height,
                alpha: false,
                data: fast.rgb,
            },
            icc: fast.icc.filter(|p| is_rgb_icc(p)),
        });
    }
    // WebP shrink-on-load through libwebp's scaled decoding (`crate::decode_webp`).
    if format == ImageFormat::Webp
        && let Some(fast) = crate::decode_webp::webp(bytes, op, limits)
    {
        return Ok(Decoded {
            raster: Raster {
                width: fast.width,
                height: fast.height,
                alpha: fast.alpha,
                data: fast.data,
            },
            icc: None,
        });
    }
    let img_format = match format {
        ImageFormat::Jpeg => image::ImageFormat::Jpeg,
        ImageFormat::Png => image::ImageFormat::Png,
        ImageFormat::Webp => image::ImageFormat::WebP,
        ImageFormat::Gif => image::ImageFormat::Gif,
        ImageFormat::Tiff => image::ImageFormat::Tiff,
        ImageFormat::Heic | ImageFormat::Heif | ImageFormat::Avif => {
            return decode_heif(bytes, limits);
        }
    };
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_image_width = Some(limits.max_width);
    decoder_limits.max_image_height = Some(limits.max_height);
    decoder_limits.max_alloc = Some(limits.max_alloc_bytes);

    let mut reader = ImageReader::with_format(Cursor::new(bytes), img_format);
    reader.limits(decoder_limits);
    let mut decoder = reader.into_decoder().map_err(|e| image_error(e, 0, 0))?;

    // The decoder's own view of the header must also be within limits.
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(ImagingError::Corrupt(format!(
            "image declares a zero dimension ({w}x{h})"
        )));
    }
    limits.check_source(w, h)?;
    // `image` 0.25 does not enforce `max_alloc` for the output buffer of
    // most codecs, so check the decoded size ourselves.
    let total = decoder.total_bytes();
    if total > limits.max_alloc_bytes {
        return Err(ImagingError::TooLarge {
            width: w,
            height: h,
            reason: format!(
                "decoding needs {total} bytes, above the allocation limit of {}",
                limits.max_alloc_bytes
            ),
        });
    }
    if format == ImageFormat::Jpeg && !jpeg_has_eoi(bytes) {
        // zune-jpeg silently fills in missing scan data; we want truncated
        // uploads reported, not stored half-grey.
        return Err(ImagingError::Corrupt(
            "truncated JPEG (no end-of-image marker after the scan data)".into(),
        ));
    }

    let orientation = if op.auto_orient {
        // A broken EXIF block must not fail the whole image.
        decoder.orientation().unwrap_or(Orientation::NoTransforms)
    } else {
        Orientation::NoTransforms
    };
    // Always read: a stripped output is converted to sRGB with it (`crate::colour`).
    let icc = decoder
        .icc_profile()
        .ok()
        .flatten()
        .filter(|p| is_rgb_icc(p));

    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| image_error(e, w, h))?;
    img.apply_orientation(orientation);

    let raster = if img.color().has_alpha() {
        let buf = img.into_rgba8();
        Raster {
            width: buf.width(),
            height: buf.height(),
            alpha: true,
            data: buf.into_raw(),
        }
    } else {
        let buf = img.into_rgb8();
        Raster {
            width: buf.width(),
            height: buf.height(),
            alpha: false,
            data: buf.into_raw(),
        }
    };
    Ok(Decoded {
        raster: raster.drop_opaque_alpha(),
        icc,
    })
}

/// The HEIF family through libheif (`crate::heif`): `irot`/`imir` are applied by libheif and
/// EXIF orientation is never applied on top (see there), whatever `auto_orient` says.
#[cfg(feature = "heif")]
fn decode_heif(bytes: &[u8], limits: &Limits) -> Result<Decoded, ImagingError> {
    let img = crate::heif::decode(bytes, limits)?;
    let raster = Raster {
        width: img.width,
        height: img.height,
        alpha: img.alpha,
        data: img.data,
    };
    Ok(Decoded {
        raster: raster.drop_opaque_alpha(),
        icc: img.icc,
    })
}

/// Without the `heif` feature (the API process's build) HEIF-family images are not decoded.
#[cfg(not(feature = "heif"))]
fn decode_heif(_bytes: &[u8], _limits: &Limits) -> Result<Decoded, ImagingError> {
    Err(ImagingError::UnsupportedFormat)
}

/// True when an EOI marker (`FF D9`) follows the first start-of-scan.
///
/// Walks the marker segments up to the first SOS (so that an embedded EXIF
/// thumbnail's EOI does not count), then looks for EOI in the rest. Inside
/// entropy-coded data `FF` is always followed by `00` or a marker, so a
/// `FF D9` there is a real EOI. Trailing bytes after EOI are allowed.
fn jpeg_has_eoi(bytes: &[u8]) -> bool {
    let mut pos = 2usize; // after SOI
    loop {
        // Skip to the marker byte (allowing fill bytes).
        if bytes.get(pos) != Some(&0xFF) {
            return false;
        }
        while bytes.get(pos) == Some(&0xFF) {
            pos += 1;
        }
        let Some(&marker) = bytes.get(pos) else {
            return false;
        };
        pos += 1;
        match marker {
            // Standalone markers without a length.
            0x01 | 0xD0..=0xD7 => continue,
            0xD8 | 0xD9 => return false,
            _ => {}
        }
        let Some(len) = bytes
            .get(pos..pos + 2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        else {
            return false;
        };
        if len < 2 {
            return false;
        }
        pos += len;
        if marker == 0xDA {
            return bytes
                .get(pos..)
                .is_some_and(|rest| rest.windows(2).any(|w| w == [0xFF, 0xD9]));
        }
    }
}

/// We always output RGB, so only an RGB ICC profile may be carried over
/// (a GRAY or CMYK profile would be invalid on the output).
pub(crate) fn is_rgb_icc(profile: &[u8]) -> bool {
    profile.len() >= 128 && profile.get(16..20) == Some(b"RGB ".as_slice())
}

fn process(decoded: Decoded, op: &Transform, limits: &Limits) -> Result<Encoded, ImagingError> {
    let Decoded { raster, icc } = decoded;
    let plan = geometry::plan(raster.width, raster.height, op, limits)?;
    let (out_w, out_h) = plan.output_size();
    if op.format == OutputFormat::Webp && (out_w > WEBP_MAX_DIMENSION || out_h > WEBP_MAX_DIMENSION)
    {
        return Err(ImagingError::InvalidParameters(format!(
            "WebP output is limited to {WEBP_MAX_DIMENSION}x{WEBP_MAX_DIMENSION}, requested {out_w}x{out_h}"
        )));
    }

    let mut raster = resize(raster, &plan)?;
    // Colour management on the (small) resized image: without a profile in the output, the
    // pixels must be sRGB; with `strip_metadata: false` the profile travels with the pixels.
    let icc = match icc {
        Some(profile) if op.strip_metadata => {
            crate::colour::to_srgb(&mut raster.data, raster.alpha, &profile);
            None
        }
        other => other,
    };
    if op.format == OutputFormat::Jpeg {
        raster = raster.flatten_on_white();
    }
    if let Some((cw, ch)) = plan.canvas {
        raster = if op.format == OutputFormat::Jpeg {
            raster.pad(cw, ch, &[255, 255, 255])
        } else {
            raster.with_alpha().pad(cw, ch, &[0, 0, 0, 0])
        };
    }

    let bytes = encode(&raster, op, icc)?;
    Ok(Encoded {
        bytes,
        format: op.format,
        width: raster.width,
        height: raster.height,
    })
}

fn resize_err(e: impl std::fmt::Display) -> ImagingError {
    ImagingError::Encode(format!("resize failed: {e}"))
}

/// Resizes (and for cover, centre-crops) according to `plan`.
///
/// Large reductions go through a cheap area-average (box) step to about
/// twice the target size before the final Lanczos3 pass.
pub(crate) fn resize(src: Raster, plan: &Plan) -> Result<Raster, ImagingError> {
    let (rw, rh) = (plan.resize_w, plan.resize_h);
    if (rw, rh) == (src.width, src.height) {
        // Same size: same aspect, so cover needs no crop either.
        return Ok(src);
    }
    let pixel_type = src.pixel_type();
    let src_view = fr::images::ImageRef::new(src.width, src.height, &src.data, pixel_type)
        .map_err(resize_err)?;
    let mut resizer = fr::Resizer::new();
    let mut options = fr::ResizeOptions::new();
    if plan.crop_to_aspect {
        options = options.fit_into_destination(None);
    }

    // Two-step for big reductions (≥ 4× on both axes).
    let pre = (rw.saturating_mul(2), rh.saturating_mul(2));
    let mut dst = fr::images::Image::new(rw, rh, pixel_type);
    if src.width / 4 >= rw && src.height / 4 >= rh {
        let mut mid = fr::images::Image::new(pre.0, pre.1, pixel_type);
        let box_opts = options.resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Box));
        resizer
            .resize(&src_view, &mut mid, &box_opts)
            .map_err(resize_err)?;
        drop(src);
        let final_opts = fr::ResizeOptions::new()
            .resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Lanczos3));
        resizer
            .resize(&mid, &mut dst, &final_opts)
            .map_err(resize_err)?;
    } else {
        let opts = options.resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Lanczos3));
        resizer
            .resize(&src_view, &mut dst, &opts)
            .map_err(resize_err)?;
    }
    Ok(Raster {
        width: rw,
        height: rh,
        alpha: pixel_type == fr::PixelType::U8x4,
        data: dst.into_vec(),
    })
}

fn encode(raster: &Raster, op: &Transform, icc: Option<Vec<u8>>) -> Result<Vec<u8>, ImagingError> {
    let enc_err = |e: image::ImageError| ImagingError::Encode(e.to_string());
    let color = if raster.alpha {
        ExtendedColorType::Rgba8
    } else {
        ExtendedColorType::Rgb8
    };
    let mut out = Vec::new();
    match op.format {
        OutputFormat::Jpeg if icc.is_none() && !raster.alpha => {
            // libjpeg-turbo with 4:2:0 chroma, as libvips writes: SIMD-fast and the same file
            // sizes as the reference tools at the same quality.
            let image = turbojpeg::Image {
                pixels: raster.data.as_slice(),
                width: raster.width as usize,
                pitch: raster.width as usize * 3,
                height: raster.height as usize,
                format: turbojpeg::PixelFormat::RGB,
            };
            let jpeg =
                turbojpeg::compress(image, i32::from(op.quality), turbojpeg::Subsamp::Sub2x2)
                    .map_err(|e| ImagingError::Encode(format!("jpeg: {e}")))?;
            out = jpeg.to_vec();
        }
        OutputFormat::Jpeg => {
            let mut enc = JpegEncoder::new_with_quality(&mut out, op.quality);
            if let Some(icc) = icc {
                // Unsupported ICC is not an error: the image is still valid.
                let _ = enc.set_icc_profile(icc);
            }
            enc.write_image(&raster.data, raster.width, raster.height, color)
                .map_err(enc_err)?;
        }
        OutputFormat::Png => {
            let mut enc = PngEncoder::new(&mut out);
            if let Some(icc) = icc {
                let _ = enc.set_icc_profile(icc);
            }
            enc.write_image(&raster.data, raster.width, raster.height, color)
                .map_err(enc_err)?;
        }
        OutputFormat::Webp => {
            let encoder = if raster.alpha {
                webp::Encoder::from_rgba(&raster.data, raster.width, raster.height)
            } else {
                webp::Encoder::from_rgb(&raster.data, raster.width, raster.height)
            };
            let mem = encoder
                .encode_simple(false, f32::from(op.quality))
                .map_err(|e| ImagingError::Encode(format!("webp: {e:?}")))?;
            out = mem.to_vec();
            if let Some(icc) = icc
                && let Some(with_icc) =
                    crate::webp_mux::add_icc(&out, &icc, raster.width, raster.height, raster.alpha)
            {
                out = with_icc;
            }
        }
        OutputFormat::Avif => {
            out = crate::encode::avif(
                &raster.data,
                raster.width,
                raster.height,
                raster.alpha,
                op.quality,
                crate::AVIF_DEFAULT_SPEED,
                icc.as_deref(),
            )?;
        }
        OutputFormat::Gif => {
            out =
                crate::encode::gif_still(&raster.data, raster.width, raster.height, raster.alpha)?;
        }
    }
    Ok(out)
}

/// Decode (with limits) + optional EXIF orientation, for the pipeline,
/// variants and analysis APIs ([`crate::ops`], [`crate::analyze`]).
///
/// Returns 8-bit RGB or RGBA (alpha only when some pixel is not opaque) and,
/// when `keep_icc`, the RGB ICC profile.
pub(crate) fn decode_image(
    bytes: &[u8],
    limits: &Limits,
    auto_orient: bool,
    keep_icc: bool,
) -> Result<(DynamicImage, Option<Vec<u8>>), ImagingError> {
    decode_image_for(bytes, limits, auto_orient, keep_icc, None)
}

/// [`decode_image`], allowed to shrink a JPEG on load down to (not below) what `resize` needs.
pub(crate) fn decode_image_for(
    bytes: &[u8],
    limits: &Limits,
    auto_orient: bool,
    keep_icc: bool,
    resize: Option<&crate::ops::Resize>,
) -> Result<(DynamicImage, Option<Vec<u8>>), ImagingError> {
    let info = probe(bytes, limits)?;
    let op = Transform {
        auto_orient,
        strip_metadata: !keep_icc,
        width: resize.and_then(|r| r.width),
        height: resize.and_then(|r| r.height),
        fit: resize.map_or(Fit::Inside, |r| r.fit),
        upscale: resize.is_some_and(|r| r.upscale),
        ..Transform::default()
    };
    let Decoded { raster, icc } =
        catch_unwind(AssertUnwindSafe(|| decode(bytes, info.format, &op, limits)))
            .map_err(|_| ImagingError::Corrupt("decoder panicked".into()))??;
    let Raster {
        width,
        height,
        alpha,
        mut data,
    } = raster;
    // Not keeping the profile: convert to sRGB now so every later step works in sRGB.
    let icc = match icc {
        Some(profile) if !keep_icc => {
            crate::colour::to_srgb(&mut data, alpha, &profile);
            None
        }
        other => other,
    };
    let bad = || ImagingError::Corrupt("decoded buffer has the wrong size".into());
    let img = if alpha {
        DynamicImage::ImageRgba8(image::RgbaImage::from_raw(width, height, data).ok_or_else(bad)?)
    } else {
        DynamicImage::ImageRgb8(image::RgbImage::from_raw(width, height, data).ok_or_else(bad)?)
    };
    Ok((img, icc))
}
