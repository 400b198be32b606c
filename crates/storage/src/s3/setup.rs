//! Bucket administration that object_store cannot do: create the buckets and apply what the
//! design documents ask — block public access on both, versioning on processed, and lifecycle
//! rules (raw uploads expire after 2 days; incomplete multipart uploads are aborted after 7 on
//! both buckets). Each request is signed with our own SigV4 header signer. A server that does
//! not implement one of these APIs is reported, not treated as a failure.

use crate::{Bucket, StoreError};

use super::{AdminResponse, S3Store};

/// Days after which S3 expires raw uploads (S3 counts whole days; the service's own sweeper
/// removes them after exactly `raw_ttl`).
pub const RAW_EXPIRY_DAYS: u32 = 2;
/// Days after which S3 aborts incomplete multipart uploads.
pub const ABORT_MULTIPART_DAYS: u32 = 7;

const XMLNS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

fn public_access_block() -> String {
    format!(
        "<PublicAccessBlockConfiguration xmlns=\"{XMLNS}\">\
         <BlockPublicAcls>true</BlockPublicAcls>\
         <IgnorePublicAcls>true</IgnorePublicAcls>\
         <BlockPublicPolicy>true</BlockPublicPolicy>\
         <RestrictPublicBuckets>true</RestrictPublicBuckets>\
         </PublicAccessBlockConfiguration>"
    )
}

fn versioning() -> String {
    format!(
        "<VersioningConfiguration xmlns=\"{XMLNS}\"><Status>Enabled</Status></VersioningConfiguration>"
    )
}

fn lifecycle(expire_days: Option<u32>) -> String {
    let abort = format!(
        "<Rule><ID>abort-incomplete-multipart</ID><Filter><Prefix></Prefix></Filter>\
         <Status>Enabled</Status><AbortIncompleteMultipartUpload>\
         <DaysAfterInitiation>{ABORT_MULTIPART_DAYS}</DaysAfterInitiation>\
         </AbortIncompleteMultipartUpload></Rule>"
    );
    let expire = expire_days
        .map(|d| {
            format!(
                "<Rule><ID>expire-raw-uploads</ID><Filter><Prefix></Prefix></Filter>\
                 <Status>Enabled</Status><Expiration><Days>{d}</Days></Expiration></Rule>"
            )
        })
        .unwrap_or_default();
    format!("<LifecycleConfiguration xmlns=\"{XMLNS}\">{expire}{abort}</LifecycleConfiguration>")
}

fn create_bucket_body(region: &str) -> Option<String> {
    // us-east-1 is the default location and refuses an explicit constraint.
    (region != "us-east-1").then(|| {
        format!(
            "<CreateBucketConfiguration xmlns=\"{XMLNS}\">\
             <LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>"
        )
    })
}

/// Whether an answer means "this server does not implement that API".
fn unsupported(r: &AdminResponse) -> bool {
    r.status == reqwest::StatusCode::NOT_IMPLEMENTED
        || r.status == reqwest::StatusCode::METHOD_NOT_ALLOWED
        || matches!(r.code(), Some("NotImplemented" | "NotSupported"))
}

fn describe(r: &AdminResponse) -> String {
    match r.code() {
        Some(code) => format!("HTTP {} {code}", r.status.as_u16()),
        None => format!("HTTP {}", r.status.as_u16()),
    }
}

impl S3Store {
    /// Creates the buckets if missing and applies block-public-access, versioning (processed)
    /// and lifecycle rules. Returns one line per step saying what happened; fails only when a
    /// bucket cannot be created or reached, or a step is refused for another reason than "not
    /// implemented" (e.g. access denied).
    pub async fn setup(&self) -> Result<Vec<String>, StoreError> {
        let mut report = Vec::new();
        for bucket in [Bucket::Raw, Bucket::Processed] {
            let role = bucket.as_str();
            let name = self.inner.cfg.bucket_name(bucket).to_owned();
            let label = format!("{role} bucket '{name}'");
            let fail = |what: &str, detail: String| {
                StoreError::Backend(std::io::Error::other(format!("{label}: {what}: {detail}")))
            };
            match self.head_bucket(bucket).await {
                Ok(()) => report.push(format!("{label}: exists")),
                Err(StoreError::Bucket {
                    problem: crate::BucketProblem::NoSuchBucket,
                    ..
                }) => {
                    let body = create_bucket_body(&self.inner.cfg.region)
                        .map(|b| (b.into_bytes(), "application/xml"));
                    let r = self
                        .admin_request(bucket, reqwest::Method::PUT, &[], body)
                        .await
                        .map_err(|e| fail("creating it", e.to_string()))?;
                    if !r.status.is_success() {
                        return Err(fail("creating it", describe(&r)));
                    }
                    report.push(format!("{label}: created"));
                }
                Err(e) => return Err(e),
            }
            let mut steps: Vec<(&str, &str, String)> = vec![(
                "block public access",
                "publicAccessBlock",
                public_access_block(),
            )];
            if bucket == Bucket::Processed {
                steps.push(("versioning", "versioning", versioning()));
            }
            let expire = (bucket == Bucket::Raw).then_some(RAW_EXPIRY_DAYS);
            let what_lifecycle = match expire {
                Some(d) => format!(
                    "lifecycle (expire after {d} days, abort incomplete multipart uploads after {ABORT_MULTIPART_DAYS})"
                ),
                None => format!(
                    "lifecycle (abort incomplete multipart uploads after {ABORT_MULTIPART_DAYS} days)"
                ),
            };
            steps.push(("lifecycle", "lifecycle", lifecycle(expire)));
            for (what, sub, xml) in steps {
                let shown = if sub == "lifecycle" {
                    what_lifecycle.as_str()
                } else {
                    what
                };
                let r = self
                    .admin_request(
                        bucket,
                        reqwest::Method::PUT,
                        &[(sub, "")],
                        Some((xml.into_bytes(), "application/xml")),
                    )
                    .await
                    .map_err(|e| fail(shown, e.to_string()))?;
                if r.status.is_success() {
                    report.push(format!("{label}: {shown}: applied"));
                } else if unsupported(&r) {
                    report.push(format!(
                        "{label}: {shown}: not supported by this server ({})",
                        describe(&r)
                    ));
                } else {
                    return Err(fail(shown, describe(&r)));
                }
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_what_s3_expects() {
        let raw = lifecycle(Some(2));
        assert!(raw.contains("<Expiration><Days>2</Days></Expiration>"));
        assert!(raw.contains("<DaysAfterInitiation>7</DaysAfterInitiation>"));
        let processed = lifecycle(None);
        assert!(!processed.contains("<Expiration>"));
        assert!(processed.contains("<DaysAfterInitiation>7</DaysAfterInitiation>"));
        assert!(versioning().contains("<Status>Enabled</Status>"));
        assert_eq!(public_access_block().matches(">true<").count(), 4);
        assert_eq!(create_bucket_body("us-east-1"), None);
        assert!(
            create_bucket_body("eu-west-1")
                .is_some_and(|b| b.contains("<LocationConstraint>eu-west-1</LocationConstraint>"))
        );
    }

    #[test]
    fn recognises_not_implemented() {
        let r = |status: u16, body: &str| AdminResponse {
            status: reqwest::StatusCode::from_u16(status).unwrap_or_default(),
            body: body.to_owned(),
        };
        assert!(unsupported(&r(501, "")));
        assert!(unsupported(&r(
            400,
            "<Error><Code>NotImplemented</Code></Error>"
        )));
        assert!(!unsupported(&r(
            403,
            "<Error><Code>AccessDenied</Code></Error>"
        )));
        assert_eq!(
            describe(&r(403, "<Error><Code>AccessDenied</Code></Error>")),
            "HTTP 403 AccessDenied"
        );
    }
}
