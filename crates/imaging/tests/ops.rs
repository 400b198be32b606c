//! `variants` and `pipeline`: crop, cover positions, rotate/flip, blur,
//! sharpen, flatten, overlay and encoder options, checked on decoded pixels.
#![expect(clippy::unwrap_used)]

mod common;

use common::*;
use image::{DynamicImage, GenericImageView, Rgb, RgbImage, Rgba, RgbaImage};
use photo_imaging::{
    ChromaSubsampling, CropStrategy, EncodeOptions, Fit, Gravity, ImagingError, Limits, Operation,
    OutputFormat, Overlay, Pipeline, PngCompression, Resize, Rotation, VariantSpec,
    decode_for_variants, decode_oriented, pipeline, render_variants, variants,
};

const RED: [u8; 3] = [255, 0, 0];
const GREEN: [u8; 3] = [0, 255, 0];
const BLUE: [u8; 3] = [0, 0, 255];
const WHITE: [u8; 3] = [255, 255, 255];

fn png_out() -> EncodeOptions {
    EncodeOptions::new(OutputFormat::Png)
}

fn run(bytes: &[u8], ops: Vec<Operation>, output: EncodeOptions) -> DynamicImage {
    let p = Pipeline {
        operations: ops,
        output,
        ..Pipeline::default()
    };
    let out = pipeline(bytes, &p, &Limits::default()).unwrap();
    let (_, img) = decode(&out.bytes);
    assert_eq!(img.dimensions(), (out.width, out.height));
    img
}

fn run_err(bytes: &[u8], ops: Vec<Operation>) -> ImagingError {
    let p = Pipeline {
        operations: ops,
        output: png_out(),
        ..Pipeline::default()
    };
    pipeline(bytes, &p, &Limits::default()).unwrap_err()
}

fn px(img: &DynamicImage, x: u32, y: u32) -> [u8; 3] {
    let p = img.to_rgb8().get_pixel(x, y).0;
    [p[0], p[1], p[2]]
}

fn alpha(img: &DynamicImage, x: u32, y: u32) -> u8 {
    img.to_rgba8().get_pixel(x, y).0[3]
}

fn close(a: [u8; 3], b: [u8; 3], tol: u8) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= tol)
}

#[track_caller]
fn assert_close(a: [u8; 3], b: [u8; 3], tol: u8) {
    assert!(close(a, b, tol), "{a:?} is not within {tol} of {b:?}");
}

/// Vertical bands of the given colours, left to right, each `band` wide.
fn bands(band: u32, h: u32, colours: &[[u8; 3]]) -> RgbImage {
    RgbImage::from_fn(band * colours.len() as u32, h, |x, _| {
        Rgb(colours[(x / band) as usize])
    })
}

/// Quadrants: red (top-left), green (top-right), blue (bottom-left), white.
fn quadrants(size: u32) -> RgbImage {
    let half = size / 2;
    RgbImage::from_fn(size, size, |x, y| {
        Rgb(match (x < half, y < half) {
            (true, true) => RED,
            (false, true) => GREEN,
            (true, false) => BLUE,
            (false, false) => WHITE,
        })
    })
}

fn rgb_png(img: &RgbImage) -> Vec<u8> {
    png(&DynamicImage::ImageRgb8(img.clone()))
}

fn cover(w: u32, h: u32, position: CropStrategy) -> Operation {
    Operation::Resize(Resize {
        width: Some(w),
        height: Some(h),
        fit: Fit::Cover,
        position,
        ..Resize::default()
    })
}

fn is_invalid(e: &ImagingError) -> bool {
    matches!(e, ImagingError::InvalidParameters(_))
}

// ---------------------------------------------------------------- variants

#[test]
fn variants_decode_once_and_produce_each_named_output() {
    let src = jpeg(&gradient(400, 200), 90);
    let specs = vec![
        VariantSpec::new(
            "thumb",
            Some(100),
            Some(100),
            Fit::Cover,
            EncodeOptions::new(OutputFormat::Webp),
        ),
        VariantSpec::new("small", Some(200), None, Fit::Inside, png_out()),
        VariantSpec::new(
            "boxed",
            Some(100),
            Some(100),
            Fit::Contain,
            EncodeOptions {
                quality: 60,
                ..EncodeOptions::default()
            },
        ),
        VariantSpec::new(
            "wide",
            Some(200),
            Some(50),
            Fit::Outside,
            EncodeOptions::default(),
        ),
    ];
    let out = variants(&src, &specs, &Limits::default()).unwrap();
    let expect = [
        ("thumb", image::ImageFormat::WebP, (100, 100)),
        ("small", image::ImageFormat::Png, (200, 100)),
        ("boxed", image::ImageFormat::Jpeg, (100, 100)),
        ("wide", image::ImageFormat::Jpeg, (200, 100)),
    ];
    assert_eq!(out.len(), expect.len());
    for ((name, enc), (ename, efmt, edims)) in out.iter().zip(expect) {
        assert_eq!(name, ename);
        assert_eq!((enc.width, enc.height), edims, "{name}");
        let (fmt, img) = decode(&enc.bytes);
        assert_eq!(fmt, efmt, "{name}");
        assert_eq!(img.dimensions(), edims, "{name}");
    }
    // The JPEG contain variant pads with white top and bottom.
    let (_, boxed) = decode(&out[2].1.bytes);
    assert_close(px(&boxed, 50, 2), WHITE, 6);
    assert_close(px(&boxed, 50, 97), WHITE, 6);
}

#[test]
fn variants_decode_once_shrinking_only_as_far_as_the_largest_variant_allows() {
    let src = jpeg(&gradient(1600, 1200), 90);
    let l = Limits::default();
    let specs = vec![
        VariantSpec::new(
            "thumb",
            Some(100),
            Some(100),
            Fit::Cover,
            EncodeOptions::new(OutputFormat::Webp),
        ),
        VariantSpec::new("wide", Some(300), Some(40), Fit::Fill, png_out()),
        VariantSpec::new(
            "tall",
            None,
            Some(150),
            Fit::Inside,
            EncodeOptions::default(),
        ),
    ];
    let shrunk = decode_for_variants(&src, &specs, &l).unwrap();
    assert!(shrunk.width() < 1600, "shrunk on load: {shrunk:?}");
    assert_eq!(
        shrunk.width() * 3,
        shrunk.height() * 4,
        "aspect kept: {shrunk:?}"
    );
    // Never below what a variant needs: the largest box on each axis.
    assert!(
        shrunk.width() >= 300 && shrunk.height() >= 150,
        "{shrunk:?}"
    );
    let full = decode_oriented(&src, &l, false).unwrap();
    assert_eq!((full.width(), full.height()), (1600, 1200));
    let from_shrunk = render_variants(&shrunk, &specs, &l).unwrap();
    let from_full = render_variants(&full, &specs, &l).unwrap();
    let dims = |v: &[(String, photo_imaging::Encoded)]| -> Vec<(String, u32, u32)> {
        v.iter()
            .map(|(n, e)| {
                let (_, img) = decode(&e.bytes);
                assert_eq!(img.dimensions(), (e.width, e.height), "{n}");
                (n.clone(), e.width, e.height)
            })
            .collect()
    };
    let want = vec![
        ("thumb".to_owned(), 100, 100),
        ("wide".to_owned(), 300, 40),
        ("tall".to_owned(), 200, 150),
    ];
    assert_eq!(dims(&from_shrunk), want);
    assert_eq!(dims(&from_full), want);
    // A variant that keeps the source size needs every pixel: no shrinking.
    let keep = [
        VariantSpec::new("orig", None, None, Fit::Inside, png_out()),
        VariantSpec::new("thumb", Some(50), None, Fit::Inside, png_out()),
    ];
    let d = decode_for_variants(&src, &keep, &l).unwrap();
    assert_eq!((d.width(), d.height()), (1600, 1200));
    // Bad specs fail before any decoding.
    assert!(matches!(
        decode_for_variants(b"not an image", &[], &l),
        Err(ImagingError::InvalidParameters(_))
    ));
}

#[test]
fn variants_apply_exif_orientation_once() {
    // Left half red, right half blue; orientation 6 = rotate 90° clockwise,
    // so red ends up on top.
    let src = with_exif_orientation(&jpeg(&bands(40, 40, &[RED, BLUE]), 95), 6);
    let specs = vec![
        VariantSpec::new("full", None, None, Fit::Inside, png_out()),
        VariantSpec::new("half", Some(20), None, Fit::Inside, png_out()),
    ];
    let out = variants(&src, &specs, &Limits::default()).unwrap();
    let (_, full) = decode(&out[0].1.bytes);
    assert_eq!(full.dimensions(), (40, 80));
    assert_close(px(&full, 20, 10), RED, 40);
    assert_close(px(&full, 20, 70), BLUE, 40);
    let (_, half) = decode(&out[1].1.bytes);
    assert_eq!(half.dimensions(), (20, 40));
    assert_close(px(&half, 10, 5), RED, 40);
}

#[test]
fn variants_reject_bad_specs_before_decoding() {
    let l = Limits::default();
    let garbage = b"definitely not an image";
    let ok = |n: &str| VariantSpec::new(n, Some(10), None, Fit::Inside, png_out());
    assert!(is_invalid(&variants(garbage, &[], &l).unwrap_err()));
    assert!(is_invalid(
        &variants(garbage, &[ok("a"), ok("a")], &l).unwrap_err()
    ));
    assert!(is_invalid(&variants(garbage, &[ok("")], &l).unwrap_err()));
    let mut zero = ok("z");
    zero.resize.width = Some(0);
    assert!(is_invalid(&variants(garbage, &[zero], &l).unwrap_err()));
    let mut q = ok("q");
    q.output.quality = 0;
    assert!(is_invalid(&variants(garbage, &[q], &l).unwrap_err()));
    let mut huge = ok("h");
    huge.resize.width = Some(l.max_width + 1);
    assert!(is_invalid(&variants(garbage, &[huge], &l).unwrap_err()));
    let many: Vec<_> = (0..33).map(|i| ok(&format!("v{i}"))).collect();
    assert!(is_invalid(&variants(garbage, &many, &l).unwrap_err()));
    let mut blur = ok("b");
    blur.operations.push(Operation::Blur { sigma: 51.0 });
    assert!(is_invalid(&variants(garbage, &[blur], &l).unwrap_err()));
    // Valid specs, garbage input: a decode error, not a panic.
    assert_eq!(
        variants(garbage, &[ok("x")], &l).unwrap_err(),
        ImagingError::UnsupportedFormat
    );
}

#[test]
fn variants_keep_icc_only_where_asked() {
    use image::ImageDecoder;
    let icc = fake_rgb_icc();
    let src = jpeg_with_icc(&gradient(64, 64), 90, Some(icc.clone()));
    let keep = EncodeOptions {
        keep_icc: true,
        ..png_out()
    };
    let specs = [
        VariantSpec::new("keep", Some(32), None, Fit::Inside, keep),
        VariantSpec::new("strip", Some(32), None, Fit::Inside, png_out()),
    ];
    let out = variants(&src, &specs, &Limits::default()).unwrap();
    let profile = |bytes: &[u8]| {
        image::codecs::png::PngDecoder::new(std::io::Cursor::new(bytes))
            .unwrap()
            .icc_profile()
            .unwrap()
    };
    assert_eq!(profile(&out[0].1.bytes), Some(icc));
    assert_eq!(profile(&out[1].1.bytes), None);
}

#[test]
fn variant_operations_run_after_the_resize() {
    let src = rgb_png(&bands(50, 50, &[RED, BLUE]));
    let mut spec = VariantSpec::new("r", Some(50), None, Fit::Inside, png_out());
    spec.operations.push(Operation::Rotate(Rotation::Deg90));
    let out = variants(&src, &[spec], &Limits::default()).unwrap();
    let (_, img) = decode(&out[0].1.bytes);
    assert_eq!(img.dimensions(), (25, 50));
    assert_close(px(&img, 12, 5), RED, 10);
    assert_close(px(&img, 12, 45), BLUE, 10);
}

// -------------------------------------------------------------------- crop

#[test]
fn box_crop_takes_the_requested_pixels() {
    let src = rgb_png(&quadrants(100));
    let crop = |x, y, w, h| Operation::Crop {
        x,
        y,
        width: w,
        height: h,
    };
    let img = run(&src, vec![crop(50, 0, 50, 50)], png_out());
    assert_eq!(img.dimensions(), (50, 50));
    assert_eq!(px(&img, 0, 0), GREEN);
    assert_eq!(px(&img, 49, 49), GREEN);
    let img = run(&src, vec![crop(40, 40, 20, 20)], png_out());
    assert_eq!(img.dimensions(), (20, 20));
    assert_eq!(px(&img, 0, 0), RED);
    assert_eq!(px(&img, 19, 0), GREEN);
    assert_eq!(px(&img, 0, 19), BLUE);
    assert_eq!(px(&img, 19, 19), WHITE);
    // Outside the image or empty: invalid.
    assert!(is_invalid(&run_err(&src, vec![crop(60, 0, 50, 10)])));
    assert!(is_invalid(&run_err(&src, vec![crop(0, 0, 0, 10)])));
    assert!(is_invalid(&run_err(&src, vec![crop(u32::MAX, 0, 2, 2)])));
}

#[test]
fn cover_gravity_keeps_the_anchored_part() {
    let wide = rgb_png(&bands(100, 100, &[RED, GREEN, BLUE]));
    let cases = [
        (Gravity::Centre, GREEN),
        (Gravity::West, RED),
        (Gravity::East, BLUE),
        (Gravity::NorthWest, RED),
        (Gravity::SouthEast, BLUE),
        (Gravity::North, GREEN),
    ];
    for (g, colour) in cases {
        let img = run(
            &wide,
            vec![cover(50, 50, CropStrategy::Gravity(g))],
            png_out(),
        );
        assert_eq!(img.dimensions(), (50, 50), "{g:?}");
        for (x, y) in [(0, 0), (25, 25), (49, 49)] {
            assert_close(px(&img, x, y), colour, 2);
        }
    }
    // Tall source: north/south pick top/bottom.
    let tall = DynamicImage::ImageRgb8(bands(100, 100, &[RED, GREEN, BLUE]))
        .rotate90()
        .to_rgb8(); // top red, middle green, bottom blue
    let tall = rgb_png(&tall);
    for (g, colour) in [
        (Gravity::North, RED),
        (Gravity::South, BLUE),
        (Gravity::Centre, GREEN),
        (Gravity::SouthWest, BLUE),
        (Gravity::NorthEast, RED),
    ] {
        let img = run(
            &tall,
            vec![cover(40, 40, CropStrategy::Gravity(g))],
            png_out(),
        );
        assert_eq!(img.dimensions(), (40, 40), "{g:?}");
        assert_close(px(&img, 20, 20), colour, 2);
        assert_close(px(&img, 0, 39), colour, 2);
    }
}

/// Flat grey everywhere except a noisy `band` of the image (third `which`).
fn one_busy_third(which: u32) -> RgbImage {
    let mut rng = XorShift(0x1234_5678);
    RgbImage::from_fn(300, 100, |x, _| {
        if x / 100 == which {
            let v = (rng.next() % 256) as u8;
            Rgb([v, v.wrapping_mul(3), v.wrapping_add(90)])
        } else {
            Rgb([128, 128, 128])
        }
    })
}

fn variance(img: &DynamicImage) -> f64 {
    let l = img.to_luma8();
    let n = l.len() as f64;
    let mean = l.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    l.iter()
        .map(|&v| (f64::from(v) - mean).powi(2))
        .sum::<f64>()
        / n
}

#[test]
fn entropy_crop_finds_the_busy_region() {
    for which in [0, 2] {
        let src = rgb_png(&one_busy_third(which));
        let img = run(
            &src,
            vec![cover(100, 100, CropStrategy::Entropy)],
            png_out(),
        );
        assert_eq!(img.dimensions(), (100, 100));
        // The whole window is texture: no flat grey column survives.
        for x in [2, 50, 97] {
            let col: Vec<[u8; 3]> = (0..100).map(|y| px(&img, x, y)).collect();
            assert!(
                col.iter().any(|p| !close(*p, [128, 128, 128], 8)),
                "busy third {which}: column {x} is flat"
            );
        }
        assert!(variance(&img) > 1000.0, "busy third {which}");
        // The centre crop would have been flat grey.
        let centre = run(
            &src,
            vec![cover(100, 100, CropStrategy::default())],
            png_out(),
        );
        assert!(variance(&centre) < 1.0);
    }
    // Downscaled output still picks the busy part (different window scale).
    let src = rgb_png(&one_busy_third(2));
    let img = run(&src, vec![cover(30, 30, CropStrategy::Entropy)], png_out());
    assert_eq!(img.dimensions(), (30, 30));
    assert!(variance(&img) > 50.0, "{}", variance(&img));
    assert!((0..30).any(|y| !close(px(&img, 0, y), [128, 128, 128], 8)));
}

#[test]
fn attention_crop_finds_the_salient_object() {
    // Grey background with a saturated red square near the right edge.
    let img = RgbImage::from_fn(400, 100, |x, y| {
        if (320..370).contains(&x) && (25..75).contains(&y) {
            Rgb([230, 20, 30])
        } else {
            Rgb([120, 120, 120])
        }
    });
    let out = run(
        &rgb_png(&img),
        vec![cover(100, 100, CropStrategy::Attention)],
        png_out(),
    );
    assert_eq!(out.dimensions(), (100, 100));
    let reds = out
        .to_rgb8()
        .pixels()
        .filter(|p| close(p.0, [230, 20, 30], 10))
        .count();
    assert_eq!(reds, 50 * 50, "the whole square is inside the window");
}

#[test]
fn contain_gravity_places_the_image_on_the_canvas() {
    let src = rgb_png(&RgbImage::from_pixel(200, 100, Rgb(RED)));
    let op = |g| {
        vec![Operation::Resize(Resize {
            width: Some(100),
            height: Some(100),
            fit: Fit::Contain,
            position: CropStrategy::Gravity(g),
            ..Resize::default()
        })]
    };
    let img = run(&src, op(Gravity::North), png_out());
    assert_eq!(img.dimensions(), (100, 100));
    assert_eq!(alpha(&img, 50, 10), 255);
    assert_close(px(&img, 50, 10), RED, 2);
    assert_eq!(alpha(&img, 50, 90), 0);
    // JPEG: padding uses the configured background.
    let jpeg_black = EncodeOptions {
        background: [0, 0, 0],
        ..EncodeOptions::default()
    };
    let img = run(&src, op(Gravity::South), jpeg_black);
    assert_close(px(&img, 50, 10), [0, 0, 0], 8);
    assert_close(px(&img, 50, 90), RED, 20);
}

// ----------------------------------------------------------- rotate / flip

#[test]
fn rotations_and_mirrors_move_pixels_correctly() {
    // 60x30: left half red, right half blue.
    let src = rgb_png(&bands(30, 30, &[RED, BLUE]));
    let r = |rot| run(&src, vec![Operation::Rotate(rot)], png_out());
    let img = r(Rotation::Deg90);
    assert_eq!(img.dimensions(), (30, 60));
    assert_eq!(px(&img, 15, 5), RED);
    assert_eq!(px(&img, 15, 55), BLUE);
    let img = r(Rotation::Deg180);
    assert_eq!(img.dimensions(), (60, 30));
    assert_eq!(px(&img, 5, 15), BLUE);
    assert_eq!(px(&img, 55, 15), RED);
    let img = r(Rotation::Deg270);
    assert_eq!(img.dimensions(), (30, 60));
    assert_eq!(px(&img, 15, 5), BLUE);
    assert_eq!(px(&img, 15, 55), RED);

    let img = run(&src, vec![Operation::Flop], png_out());
    assert_eq!(px(&img, 5, 15), BLUE);
    assert_eq!(px(&img, 55, 15), RED);
    let img = run(&src, vec![Operation::Flip], png_out());
    assert_eq!(px(&img, 5, 15), RED, "flip is top/bottom: no change here");
    let tall = rgb_png(&quadrants(40));
    let img = run(&tall, vec![Operation::Flip], png_out());
    assert_eq!(px(&img, 5, 5), BLUE);
    assert_eq!(px(&img, 35, 35), GREEN);
    // Operations compose in order: flop then rotate 90.
    let img = run(
        &tall,
        vec![Operation::Flop, Operation::Rotate(Rotation::Deg90)],
        png_out(),
    );
    // After flop: TL green, TR red, BL white, BR blue; rotate 90 cw: TL white.
    assert_eq!(px(&img, 5, 5), WHITE);
    assert_eq!(px(&img, 35, 5), GREEN);
}

// ----------------------------------------------------------- blur / sharpen

#[test]
fn blur_smooths_and_sharpen_overshoots() {
    let checker = RgbImage::from_fn(64, 64, |x, y| {
        if (x + y).is_multiple_of(2) {
            Rgb([0, 0, 0])
        } else {
            Rgb([255, 255, 255])
        }
    });
    let src = rgb_png(&checker);
    for sigma in [1.5, 8.0] {
        let img = run(&src, vec![Operation::Blur { sigma }], png_out());
        assert_eq!(img.dimensions(), (64, 64));
        let p = px(&img, 32, 32);
        assert!(
            p[0].abs_diff(128) < 20,
            "sigma {sigma}: centre should be mid-grey, got {p:?}"
        );
    }
    // Step edge: dark | light. Unsharp mask pushes the light side above its value.
    let step = rgb_png(&RgbImage::from_fn(64, 16, |x, _| {
        if x < 32 {
            Rgb([60, 60, 60])
        } else {
            Rgb([180, 180, 180])
        }
    }));
    let img = run(
        &step,
        vec![Operation::Sharpen {
            sigma: 1.5,
            amount: 1.0,
        }],
        png_out(),
    );
    assert!(px(&img, 32, 8)[0] > 190, "overshoot on the light side");
    assert!(px(&img, 31, 8)[0] < 50, "undershoot on the dark side");
    assert_close(px(&img, 5, 8), [60, 60, 60], 1);
    assert_close(px(&img, 60, 8), [180, 180, 180], 1);
    // Bounds.
    for bad in [
        Operation::Blur { sigma: 0.0 },
        Operation::Blur { sigma: 50.5 },
        Operation::Blur { sigma: f32::NAN },
        Operation::Sharpen {
            sigma: 1.0,
            amount: 0.0,
        },
        Operation::Sharpen {
            sigma: 1.0,
            amount: 11.0,
        },
        Operation::Sharpen {
            sigma: f32::INFINITY,
            amount: 1.0,
        },
    ] {
        assert!(is_invalid(&run_err(&src, vec![bad.clone()])), "{bad:?}");
    }
}

#[test]
fn sharpen_leaves_alpha_alone() {
    let img = RgbaImage::from_fn(32, 32, |x, _| {
        if x < 16 {
            Rgba([10, 10, 10, 100])
        } else {
            Rgba([200, 200, 200, 100])
        }
    });
    let out = run(
        &rgba_png(&img),
        vec![Operation::Sharpen {
            sigma: 2.0,
            amount: 2.0,
        }],
        png_out(),
    );
    assert!(out.to_rgba8().pixels().all(|p| p.0[3] == 100));
}

// ------------------------------------------------------------------ flatten

#[test]
fn flatten_uses_the_configured_background() {
    // Left half transparent, right half opaque green.
    let img = RgbaImage::from_fn(40, 20, |x, _| {
        if x < 20 {
            Rgba([0, 0, 0, 0])
        } else {
            Rgba([0, 255, 0, 255])
        }
    });
    let src = rgba_png(&img);
    // Default JPEG: white (the existing behaviour).
    let out = run(&src, vec![], EncodeOptions::default());
    assert_close(px(&out, 5, 10), WHITE, 4);
    assert_close(px(&out, 35, 10), GREEN, 30);
    // JPEG with a blue background.
    let blue_bg = EncodeOptions {
        background: BLUE,
        ..EncodeOptions::default()
    };
    let out = run(&src, vec![], blue_bg);
    assert_close(px(&out, 5, 10), BLUE, 30);
    // Explicit flatten before a PNG: opaque red, no alpha left.
    let out = run(
        &src,
        vec![Operation::Flatten { background: RED }],
        png_out(),
    );
    assert!(!out.color().has_alpha());
    assert_eq!(px(&out, 5, 10), RED);
    assert_eq!(px(&out, 35, 10), GREEN);
    // PNG without flatten keeps transparency.
    let out = run(&src, vec![], png_out());
    assert_eq!(alpha(&out, 5, 10), 0);
    assert_eq!(alpha(&out, 35, 10), 255);
}

// ----------------------------------------------------------------- overlay

fn overlay(img: Vec<u8>, gravity: Gravity, opacity: f32, margin: u32, scale: f32) -> Operation {
    Operation::Overlay(Overlay {
        image: img,
        gravity,
        opacity,
        margin,
        scale,
    })
}

#[test]
fn overlay_is_scaled_placed_and_blended() {
    let base = rgb_png(&RgbImage::from_pixel(200, 100, Rgb(WHITE)));
    let mark = rgb_png(&RgbImage::from_pixel(80, 80, Rgb(RED)));
    // 25% of the base width = 50 px, bottom-right with a 10 px margin:
    // covers x 140..190, y 40..90.
    let img = run(
        &base,
        vec![overlay(mark.clone(), Gravity::SouthEast, 1.0, 10, 0.25)],
        png_out(),
    );
    assert_eq!(img.dimensions(), (200, 100));
    assert_eq!(px(&img, 165, 65), RED);
    assert_eq!(px(&img, 141, 41), RED);
    assert_eq!(px(&img, 188, 88), RED);
    assert_eq!(px(&img, 195, 95), WHITE, "margin stays clear");
    assert_eq!(px(&img, 135, 65), WHITE);
    assert_eq!(px(&img, 165, 35), WHITE);
    assert_eq!(px(&img, 10, 10), WHITE);
    // Half opacity over white: pink.
    let img = run(
        &base,
        vec![overlay(mark.clone(), Gravity::NorthWest, 0.5, 0, 0.25)],
        png_out(),
    );
    assert_close(px(&img, 25, 25), [255, 128, 128], 2);
    assert_eq!(px(&img, 75, 25), WHITE);
    // The overlay's own alpha is honoured: transparent mark changes nothing.
    let clear = rgba_png(&RgbaImage::from_pixel(10, 10, Rgba([0, 0, 255, 0])));
    let img = run(
        &base,
        vec![overlay(clear, Gravity::Centre, 1.0, 0, 0.5)],
        png_out(),
    );
    assert_eq!(px(&img, 100, 50), WHITE);
    // A tall overlay is shrunk to the base height.
    let tall = rgb_png(&RgbImage::from_pixel(20, 1000, Rgb(BLUE)));
    let img = run(
        &base,
        vec![overlay(tall, Gravity::Centre, 1.0, 0, 1.0)],
        png_out(),
    );
    assert_eq!(px(&img, 100, 0), BLUE);
    assert_eq!(px(&img, 100, 99), BLUE);
    assert_eq!(px(&img, 90, 50), WHITE);
    // Bad parameters.
    for bad in [
        overlay(mark.clone(), Gravity::Centre, 1.5, 0, 0.5),
        overlay(mark.clone(), Gravity::Centre, f32::NAN, 0, 0.5),
        overlay(mark.clone(), Gravity::Centre, 1.0, 0, 0.0),
        overlay(mark.clone(), Gravity::Centre, 1.0, 0, 1.5),
        overlay(Vec::new(), Gravity::Centre, 1.0, 0, 0.5),
    ] {
        assert!(is_invalid(&run_err(&base, vec![bad])));
    }
    // Undecodable overlay: an error, not a panic.
    assert!(
        pipeline(
            &base,
            &Pipeline {
                operations: vec![overlay(b"junk".to_vec(), Gravity::Centre, 1.0, 0, 0.5)],
                ..Pipeline::default()
            },
            &Limits::default()
        )
        .is_err()
    );
}

// ---------------------------------------------------------------- encoders

/// The SOFn marker byte and the sampling factor of the first component.
fn jpeg_sof(bytes: &[u8]) -> (u8, u8) {
    let mut pos = 2;
    while pos + 4 < bytes.len() {
        assert_eq!(bytes[pos], 0xFF);
        let marker = bytes[pos + 1];
        let len = usize::from(u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]));
        if matches!(marker, 0xC0..=0xC3) {
            // FF Cn len(2) precision(1) h(2) w(2) ncomp(1) [id, sampling, tq]
            return (marker, bytes[pos + 11]);
        }
        pos += 2 + len;
    }
    panic!("no SOF marker");
}

#[test]
fn jpeg_options_reach_the_file() {
    let src = png(&DynamicImage::ImageRgb8(gradient(256, 192)));
    let enc = |o: EncodeOptions| {
        pipeline(
            &src,
            &Pipeline {
                output: o,
                ..Pipeline::default()
            },
            &Limits::default(),
        )
        .unwrap()
    };
    // Default: baseline, no subsampling (the existing encoder's output).
    let base = enc(EncodeOptions::default());
    assert_eq!(jpeg_sof(&base.bytes), (0xC0, 0x11));
    let progressive = enc(EncodeOptions {
        jpeg_progressive: true,
        ..EncodeOptions::default()
    });
    assert_eq!(jpeg_sof(&progressive.bytes).0, 0xC2);
    let s444 = enc(EncodeOptions {
        jpeg_subsampling: ChromaSubsampling::Yuv444,
        ..EncodeOptions::default()
    });
    assert_eq!(jpeg_sof(&s444.bytes), (0xC0, 0x11));
    let s420 = enc(EncodeOptions {
        jpeg_subsampling: ChromaSubsampling::Yuv420,
        quality: 95,
        ..EncodeOptions::default()
    });
    assert_eq!(jpeg_sof(&s420.bytes), (0xC0, 0x22));
    let plain = enc(EncodeOptions {
        jpeg_subsampling: ChromaSubsampling::Yuv444,
        ..EncodeOptions::default()
    });
    let optimised = enc(EncodeOptions {
        jpeg_optimize_huffman: true,
        ..EncodeOptions::default()
    });
    assert_eq!(jpeg_sof(&optimised.bytes), (0xC0, 0x11));
    assert!(
        optimised.bytes.len() < plain.bytes.len(),
        "optimised Huffman {} vs {}",
        optimised.bytes.len(),
        plain.bytes.len()
    );
    let small_progressive = enc(EncodeOptions {
        jpeg_progressive: true,
        jpeg_subsampling: ChromaSubsampling::Yuv420,
        jpeg_optimize_huffman: true,
        ..EncodeOptions::default()
    });
    assert_eq!(jpeg_sof(&small_progressive.bytes), (0xC2, 0x22));
    // Baseline 4:2:0 with optimised tables is rejected (non-interleaved
    // scans that the image crate's decoder misreads).
    let err = pipeline(
        &src,
        &Pipeline {
            output: EncodeOptions {
                jpeg_subsampling: ChromaSubsampling::Yuv420,
                jpeg_optimize_huffman: true,
                ..EncodeOptions::default()
            },
            ..Pipeline::default()
        },
        &Limits::default(),
    )
    .unwrap_err();
    assert!(is_invalid(&err));
    // All decode to the same picture.
    for e in [&progressive, &s444, &s420, &optimised, &small_progressive] {
        let (fmt, img) = decode(&e.bytes);
        assert_eq!(fmt, image::ImageFormat::Jpeg);
        assert_eq!(img.dimensions(), (256, 192));
        assert_close(px(&img, 128, 96), px(&decode(&base.bytes).1, 128, 96), 12);
    }
}

#[test]
fn png_compression_and_webp_lossless() {
    let src_img = gradient(256, 256);
    let src = rgb_png(&src_img);
    let enc = |o: EncodeOptions| {
        pipeline(
            &src,
            &Pipeline {
                output: o,
                ..Pipeline::default()
            },
            &Limits::default(),
        )
        .unwrap()
    };
    let fast = enc(png_out());
    let best = enc(EncodeOptions {
        png_compression: PngCompression::Best,
        ..png_out()
    });
    assert!(best.bytes.len() < fast.bytes.len());
    for e in [&fast, &best] {
        assert_eq!(decode(&e.bytes).1.to_rgb8(), src_img, "PNG is lossless");
    }
    let lossless = enc(EncodeOptions {
        webp_lossless: true,
        ..EncodeOptions::new(OutputFormat::Webp)
    });
    assert!(lossless.bytes.windows(4).any(|w| w == b"VP8L"));
    assert_eq!(decode(&lossless.bytes).1.to_rgb8(), src_img);
    let lossy = enc(EncodeOptions::new(OutputFormat::Webp));
    assert!(!lossy.bytes.windows(4).any(|w| w == b"VP8L"));
    assert_ne!(decode(&lossy.bytes).1.to_rgb8(), src_img);
    // Lossless WebP keeps alpha exactly.
    let rgba = RgbaImage::from_fn(16, 16, |x, y| {
        Rgba([x as u8 * 16, y as u8 * 16, 7, (x * 16 + 15) as u8])
    });
    let out = pipeline(
        &rgba_png(&rgba),
        &Pipeline {
            output: EncodeOptions {
                webp_lossless: true,
                ..EncodeOptions::new(OutputFormat::Webp)
            },
            ..Pipeline::default()
        },
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(decode(&out.bytes).1.to_rgba8(), rgba);
}

#[test]
fn limits_bound_pipeline_outputs() {
    let src = rgb_png(&gradient(100, 50));
    let limits = Limits {
        max_width: 1000,
        max_height: 1000,
        max_pixels: 200_000,
        ..Limits::default()
    };
    let p = Pipeline {
        operations: vec![Operation::Resize(Resize {
            width: Some(1000),
            height: Some(1000),
            fit: Fit::Fill,
            upscale: true,
            ..Resize::default()
        })],
        output: png_out(),
        ..Pipeline::default()
    };
    assert!(is_invalid(&pipeline(&src, &p, &limits).unwrap_err()));
    let too_many = Pipeline {
        operations: vec![Operation::Flip; 65],
        ..Pipeline::default()
    };
    assert!(is_invalid(&pipeline(&src, &too_many, &limits).unwrap_err()));
}
