//! `sniff` and `probe`: header-only inspection.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use image::DynamicImage;
use photo_imaging::{ImageFormat, ImagingError, Limits, probe, sniff};

fn samples() -> Vec<(ImageFormat, Vec<u8>)> {
    let img = DynamicImage::ImageRgb8(gradient(120, 80));
    vec![
        (ImageFormat::Jpeg, encode(&img, image::ImageFormat::Jpeg)),
        (ImageFormat::Png, encode(&img, image::ImageFormat::Png)),
        (ImageFormat::Webp, encode(&img, image::ImageFormat::WebP)),
        (ImageFormat::Gif, encode(&img, image::ImageFormat::Gif)),
    ]
}

#[test]
fn sniff_magic_bytes() {
    for (fmt, bytes) in samples() {
        assert_eq!(sniff(&bytes), Some(fmt), "{fmt:?}");
    }
    assert_eq!(sniff(b"\xFF\xD8\xFF\xE0"), Some(ImageFormat::Jpeg));
    assert_eq!(sniff(b"\x89PNG\r\n\x1a\n"), Some(ImageFormat::Png));
    assert_eq!(sniff(b"GIF87a"), Some(ImageFormat::Gif));
    assert_eq!(sniff(b"GIF89a"), Some(ImageFormat::Gif));
    assert_eq!(sniff(b"RIFF\x00\x00\x00\x00WEBP"), Some(ImageFormat::Webp));
}

#[test]
fn sniff_rejects_non_images() {
    assert_eq!(sniff(b""), None);
    assert_eq!(sniff(b"\xFF"), None);
    assert_eq!(sniff(b"\xFF\xD8"), None);
    assert_eq!(sniff(b"\x89PNG"), None);
    assert_eq!(sniff(b"GIF8"), None);
    assert_eq!(sniff(b"RIFF\x00\x00\x00\x00WAVE"), None);
    assert_eq!(sniff(b"RIFF\x00\x00\x00\x00WEB"), None);
    assert_eq!(sniff(b"hello, world"), None);
    assert_eq!(
        sniff(b"<!DOCTYPE html><html><body><img src=x></body></html>"),
        None
    );
    assert_eq!(sniff(b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>"), None);
    assert_eq!(sniff(b"BM\x00\x00"), None); // BMP is not accepted
}

#[test]
fn sniff_ignores_declared_type() {
    // A PNG "declared" as JPEG (name/type are not even inputs): still PNG.
    let png = png(&DynamicImage::ImageRgb8(gradient(10, 10)));
    assert_eq!(sniff(&png), Some(ImageFormat::Png));
}

#[test]
fn probe_dimensions_for_each_format() {
    for (fmt, bytes) in samples() {
        let info = probe(&bytes, &Limits::default()).unwrap();
        assert_eq!(info.format, fmt);
        assert_eq!((info.width, info.height), (120, 80), "{fmt:?}");
    }
}

#[test]
fn probe_works_on_a_prefix() {
    let img = DynamicImage::ImageRgb8(gradient(1000, 700));
    for (fmt, bytes) in [
        (ImageFormat::Jpeg, encode(&img, image::ImageFormat::Jpeg)),
        (ImageFormat::Png, encode(&img, image::ImageFormat::Png)),
    ] {
        assert!(bytes.len() > 4096);
        let info = probe(&bytes[..4096], &Limits::default()).unwrap();
        assert_eq!((info.format, info.width, info.height), (fmt, 1000, 700));
    }
}

#[test]
fn probe_png_header_claiming_huge_dims_is_too_large() {
    let bytes = png_header_claiming(65000, 65000);
    assert_eq!(sniff(&bytes), Some(ImageFormat::Png));
    match probe(&bytes, &Limits::default()) {
        Err(ImagingError::TooLarge { width, height, .. }) => {
            assert_eq!((width, height), (65000, 65000));
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn probe_jpeg_sof_claiming_huge_dims_is_too_large() {
    let bytes = jpeg_header_claiming(65000, 65000);
    match probe(&bytes, &Limits::default()) {
        Err(ImagingError::TooLarge { width, height, .. }) => {
            assert_eq!((width, height), (65000, 65000));
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[test]
fn probe_applies_each_limit() {
    let bytes = png_header_claiming(3000, 2000);
    let ok = probe(&bytes, &Limits::default()).unwrap();
    assert_eq!((ok.width, ok.height), (3000, 2000));
    let lim = |w, h, p| Limits {
        max_width: w,
        max_height: h,
        max_pixels: p,
        ..Limits::default()
    };
    for limits in [
        lim(2999, 9999, u64::MAX),
        lim(9999, 1999, u64::MAX),
        lim(9999, 9999, 5_999_999),
    ] {
        let err = probe(&bytes, &limits).unwrap_err();
        assert_eq!(err.code(), "image_too_large");
        assert!(err.is_permanent());
    }
}

#[test]
fn probe_truncated_header() {
    for (fmt, bytes) in samples() {
        // GIF's logical screen size ends at byte 10; the others need more.
        let cuts: &[usize] = if fmt == ImageFormat::Gif {
            &[3, 6, 8, 9]
        } else {
            &[3, 8, 12, 16, 20]
        };
        for &cut in cuts {
            let prefix = &bytes[..cut.min(bytes.len())];
            match probe(prefix, &Limits::default()) {
                Err(ImagingError::Corrupt(_) | ImagingError::UnsupportedFormat) => {}
                other => panic!("{fmt:?} cut at {cut}: {other:?}"),
            }
        }
    }
    // JPEG with SOI + APP0 but no SOF in the prefix.
    let jpeg = jpeg(&gradient(50, 50), 80);
    let err = probe(&jpeg[..10], &Limits::default()).unwrap_err();
    assert!(matches!(err, ImagingError::Corrupt(_)), "{err:?}");
}

#[test]
fn probe_random_bytes_is_unsupported() {
    let mut rng = XorShift(0x1234_5678_9abc_def0);
    for len in [0usize, 1, 7, 64, 1000] {
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if let Some(b) = bytes.first_mut() {
            *b = 0x00; // ensure it does not accidentally start with a magic number
        }
        assert_eq!(
            probe(&bytes, &Limits::default()).unwrap_err(),
            ImagingError::UnsupportedFormat
        );
    }
    assert_eq!(
        probe(b"<html>not an image</html>", &Limits::default())
            .unwrap_err()
            .code(),
        "unsupported_format"
    );
}

#[test]
fn probe_zero_dimension_is_corrupt() {
    let bytes = png_header_claiming(0, 10);
    assert!(matches!(
        probe(&bytes, &Limits::default()),
        Err(ImagingError::Corrupt(_))
    ));
}

#[test]
fn format_metadata() {
    assert_eq!(ImageFormat::Jpeg.mime(), "image/jpeg");
    assert_eq!(ImageFormat::Webp.extension(), "webp");
    assert_eq!(photo_imaging::OutputFormat::Png.mime(), "image/png");
    assert_eq!(photo_imaging::OutputFormat::Jpeg.extension(), "jpg");
    let d = Limits::default();
    assert_eq!(
        (d.max_width, d.max_height, d.max_pixels, d.max_alloc_bytes),
        (16384, 16384, 100_000_000, 1 << 30)
    );
}
