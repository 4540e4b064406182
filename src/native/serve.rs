//! `lookalike serve`: a small static file server for the built site, bound to
//! loopback only. Enough HTTP for a browser: GET and HEAD, correct MIME types
//! (WebAssembly streaming compilation requires `application/wasm`), no
//! directory listings, and no way out of the site folder.

use anyhow::{Context, Result};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};

/// Binds 127.0.0.1:`port` (0 picks a free port) and serves `root` forever.
/// `on_ready` receives the bound address before the first request is accepted.
pub fn serve(root: &Path, port: u16, on_ready: impl FnOnce(std::net::SocketAddr)) -> Result<()> {
    // `LOOKALIKE_SERVE_LOG=1` prints one line per response (`bench web`
    // counts the bytes a first visit costs from it, service worker included).
    let log = std::env::var_os("LOOKALIKE_SERVE_LOG").is_some();
    let root = root.canonicalize().with_context(|| format!("site folder {}", root.display()))?;
    let listener = TcpListener::bind(("127.0.0.1", port)).with_context(|| format!("binding 127.0.0.1:{port}"))?;
    on_ready(listener.local_addr()?);
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let root = root.clone();
        std::thread::spawn(move || {
            let _ = handle(stream, &root, log);
        });
    }
    Ok(())
}

fn handle(mut stream: TcpStream, root: &Path, log: bool) -> std::io::Result<()> {
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Read the headers; only Accept-Encoding and If-None-Match matter here.
    let mut gzip_ok = false;
    let mut if_none_match = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("accept-encoding")
        {
            gzip_ok = value.split(',').any(|v| v.trim().split(';').next() == Some("gzip"));
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("if-none-match")
        {
            if_none_match = Some(value.trim().to_string());
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    if method != "GET" && method != "HEAD" {
        return respond(&mut stream, "405 Method Not Allowed", "text/plain", b"method not allowed", true);
    }
    let Some(path) = resolve(root, target) else {
        return respond(&mut stream, "404 Not Found", "text/plain", b"not found", method == "GET");
    };
    // The builder writes a .gz beside compressible files; send it when the
    // client takes gzip (as static hosts with precompressed files do).
    let gz = PathBuf::from(format!("{}.gz", path.display()));
    let (file, encoding) = if gzip_ok && gz.is_file() { (gz, "Content-Encoding: gzip\r\n") } else { (path.clone(), "") };
    // Revalidation (Cache-Control: no-cache) costs a 304 when nothing changed.
    let tag = etag(&file).unwrap_or_default();
    if !tag.is_empty() && if_none_match.as_deref() == Some(tag.as_str()) {
        let headers = format!("ETag: {tag}\r\n");
        if log {
            eprintln!("served {target} 304 0");
        }
        return respond_with(&mut stream, "304 Not Modified", content_type(&path), b"", false, &headers);
    }
    match std::fs::read(&file) {
        Ok(body) => {
            if log {
                eprintln!("served {target} 200 {}", body.len());
            }
            let headers = format!("{encoding}Vary: Accept-Encoding\r\nETag: {tag}\r\n");
            respond_with(&mut stream, "200 OK", content_type(&path), &body, method == "GET", &headers)
        }
        Err(_) => respond(&mut stream, "404 Not Found", "text/plain", b"not found", method == "GET"),
    }
}

/// A validator for a file's current content: its size and modification time.
fn etag(path: &Path) -> Option<String> {
    let meta = path.metadata().ok()?;
    let modified = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(format!("\"{:x}-{:x}\"", meta.len(), modified.as_nanos()))
}

/// Maps a request target to a file under `root`, or `None` if it would
/// escape the root or names no file.
fn resolve(root: &Path, target: &str) -> Option<PathBuf> {
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let decoded = percent_decode(path)?;
    let relative = Path::new(decoded.trim_start_matches('/'));
    if relative.components().any(|c| !matches!(c, Component::Normal(_))) {
        return None;
    }
    let mut full = root.join(relative);
    if full.is_dir() {
        full = full.join("index.html");
    }
    let canonical = full.canonicalize().ok()?;
    (canonical.starts_with(root) && canonical.is_file()).then_some(canonical)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "wasm" => "application/wasm",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

fn respond(stream: &mut TcpStream, status: &str, mime: &str, body: &[u8], with_body: bool) -> std::io::Result<()> {
    respond_with(stream, status, mime, body, with_body, "")
}

fn respond_with(stream: &mut TcpStream, status: &str, mime: &str, body: &[u8], with_body: bool, extra: &str) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {mime}\r\nContent-Length: {}\r\n{extra}Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    if with_body {
        stream.write_all(body)?;
    }
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_escape_the_root() {
        let root = std::env::temp_dir().join(format!("lookalike-serve-{}", std::process::id()));
        std::fs::create_dir_all(root.join("www")).unwrap();
        std::fs::write(root.join("index.html"), "hi").unwrap();
        std::fs::write(root.join("www/a b.js"), "x").unwrap();
        let root = root.canonicalize().unwrap();
        assert_eq!(resolve(&root, "/"), Some(root.join("index.html")));
        assert_eq!(resolve(&root, "/www/a%20b.js?v=1"), Some(root.join("www/a b.js")));
        assert_eq!(resolve(&root, "/../etc/passwd"), None);
        assert_eq!(resolve(&root, "/www/%2e%2e/%2e%2e/etc/passwd"), None);
        assert_eq!(resolve(&root, "/missing"), None);
        std::fs::remove_dir_all(root).unwrap();
    }

    /// Raw HTTP over loopback: the headers and body of one GET.
    fn get(addr: std::net::SocketAddr, path: &str, headers: &str) -> (String, Vec<u8>) {
        use std::io::Read;
        let mut stream = TcpStream::connect(addr).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n").unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let split = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        (String::from_utf8_lossy(&response[..split]).to_string(), response[split + 4..].to_vec())
    }

    #[test]
    fn precompressed_files_and_revalidation() {
        let root = std::env::temp_dir().join(format!("lookalike-serve-gz-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("a.js"), "plain").unwrap();
        std::fs::write(root.join("a.js.gz"), "zipped").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let served = root.clone();
        std::thread::spawn(move || serve(&served, 0, |addr| tx.send(addr).unwrap()));
        let addr = rx.recv().unwrap();
        let (head, body) = get(addr, "/a.js", "Accept-Encoding: br, gzip\r\n");
        assert!(head.contains("Content-Encoding: gzip") && body == b"zipped", "{head}");
        let (head, body) = get(addr, "/a.js", "");
        assert!(!head.contains("Content-Encoding") && body == b"plain", "{head}");
        let etag = head.lines().find_map(|l| l.strip_prefix("ETag: ")).unwrap().to_string();
        let (head, body) = get(addr, "/a.js", &format!("If-None-Match: {etag}\r\n"));
        assert!(head.starts_with("HTTP/1.1 304") && body.is_empty(), "{head}");
        std::fs::remove_dir_all(root).unwrap();
    }
}
