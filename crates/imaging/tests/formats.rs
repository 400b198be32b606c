//! TIFF, HEIC and AVIF input, AVIF output, animated GIF → GIF. Every file is made here: TIFF
//! with the `image` crate, HEIC with libheif's own HEVC encoder (x265), AVIF with our encoder.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use image::codecs::gif::{GifDecoder, GifEncoder, Repeat};
use image::{AnimationDecoder, DynamicImage, Frame, Rgb, RgbImage, Rgba, RgbaImage};
use libheif_rs::{
    Channel, ColorSpace, CompressionFormat, EncoderQuality, EncodingOptions, HeifContext,
    ImageOrientation, LibHeif, RgbChroma,
};
use photo_imaging::{
    Animate, EncodeOptions, Fit, ImageFormat, ImagingError, Limits, OutputFormat, Pipeline,
    Transform, animate, pipeline, probe, sniff, transform,
};

fn to_png(t: &Transform) -> Transform {
    Transform {
        format: OutputFormat::Png,
        ..*t
    }
}

fn decode_png(bytes: &[u8]) -> RgbaImage {
    image::load_from_memory_with_format(bytes, image::ImageFormat::Png)
        .unwrap()
        .to_rgba8()
}

fn close(a: &[u8], b: &[u8], tol: u8) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(*y) <= tol)
}

/// Left half red, right half blue: orientation is visible.
fn halves(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, _| {
        if x < w / 2 {
            Rgb([220, 30, 30])
        } else {
            Rgb([30, 30, 220])
        }
    })
}

/// A HEIC file made by libheif (x265), with an optional `irot`/`imir` orientation and an
/// optional EXIF block (TIFF bytes).
fn heic(img: &RgbImage, orientation: ImageOrientation, exif: Option<&[u8]>) -> Vec<u8> {
    let lib = LibHeif::new();
    let (w, h) = img.dimensions();
    let mut image = libheif_rs::Image::new(w, h, ColorSpace::Rgb(RgbChroma::Rgb)).unwrap();
    image.create_plane(Channel::Interleaved, w, h, 8).unwrap();
    {
        let mut planes = image.planes_mut();
        let p = planes.interleaved.as_mut().unwrap();
        let row = w as usize * 3;
        for (y, src) in img.as_raw().chunks_exact(row).enumerate() {
            p.data[y * p.stride..y * p.stride + row].copy_from_slice(src);
        }
    }
    let mut enc = lib.encoder_for_format(CompressionFormat::Hevc).unwrap();
    enc.set_quality(EncoderQuality::Lossy(90)).unwrap();
    let mut options = EncodingOptions::new().unwrap();
    options.set_image_orientation(orientation);
    let mut ctx = HeifContext::new().unwrap();
    let handle = ctx.encode_image(&image, &mut enc, Some(options)).unwrap();
    if let Some(exif) = exif {
        ctx.add_exif_metadata(&handle, exif).unwrap();
    }
    ctx.write_to_bytes().unwrap()
}

/// EXIF (TIFF bytes) with only an Orientation tag.
fn exif_orientation(o: u16) -> Vec<u8> {
    let mut t = b"MM\x00\x2A".to_vec();
    t.extend_from_slice(&8u32.to_be_bytes());
    t.extend_from_slice(&1u16.to_be_bytes());
    t.extend_from_slice(&0x0112u16.to_be_bytes());
    t.extend_from_slice(&3u16.to_be_bytes());
    t.extend_from_slice(&1u32.to_be_bytes());
    t.extend_from_slice(&o.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    t
}

fn avif_of(img: &DynamicImage, quality: u8) -> Vec<u8> {
    let p = pipeline(
        &png(img),
        &Pipeline {
            output: EncodeOptions {
                quality,
                avif_speed: 9,
                ..EncodeOptions::new(OutputFormat::Avif)
            },
            ..Pipeline::default()
        },
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(p.format, OutputFormat::Avif);
    p.bytes
}

fn tiff(img: &DynamicImage) -> Vec<u8> {
    encode(img, image::ImageFormat::Tiff)
}

// ---------------------------------------------------------------------------------------------
// TIFF
// ---------------------------------------------------------------------------------------------

#[test]
fn tiff_8_and_16_bit_decode_and_resize() {
    let src = gradient(120, 80);
    let eight = tiff(&DynamicImage::ImageRgb8(src.clone()));
    let sixteen = tiff(&DynamicImage::ImageRgb16(
        DynamicImage::ImageRgb8(src.clone()).to_rgb16(),
    ));
    let rgba = tiff(&DynamicImage::ImageRgba8(RgbaImage::from_fn(
        40,
        20,
        |x, _| Rgba([10, 200, 10, if x < 20 { 0 } else { 255 }]),
    )));
    assert_eq!(sniff(&eight), Some(ImageFormat::Tiff));
    assert_eq!(sniff(&sixteen), Some(ImageFormat::Tiff));
    for bytes in [&eight, &sixteen] {
        let info = probe(bytes, &Limits::default()).unwrap();
        assert_eq!(
            (info.format, info.width, info.height),
            (ImageFormat::Tiff, 120, 80)
        );
        let out = transform(bytes, &to_png(&Transform::default()), &Limits::default()).unwrap();
        assert_eq!((out.width, out.height), (120, 80));
        let px = decode_png(&out.bytes);
        for (x, y) in [(0, 0), (60, 40), (119, 79)] {
            let want = src.get_pixel(x, y).0;
            let got = px.get_pixel(x, y).0;
            assert!(close(&want, &got[..3], 1), "{x},{y}: {want:?} vs {got:?}");
        }
        let small = transform(
            bytes,
            &Transform {
                width: Some(30),
                format: OutputFormat::Webp,
                ..Transform::default()
            },
            &Limits::default(),
        )
        .unwrap();
        assert_eq!((small.width, small.height), (30, 20));
    }
    let out = transform(&rgba, &to_png(&Transform::default()), &Limits::default()).unwrap();
    let px = decode_png(&out.bytes);
    assert_eq!(px.get_pixel(5, 5).0[3], 0, "alpha kept");
    assert_eq!(px.get_pixel(35, 5).0, [10, 200, 10, 255]);
}

#[test]
fn tiff_limits_are_refused_from_the_header() {
    let bomb = tiff_claiming(65_000, 65_000);
    assert_eq!(sniff(&bomb), Some(ImageFormat::Tiff));
    for r in [
        probe(&bomb, &Limits::default()).map(|_| ()),
        transform(&bomb, &Transform::default(), &Limits::default()).map(|_| ()),
    ] {
        assert!(
            matches!(
                r,
                Err(ImagingError::TooLarge {
                    width: 65_000,
                    height: 65_000,
                    ..
                })
            ),
            "{r:?}"
        );
    }
    // Within the side limit but over the pixel limit.
    let limits = Limits {
        max_pixels: 10_000,
        ..Limits::default()
    };
    let real = tiff(&DynamicImage::ImageRgb8(gradient(200, 100)));
    assert!(matches!(
        transform(&real, &Transform::default(), &limits),
        Err(ImagingError::TooLarge {
            width: 200,
            height: 100,
            ..
        })
    ));
}

#[test]
fn corrupt_tiffs_are_clear_errors() {
    let real = tiff(&DynamicImage::ImageRgb8(gradient(64, 64)));
    for cut in [4, 8, 20, 100, real.len() / 2, real.len() - 1] {
        let r = transform(&real[..cut], &Transform::default(), &Limits::default());
        assert!(
            matches!(r, Err(ImagingError::Corrupt(_))),
            "cut at {cut}: {r:?}"
        );
    }
    // A header that claims 100x100 with a strip far beyond the file.
    let r = transform(
        &tiff_claiming(100, 100),
        &Transform::default(),
        &Limits::default(),
    );
    assert!(matches!(r, Err(ImagingError::Corrupt(_))), "{r:?}");
}

// ---------------------------------------------------------------------------------------------
// HEIC
// ---------------------------------------------------------------------------------------------

#[test]
fn heic_decodes_with_its_colours() {
    // x265 codes whole 64-px blocks: with a 128x64 image the `ispe` probe reads is exact.
    let src = halves(128, 64);
    let bytes = heic(&src, ImageOrientation::Normal, None);
    assert_eq!(sniff(&bytes), Some(ImageFormat::Heic));
    let info = probe(&bytes, &Limits::default()).unwrap();
    assert_eq!(
        (info.format, info.width, info.height),
        (ImageFormat::Heic, 128, 64)
    );
    let out = transform(&bytes, &to_png(&Transform::default()), &Limits::default()).unwrap();
    assert_eq!((out.width, out.height), (128, 64));
    let px = decode_png(&out.bytes);
    assert!(
        close(&px.get_pixel(16, 32).0[..3], &[220, 30, 30], 12),
        "{:?}",
        px.get_pixel(16, 32)
    );
    assert!(
        close(&px.get_pixel(112, 32).0[..3], &[30, 30, 220], 12),
        "{:?}",
        px.get_pixel(112, 32)
    );
    let thumb = transform(
        &bytes,
        &Transform {
            width: Some(16),
            ..Transform::default()
        },
        &Limits::default(),
    )
    .unwrap();
    assert_eq!((thumb.width, thumb.height), (16, 8));
    // A size x265 pads (64x32 coded as 64x64, cropped by `clap`): the decode is exact and the
    // header-only probe reports the larger coded size, an upper bound for the limits.
    let padded = heic(&halves(64, 32), ImageOrientation::Normal, None);
    let info = probe(&padded, &Limits::default()).unwrap();
    assert!(info.width >= 64 && info.height >= 32, "{info:?}");
    let out = transform(&padded, &to_png(&Transform::default()), &Limits::default()).unwrap();
    assert_eq!((out.width, out.height), (64, 32));
}

/// HEIF stores rotation as `irot`/`imir` (applied by libheif); an EXIF Orientation inside a
/// HEIF file must not rotate the image again. (libheif 1.15 does not write `irot` from its
/// encoding options, so the test files here carry the EXIF tag only.)
#[test]
fn heic_exif_orientation_is_not_applied_on_top() {
    let src = halves(128, 64);
    let plain = heic(&src, ImageOrientation::Normal, None);
    let exif6 = heic(&src, ImageOrientation::Normal, Some(&exif_orientation(6)));
    assert_ne!(plain, exif6, "the EXIF block is in the file");
    let mut outputs = Vec::new();
    for bytes in [&plain, &exif6] {
        for auto_orient in [true, false] {
            let t = Transform {
                auto_orient,
                ..to_png(&Transform::default())
            };
            let out = transform(bytes, &t, &Limits::default()).unwrap();
            assert_eq!(
                (out.width, out.height),
                (128, 64),
                "auto_orient {auto_orient}"
            );
            let px = decode_png(&out.bytes);
            assert!(close(&px.get_pixel(16, 32).0[..3], &[220, 30, 30], 12));
            outputs.push(px);
        }
    }
    assert!(outputs.windows(2).all(|w| w[0] == w[1]));
}

/// Replaces every `ispe` box's width and height.
fn patch_ispe(bytes: &[u8], w: u32, h: u32) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let mut patched = 0;
    for i in 0..out.len().saturating_sub(16) {
        if &out[i..i + 4] == b"ispe" {
            out[i + 8..i + 12].copy_from_slice(&w.to_be_bytes());
            out[i + 12..i + 16].copy_from_slice(&h.to_be_bytes());
            patched += 1;
        }
    }
    assert!(patched > 0, "no ispe box");
    out
}

#[test]
fn heic_and_avif_limits_are_refused_from_the_header() {
    let small = heic(&gradient(128, 64), ImageOrientation::Normal, None);
    let avif = avif_of(&DynamicImage::ImageRgb8(gradient(128, 64)), 60);
    for bytes in [&small, &avif] {
        // A header that claims 60000x60000: refused by probe, before libheif sees it.
        let bomb = patch_ispe(bytes, 60_000, 60_000);
        for r in [
            probe(&bomb, &Limits::default()).map(|_| ()),
            transform(&bomb, &Transform::default(), &Limits::default()).map(|_| ()),
        ] {
            assert!(
                matches!(r, Err(ImagingError::TooLarge { width: 60_000, .. })),
                "{r:?}"
            );
        }
        let limits = Limits {
            max_pixels: 1000,
            ..Limits::default()
        };
        assert!(matches!(
            transform(bytes, &Transform::default(), &limits),
            Err(ImagingError::TooLarge {
                width: 128,
                height: 64,
                ..
            })
        ));
        // The decoder's own allocation check.
        let limits = Limits {
            max_alloc_bytes: 1000,
            ..Limits::default()
        };
        assert!(matches!(
            transform(bytes, &Transform::default(), &limits),
            Err(ImagingError::TooLarge { .. })
        ));
    }
}

#[test]
fn corrupt_heic_and_avif_are_clear_errors() {
    let h = heic(&gradient(64, 48), ImageOrientation::Normal, None);
    let a = avif_of(&DynamicImage::ImageRgb8(gradient(64, 48)), 60);
    for bytes in [&h, &a] {
        for cut in [12, 24, 40, 100, bytes.len() / 2, bytes.len() - 10] {
            let r = transform(&bytes[..cut], &Transform::default(), &Limits::default());
            assert!(
                matches!(r, Err(ImagingError::Corrupt(_))),
                "cut at {cut} of {}: {r:?}",
                bytes.len()
            );
        }
        // Garbage in the coded image data (the tail of the file is the `mdat` payload).
        let mut bad = bytes.to_vec();
        let n = bad.len();
        for b in &mut bad[n - 40..] {
            *b ^= 0x5A;
        }
        let r = transform(&bad, &Transform::default(), &Limits::default());
        assert!(
            r.is_ok() || matches!(r, Err(ImagingError::Corrupt(_))),
            "{r:?}"
        );
    }
    // An ftyp that is not HEIF (an MP4 video) is not sniffed as an image.
    let mut mp4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2".to_vec();
    mp4.extend_from_slice(&[0; 64]);
    assert_eq!(sniff(&mp4), None);
    assert_eq!(
        transform(&mp4, &Transform::default(), &Limits::default()),
        Err(ImagingError::UnsupportedFormat)
    );
}

#[test]
fn brands_decide_the_heif_family_member() {
    let ftyp = |major: &[u8; 4], compat: &[&[u8; 4]]| {
        let mut b = Vec::new();
        b.extend_from_slice(&((16 + 4 * compat.len()) as u32).to_be_bytes());
        b.extend_from_slice(b"ftyp");
        b.extend_from_slice(major);
        b.extend_from_slice(&[0, 0, 0, 0]);
        for c in compat {
            b.extend_from_slice(*c);
        }
        b
    };
    assert_eq!(sniff(&ftyp(b"heic", &[b"mif1"])), Some(ImageFormat::Heic));
    assert_eq!(sniff(&ftyp(b"heix", &[])), Some(ImageFormat::Heic));
    assert_eq!(sniff(&ftyp(b"mif1", &[b"heic"])), Some(ImageFormat::Heic));
    assert_eq!(sniff(&ftyp(b"avif", &[b"mif1"])), Some(ImageFormat::Avif));
    assert_eq!(
        sniff(&ftyp(b"mif1", &[b"miaf", b"avif"])),
        Some(ImageFormat::Avif)
    );
    assert_eq!(sniff(&ftyp(b"mif1", &[b"miaf"])), Some(ImageFormat::Heif));
    assert_eq!(sniff(&ftyp(b"qt  ", &[b"qt  "])), None);
    assert_eq!(sniff(&ftyp(b"mp42", &[b"isom"])), None);
}

// ---------------------------------------------------------------------------------------------
// AVIF
// ---------------------------------------------------------------------------------------------

#[test]
fn avif_round_trip_keeps_size_and_colour() {
    let src = gradient(96, 64);
    let bytes = avif_of(&DynamicImage::ImageRgb8(src.clone()), 90);
    assert_eq!(sniff(&bytes), Some(ImageFormat::Avif));
    let info = probe(&bytes, &Limits::default()).unwrap();
    assert_eq!((info.width, info.height), (96, 64));
    let out = transform(&bytes, &to_png(&Transform::default()), &Limits::default()).unwrap();
    assert_eq!((out.width, out.height), (96, 64));
    let px = decode_png(&out.bytes);
    let mut err = 0u64;
    for (x, y, p) in src.enumerate_pixels() {
        let q = px.get_pixel(x, y).0;
        err +=
            p.0.iter()
                .zip(q)
                .map(|(a, b)| u64::from(a.abs_diff(b)))
                .sum::<u64>();
    }
    let mean = err as f64 / (96.0 * 64.0 * 3.0);
    assert!(mean < 6.0, "mean abs error {mean}");
    // A flat colour comes back within a few levels.
    let flat = avif_of(&DynamicImage::ImageRgb8(solid(32, 32, [200, 120, 40])), 80);
    let out = transform(&flat, &to_png(&Transform::default()), &Limits::default()).unwrap();
    let c = decode_png(&out.bytes).get_pixel(16, 16).0;
    assert!(close(&c[..3], &[200, 120, 40], 4), "{c:?}");
}

#[test]
fn avif_alpha_quality_and_speed() {
    let rgba = RgbaImage::from_fn(48, 32, |x, _| {
        Rgba([40, 160, 90, if x < 24 { 0 } else { 255 }])
    });
    let bytes = avif_of(&DynamicImage::ImageRgba8(rgba), 80);
    let out = transform(&bytes, &to_png(&Transform::default()), &Limits::default()).unwrap();
    let px = decode_png(&out.bytes);
    assert!(px.get_pixel(4, 16).0[3] < 8, "{:?}", px.get_pixel(4, 16));
    assert!(
        px.get_pixel(40, 16).0[3] > 247,
        "{:?}",
        px.get_pixel(40, 16)
    );

    let img = DynamicImage::ImageRgb8(gradient(128, 96));
    let low = avif_of(&img, 10);
    let high = avif_of(&img, 95);
    assert!(
        low.len() < high.len(),
        "quality 10: {} B, 95: {} B",
        low.len(),
        high.len()
    );
    let bad = pipeline(
        &png(&img),
        &Pipeline {
            output: EncodeOptions {
                avif_speed: 10,
                ..EncodeOptions::new(OutputFormat::Avif)
            },
            ..Pipeline::default()
        },
        &Limits::default(),
    );
    assert!(
        matches!(bad, Err(ImagingError::InvalidParameters(_))),
        "{bad:?}"
    );
    // The plain transform path writes AVIF too (default speed), resized.
    let t = transform(
        &jpeg(&gradient(200, 100), 90),
        &Transform {
            width: Some(50),
            format: OutputFormat::Avif,
            quality: 60,
            ..Transform::default()
        },
        &Limits::default(),
    )
    .unwrap();
    assert_eq!((t.width, t.height, t.format), (50, 25, OutputFormat::Avif));
    assert_eq!(probe(&t.bytes, &Limits::default()).unwrap().width, 50);
}

// ---------------------------------------------------------------------------------------------
// Animated GIF → GIF
// ---------------------------------------------------------------------------------------------

fn animated_gif(frames: &[([u8; 3], u32)], w: u32, h: u32, repeat: Repeat) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = GifEncoder::new(&mut out);
        enc.set_repeat(repeat).unwrap();
        for &(c, ms) in frames {
            let img = RgbaImage::from_pixel(w, h, Rgba([c[0], c[1], c[2], 255]));
            enc.encode_frame(Frame::from_parts(
                img,
                0,
                0,
                image::Delay::from_numer_denom_ms(ms, 1),
            ))
            .unwrap();
        }
    }
    out
}

#[test]
fn animated_gif_keeps_frames_delays_and_loop() {
    let frames = [([250, 0, 0], 100), ([0, 250, 0], 200), ([0, 0, 250], 300)];
    let src = animated_gif(&frames, 80, 40, Repeat::Finite(3));
    let out = animate(
        &src,
        &Animate {
            width: Some(20),
            ..Animate::default()
        },
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(
        (out.width, out.height, out.format),
        (20, 10, OutputFormat::Gif)
    );
    let dec = GifDecoder::new(std::io::Cursor::new(&out.bytes)).unwrap();
    assert!(
        matches!(dec.loop_count(), image::metadata::LoopCount::Finite(n) if n.get() == 3),
        "loop count not kept"
    );
    let decoded: Vec<Frame> = dec.into_frames().collect::<Result<_, _>>().unwrap();
    assert_eq!(decoded.len(), 3);
    for (f, (colour, ms)) in decoded.iter().zip(frames) {
        assert_eq!(f.buffer().dimensions(), (20, 10));
        assert_eq!(f.delay().numer_denom_ms(), (ms, 1));
        let p = f.buffer().get_pixel(10, 5).0;
        assert!(close(&p[..3], &colour, 8), "{p:?} vs {colour:?}");
    }
    // Contain pads each frame to the box.
    let boxed = animate(
        &src,
        &Animate {
            width: Some(30),
            height: Some(30),
            fit: Fit::Contain,
            upscale: false,
        },
        &Limits::default(),
    )
    .unwrap();
    assert_eq!((boxed.width, boxed.height), (30, 30));
}

#[test]
fn animated_gif_frame_limits_refuse_before_decoding() {
    let frames: Vec<([u8; 3], u32)> = (0..6).map(|i| ([i * 40, 0, 0], 50)).collect();
    let src = animated_gif(&frames, 40, 40, Repeat::Infinite);
    let few = Limits {
        max_frames: 5,
        ..Limits::default()
    };
    let r = animate(&src, &Animate::default(), &few);
    assert!(matches!(r, Err(ImagingError::TooLarge { .. })), "{r:?}");
    let little = Limits {
        max_total_pixels: 40 * 40 * 5,
        ..Limits::default()
    };
    let r = animate(&src, &Animate::default(), &little);
    assert!(matches!(r, Err(ImagingError::TooLarge { .. })), "{r:?}");
    let ok = animate(&src, &Animate::default(), &Limits::default()).unwrap();
    let n = GifDecoder::new(std::io::Cursor::new(&ok.bytes))
        .unwrap()
        .into_frames()
        .count();
    assert_eq!(n, 6);
    // Only GIF sources keep their frames.
    let r = animate(
        &png(&DynamicImage::ImageRgb8(gradient(8, 8))),
        &Animate::default(),
        &Limits::default(),
    );
    assert!(
        matches!(r, Err(ImagingError::InvalidParameters(_))),
        "{r:?}"
    );
    // A truncated animation is a clear error.
    let r = animate(
        &src[..src.len() / 2],
        &Animate::default(),
        &Limits::default(),
    );
    assert!(matches!(r, Err(ImagingError::Corrupt(_))), "{r:?}");
}
