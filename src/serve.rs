//! `lookalike serve`: the built site over HTTP, bound to loopback.
//!
//! Built on hyper and tower-http's static file service rather than hand-
//! written HTTP: precompressed `.gz` files, conditional requests (ETag,
//! Last-Modified), byte ranges (206, If-Range) and correct MIME types
//! (WebAssembly streaming compilation requires `application/wasm`) come from
//! well-kept code. What this module adds is the policy that makes it safe to
//! leave running while strangers connect:
//! - a cap on open connections (past it, new ones wait in the kernel's
//!   backlog instead of costing a task and buffers each);
//! - a deadline for a request's headers and a bound on their size, so slow
//!   or endless headers are let go;
//! - read and write timeouts on every connection, so a client that stops
//!   reading is dropped instead of holding a file and a task forever;
//! - files streamed in chunks, never read whole per request;
//! - the site root holds for every path served, the `.gz` sibling included:
//!   a path (or a link on it) that resolves outside the root is not found.

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;
use tower_http::services::ServeDir;

/// Limits for a server that strangers may connect to.
#[derive(Debug, Clone)]
pub struct ServeLimits {
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// A request's headers must arrive within this.
    pub header_timeout: Duration,
    /// A connection that reads or writes nothing for this long is closed.
    pub io_timeout: Duration,
    /// Bytes buffered per connection (the request line and headers must fit).
    pub max_header_bytes: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(30),
            max_header_bytes: 16 * 1024,
        }
    }
}

/// Binds 127.0.0.1:`port` (0 picks a free port) and serves `root` until the
/// process ends. `on_ready` receives the bound address before the first
/// connection is accepted.
pub fn serve(root: &Path, port: u16, on_ready: impl FnOnce(SocketAddr)) -> Result<()> {
    serve_with(root, port, &ServeLimits::default(), on_ready)
}

pub fn serve_with(
    root: &Path,
    port: u16,
    limits: &ServeLimits,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<()> {
    let root = root.canonicalize().with_context(|| format!("site folder {}", root.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the server's runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .with_context(|| format!("binding 127.0.0.1:{port}"))?;
        on_ready(listener.local_addr()?);
        accept_loop(listener, Arc::new(Site::new(root)), limits.clone()).await
    })
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    site: Arc<Site>,
    limits: ServeLimits,
) -> Result<()> {
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    loop {
        let permit = permits.clone().acquire_owned().await.context("connection limit")?;
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors or a connection reset while
                // queued: wait a moment rather than spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let mut timed = tokio_io_timeout::TimeoutStream::new(stream);
        timed.set_read_timeout(Some(limits.io_timeout));
        timed.set_write_timeout(Some(limits.io_timeout));
        let site = site.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let site = site.clone();
                async move { Ok::<_, std::convert::Infallible>(site.respond(request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                // A client may shut its side after sending the request and
                // still wait for the answer; the timeouts bound how long.
                .half_close(true)
                .max_buf_size(limits.max_header_bytes.max(8192))
                .serve_connection(TokioIo::new(Box::pin(timed)), service)
                .await;
            drop(permit);
        });
    }
}

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// The site folder and the static file service over it.
struct Site {
    root: PathBuf,
    files: ServeDir,
    /// `LOOKALIKE_SERVE_LOG=1` prints one line per response (`bench web`
    /// counts the bytes a first visit costs from it, service worker included).
    log: bool,
}

impl Site {
    fn new(root: PathBuf) -> Self {
        let files =
            ServeDir::new(&root).precompressed_gzip().append_index_html_on_directories(true);
        Self { root, files, log: std::env::var_os("LOOKALIKE_SERVE_LOG").is_some() }
    }

    async fn respond(&self, mut request: Request<Incoming>) -> Response<Body> {
        let target = request.uri().path().to_string();
        if request.headers().contains_key(header::IF_RANGE) && !self.if_range_holds(&request).await
        {
            // The client's copy is stale: send the whole file, not a range of
            // the new one spliced into the old (RFC 9110, 13.1.5).
            request.headers_mut().remove(header::RANGE);
        }
        let mut response = if escapes_root(&self.root, &target) {
            plain(StatusCode::NOT_FOUND, "not found")
        } else {
            match self.files.clone().oneshot(request).await {
                Ok(response) => {
                    response.map(|body| body.map_err(std::io::Error::other).boxed_unsync())
                }
                Err(never) => match never {},
            }
        };
        let headers = response.headers_mut();
        // Revalidate every time (a 304 when nothing changed): a rebuilt
        // site is seen at once.
        headers.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-cache"));
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
        if self.log {
            let bytes = response
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("0");
            eprintln!("served {target} {} {bytes}", response.status().as_u16());
        }
        response
    }
}

impl Site {
    /// Whether an `If-Range` validator still names the current file: equal
    /// to its strong ETag or to its Last-Modified date. The static file
    /// service answers ranges but does not read If-Range, so the file's
    /// validators are looked up with a HEAD of the same target.
    async fn if_range_holds(&self, request: &Request<Incoming>) -> bool {
        let Some(wanted) = request.headers().get(header::IF_RANGE).and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let mut head = Request::builder().method(hyper::Method::HEAD).uri(request.uri().clone());
        if let Some(encoding) = request.headers().get(header::ACCEPT_ENCODING) {
            head = head.header(header::ACCEPT_ENCODING, encoding);
        }
        let Ok(head) = head.body(http_body_util::Empty::<Bytes>::new()) else { return false };
        let Ok(current) = self.files.clone().oneshot(head).await;
        let validator = |name| current.headers().get(name).and_then(|v| v.to_str().ok());
        if wanted.starts_with('"') {
            validator(header::ETAG) == Some(wanted)
        } else {
            validator(header::LAST_MODIFIED) == Some(wanted)
        }
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let body = Full::new(Bytes::from_static(text.as_bytes()))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain"));
    response
}

/// Whether serving `target` could read a file outside `root` (canonical):
/// the file it names, the `index.html` of a folder, or the `.gz` beside
/// either, reached through a symbolic link that leads out. A target that
/// is not a plain path under the root is refused outright; one naming
/// nothing is left to the file service (a 404).
fn escapes_root(root: &Path, target: &str) -> bool {
    let Ok(decoded) = percent_encoding::percent_decode_str(target).decode_utf8() else {
        return true;
    };
    let relative = Path::new(decoded.trim_start_matches('/'));
    if relative.components().any(|c| !matches!(c, Component::Normal(_))) || decoded.contains('\0') {
        return true;
    }
    let file = root.join(relative);
    let mut candidates = vec![file.clone()];
    if file.is_dir() {
        candidates.push(file.join("index.html"));
    }
    let gz: Vec<PathBuf> =
        candidates.iter().map(|p| PathBuf::from(format!("{}.gz", p.display()))).collect();
    candidates.extend(gz);
    candidates.iter().any(|path| match path.canonicalize() {
        Ok(real) => !real.starts_with(root),
        // A dangling link is refused too; a path that is simply absent is not.
        Err(_) => path.symlink_metadata().is_ok(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    /// Raw HTTP over loopback: the headers and body of one GET.
    fn get(addr: SocketAddr, path: &str, headers: &str) -> (String, Vec<u8>) {
        let mut stream = TcpStream::connect(addr).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n")
            .unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        (String::from_utf8_lossy(&response[..split]).to_string(), response[split + 4..].to_vec())
    }

    fn start(root: &Path) -> SocketAddr {
        let (tx, rx) = std::sync::mpsc::channel();
        let served = root.to_path_buf();
        std::thread::spawn(move || serve(&served, 0, |addr| tx.send(addr).unwrap()));
        rx.recv().unwrap()
    }

    fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
        head.lines().find_map(|l| {
            l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())
        })
    }

    #[test]
    fn paths_cannot_escape_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("site");
        std::fs::create_dir_all(root.join("www")).unwrap();
        std::fs::write(root.join("index.html"), "hi").unwrap();
        std::fs::write(root.join("www/a b.js"), "x").unwrap();
        std::fs::write(dir.path().join("secret.txt"), "private").unwrap();
        let root = root.canonicalize().unwrap();
        let addr = start(&root);
        let (head, body) = get(addr, "/", "");
        assert!(head.starts_with("HTTP/1.1 200") && body == b"hi", "{head}");
        let (head, body) = get(addr, "/www/a%20b.js?v=1", "");
        assert!(head.starts_with("HTTP/1.1 200") && body == b"x", "{head}");
        for path in ["/../secret.txt", "/www/%2e%2e/%2e%2e/secret.txt", "/missing", "/%00"] {
            let (head, body) = get(addr, path, "");
            assert!(
                head.starts_with("HTTP/1.1 4") && !body.starts_with(b"private"),
                "{path}: {head}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn links_out_of_the_root_are_not_served_even_as_gz() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("site");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(dir.path().join("secret.txt"), "private").unwrap();
        std::fs::write(root.join("app.js"), "plain").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("app.js.gz")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("leak.txt")).unwrap();
        std::os::unix::fs::symlink(dir.path(), root.join("up")).unwrap();
        let addr = start(&root);
        for (path, accept) in [
            ("/app.js", "Accept-Encoding: gzip\r\n"),
            ("/app.js", ""),
            ("/leak.txt", ""),
            ("/up/secret.txt", ""),
        ] {
            let (head, body) = get(addr, path, accept);
            assert!(
                head.starts_with("HTTP/1.1 404") && body != b"private",
                "{path} {accept}: {head}"
            );
        }
    }

    #[test]
    fn precompressed_files_revalidation_and_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(root.join("a.js"), "plain text").unwrap();
        std::fs::write(root.join("a.js.gz"), "zipped").unwrap();
        std::fs::write(root.join("m.wasm"), b"\0asm").unwrap();
        let addr = start(root);
        let (head, body) = get(addr, "/a.js", "Accept-Encoding: br, gzip\r\n");
        assert!(header(&head, "content-encoding") == Some("gzip") && body == b"zipped", "{head}");
        let (head, body) = get(addr, "/a.js", "");
        assert!(header(&head, "content-encoding").is_none() && body == b"plain text", "{head}");
        assert_eq!(header(&head, "cache-control"), Some("no-cache"));
        let (head, _) = get(addr, "/m.wasm", "");
        assert_eq!(header(&head, "content-type"), Some("application/wasm"), "{head}");
        let modified = header(&head, "last-modified").expect("a validator").to_string();
        let (head, body) = get(addr, "/m.wasm", &format!("If-Modified-Since: {modified}\r\n"));
        assert!(head.starts_with("HTTP/1.1 304") && body.is_empty(), "{head}");
        // Byte ranges, and If-Range with a validator that no longer matches.
        let (head, body) = get(addr, "/a.js", "Range: bytes=2-4\r\n");
        assert!(head.starts_with("HTTP/1.1 206") && body == b"ain", "{head}");
        assert_eq!(header(&head, "content-range"), Some("bytes 2-4/10"));
        let (head, body) =
            get(addr, "/a.js", "Range: bytes=2-4\r\nIf-Range: Wed, 21 Oct 2015 07:28:00 GMT\r\n");
        assert!(head.starts_with("HTTP/1.1 200") && body == b"plain text", "{head}");
        let etag = get(addr, "/a.js", "")
            .0
            .lines()
            .find_map(|l| l.strip_prefix("etag: "))
            .expect("an ETag")
            .to_string();
        let (head, body) = get(addr, "/a.js", &format!("Range: bytes=2-4\r\nIf-Range: {etag}\r\n"));
        assert!(head.starts_with("HTTP/1.1 206") && body == b"ain", "{head}");
    }

    #[test]
    fn oversized_headers_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "a").unwrap();
        let addr = start(dir.path());
        let mut stream = TcpStream::connect(addr).unwrap();
        let huge = "x".repeat(64 * 1024);
        let _ = write!(stream, "GET /a.txt HTTP/1.1\r\nHost: x\r\nX-Big: {huge}\r\n\r\n");
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let text = String::from_utf8_lossy(&response);
        assert!(response.is_empty() || text.starts_with("HTTP/1.1 431"), "{text}");
    }
}
