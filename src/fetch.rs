//! Getting a product's image bytes: from a local path (relative to the
//! catalog) or an http(s) URL.
//!
//! Downloads run in a bounded pool of threads, with a timeout, retries with
//! exponential backoff for failures that may pass (timeouts, refused
//! connections, 5xx, 429) and none for those that will not (other 4xx), a
//! size cap, and an on-disk cache keyed by URL so a rerun downloads nothing it
//! already has. The real format is sniffed when decoding; a Content-Type
//! header is never trusted.

use crate::fsutil::write_atomic;
use crate::progress::Progress;
use sha2::{Digest, Sha256};
use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Where downloaded images are kept between runs.
    pub cache_dir: PathBuf,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Attempts after the first, for failures that may pass.
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff: Duration,
    /// Larger responses are refused.
    pub max_bytes: u64,
    /// Downloads at once.
    pub parallel: usize,
    /// Follow redirects from a public address to a loopback, private or
    /// link-local one (refused by default: a stranger's catalog could
    /// otherwise reach services on the builder's own network).
    pub allow_private_redirects: bool,
    /// Which addresses count as internal; [`is_internal_address`] except in
    /// tests, which play a public host on one loopback address.
    pub is_internal: fn(IpAddr) -> bool,
}

impl FetchOptions {
    pub fn new(cache_dir: PathBuf) -> Self {
        Self {
            cache_dir,
            timeout: Duration::from_secs(30),
            retries: 3,
            backoff: Duration::from_millis(500),
            max_bytes: 25 * 1024 * 1024,
            parallel: 8,
            allow_private_redirects: false,
            is_internal: is_internal_address,
        }
    }
}

/// Redirects followed at most, per download.
const MAX_REDIRECTS: usize = 5;

/// Loopback, private (RFC 1918, unique local), link-local (cloud metadata
/// services live there), shared (carrier-grade NAT) and unspecified
/// addresses: what a public web server must not redirect a builder to.
pub fn is_internal_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || (a == 100 && (64..128).contains(&b))
                || a == 0
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_internal_address(IpAddr::V4(v4)),
            None => {
                let first = v6.segments()[0];
                v6.is_loopback()
                    || v6.is_unspecified()
                    || (first & 0xfe00) == 0xfc00
                    || (first & 0xffc0) == 0xfe80
            }
        },
    }
}

pub fn is_url(image: &str) -> bool {
    image.starts_with("http://") || image.starts_with("https://")
}

pub struct Fetcher {
    /// For downloads that start at an internal address (the catalog named
    /// it) or when the user allows internal redirects.
    agent: ureq::Agent,
    /// For downloads that start at a public address: its resolver drops
    /// internal addresses when connecting, so a name that resolved public
    /// for the redirect check and internal a moment later (DNS rebinding)
    /// still cannot reach an internal service.
    public_agent: ureq::Agent,
    options: FetchOptions,
}

impl Fetcher {
    pub fn new(options: FetchOptions) -> Self {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(options.timeout))
            .http_status_as_error(false)
            // Redirects are followed here, hop by hop, so each hop's
            // address can be checked (see `try_download`).
            .max_redirects(0)
            .build();
        let agent = ureq::Agent::new_with_config(config.clone());
        let public_only = PublicOnlyResolver { is_internal: options.is_internal };
        let public_agent = ureq::Agent::with_parts(
            config,
            ureq::unversioned::transport::DefaultConnector::new(),
            public_only,
        );
        Self { agent, public_agent, options }
    }

    /// The bytes of `image`: a local file (relative to `base`) or a URL,
    /// from the cache when it was downloaded before.
    pub fn bytes(&self, base: &Path, image: &str) -> Result<Vec<u8>, String> {
        if !is_url(image) {
            let path = base.join(image);
            return std::fs::read(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()));
        }
        let cached = self.cache_path(image);
        if let Ok(bytes) = std::fs::read(&cached) {
            return Ok(bytes);
        }
        let bytes = self.download(image)?;
        // A cache that cannot be written costs a re-download, not the build.
        let _ = write_atomic(&cached, &bytes);
        Ok(bytes)
    }

    /// Downloads every URL among `images` that is not cached yet, in
    /// parallel, with progress; returns the failures by index.
    pub fn prefetch(&self, images: &[&str]) -> Vec<(usize, String)> {
        let todo: Vec<(usize, &str)> = images
            .iter()
            .enumerate()
            .filter(|(_, image)| is_url(image) && !self.cache_path(image).exists())
            .map(|(i, image)| (i, *image))
            .collect();
        if todo.is_empty() {
            return Vec::new();
        }
        let next = AtomicUsize::new(0);
        let failures = Mutex::new(Vec::new());
        let progress = Mutex::new(Progress::new("downloading", todo.len()));
        std::thread::scope(|scope| {
            for _ in 0..self.options.parallel.clamp(1, todo.len()) {
                scope.spawn(|| {
                    while let Some(&(index, url)) = todo.get(next.fetch_add(1, Ordering::Relaxed)) {
                        if let Err(reason) = self.bytes(Path::new(""), url) {
                            failures.lock().expect("no panics while held").push((index, reason));
                        }
                        progress.lock().expect("no panics while held").advance(1);
                    }
                });
            }
        });
        progress.into_inner().expect("threads joined").finish();
        let mut failures = failures.into_inner().expect("threads joined");
        failures.sort();
        failures
    }

    fn cache_path(&self, url: &str) -> PathBuf {
        self.options.cache_dir.join(format!("{:x}", Sha256::digest(url.as_bytes())))
    }

    fn download(&self, url: &str) -> Result<Vec<u8>, String> {
        let mut attempt = 0;
        loop {
            match self.try_download(url) {
                Ok(bytes) => return Ok(bytes),
                Err(Failure { reason, transient }) => {
                    if !transient || attempt >= self.options.retries {
                        let tries = if attempt > 0 {
                            format!(" after {} attempts", attempt + 1)
                        } else {
                            String::new()
                        };
                        return Err(format!("{url}: {reason}{tries}"));
                    }
                    std::thread::sleep(self.options.backoff * 2u32.pow(attempt));
                    attempt += 1;
                }
            }
        }
    }

    fn try_download(&self, url: &str) -> Result<Vec<u8>, Failure> {
        let mut current = url::Url::parse(url)
            .map_err(|e| Failure { reason: format!("bad URL: {e}"), transient: false })?;
        let mut internal = self.touches_internal(&current)?;
        let agent = if internal || self.options.allow_private_redirects {
            &self.agent
        } else {
            &self.public_agent
        };
        let mut hops = 0;
        let mut response = loop {
            let response = agent.get(current.as_str()).call().map_err(|e| Failure {
                reason: e.to_string(),
                transient: !matches!(
                    e,
                    ureq::Error::BadUri(_)
                        | ureq::Error::TooManyRedirects
                        | ureq::Error::RedirectFailed
                ),
            })?;
            if !response.status().is_redirection() {
                break response;
            }
            let location = response.headers().get("location").and_then(|v| v.to_str().ok());
            let Some(next) = location.and_then(|l| current.join(l).ok()) else {
                return Err(Failure {
                    reason: format!(
                        "HTTP {} without a usable Location",
                        response.status().as_u16()
                    ),
                    transient: false,
                });
            };
            hops += 1;
            if hops > MAX_REDIRECTS {
                return Err(Failure {
                    reason: format!("more than {MAX_REDIRECTS} redirects"),
                    transient: false,
                });
            }
            if !matches!(next.scheme(), "http" | "https") {
                return Err(Failure {
                    reason: format!("redirect to a {} URL refused", next.scheme()),
                    transient: false,
                });
            }
            let next_internal = self.touches_internal(&next)?;
            if next_internal && !internal && !self.options.allow_private_redirects {
                return Err(Failure {
                    reason: format!(
                        "redirect from a public address to {} (a loopback, private or link-local address) refused; \
                         pass --allow-private-redirects to follow it",
                        next.host_str().unwrap_or("?")
                    ),
                    transient: false,
                });
            }
            internal = next_internal;
            current = next;
        };
        let status = response.status().as_u16();
        if status != 200 {
            return Err(Failure {
                reason: format!("HTTP {status}"),
                transient: status == 429 || status >= 500,
            });
        }
        let declared = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if let Some(length) = declared.filter(|&l| l > self.options.max_bytes) {
            return Err(Failure {
                reason: format!("{length} bytes, over the {} byte limit", self.options.max_bytes),
                transient: false,
            });
        }
        let bytes = response
            .body_mut()
            .with_config()
            .limit(self.options.max_bytes)
            .read_to_vec()
            .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(limit) => Failure {
                reason: format!("response over the {limit} byte limit"),
                transient: false,
            },
            other => Failure { reason: format!("reading the response: {other}"), transient: true },
        })?;
        if let Some(length) = declared.filter(|&l| l != bytes.len() as u64) {
            return Err(Failure {
                reason: format!("truncated: {} of {length} bytes", bytes.len()),
                transient: true,
            });
        }
        Ok(bytes)
    }
}

impl Fetcher {
    /// Whether `url`'s host resolves to an internal address (any of them).
    /// The name is resolved again when connecting; a host whose answer
    /// changes in between (DNS rebinding) is not caught here: docs/security.md.
    fn touches_internal(&self, url: &url::Url) -> Result<bool, Failure> {
        let host = url
            .host_str()
            .ok_or_else(|| Failure { reason: "URL without a host".into(), transient: false })?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = url.port_or_known_default().unwrap_or(80);
        let addresses = (host, port).to_socket_addrs().map_err(|e| Failure {
            reason: format!("cannot resolve {host}: {e}"),
            transient: true,
        })?;
        Ok(addresses.into_iter().any(|a| (self.options.is_internal)(a.ip())))
    }
}

/// Resolves names as ureq does, then keeps only public addresses.
#[derive(Debug)]
struct PublicOnlyResolver {
    is_internal: fn(IpAddr) -> bool,
}

impl ureq::unversioned::resolver::Resolver for PublicOnlyResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let all = ureq::unversioned::resolver::DefaultResolver::default()
            .resolve(uri, config, timeout)?;
        let mut public = self.empty();
        for address in all.iter().filter(|a| !(self.is_internal)(a.ip())) {
            public.push(*address);
        }
        if public.is_empty() {
            let host = uri.host().unwrap_or("?");
            return Err(ureq::Error::Io(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "{host} resolves to internal addresses only; not connecting from a public download"
                ),
            )));
        }
        Ok(public)
    }
}

struct Failure {
    reason: String,
    /// Worth retrying.
    transient: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use ureq::unversioned::resolver::Resolver;

    /// The connect-time guard: whatever a name resolved to when the redirect
    /// was checked, a public download connects to public addresses only.
    #[test]
    fn public_downloads_never_connect_to_internal_addresses() {
        let resolver = PublicOnlyResolver { is_internal: is_internal_address };
        let config = ureq::config::Config::default();
        let resolve = |uri: &str| {
            resolver.resolve(
                &uri.parse().unwrap(),
                &config,
                ureq::unversioned::transport::NextTimeout::default(),
            )
        };
        for internal in [
            "http://127.0.0.1:8080/a.jpg",
            "http://169.254.169.254/latest/meta-data",
            "http://10.0.0.1/x",
            "http://[::1]:80/",
        ] {
            let err = resolve(internal).unwrap_err().to_string();
            assert!(err.contains("internal addresses only"), "{internal}: {err}");
        }
        let public = resolve("http://93.184.216.34/a.jpg").unwrap();
        assert_eq!(public.len(), 1);
    }
}
