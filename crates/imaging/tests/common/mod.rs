//! Test-time image generators (no fixture files).
#![allow(dead_code, clippy::unwrap_used)]

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, ImageEncoder, Rgb, RgbImage, Rgba, RgbaImage};

/// A smooth gradient with some texture, `w × h`.
pub fn gradient(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let n = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40503)) % 32;
        Rgb([
            ((x * 255 / w.max(1)) as u8).saturating_add(n as u8),
            (y * 255 / h.max(1)) as u8,
            128u8.saturating_add(n as u8),
        ])
    })
}

pub fn solid(w: u32, h: u32, c: [u8; 3]) -> RgbImage {
    RgbImage::from_pixel(w, h, Rgb(c))
}

pub fn encode(img: &DynamicImage, fmt: image::ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    match fmt {
        image::ImageFormat::Gif => DynamicImage::ImageRgba8(img.to_rgba8())
            .write_to(&mut out, fmt)
            .unwrap(),
        image::ImageFormat::Jpeg => DynamicImage::ImageRgb8(img.to_rgb8())
            .write_to(&mut out, fmt)
            .unwrap(),
        _ => img.write_to(&mut out, fmt).unwrap(),
    }
    out.into_inner()
}

pub fn jpeg(img: &RgbImage, quality: u8) -> Vec<u8> {
    jpeg_with_icc(img, quality, None)
}

pub fn jpeg_with_icc(img: &RgbImage, quality: u8, icc: Option<Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = JpegEncoder::new_with_quality(&mut out, quality);
    if let Some(icc) = icc {
        enc.set_icc_profile(icc).unwrap();
    }
    enc.write_image(
        img.as_raw(),
        img.width(),
        img.height(),
        image::ExtendedColorType::Rgb8,
    )
    .unwrap();
    out
}

pub fn png(img: &DynamicImage) -> Vec<u8> {
    encode(img, image::ImageFormat::Png)
}

pub fn rgba_png(img: &RgbaImage) -> Vec<u8> {
    png(&DynamicImage::ImageRgba8(img.clone()))
}

pub fn rgba(c: [u8; 4]) -> Rgba<u8> {
    Rgba(c)
}

/// A fake but structurally plausible RGB ICC profile (encoders embed it verbatim).
pub fn fake_rgb_icc() -> Vec<u8> {
    let mut p = vec![0u8; 200];
    p[0..4].copy_from_slice(&200u32.to_be_bytes());
    p[12..16].copy_from_slice(b"mntr");
    p[16..20].copy_from_slice(b"RGB ");
    p[20..24].copy_from_slice(b"XYZ ");
    p[36..40].copy_from_slice(b"acsp");
    for (i, b) in p.iter_mut().enumerate().skip(128) {
        *b = i as u8;
    }
    p
}

/// Inserts an APP1 Exif segment with the given orientation right after SOI.
pub fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"MM\x00\x2A");
    tiff.extend_from_slice(&8u32.to_be_bytes()); // IFD0 offset
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // count
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]); // value padding
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    let mut payload = b"Exif\x00\x00".to_vec();
    payload.extend_from_slice(&tiff);
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xE1];
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

pub fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32(&body).to_be_bytes());
}

/// A PNG whose IHDR claims `w × h` RGBA8, followed by a tiny IDAT and IEND.
pub fn png_header_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    // zlib stream: empty stored block (the "bomb" payload is irrelevant: we must stop first).
    png_chunk(
        &mut out,
        b"IDAT",
        &[0x78, 0x01, 0x01, 0x00, 0x00, 0xFF, 0xFF, 0, 0, 0, 1],
    );
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// A JPEG whose SOF0 claims `w × h` (3 components), then EOI.
pub fn jpeg_header_claiming(w: u16, h: u16) -> Vec<u8> {
    let mut out = vec![0xFF, 0xD8];
    out.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x11, 8]);
    out.extend_from_slice(&h.to_be_bytes());
    out.extend_from_slice(&w.to_be_bytes());
    out.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

/// Decodes an output and returns (format, image).
pub fn decode(bytes: &[u8]) -> (image::ImageFormat, DynamicImage) {
    let fmt = image::guess_format(bytes).unwrap();
    (
        fmt,
        image::load_from_memory_with_format(bytes, fmt).unwrap(),
    )
}

/// Tiny deterministic PRNG for mutation tests.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// A little-endian TIFF header whose first IFD claims `w × h` (and nothing else).
pub fn tiff_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut t = b"II*\x00".to_vec();
    t.extend_from_slice(&8u32.to_le_bytes());
    let entries: [(u16, u16, u32); 5] = [
        (256, 4, w),    // ImageWidth, LONG
        (257, 4, h),    // ImageLength
        (258, 3, 8),    // BitsPerSample
        (273, 4, 200),  // StripOffsets
        (279, 4, 1000), // StripByteCounts
    ];
    t.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for (tag, typ, v) in entries {
        t.extend_from_slice(&tag.to_le_bytes());
        t.extend_from_slice(&typ.to_le_bytes());
        t.extend_from_slice(&1u32.to_le_bytes());
        if typ == 3 {
            t.extend_from_slice(&(v as u16).to_le_bytes());
            t.extend_from_slice(&[0, 0]);
        } else {
            t.extend_from_slice(&v.to_le_bytes());
        }
    }
    t.extend_from_slice(&0u32.to_le_bytes());
    t.resize(300, 0);
    t
}
