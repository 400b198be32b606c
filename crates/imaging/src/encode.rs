//! Encoders with per-format options, for [`crate::pipeline`] and [`crate::variants`].

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{DynamicImage, ExtendedColorType, ImageEncoder};

use crate::{Encoded, ImagingError, OutputFormat};

/// Largest dimension libwebp can encode.
const WEBP_MAX_DIMENSION: u32 = 16383;
/// Largest dimension a JPEG can hold.
const JPEG_MAX_DIMENSION: u32 = 65535;
/// Largest dimension a GIF can hold.
const GIF_MAX_DIMENSION: u32 = 65535;

/// The AVIF encoder speed used when none is given: libaom's speed 8. Measured on one core for
/// a 1024×768 noisy gradient at quality 60: speed 4 took 6.7 s (111 KiB), 6 (libheif's own
/// default) 1.7 s (106 KiB), 8 0.47 s (120 KiB), 9 0.08 s (138 KiB); 6 would put a 16 MP
/// photo near the job time limit.
pub const AVIF_DEFAULT_SPEED: u8 = 8;
/// Fastest AVIF encoder speed (libaom's `cpu-used` 9); 0 is the slowest and smallest.
pub const AVIF_MAX_SPEED: u8 = 9;

/// Refuses output formats this build cannot write (AVIF needs the `heif` feature).
pub(crate) fn check_output_format(format: OutputFormat) -> Result<(), ImagingError> {
    if format == OutputFormat::Avif && !crate::HEIF_SUPPORT {
        return Err(ImagingError::InvalidParameters(
            "AVIF output is not available in this build (photo-imaging without the heif feature)"
                .into(),
        ));
    }
    Ok(())
}

/// Encodes tightly packed 8-bit RGB(A) as AVIF (`quality` 1..=100, `speed` 0..=9).
pub(crate) fn avif(
    data: &[u8],
    width: u32,
    height: u32,
    alpha: bool,
    quality: u8,
    speed: u8,
    icc: Option<&[u8]>,
) -> Result<Vec<u8>, ImagingError> {
    check_output_format(OutputFormat::Avif)?;
    #[cfg(feature = "heif")]
    {
        crate::heif::encode_avif(data, width, height, alpha, quality, speed, icc)
    }
    #[cfg(not(feature = "heif"))]
    {
        let _ = (data, width, height, alpha, quality, speed, icc);
        Err(ImagingError::InvalidParameters(
            "AVIF output is not available".into(),
        ))
    }
}

/// Encodes tightly packed 8-bit RGB(A) as a one-frame GIF (quantised to 256 colours; alpha
/// becomes 1-bit transparency).
pub(crate) fn gif_still(
    data: &[u8],
    width: u32,
    height: u32,
    alpha: bool,
) -> Result<Vec<u8>, ImagingError> {
    if width > GIF_MAX_DIMENSION || height > GIF_MAX_DIMENSION {
        return Err(ImagingError::InvalidParameters(format!(
            "GIF output is limited to {GIF_MAX_DIMENSION}x{GIF_MAX_DIMENSION}, requested {width}x{height}"
        )));
    }
    let rgba: Vec<u8> = if alpha {
        data.to_vec()
    } else {
        data.chunks_exact(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect()
    };
    let frame = image::RgbaImage::from_raw(width, height, rgba)
        .ok_or_else(|| ImagingError::Encode("gif: wrong buffer size".into()))?;
    let mut out = Vec::new();
    {
        let mut enc = image::codecs::gif::GifEncoder::new_with_speed(&mut out, 10);
        enc.encode_frame(image::Frame::new(frame))
            .map_err(|e| ImagingError::Encode(format!("gif: {e}")))?;
    }
    Ok(out)
}

/// JPEG chroma subsampling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChromaSubsampling {
    /// The existing behaviour: 4:4:4 (the `image` crate's encoder, used
    /// when no other JPEG option is set, does not subsample).
    #[default]
    Auto,
    /// 4:2:0: chroma at half resolution on both axes (smaller files).
    Yuv420,
    /// 4:4:4: full-resolution chroma (sharper colour edges, e.g. text, logos).
    Yuv444,
}

/// PNG deflate effort.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PngCompression {
    /// Fast, larger files (the existing [`crate::transform`] behaviour).
    #[default]
    Fast,
    /// zlib's default level.
    Balanced,
    /// Smallest files, slowest.
    Best,
}

/// How to encode the output of [`crate::pipeline`] / [`crate::variants`].
///
/// The default is identical to [`crate::Transform`]'s default output:
/// baseline JPEG at quality 82, alpha flattened onto white, no metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Output format.
    pub format: OutputFormat,
    /// 1..=100; JPEG and lossy WebP (ignored by PNG and lossless WebP).
    pub quality: u8,
    /// JPEG: progressive scans.
    pub jpeg_progressive: bool,
    /// JPEG: chroma subsampling.
    pub jpeg_subsampling: ChromaSubsampling,
    /// JPEG: optimised Huffman tables (smaller files, one extra pass).
    ///
    /// Not allowed together with baseline (non-progressive) 4:2:0: the
    /// encoder then writes non-interleaved scans, which are valid JPEG but
    /// misdecoded by the `image` crate's decoder (zune-jpeg 0.5, see
    /// zune-image issue #341). Use it with progressive or 4:4:4.
    pub jpeg_optimize_huffman: bool,
    /// PNG: deflate effort.
    pub png_compression: PngCompression,
    /// WebP: lossless instead of lossy.
    pub webp_lossless: bool,
    /// AVIF: encoder speed 0..=[`AVIF_MAX_SPEED`] (0 slowest, smallest files); default
    /// [`AVIF_DEFAULT_SPEED`].
    pub avif_speed: u8,
    /// Colour alpha is flattened onto for JPEG, and the `contain` padding
    /// colour for JPEG (default white). PNG/WebP keep alpha and pad transparent.
    pub background: [u8; 3],
    /// Keep the source's RGB ICC profile (default false: strip everything).
    pub keep_icc: bool,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            format: OutputFormat::Jpeg,
            quality: 82,
            jpeg_progressive: false,
            jpeg_subsampling: ChromaSubsampling::Auto,
            jpeg_optimize_huffman: false,
            png_compression: PngCompression::Fast,
            webp_lossless: false,
            avif_speed: AVIF_DEFAULT_SPEED,
            background: [255, 255, 255],
            keep_icc: false,
        }
    }
}

impl EncodeOptions {
    /// Default options for `format`.
    pub fn new(format: OutputFormat) -> Self {
        EncodeOptions {
            format,
            ..EncodeOptions::default()
        }
    }

    /// Checks the parameters that do not depend on the image.
    pub(crate) fn validate(&self) -> Result<(), ImagingError> {
        check_output_format(self.format)?;
        if self.avif_speed > AVIF_MAX_SPEED {
            return Err(ImagingError::InvalidParameters(format!(
                "AVIF speed must be 0..={AVIF_MAX_SPEED}, got {}",
                self.avif_speed
            )));
        }
        if !(1..=100).contains(&self.quality) {
            return Err(ImagingError::InvalidParameters(format!(
                "quality must be 1..=100, got {}",
                self.quality
            )));
        }
        if self.format == OutputFormat::Jpeg
            && self.jpeg_optimize_huffman
            && !self.jpeg_progressive
            && self.jpeg_subsampling == ChromaSubsampling::Yuv420
        {
            return Err(ImagingError::InvalidParameters(
                "optimised Huffman tables with baseline 4:2:0 JPEG are not supported; \
                 use progressive or 4:4:4"
                    .into(),
            ));
        }
        Ok(())
    }

    /// True when JPEG needs the configurable encoder.
    fn jpeg_advanced(&self) -> bool {
        self.jpeg_progressive
            || self.jpeg_optimize_huffman
            || self.jpeg_subsampling != ChromaSubsampling::Auto
    }
}

/// Composites RGBA onto `bg` and drops alpha; RGB passes through.
pub(crate) fn flatten(img: DynamicImage, bg: [u8; 3]) -> DynamicImage {
    let DynamicImage::ImageRgba8(rgba) = img else {
        return img;
    };
    let (w, h) = rgba.dimensions();
    let blend = |c: u8, a: u16, b: u8| -> u8 {
        let v = (u16::from(c) * a + u16::from(b) * (255 - a) + 127) / 255;
        u8::try_from(v).unwrap_or(u8::MAX)
    };
    let data: Vec<u8> = rgba
        .as_raw()
        .chunks_exact(4)
        .flat_map(|p| {
            let a = u16::from(p[3]);
            [
                blend(p[0], a, bg[0]),
                blend(p[1], a, bg[1]),
                blend(p[2], a, bg[2]),
            ]
        })
        .collect();
    match image::RgbImage::from_raw(w, h, data) {
        Some(rgb) => DynamicImage::ImageRgb8(rgb),
        // Unreachable: the buffer has exactly w*h*3 bytes.
        None => DynamicImage::ImageRgba8(rgba),
    }
}

/// Encodes an RGB8/RGBA8 image (anything else is converted first).
pub(crate) fn encode_image(
    img: DynamicImage,
    opts: &EncodeOptions,
    icc: Option<&[u8]>,
) -> Result<Encoded, ImagingError> {
    opts.validate()?;
    let img = match img {
        DynamicImage::ImageRgb8(_) | DynamicImage::ImageRgba8(_) => img,
        other if other.color().has_alpha() => DynamicImage::ImageRgba8(other.to_rgba8()),
        other => DynamicImage::ImageRgb8(other.to_rgb8()),
    };
    let img = if opts.format == OutputFormat::Jpeg {
        flatten(img, opts.background)
    } else {
        img
    };
    let (width, height) = (img.width(), img.height());
    let (alpha, data) = match &img {
        DynamicImage::ImageRgba8(b) => (true, b.as_raw().as_slice()),
        DynamicImage::ImageRgb8(b) => (false, b.as_raw().as_slice()),
        _ => return Err(ImagingError::Encode("unexpected pixel layout".into())),
    };
    let icc = if opts.keep_icc { icc } else { None };
    let enc_err = |e: image::ImageError| ImagingError::Encode(e.to_string());
    let color = if alpha {
        ExtendedColorType::Rgba8
    } else {
        ExtendedColorType::Rgb8
    };
    let mut out = Vec::new();
    match opts.format {
        OutputFormat::Jpeg if opts.jpeg_advanced() => {
            if width > JPEG_MAX_DIMENSION || height > JPEG_MAX_DIMENSION {
                return Err(ImagingError::InvalidParameters(format!(
                    "JPEG output is limited to {JPEG_MAX_DIMENSION}x{JPEG_MAX_DIMENSION}, requested {width}x{height}"
                )));
            }
            let (Ok(w16), Ok(h16)) = (u16::try_from(width), u16::try_from(height)) else {
                return Err(ImagingError::InvalidParameters("JPEG too large".into()));
            };
            let mut enc = jpeg_encoder::Encoder::new(&mut out, opts.quality);
            enc.set_progressive(opts.jpeg_progressive);
            enc.set_optimized_huffman_tables(opts.jpeg_optimize_huffman);
            enc.set_sampling_factor(match opts.jpeg_subsampling {
                ChromaSubsampling::Auto | ChromaSubsampling::Yuv444 => {
                    jpeg_encoder::SamplingFactor::R_4_4_4
                }
                ChromaSubsampling::Yuv420 => jpeg_encoder::SamplingFactor::R_4_2_0,
            });
            if let Some(icc) = icc {
                // Unsupported ICC is not an error: the image is still valid.
                let _ = enc.add_icc_profile(icc);
            }
            enc.encode(data, w16, h16, jpeg_encoder::ColorType::Rgb)
                .map_err(|e| ImagingError::Encode(format!("jpeg: {e}")))?;
        }
        OutputFormat::Jpeg => {
            let mut enc = JpegEncoder::new_with_quality(&mut out, opts.quality);
            if let Some(icc) = icc {
                let _ = enc.set_icc_profile(icc.to_vec());
            }
            enc.write_image(data, width, height, color)
                .map_err(enc_err)?;
        }
        OutputFormat::Png => {
            let compression = match opts.png_compression {
                PngCompression::Fast => CompressionType::Fast,
                PngCompression::Balanced => CompressionType::Default,
                PngCompression::Best => CompressionType::Best,
            };
            let mut enc = PngEncoder::new_with_quality(&mut out, compression, FilterType::Adaptive);
            if let Some(icc) = icc {
                let _ = enc.set_icc_profile(icc.to_vec());
            }
            enc.write_image(data, width, height, color)
                .map_err(enc_err)?;
        }
        OutputFormat::Webp => {
            if width > WEBP_MAX_DIMENSION || height > WEBP_MAX_DIMENSION {
                return Err(ImagingError::InvalidParameters(format!(
                    "WebP output is limited to {WEBP_MAX_DIMENSION}x{WEBP_MAX_DIMENSION}, requested {width}x{height}"
                )));
            }
            let encoder = if alpha {
                webp::Encoder::from_rgba(data, width, height)
            } else {
                webp::Encoder::from_rgb(data, width, height)
            };
            let mem = encoder
                .encode_simple(opts.webp_lossless, f32::from(opts.quality))
                .map_err(|e| ImagingError::Encode(format!("webp: {e:?}")))?;
            out = mem.to_vec();
            if let Some(icc) = icc
                && let Some(with_icc) = crate::webp_mux::add_icc(&out, icc, width, height, alpha)
            {
                out = with_icc;
            }
        }
        OutputFormat::Avif => {
            out = avif(
                data,
                width,
                height,
                alpha,
                opts.quality,
                opts.avif_speed,
                icc,
            )?;
        }
        OutputFormat::Gif => out = gif_still(data, width, height, alpha)?,
    }
    Ok(Encoded {
        bytes: out,
        format: opts.format,
        width,
        height,
    })
}
