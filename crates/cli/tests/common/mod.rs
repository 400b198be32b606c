//! Black-box harness: starts the real `photo-api` binary on a free port with its own data
//! directory and drives it over HTTP.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_photo-api");

/// A running server process.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub key: String,
    pub data_dir: PathBuf,
    pub http: reqwest::Client,
}

/// Options for starting a server.
#[derive(Clone, Default)]
pub struct Opts {
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
    /// Reuse this data dir (restart tests) and this key.
    pub data_dir: Option<PathBuf>,
    pub key: Option<String>,
}

impl Opts {
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.into());
        self
    }
}

pub fn tempdir() -> PathBuf {
    let d = tempfile::tempdir().unwrap();
    d.keep()
}

/// A command for the binary with a clean, test-friendly environment.
pub fn command(data_dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PHOTO_API_DATA_DIR", data_dir)
        .env("LOG_LEVEL", "info,sqlx=warn")
        .env("PHOTO_API_POLL_INTERVAL", "50ms")
        .env("PHOTO_API_RETRY_BACKOFF", "100ms");
    c
}

impl Server {
    pub async fn start() -> Server {
        Self::start_with(Opts::default()).await
    }

    pub async fn start_with(opts: Opts) -> Server {
        let data_dir = opts.data_dir.clone().unwrap_or_else(tempdir);
        let mut cmd = command(&data_dir);
        cmd.arg("serve").arg("--listen").arg("127.0.0.1:0");
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        cmd.args(&opts.args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn photo-api");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut key = opts.key.clone();
        let deadline = Instant::now() + Duration::from_secs(60);
        let base = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .expect("server did not announce its address");
            if let Some(k) = line.strip_prefix("API key: ") {
                key = Some(k.trim().to_owned());
            }
            if let Some(rest) = line.strip_prefix("photo-api listening on ") {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        let key = key
            .or_else(|| {
                opts.env
                    .iter()
                    .find(|(k, _)| k == "API_KEY")
                    .map(|(_, v)| v.clone())
            })
            .expect("no API key printed or configured");
        Server {
            child,
            base,
            key,
            data_dir,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn init_upload(&self, content_type: &str, max_bytes: u64) -> Value {
        let r = self
            .post(
                "/uploads/init",
                json!({"content_type": content_type, "max_bytes": max_bytes}),
            )
            .await;
        assert_eq!(r.status(), 201, "init: {}", r.text().await.unwrap());
        r.json().await.unwrap()
    }

    /// Sends `bytes` to the upload target as the README describes: every field, then `file`.
    pub async fn send_upload(
        &self,
        init: &Value,
        bytes: Vec<u8>,
        part_type: &str,
    ) -> reqwest::Response {
        let mut form = reqwest::multipart::Form::new();
        for (k, v) in init["fields"].as_object().unwrap() {
            form = form.text(k.clone(), v.as_str().unwrap().to_owned());
        }
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name("photo")
            .mime_str(part_type)
            .unwrap();
        form = form.part("file", part);
        assert_eq!(init["method"], "POST");
        self.http
            .post(init["url"].as_str().unwrap())
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    pub async fn complete(&self, upload_id: &str) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/uploads/{upload_id}/complete")))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap()
    }

    /// init + upload + complete; returns the upload id.
    pub async fn upload_ready(&self, bytes: Vec<u8>, content_type: &str) -> String {
        let init = self.init_upload(content_type, bytes.len() as u64).await;
        let r = self.send_upload(&init, bytes, content_type).await;
        assert_eq!(r.status(), 201, "upload: {}", r.text().await.unwrap());
        let id = init["upload_id"].as_str().unwrap().to_owned();
        let r = self.complete(&id).await;
        assert_eq!(r.status(), 200, "complete: {}", r.text().await.unwrap());
        id
    }

    pub async fn submit(&self, body: Value) -> Value {
        let r = self.post("/jobs", body).await;
        assert_eq!(r.status(), 202, "submit: {}", r.text().await.unwrap());
        r.json().await.unwrap()
    }

    pub async fn job(&self, id: &str) -> Value {
        let r = self.get(&format!("/jobs/{id}")).await;
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    /// Polls until the job reaches a terminal status.
    pub async fn wait_job(&self, id: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let j = self.job(id).await;
            let s = j["status"].as_str().unwrap().to_owned();
            if ["completed", "failed", "dead", "cancelled"].contains(&s.as_str()) {
                return j;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} still {s} after {timeout:?}: {j}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, no cleanup.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn signal(&self, sig: &str) {
        signal(self.child.id(), sig);
    }
}

pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Asserts a problem+json error with `status` and `code`; returns the body.
pub async fn expect_problem(r: reqwest::Response, status: u16, code: &str) -> Value {
    let got = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let rid = r
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = r.text().await.unwrap();
    assert_eq!(got, status, "status; body {text}");
    assert_eq!(ct, "application/problem+json", "content type; body {text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["code"], code, "{text}");
    assert_eq!(v["status"], status);
    assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()));
    assert_eq!(
        v["request_id"].as_str(),
        rid.as_deref(),
        "request id in body and header"
    );
    v
}

/// A photo-like JPEG: smooth gradients plus some texture, `w`×`h`.
pub fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let n = (x.wrapping_mul(2654435761) ^ y.wrapping_mul(40503)) % 32;
        image::Rgb([
            ((x * 255 / w.max(1)) as u8).saturating_add(n as u8),
            (y * 255 / h.max(1)) as u8,
            (((x + y) * 128 / (w + h).max(1)) as u8).saturating_add(n as u8 / 2),
        ])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, image::ImageFormat::Jpeg)
        .unwrap();
    out.into_inner()
}

/// A noisy JPEG that is slow to re-encode as PNG.
pub fn noisy_jpeg(w: u32, h: u32) -> Vec<u8> {
    let mut s: u32 = 12345;
    let img = image::RgbImage::from_fn(w, h, |_, _| {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        image::Rgb([s as u8, (s >> 8) as u8, (s >> 16) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, image::ImageFormat::Jpeg)
        .unwrap();
    out.into_inner()
}

pub fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbaImage::from_fn(w, h, |x, _| image::Rgba([255, (x % 256) as u8, 0, 200]));
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgba8(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A valid PNG signature and IHDR claiming `w`×`h`, then a tiny IDAT and IEND: a header bomb.
pub fn png_header_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    let mut chunk = |kind: &[u8], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(b"IEND", &[]);
    out
}

/// Downloads a signed URL without credentials.
pub async fn download(url: &str) -> (u16, String, Vec<u8>) {
    let r = reqwest::get(url).await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ct, r.bytes().await.unwrap().to_vec())
}
