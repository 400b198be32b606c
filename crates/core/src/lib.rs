//! Domain types of photo-api. Every outside value is parsed once, at the edge, into one of these
//! types; nothing here does I/O.

pub mod content_type;
pub mod error;
pub mod file_path;
pub mod filename;
pub mod ids;
pub mod job;
pub mod key;
pub mod metrics;
pub mod scope;
pub mod size;
pub mod telemetry;

pub use content_type::ContentType;
pub use error::ErrorCode;
pub use file_path::FilePath;
pub use filename::FileName;
pub use ids::{BatchId, JobId, TenantId, UploadId};
pub use job::{
    AnalyzeParams, CropBox, Fit, JobSpec, JobStatus, JobType, OutputFormat, PngCompression,
    Position, Sharpen, Subsampling, ThumbnailParams, TransformParams, VariantParams,
    VariantsParams,
};
pub use key::ObjectKey;
pub use scope::Scope;
pub use size::ByteSize;
