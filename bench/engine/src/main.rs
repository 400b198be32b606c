//! bench-engine: thumbnails every file given, in process, like `vipsthumbnail`.
//!
//! Usage: bench-engine --size W [--threads N] [--quality Q] [--out DIR] [--repeat R] FILE...
//!
//! Each file is read from disk and transformed with fit-inside W×W, JPEG
//! output at quality Q (default 80), by N worker threads (default 1) pulling
//! from one queue. With --out the outputs are written as DIR/<stem>.jpg.
//! Prints one line: `images=… wall_s=… images_per_s=…`. CPU time and peak RSS
//! are measured from outside (`/usr/bin/time -v`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use photo_imaging::{Fit, Limits, OutputFormat, Transform, transform};

struct Args {
    size: u32,
    threads: usize,
    quality: u8,
    out: Option<PathBuf>,
    repeat: usize,
    files: Vec<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        size: 256,
        threads: 1,
        quality: 80,
        out: None,
        repeat: 1,
        files: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--size" => a.size = val("--size")?.parse().map_err(|e| format!("--size: {e}"))?,
            "--threads" => {
                a.threads = val("--threads")?
                    .parse()
                    .map_err(|e| format!("--threads: {e}"))?
            }
            "--quality" => {
                a.quality = val("--quality")?
                    .parse()
                    .map_err(|e| format!("--quality: {e}"))?
            }
            "--repeat" => {
                a.repeat = val("--repeat")?
                    .parse()
                    .map_err(|e| format!("--repeat: {e}"))?
            }
            "--out" => a.out = Some(PathBuf::from(val("--out")?)),
            "-h" | "--help" => {
                return Err(
                    "usage: bench-engine --size W [--threads N] [--quality Q] [--out DIR] [--repeat R] FILE..."
                        .into(),
                );
            }
            _ => a.files.push(PathBuf::from(arg)),
        }
    }
    if a.files.is_empty() {
        return Err("no input files".into());
    }
    Ok(a)
}

fn one(path: &Path, op: &Transform, limits: &Limits, out: Option<&Path>) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let enc = transform(&bytes, op, limits).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(dir) = out {
        let stem = path.file_stem().unwrap_or_default();
        let dest = dir.join(stem).with_extension("jpg");
        std::fs::write(&dest, &enc.bytes).map_err(|e| format!("{}: {e}", dest.display()))?;
    }
    Ok(())
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let op = Transform {
        width: Some(args.size),
        height: Some(args.size),
        fit: Fit::Inside,
        format: OutputFormat::Jpeg,
        quality: args.quality,
        ..Transform::default()
    };
    let limits = Limits::default();
    let jobs: Vec<&PathBuf> = (0..args.repeat).flat_map(|_| args.files.iter()).collect();
    let next = AtomicUsize::new(0);
    let failed = AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..args.threads.max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(path) = jobs.get(i) else { break };
                    if let Err(e) = one(path, &op, &limits, args.out.as_deref()) {
                        eprintln!("{e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let wall = start.elapsed().as_secs_f64();
    let n = jobs.len();
    println!(
        "images={n} failed={} wall_s={wall:.3} images_per_s={:.2}",
        failed.load(Ordering::Relaxed),
        n as f64 / wall
    );
    if failed.load(Ordering::Relaxed) > 0 {
        std::process::exit(1);
    }
}
