//! TLS termination, black-box: HTTPS with the configured certificate (made with the openssl CLI
//! at test time), plain HTTP refused on the TLS port, HSTS, and the certificate reloaded on
//! SIGHUP without a restart (a broken replacement keeps the old one).
#![expect(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Opts, Server, tempdir};

fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("the openssl CLI");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A test CA (`ca.crt`), made once per directory.
fn make_ca(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=photo-api test CA",
        ],
    );
}

/// A certificate for 127.0.0.1 signed by the test CA into `name.crt` / `name.key`; returns its
/// SHA-256 fingerprint as openssl prints it.
fn make_cert(dir: &Path, name: &str) -> String {
    let (key, csr, crt, ext) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
        format!("{name}.ext"),
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={name}"),
        ],
    );
    std::fs::write(
        dir.join(&ext),
        "basicConstraints=critical,CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    );
    fingerprint_of(&openssl(
        dir,
        &["x509", "-in", &crt, "-noout", "-fingerprint", "-sha256"],
    ))
}

fn fingerprint_of(out: &[u8]) -> String {
    String::from_utf8_lossy(out)
        .lines()
        .find_map(|l| l.split_once("Fingerprint=").map(|x| x.1.trim().to_owned()))
        .unwrap()
}

/// The fingerprint of the certificate the server presents now.
fn presented(dir: &Path, port: u16) -> String {
    let pem = openssl(
        dir,
        &[
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-showcerts",
        ],
    );
    let path = dir.join("presented.pem");
    std::fs::write(&path, pem).unwrap();
    fingerprint_of(&openssl(
        dir,
        &[
            "x509",
            "-in",
            "presented.pem",
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
    ))
}

fn client_trusting(dir: &Path, names: &[&str]) -> reqwest::Client {
    let mut b = reqwest::Client::builder().use_rustls_tls();
    for n in names {
        let pem = std::fs::read(dir.join(format!("{n}.crt"))).unwrap();
        b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_https_refuses_plain_http_and_reloads_on_sighup() {
    let dir = tempdir();
    make_ca(&dir);
    let first = make_cert(&dir, "first");
    std::fs::copy(dir.join("first.crt"), dir.join("live.crt")).unwrap();
    std::fs::copy(dir.join("first.key"), dir.join("live.key")).unwrap();
    let mut s = Server::start_with(
        Opts::default()
            .env("API_KEY", "tls-test-bootstrap-key-0123456789")
            .env("PHOTO_API_TLS_CERT", dir.join("live.crt").to_str().unwrap())
            .env("PHOTO_API_TLS_KEY", dir.join("live.key").to_str().unwrap()),
    )
    .await;
    assert!(s.base.starts_with("https://127.0.0.1:"), "{}", s.base);
    let port: u16 = s.base.rsplit(':').next().unwrap().parse().unwrap();
    s.http = client_trusting(&dir, &["ca"]);
    let r = s.get("/jobs").await;
    assert_eq!(r.status(), 200);
    let hsts = r
        .headers()
        .get("strict-transport-security")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(hsts.contains("max-age="), "{hsts}");
    assert_eq!(presented(&dir, port), first);

    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .timeout(Duration::from_secs(15))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP must be refused: {plain:?}");

    // A broken replacement is refused at reload; the old certificate stays.
    std::fs::write(dir.join("live.crt"), b"not a certificate").unwrap();
    s.signal("HUP");
    assert_eq!(s.get("/healthz").await.status(), 200);
    assert_eq!(presented(&dir, port), first);

    // A new pair, then SIGHUP: new connections get it; the server never restarted.
    let second = make_cert(&dir, "second");
    std::fs::copy(dir.join("second.crt"), dir.join("live.crt")).unwrap();
    std::fs::copy(dir.join("second.key"), dir.join("live.key")).unwrap();
    s.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(20);
    while presented(&dir, port) != second {
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fresh = client_trusting(&dir, &["ca"]);
    let r = fresh.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(s.child.try_wait().unwrap().is_none(), "same process");
}

#[test]
fn a_bad_certificate_fails_start_up() {
    let dir = tempdir();
    std::fs::write(dir.join("bad.crt"), b"junk").unwrap();
    std::fs::write(dir.join("bad.key"), b"junk").unwrap();
    let out = common::command(&dir)
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .env("PHOTO_API_TLS_CERT", dir.join("bad.crt"))
        .env("PHOTO_API_TLS_KEY", dir.join("bad.key"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.crt"), "{err}");
    let out = common::command(&dir)
        .arg("serve")
        .env("PHOTO_API_TLS_CERT", dir.join("bad.crt"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("PHOTO_API_TLS_KEY"));
}
