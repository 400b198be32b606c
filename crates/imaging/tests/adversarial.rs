//! Adversarial corpus, generated in-test: every hostile input ends in a clear
//! rejection or a correct re-encode, within a time bound and (for bombs) a
//! memory bound, never a crash — for both `probe` and `transform`.
//!
//! The memory bound is measured with a per-thread counting global allocator
//! (peak live bytes allocated by the thread running the call).
#![allow(clippy::unwrap_used, unsafe_code)]

mod common;
#[path = "adversarial/craft.rs"]
mod craft;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{gradient, jpeg, jpeg_header_claiming, png_header_claiming};
use craft::*;
use image::{DynamicImage, GenericImageView};
use photo_imaging::{
    Encoded, ImageFormat, ImageInfo, ImagingError, Limits, OutputFormat, Transform, probe, sniff,
    transform,
};

// ---------------------------------------------------------------------------
// Peak-allocation tracking (per thread).
// ---------------------------------------------------------------------------

struct Counting;

thread_local! {
    static LIVE: Cell<i64> = const { Cell::new(0) };
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn track(delta: i64) {
    let _ = LIVE.try_with(|live| {
        let v = live.get() + delta;
        live.set(v);
        let _ = PEAK.try_with(|p| {
            if v > p.get() {
                p.set(v);
            }
        });
    });
}

// SAFETY: forwards to the system allocator; the bookkeeping never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            track(layout.size() as i64);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            track(layout.size() as i64);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        track(-(layout.size() as i64));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            track(new_size as i64 - layout.size() as i64);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Hang guard: generous, this is not a speed goal (debug build, shared CPU).
const TIME_BOUND: Duration = Duration::from_secs(5);

/// Runs `f` on a fresh thread; fails if it takes longer than [`TIME_BOUND`]
/// (without waiting for it forever). Returns its result and peak heap bytes.
fn guarded<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> (T, u64) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        LIVE.with(|l| l.set(0));
        PEAK.with(|p| p.set(0));
        let start = Instant::now();
        let out = f();
        let elapsed = start.elapsed();
        let peak = PEAK.with(Cell::get).max(0) as u64;
        let _ = tx.send((out, elapsed, peak));
    });
    match rx.recv_timeout(TIME_BOUND + Duration::from_secs(5)) {
        Ok((out, elapsed, peak)) => {
            assert!(elapsed < TIME_BOUND, "{name}: took {elapsed:?}");
            (out, peak)
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{name}: still running after the bound"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{name}: the call panicked"),
    }
}

// ---------------------------------------------------------------------------
// Expected outcomes.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// `probe`: Ok with these (format, width, height, frames).
    Info(ImageFormat, u32, u32, u32),
    /// `transform`: Ok; the output decodes to these dimensions and has no trailing bytes.
    Reencoded(u32, u32),
    TooLarge,
    Corrupt,
    Unsupported,
}

struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    limits: Limits,
    op: Transform,
    probe: Expect,
    transform: Expect,
    /// Peak heap bytes allowed for each call (probe and transform).
    max_peak: u64,
}

impl Case {
    fn new(name: &'static str, bytes: Vec<u8>, probe: Expect, transform: Expect) -> Case {
        Case {
            name,
            bytes,
            limits: Limits::default(),
            op: Transform::default(),
            probe,
            transform,
            max_peak: 64 << 20,
        }
    }
    fn limits(mut self, limits: Limits) -> Case {
        self.limits = limits;
        self
    }
    fn op(mut self, op: Transform) -> Case {
        self.op = op;
        self
    }
    fn max_peak(mut self, bytes: u64) -> Case {
        self.max_peak = bytes;
        self
    }

    fn run(self) {
        let Case {
            name,
            bytes,
            limits,
            op,
            probe: want_probe,
            transform: want_transform,
            max_peak,
        } = self;
        let input = std::sync::Arc::new(bytes);

        let b = input.clone();
        let (got, peak) = guarded(name, move || probe(&b, &limits));
        eprintln!("{name}: probe peak {peak} B");
        check_probe(name, &got, want_probe);
        assert!(peak <= max_peak, "{name}: probe peak {peak} > {max_peak}");

        let b = input.clone();
        let (got, peak) = guarded(name, move || transform(&b, &op, &limits));
        eprintln!("{name}: transform peak {peak} B");
        check_transform(name, &got, want_transform, op.format);
        assert!(
            peak <= max_peak,
            "{name}: transform peak {peak} > {max_peak}"
        );
    }
}

fn check_err(name: &str, got: &ImagingError, want: Expect) {
    let ok = matches!(
        (got, want),
        (ImagingError::TooLarge { .. }, Expect::TooLarge)
            | (ImagingError::Corrupt(_), Expect::Corrupt)
            | (ImagingError::UnsupportedFormat, Expect::Unsupported)
    );
    assert!(ok, "{name}: expected {want:?}, got {got:?}");
    assert!(got.is_permanent(), "{name}: {got:?} must be permanent");
}

fn check_probe(name: &str, got: &Result<ImageInfo, ImagingError>, want: Expect) {
    match (got, want) {
        (Ok(info), Expect::Info(f, w, h, n)) => assert_eq!(
            (info.format, info.width, info.height, info.frames),
            (f, w, h, n),
            "{name}: probe"
        ),
        (Ok(info), _) => panic!("{name}: probe expected {want:?}, got {info:?}"),
        (Err(e), _) => check_err(name, e, want),
    }
}

fn check_transform(
    name: &str,
    got: &Result<Encoded, ImagingError>,
    want: Expect,
    format: OutputFormat,
) {
    match (got, want) {
        (Ok(out), Expect::Reencoded(w, h)) => {
            assert_eq!(
                (out.width, out.height, out.format),
                (w, h, format),
                "{name}"
            );
            assert_valid_output(name, out);
        }
        (Ok(out), _) => panic!("{name}: transform expected {want:?}, got {out:?}"),
        (Err(e), _) => check_err(name, e, want),
    }
}

/// The output decodes to its stated size and ends where its format says it ends.
fn assert_valid_output(name: &str, out: &Encoded) {
    let (fmt, img) = common::decode(&out.bytes);
    assert_eq!(img.dimensions(), (out.width, out.height), "{name}: decoded");
    let b = &out.bytes;
    match out.format {
        OutputFormat::Jpeg => {
            assert_eq!(fmt, image::ImageFormat::Jpeg);
            assert!(b.ends_with(&[0xFF, 0xD9]), "{name}: JPEG must end at EOI");
        }
        OutputFormat::Png => {
            assert_eq!(fmt, image::ImageFormat::Png);
            assert!(png_ends_at_iend(b), "{name}: PNG must end at IEND");
        }
        OutputFormat::Webp => {
            assert_eq!(fmt, image::ImageFormat::WebP);
            assert!(
                webp_exact_riff(b),
                "{name}: WebP RIFF size must cover the file"
            );
        }
        OutputFormat::Avif => {
            assert_eq!(fmt, image::ImageFormat::Avif);
        }
        OutputFormat::Gif => {
            assert_eq!(fmt, image::ImageFormat::Gif);
            assert!(b.ends_with(&[0x3B]), "{name}: GIF must end at its trailer");
        }
    }
    for needle in [&b"<html"[..], b"<script", b"<svg", b"alert("] {
        assert!(
            !b.windows(needle.len()).any(|w| w == needle),
            "{name}: output carries {:?}",
            String::from_utf8_lossy(needle)
        );
    }
}

fn small_alloc(bytes: u64) -> Limits {
    Limits {
        max_alloc_bytes: bytes,
        ..Limits::default()
    }
}

use Expect::*;
use ImageFormat as F;

// ---------------------------------------------------------------------------
// Decompression bombs.
// ---------------------------------------------------------------------------

#[test]
fn png_zlib_bomb_is_refused_within_the_allocation_limit() {
    // 10000×10000 gray: 100 MB of zeros from ~620 KB; within the pixel
    // limits, so only the allocation limit can stop it.
    let bomb = png_zero_bomb(10_000, 10_000, 0);
    assert!(bomb.len() < 700_000, "{}", bomb.len());
    let limit = 16 << 20;
    Case::new(
        "png zlib bomb",
        bomb,
        Info(F::Png, 10_000, 10_000, 1),
        TooLarge,
    )
    .limits(small_alloc(limit))
    // Nothing near the decoded size may be allocated (the input itself is shared).
    .max_peak(limit)
    .run();
}

#[test]
fn png_zlib_bomb_over_the_pixel_limit_is_refused_by_the_header() {
    // 16384×16384 RGBA (1 GiB decoded) from ~6.7 MB: over 100 MP.
    let bomb = png_zero_bomb(16_384, 16_384, 6);
    Case::new("png 1 GiB bomb", bomb, TooLarge, TooLarge)
        .max_peak(1 << 20)
        .run();
}

#[test]
fn small_png_bomb_under_the_limits_is_reencoded() {
    // The same construction, small enough to be legitimate: decoded correctly.
    let bomb = png_zero_bomb(300, 200, 2);
    Case::new(
        "small zero png",
        bomb,
        Info(F::Png, 300, 200, 1),
        Reencoded(300, 200),
    )
    .op(Transform {
        format: OutputFormat::Png,
        ..Transform::default()
    })
    .run();
}

#[test]
fn headers_claiming_65000_squared_are_refused_without_decoding() {
    for (name, bytes) in [
        ("png 65000²", png_header_claiming(65_000, 65_000)),
        ("jpeg SOF 65000²", jpeg_header_claiming(65_000, 65_000)),
        ("gif 65000²", gif_37_bytes_claiming(65_000, 65_000)),
    ] {
        Case::new(name, bytes, TooLarge, TooLarge)
            .max_peak(1 << 20)
            .run();
    }
}

#[test]
fn the_37_byte_gif_is_refused() {
    let gif = gif_37_bytes_claiming(65_535, 65_535);
    assert_eq!(gif.len(), 37);
    assert_eq!(sniff(&gif), Some(F::Gif));
    Case::new("37-byte gif", gif, TooLarge, TooLarge)
        .max_peak(1 << 20)
        .run();
    // Under the side limits but over the pixel budget, and vice versa with an
    // allocation budget: still refused before any frame buffer is allocated.
    let gif = gif_37_bytes_claiming(12_000, 12_000);
    Case::new("37-byte gif 144 MP", gif, TooLarge, TooLarge)
        .max_peak(1 << 20)
        .run();
    let gif = gif_37_bytes_claiming(8_000, 8_000);
    Case::new(
        "37-byte gif 64 MP, 16 MiB alloc",
        gif,
        Info(F::Gif, 8_000, 8_000, 1),
        TooLarge,
    )
    .limits(small_alloc(16 << 20))
    .max_peak(16 << 20)
    .run();
}

#[test]
fn gif_frame_larger_than_its_screen_is_refused() {
    // imagesize only sees the 1×1 logical screen; the frame walk sees the frame.
    let gif = gif_frame_larger_than_screen(65_535, 65_535);
    Case::new("gif 1x1 screen, 65535² frame", gif, TooLarge, TooLarge)
        .max_peak(1 << 20)
        .run();
    let gif = gif_frame_larger_than_screen(12_000, 12_000);
    Case::new("gif 1x1 screen, 144 MP frame", gif, TooLarge, TooLarge)
        .max_peak(1 << 20)
        .run();
}

#[test]
fn the_633_byte_jpeg_is_refused() {
    let j = jpeg_633_bytes_claiming(65_000, 65_000);
    assert_eq!(sniff(&j), Some(F::Jpeg));
    Case::new("633-byte jpeg 65000²", j, TooLarge, TooLarge)
        .max_peak(1 << 20)
        .run();
    // Within the pixel limits and padded to look dense (200 KB): the
    // allocation limit refuses it before decoding.
    let j = jpeg_padded_claiming(10_000, 10_000, 200_000);
    Case::new(
        "padded jpeg 100 MP, 64 MiB alloc",
        j,
        Info(F::Jpeg, 10_000, 10_000, 1),
        TooLarge,
    )
    .limits(small_alloc(64 << 20))
    .max_peak(4 << 20)
    .run();
    // With the default limits it is within every size limit, but 633 bytes
    // cannot hold 1.56 M blocks (≥ 1 bit each): a truncated scan the decoder
    // would fill in (≈ 40 s and 360 MB in a debug build). Refused by the header.
    for (w, h) in [(10_000, 10_000), (16_384, 6_100), (1_000, 1_000)] {
        let j = jpeg_633_bytes_claiming(w, h);
        Case::new("633-byte jpeg, default limits", j, Corrupt, Corrupt)
            .max_peak(1 << 20)
            .run();
    }
    // The density rule does not touch real, highly compressible JPEGs (every
    // 8×8 block costs a real encoder ≥ 6 bits), nor a prefix without EOI.
    let solid = jpeg(&common::solid(1024, 1024, [200, 200, 200]), 50);
    assert!(solid.len() * 8 >= 6 * 128 * 128, "{}", solid.len());
    Case::new(
        "solid jpeg",
        solid.clone(),
        Info(F::Jpeg, 1024, 1024, 1),
        Reencoded(1024, 1024),
    )
    .run();
    let big = jpeg(&gradient(1200, 900), 90);
    assert_eq!(
        probe(&big[..4096], &Limits::default()).map(|i| (i.width, i.height)),
        Ok((1200, 900))
    );
}

#[test]
fn png_iccp_bomb_is_bounded() {
    // iCCP inflating to 64 MiB with a 16 MiB budget: the decoder stops at the
    // budget, drops the profile and still decodes the (tiny) image.
    let png = png_insert_after_ihdr(&small_png(32, 24), &[(b"iCCP", iccp_bomb(64 << 20))]);
    Case::new(
        "png iCCP bomb",
        png,
        Info(F::Png, 32, 24, 1),
        Reencoded(32, 24),
    )
    .limits(small_alloc(16 << 20))
    .op(Transform {
        strip_metadata: false,
        format: OutputFormat::Png,
        ..Transform::default()
    })
    .max_peak(24 << 20)
    .run();
}

// ---------------------------------------------------------------------------
// Frames.
// ---------------------------------------------------------------------------

#[test]
fn gif_with_5000_frames_is_refused_by_the_header() {
    let gif = gif_animation(64, 64, 5000);
    // On a prefix (as the API probes) the count is a lower bound.
    let info = probe(&gif[..4096], &Limits::default()).unwrap();
    assert!((100..1000).contains(&info.frames), "{info:?}");
    let info = probe(&gif[..40_000], &Limits::default());
    assert!(
        matches!(info, Err(ImagingError::TooLarge { .. })),
        "{info:?}"
    );
    Case::new("5000-frame gif", gif.clone(), TooLarge, TooLarge)
        .max_peak(1 << 20)
        .run();
    // Allowed by a higher frame limit: first frame re-encoded.
    let limits = Limits {
        max_frames: 5000,
        ..Limits::default()
    };
    Case::new(
        "5000-frame gif, limit 5000",
        gif,
        Info(F::Gif, 64, 64, 5000),
        Reencoded(64, 64),
    )
    .limits(limits)
    .run();
}

#[test]
fn pixels_summed_over_frames_are_limited() {
    // 200 frames × 4000×4000 canvas = 3.2 G pixels > 500 M.
    let gif = gif_animation(4000, 4000, 200);
    Case::new("200 frames × 16 MP", gif, TooLarge, TooLarge)
        .max_peak(1 << 20)
        .run();
    let gif = gif_animation(100, 100, 30);
    let limits = Limits {
        max_total_pixels: 299_999,
        ..Limits::default()
    };
    Case::new("30 frames × 10000 px", gif.clone(), TooLarge, TooLarge)
        .limits(limits)
        .run();
    Case::new(
        "30 frames ok",
        gif,
        Info(F::Gif, 100, 100, 30),
        Reencoded(100, 100),
    )
    .run();
}

#[test]
fn apng_frame_counts() {
    let ok = apng(16, 16, 3, 3);
    Case::new(
        "apng 3 frames",
        ok,
        Info(F::Png, 16, 16, 3),
        Reencoded(16, 16),
    )
    .run();
    // acTL declares a billion frames: refused on the declaration.
    let lying = apng(16, 16, 2, 1_000_000_000);
    Case::new("apng acTL 1e9", lying, TooLarge, TooLarge).run();
    // 1500 real fcTL frames (acTL understated).
    let many = apng(4, 4, 1500, 1);
    Case::new("apng 1500 fcTL", many, TooLarge, TooLarge).run();
    // One fcTL claiming a frame far larger than the canvas.
    let png = png_insert_after_ihdr(
        &small_png(8, 8),
        &[(b"acTL", actl(1)), (b"fcTL", fctl(0, 60_000, 60_000))],
    );
    Case::new("apng huge fcTL", png, TooLarge, TooLarge)
        .max_peak(1 << 20)
        .run();
}

#[test]
fn animated_webp_frame_counts() {
    let ok = webp_animation(8, 8, 3, None);
    Case::new("webp 3 frames", ok, Info(F::Webp, 8, 8, 3), Reencoded(8, 8)).run();
    let many = webp_animation(8, 8, 5000, None);
    Case::new("webp 5000 frames", many, TooLarge, TooLarge).run();
    let huge_frame = webp_animation(8, 8, 1, Some((16_000_000, 16_000_000)));
    Case::new("webp ANMF 16M²", huge_frame, TooLarge, TooLarge)
        .max_peak(1 << 20)
        .run();
}

// ---------------------------------------------------------------------------
// Truncated and corrupt files.
// ---------------------------------------------------------------------------

#[test]
fn truncated_files_are_corrupt() {
    let img = DynamicImage::ImageRgb8(gradient(96, 64));
    for (fmt, bytes) in [
        (F::Jpeg, common::encode(&img, image::ImageFormat::Jpeg)),
        (F::Png, common::encode(&img, image::ImageFormat::Png)),
        (F::Webp, common::encode(&img, image::ImageFormat::WebP)),
        (F::Gif, common::encode(&img, image::ImageFormat::Gif)),
    ] {
        // Past the header: probe still answers, transform refuses.
        for cut in [bytes.len() / 2, bytes.len() * 9 / 10] {
            let name = "truncated after the header";
            Case::new(name, bytes[..cut].to_vec(), Info(fmt, 96, 64, 1), Corrupt).run();
        }
        // Inside the header: both refuse (too short to even sniff → unsupported).
        let cuts: &[(usize, Expect)] = match fmt {
            F::Jpeg => &[(4, Corrupt), (9, Corrupt)],
            F::Png => &[(4, Unsupported), (9, Corrupt), (20, Corrupt)],
            F::Gif => &[(4, Unsupported), (9, Corrupt)],
            F::Webp => &[(4, Unsupported), (9, Unsupported), (14, Corrupt)],
            other => panic!("{other:?} is not in this list"),
        };
        for &(cut, want) in cuts {
            Case::new("truncated header", bytes[..cut].to_vec(), want, want).run();
        }
    }
}

#[test]
fn corrupt_files_are_corrupt() {
    let png = small_png(40, 30);
    Case::new(
        "png bad IDAT crc",
        png_break_crc(&png, b"IDAT"),
        Info(F::Png, 40, 30, 1),
        Corrupt,
    )
    .run();
    // Garbage instead of the LZW data.
    let mut gif = gif_animation(1, 1, 1);
    let at = gif.len() - 5;
    gif[at..at + 4].copy_from_slice(&[0x0C, 0xFF, 0xFF, 0xFF]);
    Case::new("gif garbage LZW", gif, Info(F::Gif, 1, 1, 1), Corrupt).run();
    // JPEG whose scan data is noise and has no EOI.
    let mut j = jpeg(&gradient(64, 64), 80);
    let n = j.len();
    for (i, b) in j[n - 200..].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37) | 1;
    }
    Case::new("jpeg noise, no EOI", j, Info(F::Jpeg, 64, 64, 1), Corrupt).run();
}

// ---------------------------------------------------------------------------
// Polyglots, scripts and lying names.
// ---------------------------------------------------------------------------

const HTML: &[u8] = b"<html><body><script>alert(document.cookie)</script></body></html>";

#[test]
fn polyglots_are_reencoded_without_the_trailing_payload() {
    let mut j = jpeg(&gradient(50, 40), 85);
    j.extend_from_slice(HTML);
    Case::new(
        "jpeg + html",
        j.clone(),
        Info(F::Jpeg, 50, 40, 1),
        Reencoded(50, 40),
    )
    .run();
    for format in [OutputFormat::Png, OutputFormat::Webp] {
        Case::new(
            "jpeg + html → png/webp",
            j.clone(),
            Info(F::Jpeg, 50, 40, 1),
            Reencoded(50, 40),
        )
        .op(Transform {
            format,
            ..Transform::default()
        })
        .run();
    }
    let mut p = small_png(30, 20);
    p.extend_from_slice(HTML);
    Case::new("png + html", p, Info(F::Png, 30, 20, 1), Reencoded(30, 20))
        .op(Transform {
            format: OutputFormat::Png,
            ..Transform::default()
        })
        .run();
    // HTML hidden in a JPEG comment segment: comments are never copied.
    let j = jpeg_insert_segment(&jpeg(&gradient(20, 20), 85), 0xFE, HTML);
    Case::new(
        "jpeg COM html",
        j,
        Info(F::Jpeg, 20, 20, 1),
        Reencoded(20, 20),
    )
    .op(Transform {
        strip_metadata: false,
        ..Transform::default()
    })
    .run();
}

#[test]
fn gif_javascript_polyglot_is_corrupt() {
    // `GIF89a/*…*/=alert(1)//`: valid JS and a GIF header (10799×10 screen).
    let mut b = b"GIF89a/*\x0a\x00\x00\x00\x00*/=alert(1);//".to_vec();
    b.extend_from_slice(&[0x3B]);
    Case::new("gifar js", b, Info(F::Gif, 0x2A2F, 10, 1), Corrupt).run();
}

#[test]
fn svg_and_html_are_unsupported() {
    for (name, bytes) in [
        (
            "svg with script",
            &b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>"[..],
        ),
        (
            "svg with prolog",
            b"<?xml version=\"1.0\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"/>",
        ),
        ("svg with BOM", b"\xEF\xBB\xBF<svg onload=alert(1)>"),
        ("html", HTML),
        ("empty", b""),
    ] {
        Case::new(name, bytes.to_vec(), Unsupported, Unsupported).run();
    }
}

#[test]
fn lying_extensions_do_not_matter() {
    // Names and declared types are not inputs: the bytes decide.
    let png = small_png(12, 10);
    let named_jpg = png.clone(); // "photo.jpg"
    assert_eq!(sniff(&named_jpg), Some(F::Png));
    Case::new(
        "png named .jpg",
        named_jpg,
        Info(F::Png, 12, 10, 1),
        Reencoded(12, 10),
    )
    .run();
    let gif = gif_animation(3, 2, 1); // "avatar.png"
    Case::new(
        "gif named .png",
        gif,
        Info(F::Gif, 3, 2, 1),
        Reencoded(3, 2),
    )
    .run();
    // "image.jpg" that is really HTML.
    Case::new("html named .jpg", HTML.to_vec(), Unsupported, Unsupported).run();
}

// ---------------------------------------------------------------------------
// Metadata.
// ---------------------------------------------------------------------------

#[test]
fn exif_with_absurd_counts_is_ignored() {
    let j = jpeg_insert_segment(&jpeg(&gradient(40, 20), 85), 0xE1, &exif_absurd_counts());
    Case::new(
        "exif absurd counts",
        j,
        Info(F::Jpeg, 40, 20, 1),
        Reencoded(40, 20),
    )
    .run();
}

#[test]
fn exif_ifd_loop_terminates() {
    // The orientation in the (looping) IFD0 is still honoured: 40×20 → 20×40.
    let j = jpeg_insert_segment(&jpeg(&gradient(40, 20), 85), 0xE1, &exif_ifd_loop());
    Case::new(
        "exif ifd loop",
        j,
        Info(F::Jpeg, 40, 20, 1),
        Reencoded(20, 40),
    )
    .run();
}

#[test]
fn huge_icc_profile_is_bounded() {
    // 255 APP2 chunks × 65 000 bytes ≈ 16.6 MB of ICC profile in a tiny JPEG.
    let j = jpeg_with_huge_icc(&jpeg(&gradient(16, 16), 85), 255, 65_000);
    assert!(j.len() > 16_000_000);
    for strip in [true, false] {
        Case::new(
            "huge icc",
            j.clone(),
            Info(F::Jpeg, 16, 16, 1),
            Reencoded(16, 16),
        )
        .op(Transform {
            strip_metadata: strip,
            ..Transform::default()
        })
        .max_peak(128 << 20)
        .run();
    }
}

// ---------------------------------------------------------------------------
// Fuzz seeds.
// ---------------------------------------------------------------------------

/// The checked-in fuzz seeds (`fuzz/seeds/<target>/<name>`) are exactly what these generators
/// make, so the fuzzers start from the adversarial cases above. To regenerate them after
/// changing a generator: `FUZZ_SEEDS_DIR=crates/imaging/fuzz/seeds cargo test -p photo-imaging
/// --test adversarial fuzz_seeds`.
#[test]
fn fuzz_seeds_match_the_generators() {
    let write_to = std::env::var_os("FUZZ_SEEDS_DIR").map(std::path::PathBuf::from);
    let dir = write_to
        .clone()
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds"));
    let img = DynamicImage::ImageRgb8(gradient(12, 8));
    let mut j = jpeg(&gradient(12, 8), 60);
    let mut seeds: Vec<(&str, Vec<u8>)> = vec![
        ("jpeg", j.clone()),
        ("png", common::encode(&img, image::ImageFormat::Png)),
        ("webp", common::encode(&img, image::ImageFormat::WebP)),
        ("gif", common::encode(&img, image::ImageFormat::Gif)),
        ("gif_anim", gif_animation(4, 4, 3)),
        ("apng", apng(4, 4, 2, 2)),
        ("webp_anim", webp_animation(4, 4, 2, None)),
        ("jpeg_exif", common::with_exif_orientation(&j, 6)),
        (
            "jpeg_exif_loop",
            jpeg_insert_segment(&j, 0xE1, &exif_ifd_loop()),
        ),
        (
            "jpeg_icc",
            common::jpeg_with_icc(&gradient(8, 8), 60, Some(common::fake_rgb_icc())),
        ),
        ("gif37", gif_37_bytes_claiming(300, 300)),
        ("jpeg633", jpeg_633_bytes_claiming(64, 64)),
        ("png_bomb", png_zero_bomb(256, 256, 6)),
        ("tiff", common::encode(&img, image::ImageFormat::Tiff)),
        ("tiff_bomb", common::tiff_claiming(65_000, 65_000)),
        (
            "png_iccp",
            png_insert_after_ihdr(&small_png(4, 4), &[(b"iCCP", iccp_bomb(4096))]),
        ),
    ];
    j.extend_from_slice(HTML);
    seeds.push(("jpeg_html", j));
    for target in ["sniff_probe", "decode", "pipeline"] {
        let d = dir.join(target);
        if write_to.is_some() {
            std::fs::create_dir_all(&d).unwrap();
        }
        for (name, bytes) in &seeds {
            let mut data = Vec::new();
            if target == "pipeline" {
                // w=24, h=16, cover → webp (1 + 5*2 = 11), quality 70, orient + strip.
                data.extend_from_slice(&[24, 0, 16, 0, 11, 70, 6, 0]);
            }
            data.extend_from_slice(bytes);
            if write_to.is_some() {
                std::fs::write(d.join(name), data).unwrap();
            } else {
                let stored = std::fs::read(d.join(name)).unwrap();
                assert!(
                    stored == data,
                    "fuzz/seeds/{target}/{name} is stale; regenerate it"
                );
            }
        }
    }
}
