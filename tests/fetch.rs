//! Image fetching against a misbehaving HTTP server on 127.0.0.1, and a
//! catalog of URLs built into a site: what is good is kept, what is bad is
//! skipped with its reason, and nothing is downloaded twice.

mod common;

use lookalike::fetch::{FetchOptions, Fetcher};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A loopback server whose routes misbehave on purpose; counts requests per path.
struct Server {
    base: String,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl Server {
    fn start(jpeg: Vec<u8>) -> Server {
        Self::start_on("127.0.0.1", jpeg)
    }

    fn start_on(address: &str, jpeg: Vec<u8>) -> Server {
        let listener = TcpListener::bind((address, 0)).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let (counts, jpeg) = (Arc::clone(&hits), Arc::new(jpeg));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (counts, jpeg) = (Arc::clone(&counts), Arc::clone(&jpeg));
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap_or(0);
                    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                    loop {
                        let mut header = String::new();
                        if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                            break;
                        }
                    }
                    let hit = {
                        let mut counts = counts.lock().unwrap();
                        let n = counts.entry(path.clone()).or_default();
                        *n += 1;
                        *n
                    };
                    respond(stream, &path, hit, &jpeg);
                });
            }
        });
        Server { base, hits }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

fn respond(mut stream: std::net::TcpStream, path: &str, hit: usize, jpeg: &[u8]) {
    let send = |stream: &mut std::net::TcpStream, status: &str, extra: &str, body: &[u8]| {
        let _ = write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
            body.len()
        );
        let _ = stream.write_all(body);
    };
    match path {
        "/good.jpg" | "/also-good.jpg" => {
            send(&mut stream, "200 OK", "Content-Type: text/plain\r\n", jpeg)
        }
        "/flaky.jpg" if hit < 3 => send(&mut stream, "503 Service Unavailable", "", b"busy"),
        "/flaky.jpg" => send(&mut stream, "200 OK", "", jpeg),
        "/slow.jpg" => {
            std::thread::sleep(Duration::from_millis(1500));
            send(&mut stream, "200 OK", "", jpeg)
        }
        "/redirect" => send(&mut stream, "302 Found", "Location: /good.jpg\r\n", b""),
        "/loop" => send(&mut stream, "302 Found", "Location: /loop\r\n", b""),
        away if away.starts_with("/away?") => {
            send(&mut stream, "302 Found", &format!("Location: {}\r\n", &away[6..]), b"")
        }
        "/big.jpg" => send(&mut stream, "200 OK", "", &vec![0u8; 300_000]),
        "/truncated.jpg" => {
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                jpeg.len()
            );
            let _ = stream.write_all(&jpeg[..jpeg.len() / 3]);
        }
        "/page.html" => send(
            &mut stream,
            "200 OK",
            "Content-Type: image/jpeg\r\n",
            b"<html>not an image</html>",
        ),
        _ => send(&mut stream, "404 Not Found", "", b"no"),
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lookalike-fetch-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sample_jpeg() -> Vec<u8> {
    std::fs::read(common::data_dir().join("fashion-product-images/images/1563.jpg")).unwrap()
}

fn fetcher(cache: &Path) -> Fetcher {
    Fetcher::new(FetchOptions {
        timeout: Duration::from_millis(800),
        retries: 3,
        backoff: Duration::from_millis(20),
        max_bytes: 200_000,
        ..FetchOptions::new(cache.to_path_buf())
    })
}

#[test]
fn downloads_retry_what_may_pass_and_refuse_what_will_not() {
    let jpeg = sample_jpeg();
    let server = Server::start(jpeg.clone());
    let cache = scratch("policy");
    let fetcher = fetcher(&cache);
    let get = |path: &str| fetcher.bytes(Path::new("/"), &server.url(path));

    assert_eq!(get("/good.jpg").unwrap(), jpeg, "Content-Type is not trusted, bytes are");
    assert_eq!(get("/flaky.jpg").unwrap(), jpeg);
    assert_eq!(server.hits("/flaky.jpg"), 3, "two 503s, then success");
    assert_eq!(get("/redirect").unwrap(), jpeg);

    let err = get("/missing.jpg").unwrap_err();
    assert!(err.contains("HTTP 404"), "{err}");
    assert_eq!(server.hits("/missing.jpg"), 1, "a 404 is not retried");
    let err = get("/big.jpg").unwrap_err();
    assert!(err.contains("over the 200000 byte limit"), "{err}");
    assert_eq!(server.hits("/big.jpg"), 1, "an oversized response is not retried");
    let err = get("/truncated.jpg").unwrap_err();
    assert!(err.contains("after 4 attempts"), "{err}");
    let err = get("/slow.jpg").unwrap_err();
    assert!(err.contains("after 4 attempts"), "a timeout is retried: {err}");
}

/// A "public" server (127.0.0.1 plays one) that redirects to an internal
/// one (127.0.0.2, loopback like 169.254.169.254 or 10.0.0.1 would be
/// private): refused unless the user allows it; redirects that stay public,
/// or start internal, are followed.
#[test]
fn redirects_from_public_to_internal_addresses_are_refused_unless_allowed() {
    let jpeg = sample_jpeg();
    let public = Server::start(jpeg.clone());
    let internal = Server::start_on("127.0.0.2", jpeg.clone());
    let only_127_0_0_2_is_internal =
        |ip: std::net::IpAddr| ip == std::net::IpAddr::from([127, 0, 0, 2]);
    let fetcher = |allow: bool, cache: &Path| {
        Fetcher::new(FetchOptions {
            timeout: Duration::from_millis(800),
            retries: 0,
            allow_private_redirects: allow,
            is_internal: only_127_0_0_2_is_internal,
            ..FetchOptions::new(cache.to_path_buf())
        })
    };
    let to_internal = public.url(&format!("/away?{}", internal.url("/good.jpg")));
    let err = fetcher(false, &scratch("redirect-refused"))
        .bytes(Path::new("/"), &to_internal)
        .unwrap_err();
    assert!(err.contains("refused") && err.contains("--allow-private-redirects"), "{err}");
    assert_eq!(internal.hits("/good.jpg"), 0, "the internal server is never reached");
    assert_eq!(
        fetcher(true, &scratch("redirect-allowed")).bytes(Path::new("/"), &to_internal).unwrap(),
        jpeg
    );
    assert_eq!(internal.hits("/good.jpg"), 1);
    // Public to public, and a catalog that names the internal host itself.
    assert_eq!(
        fetcher(false, &scratch("redirect-public"))
            .bytes(Path::new("/"), &public.url("/redirect"))
            .unwrap(),
        jpeg
    );
    let internal_to_internal = internal.url(&format!("/away?{}", internal.url("/also-good.jpg")));
    assert_eq!(
        fetcher(false, &scratch("redirect-internal"))
            .bytes(Path::new("/"), &internal_to_internal)
            .unwrap(),
        jpeg
    );
    // A redirect loop ends with a named error.
    let err = fetcher(false, &scratch("redirect-loop"))
        .bytes(Path::new("/"), &public.url("/loop"))
        .unwrap_err();
    assert!(err.contains("more than 5 redirects"), "{err}");
}

#[test]
fn internal_addresses_are_recognised() {
    use lookalike::fetch::is_internal_address;
    for internal in [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "::1",
        "fd00::1",
        "fe80::1",
        "::ffff:10.0.0.1",
    ] {
        assert!(is_internal_address(internal.parse().unwrap()), "{internal}");
    }
    for public in ["93.184.216.34", "8.8.8.8", "172.32.0.1", "2606:4700::1111"] {
        assert!(!is_internal_address(public.parse().unwrap()), "{public}");
    }
}

#[test]
fn a_rerun_downloads_nothing_it_already_has() {
    let server = Server::start(sample_jpeg());
    let cache = scratch("cache");
    let urls = [server.url("/good.jpg"), server.url("/also-good.jpg"), server.url("/missing.jpg")];
    let images: Vec<&str> = urls.iter().map(String::as_str).collect();
    let failures = fetcher(&cache).prefetch(&images);
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].0, 2);
    let again = fetcher(&cache).prefetch(&images);
    assert_eq!(again.len(), 1);
    assert_eq!((server.hits("/good.jpg"), server.hits("/also-good.jpg")), (1, 1));
    assert_eq!(server.hits("/missing.jpg"), 2, "failures are not cached");
}

#[test]
fn a_catalog_of_urls_builds_and_reports_what_it_skipped() {
    use lookalike::catalog::Columns;
    use lookalike::site_builder::{BuildOptions, CropSpec, Storage, build_site};
    use lookalike_forest::{ForestParams, Metric};

    let server = Server::start(sample_jpeg());
    let dir = scratch("site");
    let local = common::data_dir().join("fashion-product-images/images");
    let mut csv = String::from("id,image\n");
    for id in ["1563", "1580", "10049", "10082"] {
        csv.push_str(&format!("{id},{}\n", local.join(format!("{id}.jpg")).display()));
    }
    for (id, path) in [
        ("web-1", "/good.jpg"),
        ("web-2", "/page.html"),
        ("web-3", "/missing.jpg"),
        ("web-4", "/flaky.jpg"),
    ] {
        csv.push_str(&format!("{id},{}\n", server.url(path)));
    }
    std::fs::write(dir.join("catalog.csv"), csv).unwrap();
    let assets = Some(common::fake_assets(&dir));
    let options = BuildOptions {
        catalog: dir.join("catalog.csv"),
        out: dir.join("site"),
        columns: Columns::default(),
        model: common::burnpack_weights(),
        assets,
        forest: ForestParams::new(Metric::Angular),
        storage: Storage::default(),
        thumb_size: 64,
        batch_size: 4,
        cache_dir: dir.join("cache"),
        skip_bad: false,
        precompute: None,
        crops: CropSpec::Foreground,
        detector: None,
        labels: None,
        learn: Vec::new(),
        colour_weight: 0.0,
        allow_private_redirects: false,
        layout: Default::default(),
    };
    let report = build_site(&options).unwrap();
    assert_eq!(report.products, 6);
    let skipped: Vec<(&str, &str)> =
        report.skipped.iter().map(|s| (s.id.as_str(), s.reason.as_str())).collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(
        skipped[0].0 == "web-2" && skipped[0].1.contains("not a recognised image format"),
        "{skipped:?}"
    );
    assert!(skipped[1].0 == "web-3" && skipped[1].1.contains("HTTP 404"), "{skipped:?}");

    // An unchanged rerun embeds and downloads nothing.
    let again = build_site(&options).unwrap();
    assert_eq!(again.from_cache, 6);
    assert_eq!(server.hits("/good.jpg"), 1);
}
