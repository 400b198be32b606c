//! The pipeline's step boundaries: a checkpoint that says "stop" ends the attempt before the
//! next step, and nothing is written after it. Runs on the real local store in a temporary
//! directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use chrono::Utc;
use photo_core::{JobId, JobSpec, JobStatus, JobType, ObjectKey, TenantId, UploadId};
use photo_db::{Job, JobEngine};
use photo_jobs::{Checkpoint, PipelineError, output_keys, run_pipeline};
use photo_storage::{Bucket, LocalStore, ObjectStore, UrlSigner};
use tokio::sync::Semaphore;

fn jpeg() -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 90]));
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, image::ImageFormat::Jpeg)
        .unwrap();
    out.into_inner()
}

async fn setup() -> (tempfile::TempDir, LocalStore, Job) {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(
        dir.path(),
        "http://127.0.0.1:1",
        UrlSigner::new(vec![7; 32]),
    )
    .await
    .unwrap();
    let tenant = TenantId::default_tenant();
    let upload = UploadId::new();
    let source = ObjectKey::raw_upload(&tenant, upload);
    store
        .put_bytes(Bucket::Raw, &source, Bytes::from(jpeg()))
        .await
        .unwrap();
    let spec = JobSpec::parse(
        JobType::Thumbnail,
        serde_json::json!({"width": 32, "height": 32, "format": "png"}),
    )
    .unwrap();
    let now = Utc::now();
    let job = Job {
        job_id: JobId::new(),
        tenant,
        job_type: JobType::Thumbnail,
        spec,
        upload_id: Some(upload),
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
    };
    (dir, store, job)
}

fn fetch_cfg() -> photo_jobs::fetch::FetchConfig {
    photo_jobs::fetch::FetchConfig {
        max_bytes: 1 << 20,
        timeout: std::time::Duration::from_secs(5),
        max_redirects: 3,
        allow: Vec::new(),
    }
}

/// A checkpoint that allows the first `allow` boundaries and refuses the rest; counts calls.
fn stop_after(allow: usize, calls: Arc<AtomicUsize>) -> Box<Checkpoint> {
    Box::new(move || {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move { n < allow })
    })
}

async fn output_exists(store: &LocalStore, job: &Job) -> bool {
    let key = output_keys(job).pop().unwrap();
    store.head(Bucket::Processed, &key).await.unwrap().is_some()
}

#[tokio::test]
async fn every_step_is_preceded_by_a_checkpoint_and_a_refusal_stops_before_it() {
    // Three boundaries: before reading the source, before the transform, before the write.
    for allow in 0..3 {
        let (_dir, store, job) = setup().await;
        let calls = Arc::new(AtomicUsize::new(0));
        let cp = stop_after(allow, calls.clone());
        let r = run_pipeline(
            &store,
            &job,
            photo_imaging::Limits::default(),
            1 << 20,
            Arc::new(Semaphore::new(1)),
            cp.as_ref(),
            &fetch_cfg(),
        )
        .await;
        assert!(
            matches!(r, Err(PipelineError::Stopped)),
            "refused at boundary {allow}: {r:?}"
        );
        assert_eq!(
            calls.load(Ordering::SeqCst),
            allow + 1,
            "nothing ran past the refusal"
        );
        assert!(
            !output_exists(&store, &job).await,
            "no output written when stopped at boundary {allow}"
        );
    }
}

#[tokio::test]
async fn a_pipeline_whose_checkpoints_all_pass_writes_its_output() {
    let (_dir, store, job) = setup().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let cp = stop_after(usize::MAX, calls.clone());
    let outputs = run_pipeline(
        &store,
        &job,
        photo_imaging::Limits::default(),
        1 << 20,
        Arc::new(Semaphore::new(1)),
        cp.as_ref(),
        &fetch_cfg(),
    )
    .await
    .unwrap()
    .outputs;
    assert_eq!(calls.load(Ordering::SeqCst), 3, "three step boundaries");
    assert_eq!(outputs.len(), 1);
    assert_eq!(
        outputs[0].key,
        output_keys(&job)[0],
        "the deterministic key"
    );
    assert!(output_exists(&store, &job).await);
}
