//! `analyze`: dimensions, frames, EXIF summary (GPS only on request),
//! blurhash, perceptual hash, dominant colours, SHA-256.
#![expect(clippy::unwrap_used)]

mod common;

use common::*;
use image::codecs::gif::GifEncoder;
use image::{DynamicImage, Frame, Rgb, RgbImage, Rgba, RgbaImage};
use photo_imaging::{
    AnalyzeOptions, ImageFormat, ImagingError, Limits, analyze, analyze_with, hamming_distance,
};
use sha2::{Digest, Sha256};

/// A "photo-like" test picture: gradient background with a few shapes.
fn scene(w: u32, h: u32, seed: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
        let cx = 0.3 + 0.4 * ((seed % 3) as f32 / 2.0);
        let in_circle = (fx - cx).powi(2) + (fy - 0.5).powi(2) < 0.04;
        let in_bar = fy > 0.75 && fy < 0.85 && fx > 0.1 && fx < 0.6;
        if in_circle {
            Rgb([230, 200, 40])
        } else if in_bar {
            Rgb([20, 40, 160])
        } else {
            Rgb([(fx * 200.0) as u8 + 20, (fy * 150.0) as u8 + 40, 90])
        }
    })
}

fn stripes(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        if (x * 8 / w + y * 6 / h).is_multiple_of(2) {
            Rgb([240, 240, 240])
        } else {
            Rgb([10, 10, 10])
        }
    })
}

#[test]
fn basic_facts_and_sha256() {
    let bytes = png(&DynamicImage::ImageRgb8(gradient(120, 80)));
    let a = analyze(&bytes, &Limits::default()).unwrap();
    assert_eq!(a.format, ImageFormat::Png);
    assert_eq!((a.width, a.height), (120, 80));
    assert_eq!(a.frames, 1);
    assert!(!a.has_alpha);
    assert!(a.exif.is_none());
    let expected: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(a.sha256, expected);
    assert_eq!(a.sha256.len(), 64);

    let rgba = RgbaImage::from_fn(10, 10, |x, _| Rgba([1, 2, 3, (x * 20) as u8]));
    let a = analyze(&rgba_png(&rgba), &Limits::default()).unwrap();
    assert!(a.has_alpha);
}

#[test]
fn dimensions_follow_exif_orientation() {
    let bytes = with_exif_orientation(&jpeg(&gradient(40, 20), 90), 6);
    let a = analyze(&bytes, &Limits::default()).unwrap();
    assert_eq!(a.format, ImageFormat::Jpeg);
    assert_eq!((a.width, a.height), (20, 40));
    assert_eq!(a.exif.unwrap().orientation, Some(6));
}

#[test]
fn near_duplicates_have_close_hashes_and_different_images_do_not() {
    let l = Limits::default();
    let original = analyze(&png(&DynamicImage::ImageRgb8(scene(400, 300, 0))), &l).unwrap();
    let smaller_jpeg = analyze(&jpeg(&scene(200, 150, 0), 60), &l).unwrap();
    let larger_webp = analyze(
        &encode(
            &DynamicImage::ImageRgb8(scene(640, 480, 0)),
            image::ImageFormat::WebP,
        ),
        &l,
    )
    .unwrap();
    let moved = analyze(&png(&DynamicImage::ImageRgb8(scene(400, 300, 2))), &l).unwrap();
    let other = analyze(&png(&DynamicImage::ImageRgb8(stripes(400, 300))), &l).unwrap();

    let d = |a: &photo_imaging::Analysis, b: &photo_imaging::Analysis| {
        hamming_distance(a.dhash, b.dhash)
    };
    assert!(
        d(&original, &smaller_jpeg) <= 6,
        "{}",
        d(&original, &smaller_jpeg)
    );
    assert!(
        d(&original, &larger_webp) <= 6,
        "{}",
        d(&original, &larger_webp)
    );
    assert!(d(&original, &moved) >= 10, "{}", d(&original, &moved));
    assert!(d(&original, &other) >= 20, "{}", d(&original, &other));
    // Same bytes, same everything.
    assert_eq!(
        original,
        analyze(&png(&DynamicImage::ImageRgb8(scene(400, 300, 0))), &l).unwrap()
    );
}

#[test]
fn dominant_colours() {
    let l = Limits::default();
    let red = analyze(
        &png(&DynamicImage::ImageRgb8(solid(50, 50, [255, 0, 0]))),
        &l,
    )
    .unwrap();
    assert_eq!(red.dominant_colors.len(), 1);
    assert_eq!(red.dominant_colors[0].rgb, [255, 0, 0]);
    assert!((red.dominant_colors[0].fraction - 1.0).abs() < 1e-6);

    // 3/4 red, 1/4 blue (JPEG: colours are approximate).
    let img = RgbImage::from_fn(200, 200, |x, _| {
        if x < 150 {
            Rgb([250, 10, 10])
        } else {
            Rgb([10, 10, 250])
        }
    });
    let a = analyze_with(
        &jpeg(&img, 90),
        &AnalyzeOptions {
            dominant_colors: 3,
            ..AnalyzeOptions::default()
        },
        &l,
    )
    .unwrap();
    assert!(!a.dominant_colors.is_empty() && a.dominant_colors.len() <= 3);
    let first = a.dominant_colors[0];
    assert!(first.rgb[0] > 200 && first.rgb[2] < 60, "{first:?}");
    assert!((first.fraction - 0.75).abs() < 0.06, "{first:?}");
    assert!(
        a.dominant_colors
            .iter()
            .any(|c| c.rgb[2] > 200 && c.rgb[0] < 60 && c.fraction > 0.15),
        "{:?}",
        a.dominant_colors
    );
    let total: f32 = a.dominant_colors.iter().map(|c| c.fraction).sum();
    assert!((total - 1.0).abs() < 1e-4);

    // Transparent pixels do not count.
    let half = RgbaImage::from_fn(40, 40, |x, _| {
        if x < 20 {
            Rgba([0, 255, 0, 255])
        } else {
            Rgba([255, 0, 255, 0])
        }
    });
    let a = analyze(&rgba_png(&half), &l).unwrap();
    assert_eq!(a.dominant_colors.len(), 1);
    assert_eq!(a.dominant_colors[0].rgb, [0, 255, 0]);

    assert!(matches!(
        analyze_with(
            &png(&DynamicImage::ImageRgb8(solid(4, 4, [1, 2, 3]))),
            &AnalyzeOptions {
                dominant_colors: 0,
                ..AnalyzeOptions::default()
            },
            &l
        ),
        Err(ImagingError::InvalidParameters(_))
    ));
}

#[test]
fn blurhash_is_stable_and_shaped() {
    let l = Limits::default();
    let a = analyze(&png(&DynamicImage::ImageRgb8(scene(300, 200, 1))), &l).unwrap();
    // 4×3 components: 1 + 1 + 4 + 2 × (4·3 − 1) characters.
    assert_eq!(a.blurhash.len(), 28, "{}", a.blurhash);
    let tall = analyze(&png(&DynamicImage::ImageRgb8(scene(200, 300, 1))), &l).unwrap();
    assert_eq!(tall.blurhash.len(), 28);
    assert_ne!(a.blurhash, tall.blurhash);
    // A solid colour gives the same hash whatever its size.
    let s1 = analyze(
        &png(&DynamicImage::ImageRgb8(solid(64, 64, [200, 30, 60]))),
        &l,
    )
    .unwrap();
    let s2 = analyze(
        &png(&DynamicImage::ImageRgb8(solid(300, 300, [200, 30, 60]))),
        &l,
    )
    .unwrap();
    assert_eq!(s1.blurhash, s2.blurhash);
}

#[test]
fn animated_gif_frames_are_counted() {
    let mut out = Vec::new();
    {
        let mut enc = GifEncoder::new(&mut out);
        let frames = (0..3).map(|i| {
            Frame::new(RgbaImage::from_pixel(
                16,
                16,
                Rgba([i * 80, 0, 255 - i * 80, 255]),
            ))
        });
        enc.encode_frames(frames).unwrap();
    }
    let a = analyze(&out, &Limits::default()).unwrap();
    assert_eq!(a.format, ImageFormat::Gif);
    assert_eq!(a.frames, 3);
    assert_eq!((a.width, a.height), (16, 16));
    let still = encode(
        &DynamicImage::ImageRgb8(gradient(16, 16)),
        image::ImageFormat::Gif,
    );
    assert_eq!(analyze(&still, &Limits::default()).unwrap().frames, 1);
}

// ------------------------------------------------------------------- EXIF

/// One TIFF IFD entry: tag, type, count, value bytes (big-endian).
type Entry = (u16, u16, u32, Vec<u8>);

fn ascii(tag: u16, s: &str) -> Entry {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    (tag, 2, v.len() as u32, v)
}

fn short(tag: u16, v: u16) -> Entry {
    (tag, 3, 1, v.to_be_bytes().to_vec())
}

fn long(tag: u16, v: u32) -> Entry {
    (tag, 4, 1, v.to_be_bytes().to_vec())
}

fn rationals(tag: u16, vals: &[(u32, u32)]) -> Entry {
    let mut v = Vec::new();
    for (n, d) in vals {
        v.extend_from_slice(&n.to_be_bytes());
        v.extend_from_slice(&d.to_be_bytes());
    }
    (tag, 5, vals.len() as u32, v)
}

fn ifd_size(entries: &[Entry]) -> usize {
    2 + 12 * entries.len()
        + 4
        + entries
            .iter()
            .map(|e| if e.3.len() > 4 { e.3.len() } else { 0 })
            .sum::<usize>()
}

/// Appends an IFD that starts at `out.len()` (offsets are from the TIFF start).
fn write_ifd(out: &mut Vec<u8>, entries: &[Entry]) {
    let start = out.len();
    let mut data_off = start + 2 + 12 * entries.len() + 4;
    let mut data = Vec::new();
    out.extend_from_slice(&(entries.len() as u16).to_be_bytes());
    for (tag, ty, count, value) in entries {
        out.extend_from_slice(&tag.to_be_bytes());
        out.extend_from_slice(&ty.to_be_bytes());
        out.extend_from_slice(&count.to_be_bytes());
        if value.len() <= 4 {
            let mut v = value.clone();
            v.resize(4, 0);
            out.extend_from_slice(&v);
        } else {
            out.extend_from_slice(&(data_off as u32).to_be_bytes());
            data.extend_from_slice(value);
            data_off += value.len();
        }
    }
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&data);
}

/// TIFF with camera fields, an Exif IFD and a GPS IFD (Eiffel Tower).
fn camera_tiff() -> Vec<u8> {
    let exif_ifd = vec![
        rationals(0x829A, &[(1, 250)]), // ExposureTime
        rationals(0x829D, &[(28, 10)]), // FNumber
        short(0x8827, 400),             // ISO
        ascii(0x9003, "2024:05:06 07:08:09"),
        rationals(0x920A, &[(50, 1)]), // FocalLength
    ];
    let gps_ifd = vec![
        ascii(0x0001, "N"),
        rationals(0x0002, &[(48, 1), (51, 1), (2988, 100)]),
        ascii(0x0003, "E"),
        rationals(0x0004, &[(2, 1), (17, 1), (4020, 100)]),
        (0x0005, 1, 1, vec![0]),
        rationals(0x0006, &[(35, 1)]),
    ];
    let ifd0_template = |exif_off: u32, gps_off: u32| {
        vec![
            ascii(0x010F, "Canon"),
            ascii(0x0110, "Canon EOS R6"),
            short(0x0112, 1),
            long(0x8769, exif_off),
            long(0x8825, gps_off),
        ]
    };
    let size0 = ifd_size(&ifd0_template(0, 0));
    let exif_off = 8 + size0;
    let gps_off = exif_off + ifd_size(&exif_ifd);
    let mut out = b"MM\x00\x2A".to_vec();
    out.extend_from_slice(&8u32.to_be_bytes());
    write_ifd(&mut out, &ifd0_template(exif_off as u32, gps_off as u32));
    assert_eq!(out.len(), exif_off);
    write_ifd(&mut out, &exif_ifd);
    assert_eq!(out.len(), gps_off);
    write_ifd(&mut out, &gps_ifd);
    out
}

fn jpeg_with_exif(jpeg: &[u8], tiff: &[u8]) -> Vec<u8> {
    let mut payload = b"Exif\x00\x00".to_vec();
    payload.extend_from_slice(tiff);
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xE1];
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn exif_summary_without_gps_unless_asked() {
    let bytes = jpeg_with_exif(&jpeg(&gradient(64, 48), 90), &camera_tiff());
    let l = Limits::default();
    let a = analyze(&bytes, &l).unwrap();
    let exif = a.exif.expect("EXIF parsed");
    assert_eq!(exif.make.as_deref(), Some("Canon"));
    assert_eq!(exif.model.as_deref(), Some("Canon EOS R6"));
    assert_eq!(exif.datetime.as_deref(), Some("2024:05:06 07:08:09"));
    assert_eq!(exif.orientation, Some(1));
    assert_eq!(exif.exposure_time.as_deref(), Some("1/250"));
    assert_eq!(exif.f_number, Some(2.8));
    assert_eq!(exif.iso, Some(400));
    assert_eq!(exif.focal_length_mm, Some(50.0));
    assert_eq!(exif.gps, None, "GPS must be dropped by default");

    let a = analyze_with(
        &bytes,
        &AnalyzeOptions {
            keep_gps: true,
            ..AnalyzeOptions::default()
        },
        &l,
    )
    .unwrap();
    let gps = a.exif.unwrap().gps.expect("GPS kept on request");
    assert!((gps.latitude - 48.858_3).abs() < 1e-3, "{gps:?}");
    assert!((gps.longitude - 2.294_5).abs() < 1e-3, "{gps:?}");
    assert_eq!(gps.altitude_m, Some(35.0));
}

#[test]
fn broken_exif_or_pixels_never_panic() {
    let l = Limits::default();
    let good = jpeg(&gradient(32, 32), 90);
    // Truncated / garbage TIFF inside a valid JPEG: analysis still succeeds.
    let mut tiff = camera_tiff();
    tiff.truncate(40);
    let a = analyze(&jpeg_with_exif(&good, &tiff), &l).unwrap();
    assert_eq!((a.width, a.height), (32, 32));
    let junk: Vec<u8> = (0..200u32).map(|i| (i * 31 % 256) as u8).collect();
    assert!(analyze(&jpeg_with_exif(&good, &junk), &l).is_ok());
    // Random mutations: errors are fine, panics are not.
    let src = jpeg_with_exif(&good, &camera_tiff());
    let mut rng = XorShift(99);
    for _ in 0..200 {
        let mut m = src.clone();
        for _ in 0..4 {
            let i = (rng.next() as usize) % m.len();
            m[i] = rng.next() as u8;
        }
        let _ = analyze(&m, &l);
    }
    assert!(analyze(b"nope", &l).is_err());
}
