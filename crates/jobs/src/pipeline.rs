//! One job's work: read the source, transform, write the output.

use std::sync::Arc;
use tracing::Instrument;

use bytes::Bytes;
use photo_core::job::parse_hex_colour;
use photo_core::{
    Fit, JobSpec, ObjectKey, OutputFormat, PngCompression, Position, Subsampling, TransformParams,
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

/// The imaging operation a job spec asks for.
pub fn operation(spec: &JobSpec) -> img::Transform {
    match spec {
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
    }
}

fn output_format(spec: &JobSpec) -> OutputFormat {
    match spec {
        JobSpec::Thumbnail(p) => p.format,
        JobSpec::Transform(p) => p.format,
    }
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

/// Runs the imaging work of a job spec (CPU-bound; call on a blocking thread).
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
    img::transform(bytes, &operation(spec), limits)
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
    let fmt = output_format(&job.spec);
    ObjectKey::job_output(
        &job.tenant,
        job.job_id,
        job.job_type.as_str(),
        fmt.extension(),
    )
    .into_iter()
    .collect()
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

/// Runs a job's pipeline: read the raw object, transform on the blocking pool, write the output
/// to its deterministic key. Returns the outputs to record. `checkpoint` is asked before each
/// step (read, transform, write); when it says no the pipeline ends with
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
) -> Result<Vec<JobOutput>, PipelineError> {
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
    let encoded = tokio::task::spawn_blocking(move || {
        let _enter = tracing::info_span!(parent: &span, "step.transform").entered();
        let out = render(&bytes, &spec, &limits);
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

    let fmt = output_format(&job.spec);
    let name = job.job_type.as_str();
    let key =
        ObjectKey::job_output(&job.tenant, job.job_id, name, fmt.extension()).map_err(|e| {
            PipelineError::Permanent {
                code: "invalid_key",
                message: e.to_string(),
            }
        })?;
    let size = encoded.bytes.len() as u64;
    step(checkpoint).await?;
    store
        .put_bytes(Bucket::Processed, &key, Bytes::from(encoded.bytes))
        .instrument(tracing::info_span!("step.write"))
        .await
        .map_err(|e| PipelineError::Retryable {
            code: "storage_error",
            message: format!("writing the output failed: {e}"),
        })?;
    Ok(vec![JobOutput {
        name: name.to_owned(),
        key,
        content_type: fmt.mime().to_owned(),
        width: encoded.width,
        height: encoded.height,
        size,
    }])
}
