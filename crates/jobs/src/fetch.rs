//! Fetching a job's `source_url`, safely: a size cap, a time cap and a redirect cap, and no
//! request to loopback, private, link-local (cloud metadata), shared, multicast or reserved
//! addresses unless the allow-list names them. The check is made on the addresses the name
//! resolves to, for the first URL and every redirect, and the connection is pinned to the
//! checked address (no second lookup a DNS rebinding could answer differently).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;

use crate::pipeline::PipelineError;

/// One allow-list entry: an address block in CIDR form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `fd00::/8` or a bare address (a block of one).
    pub fn parse(s: &str) -> Result<Self, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix must be 0..={max}"))?,
            None => max,
        };
        Ok(Self { addr, prefix })
    }

    /// Whether `ip` lies in this block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Limits of source fetches.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// Largest body read.
    pub max_bytes: u64,
    /// Time limit of the whole fetch, redirects included.
    pub timeout: Duration,
    /// Most redirects followed.
    pub max_redirects: u32,
    /// Blocks that may be fetched although they are not public.
    pub allow: Vec<Cidr>,
}

/// IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Why an address is not public, or `None` when it is.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => non_public_v4(v4),
        IpAddr::V6(v6) => non_public_v6(v6),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        // 169.254.0.0/16, including the cloud metadata address 169.254.169.254.
        Some("link-local (cloud metadata)")
    } else if ip.is_unspecified() || o[0] == 0 {
        Some("unspecified")
    } else if o[0] == 100 && (64..128).contains(&o[1]) {
        Some("shared (carrier-grade NAT)")
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        Some("IETF protocol assignments (metadata of some clouds)")
    } else if o[0] == 198 && (o[1] == 18 || o[1] == 19) {
        Some("benchmarking")
    } else if ip.is_multicast() || ip.is_broadcast() || o[0] >= 240 {
        Some("multicast or reserved")
    } else if ip.is_documentation() {
        Some("documentation")
    } else {
        None
    }
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let seg = ip.segments();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_unspecified() {
        Some("unspecified")
    } else if (seg[0] & 0xfe00) == 0xfc00 {
        // fc00::/7, including AWS's fd00:ec2::254 metadata address.
        Some("unique local (private)")
    } else if (seg[0] & 0xffc0) == 0xfe80 {
        Some("link-local")
    } else if ip.is_multicast() {
        Some("multicast")
    } else if seg[0] == 0x2001 && seg[1] == 0x0db8 {
        Some("documentation")
    } else if seg[0] == 0x64 && seg[1] == 0xff9b {
        Some("NAT64 (may reach private IPv4)")
    } else {
        None
    }
}

fn refused(message: String) -> PipelineError {
    PipelineError::Permanent {
        code: "source_url_refused",
        message,
    }
}

fn failed(message: String, retry: bool) -> PipelineError {
    if retry {
        PipelineError::Retryable {
            code: "source_fetch_failed",
            message,
        }
    } else {
        PipelineError::Permanent {
            code: "source_fetch_failed",
            message,
        }
    }
}

/// The first address of `url`'s host that the policy allows, or why none is. Every resolved
/// address must pass: a name that resolves to a public and a private address is refused.
async fn checked_address(
    url: &reqwest::Url,
    cfg: &FetchConfig,
) -> Result<SocketAddr, PipelineError> {
    let host = url
        .host_str()
        .ok_or_else(|| refused("the URL has no host".into()))?;
    let port = url
        .port_or_known_default()
        .ok_or_else(|| refused("the URL has no port".into()))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((bare, port))
            .await
            .map_err(|e| failed(format!("resolving {host} failed: {e}"), true))?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(failed(format!("{host} has no address"), true));
    }
    for a in &addrs {
        if let Some(why) = non_public(a.ip())
            && !cfg.allow.iter().any(|c| c.contains(a.ip()))
        {
            return Err(refused(format!(
                "{host} resolves to {}, a {why} address; refused (PHOTO_API_SOURCE_URL_ALLOW can allow it)",
                a.ip()
            )));
        }
    }
    Ok(addrs[0])
}

/// The address a webhook delivery to `url` may connect to under the same rules as source URLs
/// (`allow` lifts them for the listed blocks), or why it may not.
pub async fn webhook_address(url: &str, allow: &[Cidr]) -> Result<(String, SocketAddr), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    let cfg = FetchConfig {
        max_bytes: 0,
        timeout: Duration::ZERO,
        max_redirects: 0,
        allow: allow.to_vec(),
    };
    let addr = checked_address(&parsed, &cfg)
        .await
        .map_err(|e| e.to_string())?;
    Ok((parsed.host_str().unwrap_or_default().to_owned(), addr))
}

/// Parses and checks a source URL's form (scheme, no credentials); what the API also checks.
pub fn parse_source_url(s: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(s).map_err(|e| format!("source_url is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("source_url must be http:// or https://".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("source_url must not carry credentials".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("source_url has no host".into());
    }
    Ok(url)
}

/// Fetches `url` under the policy; the body, at most `max_bytes`.
pub async fn fetch_source(url: &str, cfg: &FetchConfig) -> Result<Bytes, PipelineError> {
    let fut = async {
        let mut url = parse_source_url(url).map_err(refused)?;
        let mut redirects = 0;
        loop {
            let addr = checked_address(&url, cfg).await?;
            let host = url.host_str().unwrap_or_default().to_owned();
            // Pinned: the connection goes to the address just checked.
            let client = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .resolve(&host, addr)
                .no_proxy()
                .build()
                .map_err(|e| failed(format!("building the HTTP client failed: {e}"), true))?;
            let mut res = client
                .get(url.clone())
                .header("user-agent", "photo-api-fetch")
                .send()
                .await
                .map_err(|e| failed(format!("fetching {url} failed: {e}"), true))?;
            let status = res.status();
            if status.is_redirection() {
                redirects += 1;
                if redirects > cfg.max_redirects {
                    return Err(refused(format!(
                        "more than {} redirects",
                        cfg.max_redirects
                    )));
                }
                let loc = res
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .ok_or_else(|| failed(format!("{status} without a Location"), false))?;
                let next = url
                    .join(loc)
                    .map_err(|e| refused(format!("bad redirect {loc:?}: {e}")))?;
                url = parse_source_url(next.as_str()).map_err(refused)?;
                continue;
            }
            if !status.is_success() {
                return Err(failed(
                    format!("fetching {url} answered {status}"),
                    status.is_server_error() || status.as_u16() == 429,
                ));
            }
            if res.content_length().is_some_and(|n| n > cfg.max_bytes) {
                return Err(PipelineError::Permanent {
                    code: "image_too_large",
                    message: format!("the source is larger than {} bytes", cfg.max_bytes),
                });
            }
            let mut body = Vec::new();
            while let Some(chunk) = res
                .chunk()
                .await
                .map_err(|e| failed(format!("reading {url} failed: {e}"), true))?
            {
                if (body.len() + chunk.len()) as u64 > cfg.max_bytes {
                    return Err(PipelineError::Permanent {
                        code: "image_too_large",
                        message: format!("the source is larger than {} bytes", cfg.max_bytes),
                    });
                }
                body.extend_from_slice(&chunk);
            }
            return Ok(Bytes::from(body));
        }
    };
    tokio::time::timeout(cfg.timeout, fut).await.map_err(|_| {
        failed(
            format!("fetching the source took longer than {:?}", cfg.timeout),
            true,
        )
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    #[test]
    fn non_public_addresses_are_named() {
        for (a, want) in [
            ("127.0.0.1", true),
            ("10.1.2.3", true),
            ("172.16.0.1", true),
            ("192.168.1.1", true),
            ("169.254.169.254", true),
            ("100.100.100.200", true),
            ("192.0.0.192", true),
            ("0.0.0.0", true),
            ("::1", true),
            ("fd00:ec2::254", true),
            ("fe80::1", true),
            ("::ffff:127.0.0.1", true),
            ("::ffff:169.254.169.254", true),
            ("8.8.8.8", false),
            ("1.1.1.1", false),
            ("2606:4700:4700::1111", false),
        ] {
            assert_eq!(non_public(ip(a)).is_some(), want, "{a}");
        }
    }

    #[test]
    fn cidr_blocks_contain_their_addresses() {
        let c = Cidr::parse("10.0.0.0/8").unwrap_or(Cidr {
            addr: ip("255.255.255.255"),
            prefix: 32,
        });
        assert!(c.contains(ip("10.200.0.1")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.0.0.1")));
        assert!(Cidr::parse("127.0.0.1").is_ok_and(|c| c.contains(ip("127.0.0.1"))));
        assert!(Cidr::parse("fd00::/8").is_ok_and(|c| c.contains(ip("fd12::1"))));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nope").is_err());
    }
}
