//! Malware scanning with ClamAV's clamd over `INSTREAM`, on TCP or a unix socket. An upload is
//! streamed to clamd (never buffered whole) before it is checked and promoted; clamd's reply is
//! parsed strictly: exactly `stream: OK` is clean, exactly `stream: <signature> FOUND` is
//! infected, anything else — an `ERROR`, a size-limit message, a cut-off or unknown reply, a
//! timeout — is a scanner failure, and the upload is not promoted (fail closed).

use std::time::Duration;
use tracing::Instrument;

use bytes::Bytes;
use futures_util::StreamExt;
use photo_storage::ByteStream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Where clamd listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClamdAddr {
    /// `tcp://host:port`.
    Tcp(String),
    /// `unix:///path/to/clamd.ctl` (or a bare absolute path).
    Unix(std::path::PathBuf),
}

impl std::str::FromStr for ClamdAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(hp) = s.strip_prefix("tcp://") {
            if hp
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
            {
                return Ok(Self::Tcp(hp.to_owned()));
            }
        } else if let Some(p) = s.strip_prefix("unix://") {
            return Ok(Self::Unix(p.into()));
        } else if s.starts_with('/') {
            return Ok(Self::Unix(s.into()));
        }
        Err(format!(
            "{s:?} is not a clamd address; use tcp://host:3310 or unix:///run/clamav/clamd.ctl"
        ))
    }
}

/// What clamd found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No signature matched.
    Clean,
    /// A signature matched; its name.
    Infected(String),
}

/// The scanner failed; the upload must not be promoted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malware scanner: {0}")]
pub struct ScanError(pub String);

fn fail(s: impl Into<String>) -> ScanError {
    ScanError(s.into())
}

/// Parses clamd's reply to `zINSTREAM` (NUL-terminated), strictly.
pub fn parse_reply(raw: &[u8]) -> Result<Verdict, ScanError> {
    let Some(body) = raw.strip_suffix(b"\0") else {
        return Err(fail("clamd's reply was cut off"));
    };
    let text = std::str::from_utf8(body).map_err(|_| fail("clamd's reply is not text"))?;
    if text.contains('\0') || text.contains('\n') {
        return Err(fail("clamd sent more than one reply"));
    }
    let Some(rest) = text.strip_prefix("stream: ") else {
        return Err(fail(format!("unexpected clamd reply {text:?}")));
    };
    if rest == "OK" {
        return Ok(Verdict::Clean);
    }
    if let Some(sig) = rest.strip_suffix(" FOUND")
        && !sig.is_empty()
        && sig.len() <= 200
        && sig
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-:/+".contains(&b))
    {
        return Ok(Verdict::Infected(sig.to_owned()));
    }
    Err(fail(format!("clamd could not scan: {rest:?}")))
}

/// A clamd client.
#[derive(Debug, Clone)]
pub struct Clamd {
    /// Where clamd listens.
    pub addr: ClamdAddr,
    /// Limit of one scan (connect, stream, reply).
    pub timeout: Duration,
}

trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}

/// clamd's `StreamMaxLength` default is 25 MB; chunks stay well under it.
const CHUNK: usize = 64 * 1024;

impl Clamd {
    async fn connect(&self) -> Result<Box<dyn Conn>, ScanError> {
        let c: Box<dyn Conn> = match &self.addr {
            ClamdAddr::Tcp(hp) => Box::new(
                tokio::net::TcpStream::connect(hp)
                    .await
                    .map_err(|e| fail(format!("cannot reach clamd at {hp}: {e}")))?,
            ),
            ClamdAddr::Unix(p) => Box::new(
                tokio::net::UnixStream::connect(p)
                    .await
                    .map_err(|e| fail(format!("cannot reach clamd at {}: {e}", p.display())))?,
            ),
        };
        Ok(c)
    }

    async fn read_reply(c: &mut Box<dyn Conn>) -> Result<Vec<u8>, ScanError> {
        let mut out = Vec::new();
        let mut buf = [0u8; 512];
        loop {
            let n = c
                .read(&mut buf)
                .await
                .map_err(|e| fail(format!("reading clamd's reply: {e}")))?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
            if out.ends_with(b"\0") || out.len() > 4096 {
                return Ok(out);
            }
        }
    }

    /// `PING` → `PONG`: clamd is up and answering.
    pub async fn ping(&self) -> Result<(), ScanError> {
        let run = async {
            let mut c = self.connect().await?;
            c.write_all(b"zPING\0")
                .await
                .map_err(|e| fail(e.to_string()))?;
            let r = Self::read_reply(&mut c).await?;
            if r == b"PONG\0" {
                Ok(())
            } else {
                Err(fail(format!(
                    "unexpected reply to PING: {:?}",
                    String::from_utf8_lossy(&r)
                )))
            }
        };
        tokio::time::timeout(self.timeout, run)
            .await
            .map_err(|_| fail("clamd did not answer in time"))?
    }

    /// Streams `body` to clamd and returns its verdict.
    pub async fn scan(&self, mut body: ByteStream<'_>) -> Result<Verdict, ScanError> {
        let run = async {
            let mut c = self.connect().await?;
            let io = |e: std::io::Error| fail(format!("sending to clamd: {e}"));
            c.write_all(b"zINSTREAM\0").await.map_err(io)?;
            while let Some(chunk) = body.next().await {
                let chunk: Bytes = chunk.map_err(|e| fail(format!("reading the object: {e}")))?;
                for part in chunk.chunks(CHUNK) {
                    let len = u32::try_from(part.len()).map_err(|_| fail("chunk too large"))?;
                    c.write_all(&len.to_be_bytes()).await.map_err(io)?;
                    c.write_all(part).await.map_err(io)?;
                }
            }
            c.write_all(&0u32.to_be_bytes()).await.map_err(io)?;
            c.flush().await.map_err(io)?;
            parse_reply(&Self::read_reply(&mut c).await?)
        };
        let start = std::time::Instant::now();
        let r = tokio::time::timeout(self.timeout, run)
            .instrument(tracing::info_span!("scan"))
            .await
            .map_err(|_| fail("the scan did not finish in time"))
            .and_then(|r| r);
        let m = photo_core::metrics::metrics();
        m.scan_duration.observe([], start.elapsed().as_secs_f64());
        m.scan_results.inc([match &r {
            Ok(Verdict::Clean) => "clean",
            Ok(Verdict::Infected(_)) => "infected",
            Err(_) => "error",
        }]);
        r
    }
}

/// `/health` entry `clamd`: PING/PONG.
#[derive(Debug)]
pub struct ClamdHealth(pub Clamd);

#[async_trait::async_trait]
impl crate::state::HealthCheck for ClamdHealth {
    fn name(&self) -> &'static str {
        "clamd"
    }
    fn kind(&self) -> Option<String> {
        Some("clamav".into())
    }
    /// Reported, but not required: reads and jobs go on while uploads wait for it.
    fn required(&self) -> bool {
        false
    }
    async fn check(&self) -> Result<(), String> {
        self.0.ping().await.map_err(|e| e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_parsed_strictly() {
        assert_eq!(parse_reply(b"stream: OK\0"), Ok(Verdict::Clean));
        assert_eq!(
            parse_reply(b"stream: Eicar-Test-Signature.UNOFFICIAL FOUND\0"),
            Ok(Verdict::Infected("Eicar-Test-Signature.UNOFFICIAL".into()))
        );
        for bad in [
            &b"stream: OK"[..],
            b"stream: OK\0stream: OK\0",
            b"OK\0",
            b"stream: \0",
            b"stream:  FOUND\0",
            b"stream: INSTREAM size limit exceeded. ERROR\0",
            b"stream: Can't allocate memory ERROR\0",
            b"stream: OK FOUND but also OK\0",
            b"stream: Foo FOUND\nstream: OK\0",
            b"\0",
            b"",
            b"UNKNOWN COMMAND\0",
        ] {
            assert!(
                parse_reply(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(
            "tcp://127.0.0.1:3310".parse::<ClamdAddr>(),
            Ok(ClamdAddr::Tcp(_))
        ));
        assert!(matches!(
            "unix:///run/clamav/clamd.ctl".parse::<ClamdAddr>(),
            Ok(ClamdAddr::Unix(_))
        ));
        assert!("clamd:3310".parse::<ClamdAddr>().is_err());
        assert!("tcp://host".parse::<ClamdAddr>().is_err());
    }
}
