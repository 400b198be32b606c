//! One job's work: read the source, transform, write the output.

use std::sync::Arc;
use tracing::Instrument;

use bytes::Bytes;
use photo_core::job::parse_hex_colour;
use photo_core::{
    AnalyzeParams, Fit, JobSpec, ObjectKey, OutputFormat, PngCompression, Position, Subsampling,
    TransformParams, VariantsParams,
};
use photo_db::{Job, JobOutput};
use photo_imaging as img;
use photo_storage::{Bucket, ObjectStore, StoreError};
use tokio::sync::Semaphore;

/// Why an attempt failed, and whether retrying can help.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The input is bad; retrying cannot help.
    #[error("{message}")]
    Permanent {
        /// Stable code.
        code: &'static str,
        /// Message for the job's `error_message`.
        message: String,
    },
    /// A transient failure (storage, timeout, encoder); retried with backoff.
    #[error("{message}")]
    Retryable {
        /// Stable code.
        code: &'static str,
        /// Message.
        message: String,
    },
    /// A step boundary found the claim no longer current (the job was cancelled, or another
    /// attempt owns it): the attempt stops without writing anything further.
    #[error("the attempt was stopped at a step boundary")]
    Stopped,
}

impl PipelineError {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Permanent { code, .. } | Self::Retryable { code, .. } => code,
            Self::Stopped => "stopped",
        }
    }
}

fn fit(f: Fit) -> img::Fit {
    match f {
        Fit::Contain => img::Fit::Contain,
        Fit::Cover => img::Fit::Cover,
        Fit::Fill => img::Fit::Fill,
        Fit::Inside => img::Fit::Inside,
        Fit::Outside => img::Fit::Outside,
    }
}

fn format(f: OutputFormat) -> img::OutputFormat {
    match f {
        OutputFormat::Jpeg => img::OutputFormat::Jpeg,
        OutputFormat::Png => img::OutputFormat::Png,
        OutputFormat::Webp => img::OutputFormat::Webp,
        OutputFormat::Avif => img::OutputFormat::Avif,
        OutputFormat::Gif => img::OutputFormat::Gif,
    }
}

/// The imaging operation of a `thumbnail` or `transform` spec; `None` for the kinds that are not
/// one transform (`variants`, `analyze`).
pub fn operation(spec: &JobSpec) -> Option<img::Transform> {
    Some(match spec {
        JobSpec::Thumbnail(p) => img::Transform {
            width: Some(p.width),
            height: Some(p.height),
            fit: img::Fit::Inside,
            upscale: false,
            format: format(p.format),
            quality: p.quality,
            auto_orient: true,
            strip_metadata: true,
        },
        JobSpec::Transform(p) => img::Transform {
            width: p.width,
            height: p.height,
            fit: fit(p.fit),
            upscale: p.upscale,
            format: format(p.format),
            quality: p.quality,
            auto_orient: p.auto_orient,
            strip_metadata: p.strip_metadata,
        },
        JobSpec::Variants(_) | JobSpec::Analyze(_) => return None,
    })
}

fn position(p: Position) -> img::CropStrategy {
    use img::{CropStrategy as C, Gravity as G};
    match p {
        Position::Centre => C::Gravity(G::Centre),
        Position::North => C::Gravity(G::North),
        Position::South => C::Gravity(G::South),
        Position::East => C::Gravity(G::East),
        Position::West => C::Gravity(G::West),
        Position::Northeast => C::Gravity(G::NorthEast),
        Position::Northwest => C::Gravity(G::NorthWest),
        Position::Southeast => C::Gravity(G::SouthEast),
        Position::Southwest => C::Gravity(G::SouthWest),
        Position::Entropy => C::Entropy,
        Position::Attention => C::Attention,
    }
}

/// The full operation list of a `transform` that asks for more than resize + convert; `None`
/// when the plain (fastest) path does everything asked.
pub fn extended_pipeline(p: &TransformParams) -> Option<img::Pipeline> {
    let plain = p.crop.is_none()
        && p.position == Position::Centre
        && p.rotate == 0
        && !p.flip
        && !p.flop
        && p.blur.is_none()
        && p.sharpen.is_none()
        && p.background.is_none()
        && !p.progressive
        && p.subsampling == Subsampling::Auto
        && !p.optimize_huffman
        && p.png_compression == PngCompression::Fast
        && !p.lossless
        && p.speed.is_none_or(|s| s == img::AVIF_DEFAULT_SPEED);
    if plain {
        return None;
    }
    let mut ops = Vec::new();
    if let Some(c) = p.crop {
        ops.push(img::Operation::Crop {
            x: c.x,
            y: c.y,
            width: c.width,
            height: c.height,
        });
    }
    match p.rotate {
        90 => ops.push(img::Operation::Rotate(img::Rotation::Deg90)),
        180 => ops.push(img::Operation::Rotate(img::Rotation::Deg180)),
        270 => ops.push(img::Operation::Rotate(img::Rotation::Deg270)),
        _ => {}
    }
    if p.flip {
        ops.push(img::Operation::Flip);
    }
    if p.flop {
        ops.push(img::Operation::Flop);
    }
    if p.width.is_some() || p.height.is_some() {
        ops.push(img::Operation::Resize(img::Resize {
            width: p.width,
            height: p.height,
            fit: fit(p.fit),
            upscale: p.upscale,
            position: position(p.position),
        }));
    }
    if let Some(sigma) = p.blur {
        ops.push(img::Operation::Blur { sigma });
    }
    if let Some(s) = p.sharpen {
        ops.push(img::Operation::Sharpen {
            sigma: s.sigma,
            amount: s.amount,
        });
    }
    let mut output = img::EncodeOptions {
        format: format(p.format),
        quality: p.quality,
        jpeg_progressive: p.progressive,
        jpeg_subsampling: match p.subsampling {
            Subsampling::Auto => img::ChromaSubsampling::Auto,
            Subsampling::Yuv420 => img::ChromaSubsampling::Yuv420,
            Subsampling::Yuv444 => img::ChromaSubsampling::Yuv444,
        },
        jpeg_optimize_huffman: p.optimize_huffman,
        png_compression: match p.png_compression {
            PngCompression::Fast => img::PngCompression::Fast,
            PngCompression::Balanced => img::PngCompression::Balanced,
            PngCompression::Best => img::PngCompression::Best,
        },
        webp_lossless: p.lossless,
        avif_speed: p.speed.unwrap_or(img::AVIF_DEFAULT_SPEED),
        keep_icc: !p.strip_metadata,
        ..img::EncodeOptions::default()
    };
    if let Some(bg) = p.background.as_deref().and_then(parse_hex_colour) {
        output.background = bg;
    }
    Some(img::Pipeline {
        auto_orient: p.auto_orient,
        operations: ops,
        output,
    })
}

/// The imaging specs of a `variants` job, in its order.
pub fn variant_specs(p: &VariantsParams) -> Vec<img::VariantSpec> {
    p.variants
        .iter()
        .map(|v| img::VariantSpec {
            name: v.name.clone(),
            resize: img::Resize {
                width: v.width,
                height: v.height,
                fit: fit(v.fit),
                upscale: v.upscale,
                position: img::CropStrategy::default(),
            },
            operations: Vec::new(),
            output: img::EncodeOptions {
                format: format(v.format),
                quality: v.quality,
                ..img::EncodeOptions::default()
            },
        })
        .collect()
}

/// Renders every variant of a `variants` job from one decoded source. It takes the decoded
/// image, not bytes: however many variants there are, the source was decoded once, by the
/// caller ([`render_job`] calls [`img::decode_for_variants`] once per attempt).
pub fn render_variants(
    src: &img::DecodedImage,
    p: &VariantsParams,
    limits: &img::Limits,
) -> Result<Vec<(String, img::Encoded)>, img::ImagingError> {
    img::render_variants(src, &variant_specs(p), limits)
}

/// The `analyze` report as recorded in the job's `result` (JSON).
pub fn analysis_json(a: &img::Analysis) -> serde_json::Value {
    use serde_json::{Value, json};
    // Drop absent fields rather than show nulls: a GPS position that was removed is not there.
    fn present(v: Value) -> Value {
        match v {
            Value::Object(m) => {
                Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).collect())
            }
            v => v,
        }
    }
    let round = |f: f64, places: i32| {
        let k = 10f64.powi(places);
        (f * k).round() / k
    };
    let exif = a.exif.as_ref().map(|e| {
        present(json!({
            "make": e.make,
            "model": e.model,
            "datetime": e.datetime,
            "orientation": e.orientation,
            "exposure_time": e.exposure_time,
            "f_number": e.f_number,
            "iso": e.iso,
            "focal_length_mm": e.focal_length_mm,
            "gps": e.gps.map(|g| present(json!({
                "latitude": g.latitude,
                "longitude": g.longitude,
                "altitude_m": g.altitude_m,
            }))),
        }))
    });
    json!({
        "format": a.format.mime().trim_start_matches("image/"),
        "content_type": a.format.mime(),
        "width": a.width,
        "height": a.height,
        "frames": a.frames,
        "has_alpha": a.has_alpha,
        "exif": exif,
        "blurhash": a.blurhash,
        "dhash": format!("{:016x}", a.dhash),
        "dominant_colors": a.dominant_colors.iter().map(|c| json!({
            "hex": format!("#{:02x}{:02x}{:02x}", c.rgb[0], c.rgb[1], c.rgb[2]),
            "rgb": c.rgb,
            "fraction": round(f64::from(c.fraction), 4),
        })).collect::<Vec<_>>(),
        "sha256": a.sha256,
    })
}

/// What one attempt's imaging work produced.
#[derive(Debug)]
pub enum Rendered {
    /// Named encoded outputs, in the order of [`JobSpec::outputs`].
    Images(Vec<(String, img::Encoded)>),
    /// A report (the `analyze` result), no outputs.
    Report(serde_json::Value),
}

/// Runs the imaging work of any job spec (CPU-bound; call on a blocking thread). A `variants`
/// job decodes its source once and renders every variant from it.
pub fn render_job(
    bytes: &[u8],
    spec: &JobSpec,
    limits: &img::Limits,
) -> Result<Rendered, img::ImagingError> {
    match spec {
        JobSpec::Thumbnail(_) | JobSpec::Transform(_) => {
            let name = spec.job_type().as_str().to_owned();
            Ok(Rendered::Images(vec![(name, render(bytes, spec, limits)?)]))
        }
        JobSpec::Variants(p) => {
            // Parameters are checked before any pixel is decoded; the one decode shrinks on
            // load only as far as the largest variant allows.
            let src = img::decode_for_variants(bytes, &variant_specs(p), limits)?;
            Ok(Rendered::Images(render_variants(&src, p, limits)?))
        }
        JobSpec::Analyze(AnalyzeParams {
            keep_gps,
            dominant_colors,
        }) => {
            let opts = img::AnalyzeOptions {
                keep_gps: *keep_gps,
                dominant_colors: usize::from(*dominant_colors),
            };
            Ok(Rendered::Report(analysis_json(&img::analyze_with(
                bytes, &opts, limits,
            )?)))
        }
    }
}

/// Runs the imaging work of a `thumbnail` or `transform` spec (CPU-bound; call on a blocking
/// thread). Other kinds go through [`render_job`].
pub fn render(
    bytes: &[u8],
    spec: &JobSpec,
    limits: &img::Limits,
) -> Result<img::Encoded, img::ImagingError> {
    if let JobSpec::Transform(p) = spec {
        if p.animated {
            let op = img::Animate {
                width: p.width,
                height: p.height,
                fit: fit(p.fit),
                upscale: p.upscale,
            };
            return img::animate(bytes, &op, limits);
        }
        if let Some(pipe) = extended_pipeline(p) {
            return img::pipeline(bytes, &pipe, limits);
        }
    }
    let Some(op) = operation(spec) else {
        return Err(img::ImagingError::InvalidParameters(format!(
            "a {} job is not one transform",
            spec.job_type()
        )));
    };
    img::transform(bytes, &op, limits)
}

/// A step boundary: answers whether the attempt may go on (its claim is still current). The
/// worker checks the job's row, so a cancelled job stops before its next step.
pub type Checkpoint =
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>> + Send + Sync;

async fn step(checkpoint: &Checkpoint) -> Result<(), PipelineError> {
    if checkpoint().await {
        Ok(())
    } else {
        Err(PipelineError::Stopped)
    }
}

/// The keys a job's outputs are written to (deterministic, so a cancelled job's outputs can be
/// found and removed even when they were never recorded).
pub fn output_keys(job: &Job) -> Vec<ObjectKey> {
    job.spec
        .outputs()
        .into_iter()
        .filter_map(|(name, fmt)| {
            ObjectKey::job_output(&job.tenant, job.job_id, name, fmt.extension()).ok()
        })
        .collect()
}

/// What a finished pipeline hands over to be recorded with the job.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineOutput {
    /// The files written.
    pub outputs: Vec<JobOutput>,
    /// What the job found (the `analyze` report).
    pub result: Option<serde_json::Value>,
}

/// Reads a job's raw object.
async fn read_source(
    store: &dyn ObjectStore,
    job: &Job,
    max_source_bytes: u64,
) -> Result<Bytes, PipelineError> {
    let Some(source) = job.s3_key.clone() else {
        return Err(PipelineError::Permanent {
            code: "source_missing",
            message: "the job has no source object".into(),
        });
    };
    if source.is_quarantined() {
        // Never read: a quarantined object has not been scanned clean.
        return Err(PipelineError::Permanent {
            code: "source_missing",
            message:
                "the source object is in quarantine (not scanned clean); it is never processed"
                    .into(),
        });
    }
    match store
        .get_bytes(Bucket::Raw, &source, max_source_bytes)
        .await
    {
        Ok(b) => Ok(b),
        Err(StoreError::NotFound) => Err(PipelineError::Permanent {
            code: "source_missing",
            message: "the source object no longer exists (expired or deleted)".into(),
        }),
        Err(StoreError::TooLarge { limit }) => Err(PipelineError::Permanent {
            code: "image_too_large",
            message: format!("the source object is larger than {limit} bytes"),
        }),
        Err(e) => Err(PipelineError::Retryable {
            code: "storage_error",
            message: format!("reading the source failed: {e}"),
        }),
    }
}

/// Runs a job's pipeline: read the raw object, transform on the blocking pool, write the outputs
/// to their deterministic keys. Returns the outputs (and result) to record. `checkpoint` is asked
/// before each step (read, transform, each write); when it says no the pipeline ends with
/// [`PipelineError::Stopped`] and writes nothing more.
///
/// The transform holds a permit of `cpu` until it really ends: a job abandoned by its time
/// limit keeps its thread busy until the codec returns, and must keep counting against the pool.
pub async fn run_pipeline(
    store: &dyn ObjectStore,
    job: &Job,
    limits: img::Limits,
    max_source_bytes: u64,
    cpu: Arc<Semaphore>,
    checkpoint: &Checkpoint,
    fetch: &crate::fetch::FetchConfig,
) -> Result<PipelineOutput, PipelineError> {
    step(checkpoint).await?;
    let bytes = async {
        match &job.source_url {
            Some(url) => crate::fetch::fetch_source(url, fetch).await,
            None => read_source(store, job, max_source_bytes).await,
        }
    }
    .instrument(tracing::info_span!("step.read"))
    .await?;
    step(checkpoint).await?;
    let spec = job.spec.clone();
    let span = tracing::Span::current();
    let permit = cpu
        .acquire_owned()
        .await
        .map_err(|_| PipelineError::Retryable {
            code: "shutting_down",
            message: "the worker is shutting down".into(),
        })?;
    let rendered = tokio::task::spawn_blocking(move || {
        let _enter = tracing::info_span!(parent: &span, "step.transform").entered();
        let out = render_job(&bytes, &spec, &limits);
        drop(permit);
        out
    })
    .await
    .map_err(|e| PipelineError::Retryable {
        code: "worker_panic",
        message: format!("the image task failed: {e}"),
    })?
    .map_err(|e| {
        let code = e.code();
        if e.is_permanent() {
            PipelineError::Permanent {
                code,
                message: e.to_string(),
            }
        } else {
            PipelineError::Retryable {
                code,
                message: e.to_string(),
            }
        }
    })?;

    let images = match rendered {
        Rendered::Report(result) => {
            return Ok(PipelineOutput {
                outputs: Vec::new(),
                result: Some(result),
            });
        }
        Rendered::Images(images) => images,
    };
    // Keys and types come from the spec, as `output_keys` derives them.
    let formats: std::collections::HashMap<&str, OutputFormat> =
        job.spec.outputs().into_iter().collect();
    let mut outputs = Vec::with_capacity(images.len());
    for (name, encoded) in images {
        let Some(&fmt) = formats.get(name.as_str()) else {
            return Err(PipelineError::Permanent {
                code: "invalid_parameters",
                message: format!("output {name:?} is not one of the job's"),
            });
        };
        let key = ObjectKey::job_output(&job.tenant, job.job_id, &name, fmt.extension()).map_err(
            |e| PipelineError::Permanent {
                code: "invalid_key",
                message: e.to_string(),
            },
        )?;
        let size = encoded.bytes.len() as u64;
        let (width, height) = (encoded.width, encoded.height);
        step(checkpoint).await?;
        store
            .put_bytes(Bucket::Processed, &key, Bytes::from(encoded.bytes))
            .instrument(tracing::info_span!("step.write"))
            .await
            .map_err(|e| PipelineError::Retryable {
                code: "storage_error",
                message: format!("writing the output failed: {e}"),
            })?;
        outputs.push(JobOutput {
            name,
            key,
            content_type: fmt.mime().to_owned(),
            width,
            height,
            size,
        });
    }
    Ok(PipelineOutput {
        outputs,
        result: None,
    })
}
