//! Crafts hostile inputs byte by byte (no fixture files).
#![allow(dead_code, clippy::unwrap_used)]

use super::common::{crc32, gradient, jpeg, png_chunk};
use image::DynamicImage;

// ---------------------------------------------------------------------------
// Deflate / zlib: a real decompression bomb of zeros.
// ---------------------------------------------------------------------------

struct Bits {
    out: Vec<u8>,
    acc: u32,
    n: u32,
}

impl Bits {
    fn new() -> Self {
        Bits {
            out: Vec::new(),
            acc: 0,
            n: 0,
        }
    }
    /// Writes `n` bits of `v`, least significant first (deflate header fields).
    fn put(&mut self, v: u32, n: u32) {
        for i in 0..n {
            self.acc |= ((v >> i) & 1) << self.n;
            self.n += 1;
            if self.n == 8 {
                self.out.push(self.acc as u8);
                self.acc = 0;
                self.n = 0;
            }
        }
    }
    /// Writes a Huffman code, most significant bit first.
    fn code(&mut self, v: u32, n: u32) {
        for i in (0..n).rev() {
            self.put((v >> i) & 1, 1);
        }
    }
    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

/// A zlib stream inflating to `len` zero bytes, ~160:1 (fixed Huffman,
/// length-258 matches at distance 1).
pub fn zlib_zeros(len: u64) -> Vec<u8> {
    let mut b = Bits::new();
    b.put(1, 1); // BFINAL
    b.put(1, 2); // BTYPE = fixed Huffman
    let literal_zero = |b: &mut Bits| b.code(0x30, 8); // literal 0: 00110000
    let mut left = len;
    if left > 0 {
        literal_zero(&mut b);
        left -= 1;
    }
    while left >= 258 {
        b.code(0xC5, 8); // length code 285 = 258
        b.code(0, 5); // distance code 0 = 1
        left -= 258;
    }
    for _ in 0..left {
        literal_zero(&mut b);
    }
    b.code(0, 7); // end of block (256)
    let mut out = vec![0x78, 0x01];
    out.extend_from_slice(&b.finish());
    let adler = (((len % 65521) as u32) << 16) | 1;
    out.extend_from_slice(&adler.to_be_bytes());
    out
}

// ---------------------------------------------------------------------------
// PNG
// ---------------------------------------------------------------------------

/// A valid all-zero (black / transparent) PNG of `w × h` whose IDAT is a
/// zlib bomb. `color_type` 0 = gray8, 2 = RGB8, 6 = RGBA8.
pub fn png_zero_bomb(w: u32, h: u32, color_type: u8) -> Vec<u8> {
    let bpp: u64 = match color_type {
        0 => 1,
        2 => 3,
        6 => 4,
        _ => panic!("unsupported colour type"),
    };
    let raw = u64::from(h) * (1 + u64::from(w) * bpp);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    png_chunk(&mut out, b"IHDR", &ihdr(w, h, color_type));
    png_chunk(&mut out, b"IDAT", &zlib_zeros(raw));
    png_chunk(&mut out, b"IEND", &[]);
    out
}

fn ihdr(w: u32, h: u32, color_type: u8) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend_from_slice(&w.to_be_bytes());
    d.extend_from_slice(&h.to_be_bytes());
    d.extend_from_slice(&[8, color_type, 0, 0, 0]);
    d
}

/// Inserts `chunks` right after IHDR (which always ends at byte 33).
pub fn png_insert_after_ihdr(png: &[u8], chunks: &[(&[u8; 4], Vec<u8>)]) -> Vec<u8> {
    let mut out = png[..33].to_vec();
    for (kind, data) in chunks {
        png_chunk(&mut out, kind, data);
    }
    out.extend_from_slice(&png[33..]);
    out
}

/// A small real PNG (RGB gradient).
pub fn small_png(w: u32, h: u32) -> Vec<u8> {
    super::common::png(&DynamicImage::ImageRgb8(gradient(w, h)))
}

/// An `iCCP` chunk whose zlib-compressed profile inflates to `len` zeros.
pub fn iccp_bomb(len: u64) -> Vec<u8> {
    let mut d = b"bomb\0\0".to_vec(); // name, NUL, compression method 0
    d.extend_from_slice(&zlib_zeros(len));
    d
}

/// `acTL`: `frames` declared, loop forever.
pub fn actl(frames: u32) -> Vec<u8> {
    let mut d = frames.to_be_bytes().to_vec();
    d.extend_from_slice(&0u32.to_be_bytes());
    d
}

/// `fcTL` for sequence number `seq`, `w × h` at (0, 0).
pub fn fctl(seq: u32, w: u32, h: u32) -> Vec<u8> {
    let mut d = Vec::new();
    for v in [seq, w, h, 0, 0] {
        d.extend_from_slice(&v.to_be_bytes());
    }
    d.extend_from_slice(&[0, 1, 0, 10, 0, 0]); // delay 1/10, dispose none, blend source
    d
}

/// The IDAT chunk(s)' data of a PNG, concatenated.
pub fn png_idat(png: &[u8]) -> Vec<u8> {
    let mut pos = 8;
    let mut out = Vec::new();
    while pos + 8 <= png.len() {
        let len = u32::from_be_bytes(png[pos..pos + 4].try_into().unwrap()) as usize;
        if &png[pos + 4..pos + 8] == b"IDAT" {
            out.extend_from_slice(&png[pos + 8..pos + 8 + len]);
        }
        pos += 12 + len;
    }
    out
}

/// A real APNG of `frames` frames of `w × h` (all the same picture), the
/// default image being the first frame; `declared` goes into `acTL`.
pub fn apng(w: u32, h: u32, frames: u32, declared: u32) -> Vec<u8> {
    let base = small_png(w, h);
    let idat = png_idat(&base);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    png_chunk(&mut out, b"IHDR", &ihdr(w, h, 2));
    png_chunk(&mut out, b"acTL", &actl(declared));
    let mut seq = 0;
    png_chunk(&mut out, b"fcTL", &fctl(seq, w, h));
    seq += 1;
    png_chunk(&mut out, b"IDAT", &idat);
    for _ in 1..frames {
        png_chunk(&mut out, b"fcTL", &fctl(seq, w, h));
        seq += 1;
        let mut fdat = seq.to_be_bytes().to_vec();
        fdat.extend_from_slice(&idat);
        png_chunk(&mut out, b"fdAT", &fdat);
        seq += 1;
    }
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// Breaks the CRC of the first chunk of type `kind`.
pub fn png_break_crc(png: &[u8], kind: &[u8; 4]) -> Vec<u8> {
    let mut out = png.to_vec();
    let mut pos = 8;
    while pos + 8 <= out.len() {
        let len = u32::from_be_bytes(out[pos..pos + 4].try_into().unwrap()) as usize;
        if &out[pos + 4..pos + 8] == kind {
            let crc_at = pos + 8 + len;
            out[crc_at] ^= 0xFF;
            return out;
        }
        pos += 12 + len;
    }
    panic!("no {kind:?} chunk");
}

/// True when `png` ends exactly after its IEND chunk (no trailing bytes).
pub fn png_ends_at_iend(png: &[u8]) -> bool {
    let mut tail = Vec::new();
    png_chunk(&mut tail, b"IEND", &[]);
    png.ends_with(&tail)
}

// ---------------------------------------------------------------------------
// GIF
// ---------------------------------------------------------------------------

/// 1×1-pixel LZW image data (min code size 2: clear, 0, end).
const GIF_PIXEL_DATA: [u8; 5] = [0x02, 0x02, 0x44, 0x01, 0x00];

fn gif_header(w: u16, h: u16) -> Vec<u8> {
    let mut out = b"GIF89a".to_vec();
    out.extend_from_slice(&w.to_le_bytes());
    out.extend_from_slice(&h.to_le_bytes());
    out.extend_from_slice(&[0x80, 0, 0]); // 2-colour global table
    out.extend_from_slice(&[0, 0, 0, 255, 255, 255]);
    out
}

fn gif_descriptor(out: &mut Vec<u8>, w: u16, h: u16) {
    out.push(0x2C);
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&w.to_le_bytes());
    out.extend_from_slice(&h.to_le_bytes());
    out.push(0);
}

/// The classic 37-byte GIF (one 1×1 frame of data), but with the logical
/// screen and the frame descriptor claiming `w × h`.
pub fn gif_37_bytes_claiming(w: u16, h: u16) -> Vec<u8> {
    let mut out = gif_header(w, h);
    gif_descriptor(&mut out, w, h);
    out.extend_from_slice(&GIF_PIXEL_DATA);
    out.push(0x3B);
    out.extend_from_slice(&[0, 0]); // pad the LZW stream to the famous 37 bytes
    out
}

/// A 1×1 logical screen whose single frame descriptor claims `w × h`.
pub fn gif_frame_larger_than_screen(w: u16, h: u16) -> Vec<u8> {
    let mut out = gif_header(1, 1);
    gif_descriptor(&mut out, w, h);
    out.extend_from_slice(&GIF_PIXEL_DATA);
    out.push(0x3B);
    out
}

/// A valid animated GIF of `frames` 1×1 frames on a `w × h` screen.
pub fn gif_animation(w: u16, h: u16, frames: u32) -> Vec<u8> {
    let mut out = gif_header(w, h);
    // NETSCAPE2.0 loop extension.
    out.extend_from_slice(b"\x21\xFF\x0BNETSCAPE2.0\x03\x01\x00\x00\x00");
    for _ in 0..frames {
        out.extend_from_slice(&[0x21, 0xF9, 0x04, 0x00, 0x01, 0x00, 0x00, 0x00]);
        gif_descriptor(&mut out, 1, 1);
        out.extend_from_slice(&GIF_PIXEL_DATA);
    }
    out.push(0x3B);
    out
}

// ---------------------------------------------------------------------------
// WebP
// ---------------------------------------------------------------------------

/// A small lossless WebP (the `image` encoder writes a plain `VP8L` file).
pub fn small_webp(w: u32, h: u32) -> Vec<u8> {
    super::common::encode(
        &DynamicImage::ImageRgba8(DynamicImage::ImageRgb8(gradient(w, h)).to_rgba8()),
        image::ImageFormat::WebP,
    )
}

fn riff_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(kind);
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    if data.len() % 2 == 1 {
        out.push(0);
    }
}

fn u24(v: u32) -> [u8; 3] {
    let b = v.to_le_bytes();
    [b[0], b[1], b[2]]
}

/// An animated WebP: `frames` ANMF frames of a `w × h` VP8L image each;
/// `frame_dims` (if set) is what every ANMF header claims instead.
pub fn webp_animation(w: u32, h: u32, frames: u32, frame_dims: Option<(u32, u32)>) -> Vec<u8> {
    let still = small_webp(w, h);
    let bitstream = &still[12..]; // the VP8L chunk, header included
    let (fw, fh) = frame_dims.unwrap_or((w, h));
    let mut body = b"WEBP".to_vec();
    let mut vp8x = vec![0x12, 0, 0, 0]; // animation + alpha
    vp8x.extend_from_slice(&u24(w - 1));
    vp8x.extend_from_slice(&u24(h - 1));
    riff_chunk(&mut body, b"VP8X", &vp8x);
    riff_chunk(&mut body, b"ANIM", &[0, 0, 0, 0, 0, 0]);
    for _ in 0..frames {
        let mut anmf = Vec::new();
        anmf.extend_from_slice(&u24(0));
        anmf.extend_from_slice(&u24(0));
        anmf.extend_from_slice(&u24(fw - 1));
        anmf.extend_from_slice(&u24(fh - 1));
        anmf.extend_from_slice(&u24(100));
        anmf.push(0);
        anmf.extend_from_slice(bitstream);
        riff_chunk(&mut body, b"ANMF", &anmf);
    }
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// True when the RIFF size covers exactly the whole file.
pub fn webp_exact_riff(webp: &[u8]) -> bool {
    webp.len() >= 12
        && u32::from_le_bytes(webp[4..8].try_into().unwrap()) as usize + 8 == webp.len()
}

// ---------------------------------------------------------------------------
// JPEG
// ---------------------------------------------------------------------------

/// Sets the dimensions in the first SOFn segment.
pub fn jpeg_set_dims(jpeg: &[u8], w: u16, h: u16) -> Vec<u8> {
    let mut out = jpeg.to_vec();
    let mut pos = 2;
    loop {
        assert_eq!(out[pos], 0xFF);
        let marker = out[pos + 1];
        let len = usize::from(u16::from_be_bytes([out[pos + 2], out[pos + 3]]));
        if matches!(marker, 0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF) {
            out[pos + 5..pos + 7].copy_from_slice(&h.to_be_bytes());
            out[pos + 7..pos + 9].copy_from_slice(&w.to_be_bytes());
            return out;
        }
        pos += 2 + len;
    }
}

/// Inserts a marker segment right after SOI.
pub fn jpeg_insert_segment(jpeg: &[u8], marker: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() + 2 <= 0xFFFF);
    let mut out = vec![0xFF, 0xD8, 0xFF, marker];
    out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// A real, complete JPEG (tables, scan, EOI) of exactly 633 bytes whose SOF
/// claims `w × h`: pads a tiny real JPEG with a COM segment.
pub fn jpeg_633_bytes_claiming(w: u16, h: u16) -> Vec<u8> {
    jpeg_padded_claiming(w, h, 633)
}

/// A tiny real JPEG whose SOF claims `w × h`, padded with COM segments to
/// exactly `len` bytes (padding makes the file look dense enough).
pub fn jpeg_padded_claiming(w: u16, h: u16, len: usize) -> Vec<u8> {
    let mut base = jpeg(&gradient(8, 8), 10);
    if base[2..4] == [0xFF, 0xE0] {
        // Drop the JFIF APP0 segment to make room for the padding.
        let seg = usize::from(u16::from_be_bytes([base[4], base[5]]));
        base.drain(2..4 + seg);
    }
    let mut out = jpeg_set_dims(&base, w, h);
    assert!(out.len() + 4 <= len, "base JPEG is {} bytes", out.len());
    while out.len() < len {
        let pad = (len - out.len() - 4).min(60_000);
        // Leave room for one more segment header if this one does not finish.
        let pad = if out.len() + 4 + pad < len && len - (out.len() + 4 + pad) < 4 {
            pad - 4
        } else {
            pad
        };
        out = jpeg_insert_segment(&out, 0xFE, &vec![b' '; pad]);
    }
    assert_eq!(out.len(), len);
    out
}

/// An APP1 Exif segment payload from a big-endian TIFF body.
fn exif_payload(tiff: &[u8]) -> Vec<u8> {
    let mut p = b"Exif\0\0".to_vec();
    p.extend_from_slice(tiff);
    p
}

fn ifd_entry(t: &mut Vec<u8>, tag: u16, kind: u16, count: u32, value: u32) {
    t.extend_from_slice(&tag.to_be_bytes());
    t.extend_from_slice(&kind.to_be_bytes());
    t.extend_from_slice(&count.to_be_bytes());
    t.extend_from_slice(&value.to_be_bytes());
}

/// EXIF whose IFD0 declares 65535 entries (only two present), including one
/// with an absurd count pointing far outside the segment.
pub fn exif_absurd_counts() -> Vec<u8> {
    let mut t = b"MM\0\x2A".to_vec();
    t.extend_from_slice(&8u32.to_be_bytes());
    t.extend_from_slice(&0xFFFFu16.to_be_bytes());
    ifd_entry(&mut t, 0x010F, 2, u32::MAX, 0xFFFF_FFF0); // Make: 4 GiB ASCII
    ifd_entry(&mut t, 0x8769, 4, 0x4000_0000, 0x7FFF_FFFF); // ExifIFD pointer
    exif_payload(&t)
}

/// EXIF whose IFD0 links to itself (and whose Exif sub-IFD points back at
/// IFD0), with orientation 6 (rotate 90°).
pub fn exif_ifd_loop() -> Vec<u8> {
    let mut t = b"MM\0\x2A".to_vec();
    t.extend_from_slice(&8u32.to_be_bytes());
    t.extend_from_slice(&2u16.to_be_bytes());
    t.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation, SHORT, 1
    t.extend_from_slice(&3u16.to_be_bytes());
    t.extend_from_slice(&1u32.to_be_bytes());
    t.extend_from_slice(&[0, 6, 0, 0]);
    ifd_entry(&mut t, 0x8769, 4, 1, 8); // Exif sub-IFD = IFD0
    t.extend_from_slice(&8u32.to_be_bytes()); // next IFD = itself
    exif_payload(&t)
}

/// `n` APP2 ICC_PROFILE segments of `chunk` bytes each (a fake RGB profile header first).
pub fn jpeg_with_huge_icc(jpeg: &[u8], n: u8, chunk: usize) -> Vec<u8> {
    let mut profile = vec![0u8; usize::from(n) * chunk];
    let icc = super::common::fake_rgb_icc();
    profile[..128].copy_from_slice(&icc[..128]);
    let total = (profile.len() as u32).to_be_bytes();
    profile[0..4].copy_from_slice(&total);
    let mut out = jpeg[..2].to_vec();
    for (i, part) in profile.chunks(chunk).enumerate() {
        let mut p = b"ICC_PROFILE\0".to_vec();
        p.push(i as u8 + 1);
        p.push(n);
        p.extend_from_slice(part);
        out.extend_from_slice(&[0xFF, 0xE2]);
        out.extend_from_slice(&((p.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&p);
    }
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// CRC-32 is re-exported for callers building their own chunks.
pub fn crc(data: &[u8]) -> u32 {
    crc32(data)
}
