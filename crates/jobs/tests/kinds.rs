//! The job kinds beyond one transform: `variants` (several outputs from one decode) and
//! `analyze` (a report, no output), through the real pipeline and the local store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use photo_core::{JobId, JobSpec, JobStatus, JobType, ObjectKey, TenantId, UploadId};
use photo_db::{Job, JobEngine};
use photo_jobs::{Checkpoint, output_keys, render_variants, run_pipeline};
use photo_storage::{Bucket, LocalStore, ObjectStore, UrlSigner};
use serde_json::json;
use tokio::sync::Semaphore;

fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 3) as u8, (y * 5) as u8, ((x + y) * 2) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, image::ImageFormat::Jpeg)
        .unwrap();
    out.into_inner()
}

fn variants_params() -> serde_json::Value {
    json!({"variants": [
        {"name": "small", "width": 40, "format": "webp", "quality": 70},
        {"name": "square", "width": 24, "height": 24, "fit": "cover", "format": "png"},
        {"name": "tall", "height": 30},
    ]})
}

/// The decoded size and format of an encoded image.
fn dims(bytes: &[u8]) -> (u32, u32, image::ImageFormat) {
    let fmt = image::guess_format(bytes).unwrap();
    let img = image::load_from_memory(bytes).unwrap();
    (img.width(), img.height(), fmt)
}

#[test]
fn every_variant_is_rendered_from_one_decoded_source() {
    let bytes = jpeg(80, 60);
    let limits = photo_imaging::Limits::default();
    let Ok(JobSpec::Variants(p)) = JobSpec::parse(JobType::Variants, variants_params()) else {
        panic!("valid params")
    };
    // The one decode. `render_variants` takes the decoded image, never bytes: it cannot decode
    // again, whatever the number of variants.
    let src = photo_imaging::decode_oriented(&bytes, &limits, false).unwrap();
    assert_eq!((src.width(), src.height()), (80, 60));
    let out = render_variants(&src, &p, &limits).unwrap();
    let got: Vec<_> = out
        .iter()
        .map(|(name, e)| (name.as_str(), (e.width, e.height), dims(&e.bytes)))
        .collect();
    assert_eq!(
        got,
        vec![
            ("small", (40, 30), (40, 30, image::ImageFormat::WebP)),
            ("square", (24, 24), (24, 24, image::ImageFormat::Png)),
            ("tall", (40, 30), (40, 30, image::ImageFormat::Jpeg)),
        ]
    );
    // The same decoded source serves again, unchanged.
    let again = render_variants(&src, &p, &limits).unwrap();
    assert_eq!(again.len(), 3);
}

async fn store_with_source(bytes: Vec<u8>) -> (tempfile::TempDir, LocalStore, ObjectKey) {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(
        dir.path(),
        "http://127.0.0.1:1",
        UrlSigner::new(vec![7; 32]),
    )
    .await
    .unwrap();
    let source = ObjectKey::raw_upload(&TenantId::default_tenant(), UploadId::new());
    store
        .put_bytes(Bucket::Raw, &source, Bytes::from(bytes))
        .await
        .unwrap();
    (dir, store, source)
}

fn job(spec: JobSpec, source: ObjectKey) -> Job {
    let now = Utc::now();
    Job {
        job_id: JobId::new(),
        tenant: TenantId::default_tenant(),
        job_type: spec.job_type(),
        spec,
        upload_id: None,
        s3_key: Some(source),
        source_url: None,
        filename: None,
        content_type: None,
        status: JobStatus::Started,
        attempts: 1,
        max_attempts: 3,
        error_code: None,
        error_message: None,
        outputs: Vec::new(),
        result: None,
        created_at: now,
        started_at: Some(now),
        completed_at: None,
        updated_at: now,
        run_at: now,
        lease_owner: None,
        trace_context: None,
        engine: JobEngine::Sql,
        temporal: None,
        batch_id: None,
    }
}

async fn run(store: &LocalStore, job: &Job) -> photo_jobs::PipelineOutput {
    let go: Box<Checkpoint> = Box::new(|| Box::pin(async { true }));
    run_pipeline(
        store,
        job,
        photo_imaging::Limits::default(),
        1 << 20,
        Arc::new(Semaphore::new(1)),
        go.as_ref(),
        &photo_jobs::fetch::FetchConfig {
            max_bytes: 1 << 20,
            timeout: std::time::Duration::from_secs(5),
            max_redirects: 0,
            allow: Vec::new(),
        },
    )
    .await
    .unwrap()
}

/// Files stored under the job's output prefix.
fn job_files(dir: &std::path::Path, job: &Job) -> Vec<String> {
    let d = dir.join(format!(
        "processed/tenants/{}/jobs/{}",
        job.tenant, job.job_id
    ));
    let mut names: Vec<String> = std::fs::read_dir(d)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test]
async fn a_variants_job_writes_each_variant_under_its_key_and_a_rerun_overwrites() {
    let (dir, store, source) = store_with_source(jpeg(80, 60)).await;
    let spec = JobSpec::parse(JobType::Variants, variants_params()).unwrap();
    let job = job(spec, source);
    let first = run(&store, &job).await;
    assert_eq!(first.result, None);
    let keys: Vec<_> = first.outputs.iter().map(|o| o.key.clone()).collect();
    assert_eq!(keys, output_keys(&job), "the deterministic keys, in order");
    let names: Vec<_> = first
        .outputs
        .iter()
        .map(|o| (o.name.as_str(), o.content_type.as_str(), o.width, o.height))
        .collect();
    assert_eq!(
        names,
        vec![
            ("small", "image/webp", 40, 30),
            ("square", "image/png", 24, 24),
            ("tall", "image/jpeg", 40, 30),
        ]
    );
    let files = vec!["small.webp", "square.png", "tall.jpg"];
    assert_eq!(job_files(dir.path(), &job), files);
    // Another attempt of the same job writes the same keys: overwritten, never duplicated.
    let second = run(&store, &job).await;
    assert_eq!(second.outputs, first.outputs);
    assert_eq!(job_files(dir.path(), &job), files);
}

#[tokio::test]
async fn an_analyze_job_records_a_report_and_writes_no_output() {
    let bytes = jpeg(64, 48);
    let (dir, store, source) = store_with_source(bytes.clone()).await;
    let spec = JobSpec::parse(JobType::Analyze, json!({"dominant_colors": 3})).unwrap();
    let job = job(spec, source);
    let out = run(&store, &job).await;
    assert!(out.outputs.is_empty());
    assert!(output_keys(&job).is_empty());
    let r = out.result.unwrap();
    assert_eq!(r["format"], "jpeg");
    assert_eq!(
        (r["width"].as_u64(), r["height"].as_u64()),
        (Some(64), Some(48))
    );
    use sha2::Digest;
    assert_eq!(r["sha256"], hex::encode(sha2::Sha256::digest(&bytes)));
    assert!(r["dominant_colors"].as_array().unwrap().len() <= 3);
    assert_eq!(r["dhash"].as_str().unwrap().len(), 16);
    assert!(job_files(dir.path(), &job).is_empty());
}
