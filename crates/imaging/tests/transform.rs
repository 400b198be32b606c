//! `transform`: decode → orient → resize → encode.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use image::{DynamicImage, GenericImageView, ImageDecoder, Rgb, RgbImage, RgbaImage};
use photo_imaging::{Fit, ImagingError, Limits, OutputFormat, Transform, transform};

fn op(w: Option<u32>, h: Option<u32>, fit: Fit, format: OutputFormat) -> Transform {
    Transform {
        width: w,
        height: h,
        fit,
        format,
        ..Transform::default()
    }
}

fn run(bytes: &[u8], t: &Transform) -> photo_imaging::Encoded {
    transform(bytes, t, &Limits::default()).unwrap()
}

fn close(a: [u8; 3], b: [u8; 3], tol: u8) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= tol)
}

fn rgb_at(img: &DynamicImage, x: u32, y: u32) -> [u8; 3] {
    let p = img.to_rgb8().get_pixel(x, y).0;
    [p[0], p[1], p[2]]
}

#[test]
fn fit_modes_produce_expected_dimensions() {
    let src = png(&DynamicImage::ImageRgb8(gradient(400, 200)));
    let cases = [
        (Fit::Inside, (100, 50)),
        (Fit::Cover, (100, 100)),
        (Fit::Contain, (100, 100)),
        (Fit::Fill, (100, 100)),
        (Fit::Outside, (200, 100)),
    ];
    for (fit, (w, h)) in cases {
        for format in [OutputFormat::Jpeg, OutputFormat::Png, OutputFormat::Webp] {
            let out = run(&src, &op(Some(100), Some(100), fit, format));
            assert_eq!((out.width, out.height), (w, h), "{fit:?} {format:?}");
            let (_, img) = decode(&out.bytes);
            assert_eq!(img.dimensions(), (w, h), "{fit:?} {format:?} decoded");
        }
    }
}

#[test]
fn single_dimension_keeps_aspect() {
    let src = jpeg(&gradient(400, 200), 90);
    let out = run(&src, &op(Some(100), None, Fit::Inside, OutputFormat::Jpeg));
    assert_eq!((out.width, out.height), (100, 50));
    let out = run(&src, &op(None, Some(20), Fit::Cover, OutputFormat::Png));
    assert_eq!((out.width, out.height), (40, 20));
    // No size at all: plain conversion.
    let out = run(&src, &op(None, None, Fit::Inside, OutputFormat::Webp));
    assert_eq!((out.width, out.height), (400, 200));
}

#[test]
fn no_upscaling_by_default_but_upscale_when_asked() {
    let src = png(&DynamicImage::ImageRgb8(gradient(40, 20)));
    let out = run(
        &src,
        &op(Some(400), Some(400), Fit::Inside, OutputFormat::Png),
    );
    assert_eq!((out.width, out.height), (40, 20));
    let out = run(&src, &op(Some(400), None, Fit::Inside, OutputFormat::Png));
    assert_eq!((out.width, out.height), (40, 20));
    let t = Transform {
        upscale: true,
        ..op(Some(400), Some(400), Fit::Inside, OutputFormat::Png)
    };
    let out = run(&src, &t);
    assert_eq!((out.width, out.height), (400, 200));
    assert_eq!(decode(&out.bytes).1.dimensions(), (400, 200));
}

#[test]
fn output_formats_decode_back() {
    let src = jpeg(&gradient(300, 150), 90);
    for (format, expected) in [
        (OutputFormat::Jpeg, image::ImageFormat::Jpeg),
        (OutputFormat::Png, image::ImageFormat::Png),
        (OutputFormat::Webp, image::ImageFormat::WebP),
    ] {
        let out = run(&src, &op(Some(64), Some(64), Fit::Inside, format));
        assert_eq!(out.format, format);
        let (fmt, img) = decode(&out.bytes);
        assert_eq!(fmt, expected);
        assert_eq!(img.dimensions(), (64, 32));
        assert_eq!(
            photo_imaging::sniff(&out.bytes).map(|f| f.mime()),
            Some(format.mime())
        );
    }
}

#[test]
fn every_input_format_is_accepted() {
    let img = DynamicImage::ImageRgb8(gradient(90, 60));
    for fmt in [
        image::ImageFormat::Jpeg,
        image::ImageFormat::Png,
        image::ImageFormat::WebP,
        image::ImageFormat::Gif,
    ] {
        let out = run(
            &encode(&img, fmt),
            &op(Some(45), None, Fit::Inside, OutputFormat::Png),
        );
        assert_eq!((out.width, out.height), (45, 30), "{fmt:?}");
    }
}

#[test]
fn quality_affects_jpeg_size() {
    let src = png(&DynamicImage::ImageRgb8(gradient(300, 300)));
    let low = run(
        &src,
        &Transform {
            quality: 30,
            ..op(None, None, Fit::Inside, OutputFormat::Jpeg)
        },
    );
    let high = run(
        &src,
        &Transform {
            quality: 95,
            ..op(None, None, Fit::Inside, OutputFormat::Jpeg)
        },
    );
    assert!(
        low.bytes.len() < high.bytes.len(),
        "{} vs {}",
        low.bytes.len(),
        high.bytes.len()
    );
    let low = run(
        &src,
        &Transform {
            quality: 30,
            ..op(None, None, Fit::Inside, OutputFormat::Webp)
        },
    );
    let high = run(
        &src,
        &Transform {
            quality: 95,
            ..op(None, None, Fit::Inside, OutputFormat::Webp)
        },
    );
    assert!(
        low.bytes.len() < high.bytes.len(),
        "webp {} vs {}",
        low.bytes.len(),
        high.bytes.len()
    );
}

/// 40×20: left half red, right half blue.
fn red_left_blue_right() -> RgbImage {
    RgbImage::from_fn(40, 20, |x, _| {
        if x < 20 {
            Rgb([255, 0, 0])
        } else {
            Rgb([0, 0, 255])
        }
    })
}

#[test]
fn exif_orientation_is_applied_when_asked() {
    let src = with_exif_orientation(&jpeg(&red_left_blue_right(), 95), 6);
    // Sanity: the decoder sees the orientation we wrote.
    let mut dec = image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(&src)).unwrap();
    assert_eq!(
        dec.orientation().unwrap(),
        image::metadata::Orientation::Rotate90
    );

    let out = run(&src, &op(None, None, Fit::Inside, OutputFormat::Png));
    assert_eq!((out.width, out.height), (20, 40));
    let (_, img) = decode(&out.bytes);
    // Rotating 90° clockwise puts the old left (red) at the top.
    assert!(
        close(rgb_at(&img, 10, 5), [255, 0, 0], 40),
        "{:?}",
        rgb_at(&img, 10, 5)
    );
    assert!(
        close(rgb_at(&img, 10, 35), [0, 0, 255], 40),
        "{:?}",
        rgb_at(&img, 10, 35)
    );

    // Orientation also applies before resizing: box 10×10 → 5×10.
    let out = run(
        &src,
        &op(Some(10), Some(10), Fit::Inside, OutputFormat::Png),
    );
    assert_eq!((out.width, out.height), (5, 10));

    let t = Transform {
        auto_orient: false,
        ..op(None, None, Fit::Inside, OutputFormat::Png)
    };
    let out = run(&src, &t);
    assert_eq!((out.width, out.height), (40, 20));
    let (_, img) = decode(&out.bytes);
    assert!(close(rgb_at(&img, 5, 10), [255, 0, 0], 40));
}

#[test]
fn alpha_is_flattened_on_white_for_jpeg() {
    let img = RgbaImage::from_fn(32, 32, |x, _| {
        if x < 16 {
            rgba([0, 0, 0, 0])
        } else {
            rgba([255, 0, 0, 128])
        }
    });
    let out = run(
        &rgba_png(&img),
        &op(None, None, Fit::Inside, OutputFormat::Jpeg),
    );
    let (_, dec) = decode(&out.bytes);
    assert!(
        close(rgb_at(&dec, 4, 16), [255, 255, 255], 6),
        "{:?}",
        rgb_at(&dec, 4, 16)
    );
    assert!(
        close(rgb_at(&dec, 28, 16), [255, 127, 127], 12),
        "{:?}",
        rgb_at(&dec, 28, 16)
    );
}

#[test]
fn alpha_is_kept_for_png_and_webp() {
    let img = RgbaImage::from_fn(32, 32, |x, _| {
        if x < 16 {
            rgba([0, 0, 0, 0])
        } else {
            rgba([0, 200, 0, 255])
        }
    });
    for format in [OutputFormat::Png, OutputFormat::Webp] {
        let out = run(&rgba_png(&img), &op(Some(16), None, Fit::Inside, format));
        let dec = decode(&out.bytes).1.to_rgba8();
        assert_eq!(dec.get_pixel(1, 8).0[3], 0, "{format:?}");
        assert_eq!(dec.get_pixel(14, 8).0[3], 255, "{format:?}");
    }
}

#[test]
fn contain_pads_with_white_or_transparent() {
    let src = png(&DynamicImage::ImageRgb8(solid(400, 200, [0, 0, 255])));
    let out = run(
        &src,
        &op(Some(100), Some(100), Fit::Contain, OutputFormat::Jpeg),
    );
    let (_, img) = decode(&out.bytes);
    assert!(
        close(rgb_at(&img, 50, 2), [255, 255, 255], 8),
        "{:?}",
        rgb_at(&img, 50, 2)
    );
    assert!(close(rgb_at(&img, 50, 50), [0, 0, 255], 12));
    for format in [OutputFormat::Png, OutputFormat::Webp] {
        let out = run(&src, &op(Some(100), Some(100), Fit::Contain, format));
        let img = decode(&out.bytes).1.to_rgba8();
        assert_eq!(img.get_pixel(50, 2).0[3], 0, "{format:?}");
        assert_eq!(img.get_pixel(50, 97).0[3], 0, "{format:?}");
        assert_eq!(img.get_pixel(50, 50).0[3], 255, "{format:?}");
    }
}

#[test]
fn cover_crops_the_centre() {
    // 300×100: red | green | blue thirds; cover 100×100 keeps the green centre.
    let img = RgbImage::from_fn(300, 100, |x, _| match x / 100 {
        0 => Rgb([255, 0, 0]),
        1 => Rgb([0, 255, 0]),
        _ => Rgb([0, 0, 255]),
    });
    let out = run(
        &png(&DynamicImage::ImageRgb8(img)),
        &op(Some(50), Some(50), Fit::Cover, OutputFormat::Png),
    );
    assert_eq!((out.width, out.height), (50, 50));
    let (_, dec) = decode(&out.bytes);
    for x in [2, 25, 47] {
        assert!(
            close(rgb_at(&dec, x, 25), [0, 255, 0], 10),
            "x={x}: {:?}",
            rgb_at(&dec, x, 25)
        );
    }
}

#[test]
fn solid_red_stays_red_in_every_format() {
    let red = DynamicImage::ImageRgb8(solid(64, 64, [255, 0, 0]));
    for input in [
        image::ImageFormat::Jpeg,
        image::ImageFormat::Png,
        image::ImageFormat::WebP,
        image::ImageFormat::Gif,
    ] {
        let src = encode(&red, input);
        for format in [OutputFormat::Jpeg, OutputFormat::Png, OutputFormat::Webp] {
            for size in [None, Some(20)] {
                let out = run(&src, &op(size, size, Fit::Cover, format));
                let (_, img) = decode(&out.bytes);
                let (w, h) = img.dimensions();
                for (x, y) in [(0, 0), (w / 2, h / 2), (w - 1, h - 1)] {
                    let p = rgb_at(&img, x, y);
                    assert!(
                        close(p, [255, 0, 0], 24),
                        "{input:?}->{format:?} {size:?} at {x},{y}: {p:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn sixteen_bit_input_becomes_eight_bit_output() {
    let img =
        image::ImageBuffer::<image::Rgb<u16>, _>::from_pixel(20, 10, image::Rgb([65535u16, 0, 0]));
    let src = png(&DynamicImage::ImageRgb16(img));
    let out = run(&src, &op(None, None, Fit::Inside, OutputFormat::Png));
    let (_, dec) = decode(&out.bytes);
    assert_eq!(dec.color(), image::ColorType::Rgb8);
    assert_eq!(rgb_at(&dec, 3, 3), [255, 0, 0]);
}

#[test]
fn icc_profile_kept_only_when_not_stripping() {
    let icc = fake_rgb_icc();
    let src = jpeg_with_icc(&gradient(64, 48), 90, Some(icc.clone()));
    for format in [OutputFormat::Jpeg, OutputFormat::Png, OutputFormat::Webp] {
        for strip in [true, false] {
            let t = Transform {
                strip_metadata: strip,
                ..op(Some(32), None, Fit::Inside, format)
            };
            let out = run(&src, &t);
            let got = icc_of(&out.bytes);
            if strip {
                assert_eq!(got, None, "{format:?} strip");
            } else {
                assert_eq!(got.as_deref(), Some(icc.as_slice()), "{format:?} keep");
            }
            // Still a valid image either way.
            assert_eq!(decode(&out.bytes).1.dimensions(), (32, 24));
        }
    }
}

fn icc_of(bytes: &[u8]) -> Option<Vec<u8>> {
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .unwrap();
    let mut dec = reader.into_decoder().unwrap();
    dec.icc_profile().unwrap()
}

#[test]
fn exif_is_never_copied() {
    let src = with_exif_orientation(&jpeg(&gradient(40, 20), 90), 1);
    for strip in [true, false] {
        let t = Transform {
            strip_metadata: strip,
            ..op(None, None, Fit::Inside, OutputFormat::Jpeg)
        };
        let out = run(&src, &t);
        assert!(!out.bytes.windows(6).any(|w| w == b"Exif\0\0"));
    }
}

#[test]
fn truncated_jpeg_is_corrupt() {
    let src = jpeg(&gradient(256, 256), 90);
    for cut in [src.len() / 2, src.len() - 2, 200, 700] {
        let err = transform(&src[..cut], &Transform::default(), &Limits::default()).unwrap_err();
        assert!(
            matches!(err, ImagingError::Corrupt(_)),
            "cut {cut}: {err:?}"
        );
        assert_eq!(err.code(), "corrupt_image");
        assert!(err.is_permanent());
    }
}

#[test]
fn truncated_png_and_webp_are_corrupt() {
    let img = DynamicImage::ImageRgb8(gradient(128, 128));
    for fmt in [
        image::ImageFormat::Png,
        image::ImageFormat::WebP,
        image::ImageFormat::Gif,
    ] {
        let src = encode(&img, fmt);
        let err = transform(
            &src[..src.len() / 2],
            &Transform::default(),
            &Limits::default(),
        )
        .unwrap_err();
        assert!(matches!(err, ImagingError::Corrupt(_)), "{fmt:?}: {err:?}");
    }
}

#[test]
fn huge_declared_dimensions_are_too_large_without_decoding() {
    for bytes in [
        png_header_claiming(65000, 65000),
        jpeg_header_claiming(65000, 65000),
    ] {
        let err = transform(&bytes, &Transform::default(), &Limits::default()).unwrap_err();
        assert!(
            matches!(
                err,
                ImagingError::TooLarge {
                    width: 65000,
                    height: 65000,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.code(), "image_too_large");
    }
    // Within width/height limits but over the pixel budget.
    let bytes = png_header_claiming(12000, 12000);
    let err = transform(&bytes, &Transform::default(), &Limits::default()).unwrap_err();
    assert_eq!(err.code(), "image_too_large");
}

#[test]
fn decoder_allocation_limit_is_enforced() {
    // A real, highly compressible 2000×2000 RGBA PNG (a small "zlib bomb"):
    // ~16 MB decoded from a few KB; with a 4 MB allocation budget it must be refused.
    let img = RgbaImage::from_pixel(2000, 2000, rgba([1, 2, 3, 4]));
    let bytes = rgba_png(&img);
    assert!(bytes.len() < 100_000);
    let limits = Limits {
        max_alloc_bytes: 4 << 20,
        ..Limits::default()
    };
    let err = transform(&bytes, &Transform::default(), &limits).unwrap_err();
    assert!(matches!(err, ImagingError::TooLarge { .. }), "{err:?}");
}

#[test]
fn invalid_parameters_are_rejected() {
    let src = png(&DynamicImage::ImageRgb8(gradient(40, 20)));
    let l = Limits::default();
    for t in [
        Transform {
            width: Some(0),
            ..Transform::default()
        },
        Transform {
            height: Some(0),
            ..Transform::default()
        },
        Transform {
            quality: 0,
            ..Transform::default()
        },
        Transform {
            quality: 101,
            ..Transform::default()
        },
        Transform {
            width: Some(100_000),
            ..Transform::default()
        },
        Transform {
            width: Some(16000),
            height: Some(16000),
            fit: Fit::Contain,
            ..Transform::default()
        },
    ] {
        let err = transform(&src, &t, &l).unwrap_err();
        assert_eq!(err.code(), "invalid_parameters", "{t:?}");
    }
    // Derived size beyond the limits: a 40×1 strip upscaled to height 10000.
    let strip = png(&DynamicImage::ImageRgb8(gradient(40, 1)));
    let t = Transform {
        height: Some(10000),
        upscale: true,
        ..Transform::default()
    };
    assert_eq!(
        transform(&strip, &t, &l).unwrap_err().code(),
        "invalid_parameters"
    );
}

#[test]
fn extreme_aspect_never_yields_zero() {
    let src = png(&DynamicImage::ImageRgb8(gradient(2000, 2)));
    let out = run(
        &src,
        &op(Some(10), Some(10), Fit::Inside, OutputFormat::Webp),
    );
    assert_eq!((out.width, out.height), (10, 1));
    assert_eq!(decode(&out.bytes).1.dimensions(), (10, 1));
}

#[test]
fn non_images_are_unsupported() {
    for bytes in [&b""[..], b"hello", b"<html></html>", b"BM6\x00\x00\x00"] {
        assert_eq!(
            transform(bytes, &Transform::default(), &Limits::default()).unwrap_err(),
            ImagingError::UnsupportedFormat
        );
    }
}

#[test]
fn mutated_inputs_never_panic() {
    let img = DynamicImage::ImageRgb8(gradient(48, 32));
    let mut rng = XorShift(0xdead_beef_cafe_f00d);
    let t = op(Some(16), Some(16), Fit::Cover, OutputFormat::Png);
    for fmt in [
        image::ImageFormat::Jpeg,
        image::ImageFormat::Png,
        image::ImageFormat::WebP,
        image::ImageFormat::Gif,
    ] {
        let base = encode(&img, fmt);
        for _ in 0..150 {
            let mut b = base.clone();
            let flips = 1 + rng.next() % 8;
            for _ in 0..flips {
                let i = (rng.next() as usize) % b.len();
                b[i] = rng.next() as u8;
            }
            if rng.next().is_multiple_of(4) {
                let keep = (rng.next() as usize) % b.len();
                b.truncate(keep.max(1));
            }
            // Ok or a typed error; a panic would fail the test.
            let _ = photo_imaging::probe(&b, &Limits::default());
            if let Err(e) = transform(&b, &t, &Limits::default()) {
                assert!(!e.code().is_empty());
            }
        }
    }
}

#[test]
fn icc_profile_with_alpha_webp_uses_extended_container() {
    use image::ImageEncoder;
    use image::codecs::png::PngEncoder;
    let icc = fake_rgb_icc();
    let img = RgbaImage::from_fn(40, 40, |x, _| {
        if x < 20 {
            rgba([0, 0, 0, 0])
        } else {
            rgba([10, 200, 30, 255])
        }
    });
    let mut src = Vec::new();
    let mut enc = PngEncoder::new(&mut src);
    enc.set_icc_profile(icc.clone()).unwrap();
    enc.write_image(img.as_raw(), 40, 40, image::ExtendedColorType::Rgba8)
        .unwrap();

    let t = Transform {
        strip_metadata: false,
        ..op(Some(20), None, Fit::Inside, OutputFormat::Webp)
    };
    let out = run(&src, &t);
    assert_eq!(icc_of(&out.bytes).as_deref(), Some(icc.as_slice()));
    let dec = decode(&out.bytes).1.to_rgba8();
    assert_eq!(dec.dimensions(), (20, 20));
    assert_eq!(dec.get_pixel(2, 10).0[3], 0);
    assert_eq!(dec.get_pixel(17, 10).0[3], 255);
}

#[test]
fn grayscale_icc_is_not_attached_to_rgb_output() {
    let mut icc = fake_rgb_icc();
    icc[16..20].copy_from_slice(b"GRAY");
    let src = jpeg_with_icc(&gradient(32, 32), 90, Some(icc));
    let t = Transform {
        strip_metadata: false,
        ..op(None, None, Fit::Inside, OutputFormat::Png)
    };
    assert_eq!(icc_of(&run(&src, &t).bytes), None);
}

#[test]
fn jpeg_with_trailing_bytes_after_eoi_is_fine() {
    let mut src = jpeg(&gradient(64, 64), 90);
    src.extend_from_slice(b"trailing vendor data");
    let out = run(&src, &op(Some(32), None, Fit::Inside, OutputFormat::Png));
    assert_eq!((out.width, out.height), (32, 32));
}

/// JPEG output without a kept profile is 4:2:0 (luma sampled 2×2), like libvips, so file sizes
/// match the reference tools at the same quality.
#[test]
fn jpeg_output_uses_420_chroma_subsampling() {
    let src = jpeg(&gradient(640, 480), 95);
    let op = Transform {
        width: Some(320),
        ..Transform::default()
    };
    let out = transform(&src, &op, &Limits::default()).unwrap();
    let sof = out
        .bytes
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .unwrap();
    // SOF0: marker, length(2), precision, height(2), width(2), components, then id + sampling.
    let luma_sampling = out.bytes[sof + 11];
    assert_eq!(luma_sampling, 0x22, "Y sampled 2x2");
    assert_eq!(out.bytes[sof + 14], 0x11, "Cb 1x1");
    let back = image::load_from_memory(&out.bytes).unwrap();
    assert_eq!((back.width(), back.height()), (320, 240));
}

/// A Display P3 photo without its profile in the output is converted to sRGB (its colours
/// survive the stripping); with `strip_metadata: false` the pixels and profile are kept as-is.
#[test]
fn icc_tagged_images_are_converted_to_srgb_when_the_profile_is_stripped() {
    let p3 = moxcms::ColorProfile::new_display_p3().encode().unwrap();
    let src = jpeg_with_icc(&solid(64, 64, [200, 100, 100]), 100, Some(p3));
    for format in [OutputFormat::Jpeg, OutputFormat::Png] {
        let op = Transform {
            width: Some(32),
            format,
            quality: 100,
            ..Transform::default()
        };
        let out = transform(&src, &op, &Limits::default()).unwrap();
        let px = image::load_from_memory(&out.bytes)
            .unwrap()
            .to_rgb8()
            .get_pixel(16, 16)
            .0;
        assert!(
            px[0] >= 212 && px[1] <= 100 && px[2] <= 100,
            "{format:?}: P3 → sRGB is more saturated: {px:?}"
        );

        let keep = Transform {
            strip_metadata: false,
            ..op
        };
        let out = transform(&src, &keep, &Limits::default()).unwrap();
        let px = image::load_from_memory(&out.bytes)
            .unwrap()
            .to_rgb8()
            .get_pixel(16, 16)
            .0;
        assert!(
            (i16::from(px[0]) - 200).abs() <= 4 && (i16::from(px[1]) - 100).abs() <= 4,
            "{format:?}: kept as-is: {px:?}"
        );
    }
}

/// CMYK JPEGs (print workflows, some stock photos) come out as RGB with the right colours.
#[test]
fn cmyk_jpeg_is_converted_to_rgb() {
    let (w, h) = (48u16, 32u16);
    // Pure red in CMYK: no cyan, full magenta and yellow, no black.
    let data: Vec<u8> = (0..usize::from(w) * usize::from(h))
        .flat_map(|_| [0u8, 255, 255, 0])
        .collect();
    let mut src = Vec::new();
    jpeg_encoder::Encoder::new(&mut src, 95)
        .encode(&data, w, h, jpeg_encoder::ColorType::Cmyk)
        .unwrap();
    for width in [None, Some(24)] {
        let op = Transform {
            width,
            format: OutputFormat::Png,
            ..Transform::default()
        };
        let out = transform(&src, &op, &Limits::default()).unwrap();
        let img = image::load_from_memory(&out.bytes).unwrap().to_rgb8();
        let px = img.get_pixel(img.width() / 2, img.height() / 2).0;
        assert!(
            px[0] > 200 && px[1] < 80 && px[2] < 80,
            "red, got {px:?} (width {width:?})"
        );
    }
}

/// Large WebPs take libwebp's scaled decode (shrink-on-load); the result must match a full
/// decode + Lanczos resize closely, with and without alpha.
#[test]
fn webp_shrink_on_load_matches_a_full_decode() {
    for alpha in [false, true] {
        let (w, h) = (2400u32, 1600u32);
        let src = RgbaImage::from_fn(w, h, |x, y| {
            let v = ((x / 40 + y / 40) % 2 * 120) as u8;
            image::Rgba([
                (x * 255 / w) as u8,
                (y * 255 / h) as u8,
                v,
                if alpha { 180 } else { 255 },
            ])
        });
        let bytes = if alpha {
            webp::Encoder::from_rgba(src.as_raw(), w, h)
                .encode(90.0)
                .to_vec()
        } else {
            let rgb = DynamicImage::ImageRgba8(src).into_rgb8();
            webp::Encoder::from_rgb(rgb.as_raw(), w, h)
                .encode(90.0)
                .to_vec()
        };
        let out = run(&bytes, &op(Some(300), None, Fit::Inside, OutputFormat::Png));
        let got = image::load_from_memory(&out.bytes).unwrap().to_rgba8();
        assert_eq!(got.dimensions(), (300, 200));
        let reference = image::load_from_memory(&bytes)
            .unwrap()
            .resize_exact(300, 200, image::imageops::FilterType::Lanczos3)
            .to_rgba8();
        let diff: u64 = got
            .as_raw()
            .iter()
            .zip(reference.as_raw())
            .map(|(a, b)| u64::from(a.abs_diff(*b)))
            .sum();
        let mean = diff as f64 / got.as_raw().len() as f64;
        assert!(mean < 3.0, "alpha {alpha}: mean difference {mean:.2}");
    }
}
