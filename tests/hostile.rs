//! Hostile input, tried as an attacker would: mutated and re-signed index
//! files, hostile TF.js graphs, hostile catalogs in every format, and
//! decompression bombs. Every input of a class runs in a child process
//! (this test binary run again) under an address-space limit and a
//! per-input deadline, so a hang or a blow-up is counted and fails the test
//! instead of stalling CI. Each class prints its tally: inputs tried, named
//! errors, same answer, different answer (only re-signed mutations may
//! legitimately change data), panics, crashes (an abort, as from an
//! allocation over the limit), hangs, and the child's peak memory.

// Children are reaped by wait4 (`wait_with_rusage`), which reads their peak
// memory too; clippy does not see that wait.
#![allow(clippy::zombie_processes)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const CHILD: &str = "LOOKALIKE_HOSTILE_CHILD";

/// Outcome of one input, as the child reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Outcome {
    Error,
    Same,
    Different,
    Panic,
    Crash,
    Hang,
}

#[derive(Debug, Default)]
struct Tally {
    counts: std::collections::BTreeMap<String, usize>,
    tried: usize,
    peak_rss_mb: f64,
    /// The first few inputs that panicked, crashed or hung, for the message.
    failures: Vec<String>,
}

impl Tally {
    fn add(&mut self, outcome: Outcome, case: usize, detail: &str) {
        self.tried += 1;
        *self.counts.entry(format!("{outcome:?}").to_lowercase()).or_default() += 1;
        if matches!(outcome, Outcome::Panic | Outcome::Crash | Outcome::Hang)
            && self.failures.len() < 5
        {
            self.failures.push(format!("case {case} {outcome:?}: {detail}"));
        }
    }

    fn count(&self, outcome: &str) -> usize {
        self.counts.get(outcome).copied().unwrap_or(0)
    }
}

/// Runs cases `0..cases` of `class` in child processes with at most
/// `memory_mb` of address space and `deadline` per case; a child that dies
/// or hangs is replaced and the run goes on after the case that killed it.
fn run_class(class: &str, cases: usize, deadline: Duration, memory_mb: u64) -> Tally {
    let mut tally = Tally::default();
    let mut next = 0;
    while next < cases {
        let mut child = Command::new(std::env::current_exe().unwrap());
        child
            .args(["child_process_entry", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, format!("{class}:{next}:{cases}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let limit = memory_mb * 1024 * 1024;
        // Safety: setrlimit is async-signal-safe; nothing else runs here.
        unsafe {
            child.pre_exec(move || {
                let rlimit = libc::rlimit { rlim_cur: limit, rlim_max: limit };
                if libc::setrlimit(libc::RLIMIT_AS, &rlimit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = child.spawn().expect("the test binary runs again");
        let stdout = child.stdout.take().unwrap();
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let mut hung = false;
        let mut last = Instant::now();
        loop {
            match received.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => {
                    let mut words = line.splitn(4, ' ');
                    if words.next() != Some("case") {
                        continue;
                    }
                    let case: usize = words.next().and_then(|n| n.parse().ok()).unwrap_or(next);
                    let outcome = match words.next() {
                        Some("error") => Outcome::Error,
                        Some("same") => Outcome::Same,
                        Some("different") => Outcome::Different,
                        _ => Outcome::Panic,
                    };
                    tally.add(outcome, case, words.next().unwrap_or(""));
                    next = case + 1;
                    last = Instant::now();
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) if last.elapsed() > deadline => {
                    hung = true;
                    let _ = child.kill();
                    break;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
        let (status, rss) = wait_with_rusage(child.id() as libc::pid_t);
        tally.peak_rss_mb = tally.peak_rss_mb.max(rss);
        if next < cases && (hung || status != 0) {
            let outcome = if hung { Outcome::Hang } else { Outcome::Crash };
            tally.add(outcome, next, &format!("child ended with status {status}"));
            next += 1;
        } else if next < cases {
            panic!("{class}: the child stopped at case {next} of {cases} without a reason");
        }
    }
    tally
}

/// Waits for `pid` and returns its wait status and its peak resident memory in MB.
fn wait_with_rusage(pid: libc::pid_t) -> (i32, f64) {
    let mut status = 0;
    // Safety: a zeroed rusage is a valid out-parameter.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // Safety: `pid` is our own child, not yet waited for.
    unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    (status, usage.ru_maxrss as f64 / 1024.0)
}

/// Prints a line to the test process's own stderr, past the test runner's
/// capture: the tallies are the suite's figures, wanted in every CI log.
fn figure(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Prints a class's tally. For index files "same" and "different" compare
/// answers with the unmutated file's; other classes have no original
/// answer, and an input that is accepted and processed counts as "same".
fn report(class: &str, tally: &Tally) {
    figure(&format!(
        "hostile {class}: {} inputs; named error {}, accepted with the same answer {}, with a different answer {}, panic {}, crash {}, hang {}; peak memory {:.0} MB",
        tally.tried,
        tally.count("error"),
        tally.count("same"),
        tally.count("different"),
        tally.count("panic"),
        tally.count("crash"),
        tally.count("hang"),
        tally.peak_rss_mb
    ));
}

fn assert_survived(class: &str, tally: &Tally, cases: usize) {
    report(class, tally);
    assert_eq!(tally.tried, cases, "{class}: every input is accounted for");
    let failed = tally.count("panic") + tally.count("crash") + tally.count("hang");
    assert_eq!(failed, 0, "{class}: {:?}", tally.failures);
}

/// The child side: runs cases `from..to` of a class, one line per case.
#[test]
fn child_process_entry() {
    let Ok(spec) = std::env::var(CHILD) else { return };
    let mut parts = spec.split(':');
    let class = parts.next().unwrap().to_string();
    let from: usize = parts.next().unwrap().parse().unwrap();
    let to: usize = parts.next().unwrap().parse().unwrap();
    std::panic::set_hook(Box::new(|_| {}));
    let mut out = std::io::stdout();
    // The test runner's "test child_process_entry ... " has no line end.
    writeln!(out).unwrap();
    for case in from..to {
        let result = std::panic::catch_unwind(|| match class.as_str() {
            "index" => cases::index(case),
            "paged" => cases::paged(case),
            "npy" => cases::npy(case),
            "tfjs" => cases::tfjs(case),
            "detector" => cases::detector(case),
            "parser" => cases::parser(case),
            "catalog" => cases::catalog(case),
            "image" => cases::image(case),
            other => panic!("unknown class {other}"),
        });
        let line = match result {
            Ok(Ok(same)) => format!("case {case} {}", if same { "same" } else { "different" }),
            Ok(Err(e)) => format!("case {case} error {}", e.replace('\n', " ")),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
                format!("case {case} panic {}", message.unwrap_or_default().replace('\n', " "))
            }
        };
        writeln!(out, "{line}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn hostile_index_files() {
    let cases = 1500;
    let tally = run_class("index", cases, Duration::from_secs(20), 2048);
    assert_survived("index files", &tally, cases);
    assert!(tally.count("error") > cases / 2, "most mutations are caught: {:?}", tally.counts);
}

#[test]
fn hostile_paged_indexes() {
    let cases = 1500;
    let tally = run_class("paged", cases, Duration::from_secs(20), 2048);
    assert_survived("paged index heads and pages", &tally, cases);
    assert!(tally.count("error") > cases / 2, "most mutations are caught: {:?}", tally.counts);
}

#[test]
fn hostile_npy_matrices() {
    let cases = 400;
    let tally = run_class("npy", cases, Duration::from_secs(15), 2048);
    assert_survived(".npy vector files", &tally, cases);
}

#[test]
fn the_synthetic_graph_runs_unmutated() {
    assert_eq!(cases::tfjs_baseline(), Ok(true));
}

#[test]
fn hostile_tfjs_graphs() {
    let cases = 600;
    let tally = run_class("tfjs", cases, Duration::from_secs(20), 2048);
    assert_survived("TF.js graphs (synthetic)", &tally, cases);
    assert!(tally.count("error") > cases / 3, "most mutations are refused: {:?}", tally.counts);
}

#[test]
fn hostile_detector_models() {
    if !common::project_file("models/nanodet.json").is_file() {
        eprintln!("skipping: models/nanodet.json is fetched by ./build.sh");
        return;
    }
    let cases = 62;
    let tally = run_class("detector", cases, Duration::from_secs(60), 3072);
    assert_survived("TF.js graphs (NanoDet and MoveNet mutated)", &tally, cases);
}

#[test]
fn hostile_parser_records() {
    let cases = 120;
    let tally = run_class("parser", cases, Duration::from_secs(30), 3072);
    assert_survived("garment parser records", &tally, cases);
    // Damaged headers and truncations (half the inputs) are mostly refused;
    // flipped weight bytes and trailing bytes still load.
    assert!(tally.count("error") > cases / 4, "damage is refused: {:?}", tally.counts);
}

#[test]
fn hostile_catalogs() {
    let cases = cases::CATALOG_CASES;
    let tally = run_class("catalog", cases, Duration::from_secs(15), 2048);
    assert_survived("catalogs", &tally, cases);
}

#[test]
fn hostile_images() {
    let cases = cases::IMAGE_CASES;
    let tally = run_class("image", cases, Duration::from_secs(30), 1536);
    assert_survived("images", &tally, cases);
    assert!(tally.peak_rss_mb < 1024.0, "decoding stays bounded: {:.0} MB", tally.peak_rss_mb);
}

/// The inputs, generated from the case number (deterministic).
mod cases {
    use lookalike::catalog::{Catalog, CatalogFormat, Columns};
    use lookalike_forest::{Forest, ForestParams, Metric, Query};
    use lookalike_index::appearance::{Layout, Part, PartsTable};
    use lookalike_index::{Index, resign};
    use rand::{RngExt, SeedableRng, rngs::StdRng};
    use serde_json::{Value, json};

    /// `Ok(true)`: accepted with the same answer as the original input;
    /// `Ok(false)`: accepted with another answer; `Err`: refused with a reason.
    pub type Result = std::result::Result<bool, String>;

    fn sample_index() -> Index {
        let n = 400;
        let mut rng = StdRng::seed_from_u64(7);
        let vectors: Vec<f32> = (0..n * 16).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let labels: Vec<u32> = (0..n as u32).map(|i| i % 5).collect();
        // With a neighbour graph: its section is mutated and walked too.
        let params = ForestParams {
            pca_dims: Some(8),
            encoding: lookalike_forest::Encoding::I8PerDim,
            graph: Some(lookalike_forest::GraphParams { degree: 8, build_beam: 32, alpha: 1.0 }),
            ..ForestParams::new(Metric::Angular)
        };
        let forest = Forest::build(vectors, 16, Some(labels), &params).unwrap();
        let layout = Layout {
            visual_weight: 0.5,
            parts: vec![Part { name: "colour".into(), dims: 4, weight: 0.5 }],
        };
        let rows: Vec<Vec<f32>> =
            (0..n).map(|i| (0..4).map(|d| ((i + d) % 7) as f32 / 6.0).collect()).collect();
        Index {
            forest,
            ids: (0..n).map(|i| format!("p{i}")).collect(),
            label_names: (0..5).map(|i| format!("label {i}")).collect(),
            appearance: Some(PartsTable::encode(layout, &rows)),
        }
    }

    /// What a user sees of an index: blended and plain neighbours of a few
    /// products and of an outside vector.
    fn answers(index: &Index) -> std::result::Result<Vec<(u32, u32)>, String> {
        let mut out = Vec::new();
        let options = lookalike_index::rank::RecommendOptions {
            k: 5,
            search_k: Some(400),
            same_label: true,
            weights: None,
        };
        for item in [0u32, 17, 399].into_iter().filter(|&i| (i as usize) < index.forest.len()) {
            for r in lookalike_index::rank::recommend_item(index, item, &options) {
                out.push((item, index.item_of(&r.similar_product_id).unwrap_or(u32::MAX)));
            }
        }
        let vector = vec![0.25f32; 16];
        let parts = index.appearance.as_ref().map(|t| vec![0.5f32; t.layout.dims()]);
        let hits = lookalike_index::rank::search_vector_distinct(
            index,
            &vector,
            parts.as_deref(),
            &Query::top(5),
            None,
        )
        .map_err(|e| e.to_string())?;
        out.extend(hits.iter().map(|h| (u32::MAX, h.item)));
        Ok(out)
    }

    pub fn index(case: usize) -> Result {
        let original = sample_index();
        let expected = answers(&original).unwrap();
        let mut bytes = original.to_bytes();
        let mut rng = StdRng::seed_from_u64(case as u64);
        let header_and_table = 64 + 24 * 16;
        match case % 10 {
            // Crafted structures, re-signed: DAGs, cycles (a child pointing
            // back), out-of-range references, overflowing layouts.
            0 | 1 => craft(&mut bytes, &mut rng, case.is_multiple_of(2)),
            // A few random bytes anywhere, re-signed half the time.
            2..=5 => {
                for _ in 0..rng.random_range(1..8) {
                    let at = rng.random_range(0..bytes.len());
                    bytes[at] = rng.random();
                }
                if case.is_multiple_of(2) {
                    resign(&mut bytes);
                }
            }
            // The header and section table: counts, offsets, kinds.
            6 | 7 => {
                for _ in 0..rng.random_range(1..4) {
                    let at = rng.random_range(8..header_and_table.min(bytes.len()));
                    bytes[at] = rng.random();
                }
                if case.is_multiple_of(2) {
                    resign(&mut bytes);
                }
            }
            // Truncated, or extended with junk.
            8 => bytes.truncate(rng.random_range(0..bytes.len())),
            _ => bytes.extend((0..rng.random_range(1..5000)).map(|_| rng.random::<u8>())),
        }
        let index = Index::from_bytes(&bytes).map_err(|e| e.to_string())?;
        Ok(answers(&index)? == expected)
    }

    /// A small paged index (head, pages) and the answers it gives.
    fn sample_paged() -> (Vec<u8>, Vec<u8>) {
        use lookalike_index::paged::{PagedParams, PagedSource, write_paged};
        let n = 600;
        let mut rng = StdRng::seed_from_u64(11);
        let vectors: Vec<f32> = (0..n * 8).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let ids: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
        let labels: Vec<u32> = (0..n as u32).map(|i| i % 3).collect();
        let names: Vec<String> = (0..3).map(|i| format!("label {i}")).collect();
        let record = |i: usize| format!("{{\"id\":\"p{i}\"}}");
        let source = PagedSource {
            metric: Metric::Angular,
            dims: 8,
            vectors,
            ids: &ids,
            labels: &labels,
            label_names: &names,
            projection: None,
            record: &record,
        };
        let mut pages = Vec::new();
        let params = PagedParams { list_size: 16, ..PagedParams::default() };
        let head = write_paged(source, &params, &mut pages, &mut |_| {}).unwrap();
        (head.encode(), pages)
    }

    /// One step of a paged query, as the tests drive it.
    type PagedAsk<'a> = dyn FnMut(
            &mut lookalike_index::paged::PagedIndex,
        ) -> std::result::Result<
            lookalike_index::paged::Step<Vec<lookalike_index::paged::PagedHit>>,
            String,
        > + 'a;

    /// A product, a filtered product, a vector and a browse query, fetched
    /// from `pages` as the page fetches: every answer, or the first error.
    fn paged_answers(head: &[u8], pages: &[u8]) -> std::result::Result<Vec<Vec<String>>, String> {
        use lookalike_index::paged::{PagedIndex, PagedQuery, Step, coalesce};
        let mut index = PagedIndex::from_head(head, 0).map_err(|e| e.to_string())?;
        let mut run = |ask: &mut PagedAsk| {
            for _ in 0..12 {
                match ask(&mut index)? {
                    Step::Done(hits) => {
                        return Ok(hits.into_iter().map(|h| h.id).collect::<Vec<_>>());
                    }
                    Step::Need(wanted) => {
                        for (start, end) in coalesce(&wanted, 4096) {
                            let bytes = pages
                                .get(start as usize..end as usize)
                                .ok_or("the pages file is shorter than its head says")?;
                            index.accept(&wanted, start, bytes).map_err(|e| e.to_string())?;
                        }
                    }
                }
            }
            Err("a query that does not end".to_string())
        };
        let item = |same_label| {
            move |ix: &mut PagedIndex| {
                let query = PagedQuery { same_label, ..PagedQuery::top(10) };
                ix.query_item("p17", &query)
                    .map(|step| match step {
                        Step::Need(p) => Step::Need(p),
                        Step::Done(hits) => Step::Done(hits.unwrap_or_default()),
                    })
                    .map_err(|e| e.to_string())
            }
        };
        Ok(vec![
            run(&mut item(false))?,
            run(&mut item(true))?,
            run(&mut |ix| {
                ix.query_vector(&[0.3; 8], &PagedQuery::vector(10)).map_err(|e| e.to_string())
            })?,
            run(&mut |ix| ix.browse(0, 40).map_err(|e| e.to_string()))?,
        ])
    }

    /// A paged index with its head or pages mutated: random bytes (the
    /// head re-checksummed half the time, so its fields are what is
    /// tested), truncated, or extended.
    pub fn paged(case: usize) -> Result {
        let (mut head, mut pages) = sample_paged();
        let expected = paged_answers(&head, &pages).unwrap();
        let mut rng = StdRng::seed_from_u64(case as u64 ^ 0x9a6e);
        match case % 8 {
            0..=2 => {
                for _ in 0..rng.random_range(1..4) {
                    let at = rng.random_range(8..head.len() - 4);
                    head[at] = rng.random();
                }
                if case.is_multiple_of(2) {
                    let body = head.len() - 4;
                    let crc = crc32fast::hash(&head[..body]);
                    head[body..].copy_from_slice(&crc.to_le_bytes());
                }
            }
            3..=5 => {
                for _ in 0..rng.random_range(1..8) {
                    let at = rng.random_range(0..pages.len());
                    pages[at] = rng.random();
                }
            }
            6 => pages.truncate(rng.random_range(0..pages.len())),
            _ => head.truncate(rng.random_range(0..head.len())),
        }
        Ok(paged_answers(&head, &pages)? == expected)
    }

    /// A `.npy` matrix with its header or data mutated, truncated or
    /// extended, mapped and summed the way a `--vectors` build reads it.
    pub fn npy(case: usize) -> Result {
        let rows = 50;
        let values: Vec<f32> = (0..rows * 12).map(|i| i as f32 / 7.0).collect();
        let mut bytes = lookalike::npy::encode_f32(&values, rows, 12);
        let mut rng = StdRng::seed_from_u64(case as u64 ^ 0x4e9);
        let header = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        match case % 4 {
            0 | 1 => {
                for _ in 0..rng.random_range(1..4) {
                    let at = rng.random_range(0..header);
                    bytes[at] = if case.is_multiple_of(2) {
                        b"0123456789(), '"[rng.random_range(0..15)]
                    } else {
                        rng.random()
                    };
                }
            }
            2 => bytes.truncate(rng.random_range(0..bytes.len())),
            _ => bytes.extend((0..rng.random_range(1..64)).map(|_| rng.random::<u8>())),
        }
        let path = std::env::temp_dir()
            .join(format!("lookalike-hostile-{}-{case}.npy", std::process::id()));
        std::fs::write(&path, &bytes).unwrap();
        let read = lookalike::npy::map_f32(&path)
            .map(|m| (m.rows, m.cols, m.values().iter().sum::<f32>()));
        std::fs::remove_file(&path).unwrap();
        let (r, c, sum) = read.map_err(|e| format!("{e:#}"))?;
        Ok((r, c) == (rows, 12) && sum == values.iter().sum::<f32>())
    }

    /// Rewrites a node, a root or the appearance layout of a valid file.
    fn craft(bytes: &mut [u8], rng: &mut StdRng, nodes: bool) {
        let table = |kind: u32| {
            let n = u32::from_le_bytes(bytes[40..44].try_into().unwrap()) as usize;
            (0..n)
                .map(|i| 64 + 24 * i)
                .find(|&e| u32::from_le_bytes(bytes[e..e + 4].try_into().unwrap()) == kind)
                .map(|e| {
                    let offset =
                        u64::from_le_bytes(bytes[e + 8..e + 16].try_into().unwrap()) as usize;
                    let len =
                        u64::from_le_bytes(bytes[e + 16..e + 24].try_into().unwrap()) as usize;
                    (offset, len)
                })
        };
        if nodes {
            let (offset, len) = table(4).unwrap();
            let n_nodes = len / 12;
            let node = rng.random_range(0..n_nodes);
            let field = rng.random_range(0..3);
            let value: u32 = match rng.random_range(0..4) {
                0 => rng.random_range(0..n_nodes as u32), // shared child or back edge
                1 => node as u32,                         // a self loop
                2 => rng.random::<u32>() & 0x7FFF_FFFF,   // out of range
                _ => 0x8000_0000 | rng.random_range(0..10_000u32), // a huge leaf
            };
            let at = offset + node * 12 + field * 4;
            bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
        } else {
            let (offset, len) = table(16).unwrap();
            let layout_len =
                u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
            let hostile = [
                r#"{"visual_weight":0.5,"parts":[{"name":"colour","dims":18446744073709551615,"weight":0.5},{"name":"x","dims":5,"weight":0.1}]}"#,
                r#"{"visual_weight":-1,"parts":[{"name":"colour","dims":4,"weight":0.5}]}"#,
                r#"{"visual_weight":0.5,"parts":[{"name":"colour","dims":4,"weight":1e300}]}"#,
                r#"{"visual_weight":0.5,"parts":[{"name":"colour","dims":2,"weight":0.5},{"name":"kind","dims":2,"weight":0.5}]}"#,
                r#"{"visual_weight":0.5,"parts":[]}"#,
            ];
            let mut layout = hostile[rng.random_range(0..hostile.len())].as_bytes().to_vec();
            layout.resize(layout_len, b' ');
            if layout.len() == layout_len {
                bytes[offset + 4..offset + 4 + layout_len].copy_from_slice(&layout);
            }
            let _ = len;
        }
        resign(bytes);
    }

    /// A small TF.js graph touching every op family the compiler knows.
    fn synthetic_graph() -> (Value, Vec<u8>) {
        let b64 = |s: &str| {
            const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let bytes = s.as_bytes();
            let mut out = String::new();
            for chunk in bytes.chunks(3) {
                let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
                let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
                for i in 0..4 {
                    if i <= chunk.len() {
                        out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                    } else {
                        out.push('=');
                    }
                }
            }
            json!({ "s": out })
        };
        let ints = |v: &[i64]| json!({ "list": { "i": v.iter().map(|x| x.to_string()).collect::<Vec<_>>() } });
        let node = |name: &str, op: &str, inputs: &[&str], attr: Value| json!({ "name": name, "op": op, "input": inputs, "attr": attr });
        let nodes = vec![
            node("x", "Placeholder", &[], json!({})),
            node("w", "Const", &[], json!({})),
            node("b", "Const", &[], json!({})),
            node(
                "conv",
                "Conv2D",
                &["x", "w"],
                json!({ "strides": ints(&[1, 1, 1, 1]), "padding": b64("SAME"), "data_format": b64("NHWC") }),
            ),
            node("add", "BiasAdd", &["conv", "b"], json!({})),
            node("relu", "Relu6", &["add"], json!({})),
            node("dw", "Const", &[], json!({})),
            node(
                "dconv",
                "DepthwiseConv2dNative",
                &["relu", "dw"],
                json!({ "strides": ints(&[1, 2, 2, 1]), "padding": b64("VALID") }),
            ),
            node(
                "pool",
                "MaxPool",
                &["dconv"],
                json!({ "ksize": ints(&[1, 2, 2, 1]), "strides": ints(&[1, 1, 1, 1]), "padding": b64("SAME") }),
            ),
            node("size", "Const", &[], json!({})),
            node(
                "resize",
                "ResizeBilinear",
                &["pool", "size"],
                json!({ "half_pixel_centers": { "b": true } }),
            ),
            node("shape", "Const", &[], json!({})),
            node("flat", "Reshape", &["resize", "shape"], json!({})),
            node("perm", "Const", &[], json!({})),
            node("tr", "Transpose", &["flat", "perm"], json!({})),
            node("axis", "Const", &[], json!({})),
            node("cat", "ConcatV2", &["tr", "tr", "axis"], json!({})),
            node("pads", "Const", &[], json!({})),
            node("pad", "Pad", &["cat", "pads"], json!({})),
            node("sizes", "Const", &[], json!({})),
            node(
                "split",
                "SplitV",
                &["pad", "sizes", "axis"],
                json!({ "num_split": { "i": "2" } }),
            ),
            node("sum", "AddV2", &["split", "split:1"], json!({})),
            node("sig", "Sigmoid", &["sum"], json!({})),
            node("out", "Identity", &["sig"], json!({})),
        ];
        let mut bin = Vec::new();
        let mut weights = Vec::new();
        let mut f32s = |name: &str, shape: &[usize], bin: &mut Vec<u8>| {
            let n: usize = shape.iter().product();
            bin.extend((0..n).flat_map(|i| ((i % 7) as f32 * 0.1 - 0.3).to_le_bytes()));
            weights.push(json!({ "name": name, "shape": shape, "dtype": "float32" }));
        };
        f32s("w", &[3, 3, 3, 4], &mut bin);
        f32s("b", &[4], &mut bin);
        f32s("dw", &[3, 3, 4, 1], &mut bin);
        let mut i32s = |name: &str, values: &[i32], shape: &[usize], bin: &mut Vec<u8>| {
            bin.extend(values.iter().flat_map(|v| v.to_le_bytes()));
            weights.push(json!({ "name": name, "shape": shape, "dtype": "int32" }));
        };
        i32s("size", &[6, 6], &[2], &mut bin);
        i32s("shape", &[36, -1], &[2], &mut bin);
        i32s("perm", &[1, 0], &[2], &mut bin);
        i32s("axis", &[0], &[], &mut bin);
        i32s("pads", &[1, 1, 0, 0], &[2, 2], &mut bin);
        i32s("sizes", &[5, 5], &[2], &mut bin);
        let model = json!({
            "modelTopology": { "node": nodes },
            "weightsManifest": [{ "paths": ["m.bin"], "weights": weights }],
        });
        (model, bin)
    }

    /// Every JSON pointer in `value` (objects' fields and arrays' items).
    fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => map.iter().for_each(|(k, v)| {
                pointers(v, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out)
            }),
            Value::Array(items) => {
                items.iter().enumerate().for_each(|(i, v)| pointers(v, format!("{at}/{i}"), out))
            }
            _ => {}
        }
        out.push(at);
    }

    fn hostile_value(rng: &mut StdRng) -> Value {
        let choices = [
            json!(0),
            json!(-1),
            json!(1),
            json!(3),
            json!(2147483647),
            json!(-9223372036854775807i64),
            json!(1e30),
            json!("0"),
            json!("-1"),
            json!("99999999999"),
            json!("-9223372036854775808"),
            json!(""),
            json!("x"),
            json!(null),
            json!(true),
            json!([]),
            json!([0, 0]),
            json!(["1", "99999", "99999", "1"]),
            json!(["0", "0", "0", "0"]),
            json!(["-5", "1", "1", "1"]),
            json!({}),
            json!({ "list": { "i": ["1", "0", "0", "1"] } }),
            json!({ "s": "RVhQTElDSVQ=" }),
            json!({ "s": "TkNIVw==" }),
            json!({ "i": "-3" }),
            json!([99999, 99999]),
            json!([1, 2, 3, 4, 5, 6]),
            json!("Const"),
            json!("Placeholder"),
            json!("Conv2D"),
            json!("Unpack"),
            json!("Split"),
            json!("ExpandDims"),
            json!("Squeeze"),
            json!("out"),
            json!("sum"),
            json!("x:7"),
            json!("^x"),
        ];
        choices[rng.random_range(0..choices.len())].clone()
    }

    /// Mutates `model` at 1 to 3 random places and `bin` at times, then
    /// compiles and runs it.
    fn mutate_and_run(
        mut model: Value,
        mut bin: Vec<u8>,
        case: Option<usize>,
        input_shape: &[usize],
        outputs: &[&str],
    ) -> Result {
        let mutations = if case.is_some() { 1..4 } else { 0..1 };
        let case = case.unwrap_or(1);
        let mut rng = StdRng::seed_from_u64(case as u64 ^ 0x7f);
        let mut all = Vec::new();
        pointers(&model, String::new(), &mut all);
        for _ in 0..rng.random_range(mutations.clone()) {
            let at = &all[rng.random_range(0..all.len())];
            if let Some(slot) = model.pointer_mut(at) {
                *slot = hostile_value(&mut rng);
            }
        }
        if mutations.start > 0 && case.is_multiple_of(5) && !bin.is_empty() {
            for _ in 0..rng.random_range(1..6) {
                let at = rng.random_range(0..bin.len());
                bin[at] = rng.random();
            }
        }
        if mutations.start > 0 && case.is_multiple_of(11) {
            bin.truncate(rng.random_range(0..bin.len().max(1)));
        }
        let json = serde_json::to_vec(&model).unwrap();
        let graph = lookalike_vision::model::tfjs::GraphModel::parse(&json, &bin, "hostile.json")
            .map_err(|e| e.to_string())?;
        let device = burn::tensor::Device::flex();
        let program =
            lookalike_vision::model::tfjs::Program::compile(&graph, outputs, input_shape, &device)
                .map_err(|e| e.to_string())?;
        let shape: [usize; 4] =
            program.input_shape().try_into().map_err(|_| "input rank".to_string())?;
        let input = burn::tensor::Tensor::<4>::zeros(shape, &device);
        let values = program.run(input).map_err(|e| e.to_string())?;
        Ok(!values.is_empty())
    }

    pub fn tfjs(case: usize) -> Result {
        let (model, bin) = synthetic_graph();
        mutate_and_run(model, bin, Some(case), &[1, 12, 12, 3], &["out"])
    }

    /// The synthetic graph unmutated: the mutations start from a working model.
    pub fn tfjs_baseline() -> Result {
        let (model, bin) = synthetic_graph();
        mutate_and_run(model, bin, None, &[1, 12, 12, 3], &["out"])
    }

    /// The shipped parser head's record, mutated (header bytes, weight
    /// bytes, truncated, extended), loaded onto the real backbone and run
    /// on a small photo: a named error or an answer, never a panic.
    pub fn parser(case: usize) -> Result {
        use std::sync::OnceLock;
        static BACKBONE: OnceLock<lookalike_vision::model::EfficientNetLite> = OnceLock::new();
        let device = burn::tensor::Device::flex();
        let backbone = BACKBONE.get_or_init(|| {
            let path = super::common::project_file("models/efficientnet-lite0.bpk");
            lookalike_vision::model::weights::from_file(&path, &device).unwrap()
        });
        let mut bytes = std::fs::read(super::common::project_file("models/parser.bpk")).unwrap();
        let mut rng = StdRng::seed_from_u64(case as u64 ^ 0x9a45);
        // The header (tensor names, shapes, offsets) is the first few KB.
        let header = bytes.len().min(4096);
        match case % 4 {
            0 => {
                for _ in 0..rng.random_range(1..4) {
                    let at = rng.random_range(0..header);
                    bytes[at] = rng.random();
                }
            }
            1 => {
                for _ in 0..rng.random_range(1..16) {
                    let at = rng.random_range(header..bytes.len());
                    bytes[at] = rng.random();
                }
            }
            2 => bytes.truncate(rng.random_range(0..bytes.len())),
            _ => bytes.extend((0..rng.random_range(1..256)).map(|_| rng.random::<u8>())),
        }
        let head = lookalike_vision::parse::head_from_burnpack_bytes(
            bytes,
            backbone,
            "hostile.bpk",
            &device,
        )
        .map_err(|e| e.to_string())?;
        let parser = lookalike_vision::parse::Parser::new(backbone.clone(), head, device);
        let photo = image::RgbImage::from_fn(96, 128, |x, y| {
            image::Rgb([(x * 2) as u8, (y * 2) as u8, 128])
        });
        let map = lookalike_vision::detect::readback::block_on(parser.parse(&photo))
            .map_err(|e| e.to_string())?;
        let items = lookalike_vision::parse::regions(&map, |_| true, &[]);
        // Reading split garments whole walks the same damaged map.
        lookalike_vision::parse::whole_garments(&map, &items, &[]);
        Ok(items.len() < 1000)
    }

    /// The shipped detector models, mutated the same way and run whole.
    pub fn detector(case: usize) -> Result {
        let path = super::common::project_file(if case.is_multiple_of(2) {
            "models/nanodet.json"
        } else {
            "models/movenet-lightning.json"
        });
        let json = std::fs::read(&path).unwrap();
        let mut model: Value = serde_json::from_slice(&json).unwrap();
        let mut bin = Vec::new();
        for shard in lookalike_vision::model::tfjs::GraphModel::shard_paths(&json, "m").unwrap() {
            bin.extend(std::fs::read(path.parent().unwrap().join(shard)).unwrap());
        }
        // Mutate the graph's nodes and manifest, not its weights' values.
        let mut rng = StdRng::seed_from_u64(case as u64);
        let mut all = Vec::new();
        pointers(&model, String::new(), &mut all);
        all.retain(|p| !p.ends_with("/paths/0"));
        for _ in 0..rng.random_range(1..4) {
            let at = &all[rng.random_range(0..all.len())];
            if let Some(slot) = model.pointer_mut(at) {
                *slot = hostile_value(&mut rng);
            }
        }
        let json = serde_json::to_vec(&model).unwrap();
        let graph = lookalike_vision::model::tfjs::GraphModel::parse(&json, &bin, "hostile.json")
            .map_err(|e| e.to_string())?;
        let device = burn::tensor::Device::flex();
        let (objects, pose) =
            if case.is_multiple_of(2) { (Some(&graph), None) } else { (None, Some(&graph)) };
        let detector = lookalike_vision::detect::Detector::new(objects, pose, &device)
            .map_err(|e| e.to_string())?;
        let photo = image::RgbImage::from_fn(96, 128, |x, y| {
            image::Rgb([(x * 2) as u8, (y * 2) as u8, 128])
        });
        let items = lookalike_vision::detect::readback::block_on(
            detector.detect(&photo, &lookalike_vision::detect::DetectOptions::default()),
        )
        .map_err(|e| e.to_string())?;
        Ok(items.len() < 100)
    }

    pub const CATALOG_CASES: usize = 400;

    pub fn catalog(case: usize) -> Result {
        let mut rng = StdRng::seed_from_u64(case as u64);
        let format = [CatalogFormat::Csv, CatalogFormat::Json, CatalogFormat::JsonLines][case % 3];
        let base: Vec<u8> = match format {
            CatalogFormat::Csv => b"id,image,name\n1,a.jpg,\"Red \"\"dress\"\"\"\n2,b.jpg,Shoe\r\n3,https://x/c.jpg,Bag\n".to_vec(),
            CatalogFormat::Json => br#"[{"id": "1", "image": "a.jpg"}, {"id": 2, "image": "b.jpg", "tags": ["x"]}]"#.to_vec(),
            CatalogFormat::JsonLines => b"{\"id\": \"1\", \"image\": \"a.jpg\"}\n\n{\"id\": \"2\", \"image\": \"b.jpg\"}\n".to_vec(),
        };
        let bytes: Vec<u8> = match case / 3 % 12 {
            // Random bytes.
            0 => (0..rng.random_range(0..4096)).map(|_| rng.random()).collect(),
            // A few bytes of a valid catalog changed.
            1 | 2 => {
                let mut b = base.clone();
                for _ in 0..rng.random_range(1..6) {
                    let at = rng.random_range(0..b.len());
                    b[at] = *[b'"', b',', b'\n', b'\r', b'[', b']', b'{', b'}', 0, 0xFF, 0xC3, b'\\'].get(rng.random_range(0..12)).unwrap();
                }
                b
            }
            // Deep nesting.
            3 => {
                let depth = 200_000;
                let mut b = b"[{\"id\":\"1\",\"image\":".to_vec();
                b.extend(std::iter::repeat_n(b'[', depth));
                b.extend(std::iter::repeat_n(b']', depth));
                b.extend(b"}]");
                b
            }
            // 100,000 rows (quadratic parsing made JSON arrays take minutes).
            4 => big_catalog(format, 100_000, 1),
            // Very wide: 20,000 columns.
            5 => {
                let mut b = (0..20_000).map(|i| format!("c{i}")).collect::<Vec<_>>().join(",").into_bytes();
                b.extend(b"\n");
                b.extend((0..20_000).map(|i| i.to_string()).collect::<Vec<_>>().join(",").into_bytes());
                b
            }
            // One enormous field (16 MB).
            6 => {
                let mut b = base.clone();
                let at = b.len() / 2;
                b.splice(at..at, std::iter::repeat_n(b'x', 16 << 20));
                b
            }
            // Invalid UTF-8 in the middle.
            7 => {
                let mut b = base.clone();
                let at = rng.random_range(0..b.len());
                b.insert(at, 0xFF);
                b
            }
            // Duplicate ids, empty ids, ids that are paths or scripts.
            8 => b"id,image\n../../etc/passwd,/etc/passwd\n<script>alert(1)</script>,a.jpg\n,b.jpg\n1,c.jpg\n1,d.jpg\n".to_vec(),
            // Only a header, only a BOM, nothing.
            9 => [&b"id,image\n"[..], b"\xEF\xBB\xBF", b""][rng.random_range(0..3)].to_vec(),
            // Carriage returns only, NULs, unterminated quotes.
            10 => b"id,image\r1,a.jpg\r2,\"b.jpg\r3\0,c.jpg".to_vec(),
            _ => big_catalog(format, 1000, rng.random_range(2..50)),
        };
        let text = Catalog::text_of(&bytes, "hostile").map_err(|e| e.to_string())?;
        let strict = Catalog::parse(text, "hostile", format, &Columns::default());
        let (lenient, _) = Catalog::parse_lenient(text, "hostile", format, &Columns::default())
            .map_err(|e| e.to_string())?;
        let catalog = strict.map_err(|e| e.to_string())?;
        Ok(catalog.products.len() == lenient.products.len() && !catalog.products.is_empty())
    }

    fn big_catalog(format: CatalogFormat, rows: usize, columns: usize) -> Vec<u8> {
        let extra = |i: usize| (0..columns).map(|c| format!("v{i}-{c}")).collect::<Vec<_>>();
        match format {
            CatalogFormat::Csv => {
                let mut s = String::from("id,image");
                (0..columns).for_each(|c| s.push_str(&format!(",c{c}")));
                s.push('\n');
                for i in 0..rows {
                    s.push_str(&format!("{i},{i}.jpg,{}\n", extra(i).join(",")));
                }
                s.into_bytes()
            }
            CatalogFormat::Json | CatalogFormat::JsonLines => {
                let rows: Vec<String> = (0..rows)
                    .map(|i| {
                        let mut object =
                            json!({ "id": i.to_string(), "image": format!("{i}.jpg") });
                        for (c, v) in extra(i).into_iter().enumerate() {
                            object[format!("c{c}")] = json!(v);
                        }
                        serde_json::to_string_pretty(&object)
                            .unwrap()
                            .replace('\n', if format == CatalogFormat::Json { "\n" } else { "" })
                    })
                    .collect();
                if format == CatalogFormat::Json {
                    format!("[\n{}\n]", rows.join(",\n")).into_bytes()
                } else {
                    rows.join("\n").into_bytes()
                }
            }
        }
    }

    pub const IMAGE_CASES: usize = 160;

    pub fn image(case: usize) -> Result {
        let bytes = hostile_image(case);
        let decoded = lookalike_vision::preprocess::decode(&bytes).map_err(|e| e.to_string())?;
        // What a build does next with a decoded image.
        let input = lookalike_vision::preprocess::model_input(&decoded);
        let colour = lookalike_vision::colour::colour_signature(&decoded);
        Ok(input.len() == 3 * 224 * 224 && colour.iter().all(|v| v.is_finite()))
    }

    /// Case 0..: bombs (huge claims), truncated files, mutated bytes.
    pub fn hostile_image(case: usize) -> Vec<u8> {
        let real =
            std::fs::read(super::common::data_dir().join("fashion-product-images/images/1563.jpg"))
                .unwrap();
        let mut rng = StdRng::seed_from_u64(case as u64);
        match case % 8 {
            0 => png_bomb([11_999, 6_000, 13_000, 4_000][case / 8 % 4], 16),
            1 => jpeg_claiming(&real, [11_000, 9_000, 65_000, 12_001][case / 8 % 4]),
            2 => real[..rng.random_range(0..real.len())].to_vec(),
            3 | 4 => {
                let mut b = real.clone();
                for _ in 0..rng.random_range(1..20) {
                    let at = rng.random_range(0..b.len());
                    b[at] = rng.random();
                }
                b
            }
            5 => gif_claiming(rng.random_range(10_000..=65_535), rng.random_range(10_000..=65_535)),
            6 => png_bomb(rng.random_range(2_000..6_000), 8),
            _ => {
                let mut b = png_bomb(64, 8);
                let at = rng.random_range(8..b.len());
                b.truncate(at);
                b
            }
        }
    }

    /// A PNG of `side` x `side` zero pixels (RGB, `depth` bits): a few KB to
    /// a few MB that decode to up to gigabytes.
    pub fn png_bomb(side: u32, depth: u8) -> Vec<u8> {
        use std::io::Write;
        let row = 1 + side as usize * 3 * depth as usize / 8;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        let zeros = vec![0u8; row];
        for _ in 0..side {
            z.write_all(&zeros).unwrap();
        }
        let idat = z.finish().unwrap();
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut chunk = |kind: &[u8], data: &[u8]| {
            out.extend((data.len() as u32).to_be_bytes());
            let mut crc = crc32fast::Hasher::new();
            crc.update(kind);
            crc.update(data);
            out.extend(kind);
            out.extend(data);
            out.extend(crc.finalize().to_be_bytes());
        };
        let mut ihdr = side.to_be_bytes().to_vec();
        ihdr.extend(side.to_be_bytes());
        ihdr.extend([depth, 2, 0, 0, 0]);
        chunk(b"IHDR", &ihdr);
        chunk(b"IDAT", &idat);
        chunk(b"IEND", &[]);
        out
    }

    /// A real JPEG whose frame header claims `side` x `side`.
    fn jpeg_claiming(real: &[u8], side: u16) -> Vec<u8> {
        let mut b = real.to_vec();
        if let Some(sof) = b.windows(2).position(|w| w[0] == 0xFF && (w[1] == 0xC0 || w[1] == 0xC2))
        {
            b[sof + 5..sof + 7].copy_from_slice(&side.to_be_bytes());
            b[sof + 7..sof + 9].copy_from_slice(&side.to_be_bytes());
        }
        b
    }

    fn gif_claiming(width: u16, height: u16) -> Vec<u8> {
        let mut b = b"GIF89a".to_vec();
        b.extend(width.to_le_bytes());
        b.extend(height.to_le_bytes());
        b.extend([0x80, 0, 0, 0, 0, 0, 255, 255, 255]);
        b.extend([0x2C, 0, 0, 0, 0]);
        b.extend(width.to_le_bytes());
        b.extend(height.to_le_bytes());
        b.extend([0, 2, 2, 0x4C, 0x01, 0, 0x3B]);
        b
    }
}

/// Builds through the command line, as a user would, in hostile folders.
mod builds {
    use super::{cases, common, wait_with_rusage};
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};

    /// Runs `lookalike ARGS` in `cwd`; returns success, stderr and peak MB.
    fn lookalike(cwd: &Path, args: &[&str]) -> (bool, String, f64) {
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_lookalike"))
            .args(args)
            .current_dir(cwd)
            .env("LOOKALIKE_CACHE", cwd.join(".cache"))
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        let (status, rss) = wait_with_rusage(child.id() as libc::pid_t);
        (status == 0, std::fs::read_to_string(log.path()).unwrap(), rss)
    }

    fn catalog(dir: &Path, rows: &[(String, PathBuf)]) -> PathBuf {
        let text: String =
            rows.iter().map(|(id, image)| format!("{id},{}\n", image.display())).collect();
        let path = dir.join("shop.csv");
        std::fs::write(&path, format!("id,image\n{text}")).unwrap();
        path
    }

    fn fashion(id: &str) -> PathBuf {
        common::data_dir().join(format!("fashion-product-images/images/{id}.jpg"))
    }

    /// Every file below `dir`, with its length.
    fn listing(dir: &Path) -> Vec<(PathBuf, u64)> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    out.push((
                        path.clone(),
                        std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
                    ));
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn a_site_rebuilt_from_inside_its_own_folder_keeps_its_page() {
        let dir = tempfile::tempdir().unwrap();
        let shop = catalog(
            dir.path(),
            &[
                ("1563".into(), fashion("1563")),
                ("1580".into(), fashion("1580")),
                ("10049".into(), fashion("10049")),
            ],
        );
        let (ok, log, _) = lookalike(
            dir.path(),
            &["build", "--catalog", "shop.csv", "--out", "site", "--no-detector"],
        );
        assert!(ok, "{log}");
        let site = dir.path().join("site");
        let page = ["index.html", "www/app.js", "www/pkg/lookalike_web_bg.wasm"];
        let before: Vec<u64> =
            page.iter().map(|f| std::fs::metadata(site.join(f)).unwrap().len()).collect();
        assert!(before.iter().all(|&n| n > 0));
        let (ok, log, _) = lookalike(
            &site,
            &["build", "--catalog", shop.to_str().unwrap(), "--out", ".", "--no-detector"],
        );
        assert!(ok, "{log}");
        let after: Vec<u64> =
            page.iter().map(|f| std::fs::metadata(site.join(f)).unwrap().len()).collect();
        assert_eq!(before, after, "the page's files survive a rebuild from inside the site");
        // And with the site named as its own assets folder.
        let (ok, log, _) = lookalike(
            &site,
            &[
                "build",
                "--catalog",
                shop.to_str().unwrap(),
                "--out",
                ".",
                "--assets",
                ".",
                "--no-detector",
            ],
        );
        assert!(ok, "{log}");
        let again: Vec<u64> =
            page.iter().map(|f| std::fs::metadata(site.join(f)).unwrap().len()).collect();
        assert_eq!(before, again);
    }

    /// A folder with a hostile `models/nanodet.json` (shards named
    /// `../../../X` and by absolute path) and its own `index.html`.
    fn hostile_folder(dir: &Path, victim: &Path) -> PathBuf {
        let evil = dir.join("evil");
        std::fs::create_dir_all(evil.join("models")).unwrap();
        std::fs::write(evil.join("index.html"), "<script>hostile page</script>").unwrap();
        let real = std::fs::read_to_string(common::detector_model("nanodet.json")).unwrap();
        let mut model: serde_json::Value = serde_json::from_str(&real).unwrap();
        model["weightsManifest"][0]["paths"] =
            serde_json::json!(["../../../escaped.bin", victim.display().to_string()]);
        std::fs::write(evil.join("models/nanodet.json"), serde_json::to_vec(&model).unwrap())
            .unwrap();
        evil
    }

    #[test]
    fn hostile_model_files_cannot_write_outside_the_site_or_empty_an_input() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim.bin");
        std::fs::write(&victim, b"precious").unwrap();
        let evil = hostile_folder(dir.path(), &victim);
        catalog(&evil, &[("1563".into(), fashion("1563")), ("1580".into(), fashion("1580"))]);
        let outside_before = listing(dir.path());
        // Merely building in the hostile folder: its model and page are not
        // picked up (the defaults come from the installation).
        let (ok, log, _) = lookalike(&evil, &["build", "--catalog", "shop.csv", "--out", "site"]);
        assert!(ok, "{log}");
        let page = std::fs::read_to_string(evil.join("site/index.html")).unwrap();
        assert!(!page.contains("hostile page"), "the folder's index.html is not shipped");
        let shipped = std::fs::read(evil.join("site/data/detector/nanodet.json")).unwrap();
        assert_eq!(shipped, std::fs::read(common::detector_model("nanodet.json")).unwrap());
        // Naming the hostile model is a named error, before anything is written.
        let (ok, log, _) = lookalike(
            &evil,
            &[
                "build",
                "--catalog",
                "shop.csv",
                "--out",
                "site2",
                "--detector",
                "models/nanodet.json",
            ],
        );
        assert!(!ok && log.contains("not a plain file name"), "{log}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(!dir.path().join("escaped.bin").exists() && !Path::new("/escaped.bin").exists());
        let outside_after: Vec<_> = listing(dir.path())
            .into_iter()
            .filter(|(p, _)| {
                !p.starts_with(evil.join("site")) && !p.starts_with(evil.join(".cache"))
            })
            .collect();
        assert_eq!(
            outside_after, outside_before,
            "nothing outside the output folder (and the cache) was written"
        );
    }

    #[test]
    fn products_that_share_one_image_are_all_kept() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<(String, PathBuf)> =
            (0..64).map(|i| (format!("same-{i}"), fashion("1563"))).collect();
        catalog(dir.path(), &rows);
        for round in 0..3 {
            let out = format!("site{round}");
            let (ok, log, _) = lookalike(
                dir.path(),
                &["build", "--catalog", "shop.csv", "--out", &out, "--no-detector"],
            );
            assert!(ok, "{log}");
            let manifest: serde_json::Value = serde_json::from_slice(
                &std::fs::read(dir.path().join(&out).join("data/catalog.json")).unwrap(),
            )
            .unwrap();
            assert_eq!(manifest["products"].as_array().unwrap().len(), 64, "round {round}: {log}");
            assert!(!dir.path().join(&out).join("data/skipped.json").exists(), "{log}");
        }
    }

    #[test]
    fn a_label_head_for_another_model_fails_before_any_embedding_and_keeps_the_site() {
        let dir = tempfile::tempdir().unwrap();
        catalog(dir.path(), &[("1563".into(), fashion("1563")), ("1580".into(), fashion("1580"))]);
        let (ok, log, _) = lookalike(
            dir.path(),
            &["build", "--catalog", "shop.csv", "--out", "site", "--no-detector"],
        );
        assert!(ok, "{log}");
        let index = std::fs::read(dir.path().join("site/data/index.lkf")).unwrap();
        std::fs::write(dir.path().join("head.json"), r#"{"column":"kind","labels":["a","b"],"feature_dim":4,"weights":[0,0,0,0,0,0,0,0],"bias":[0,0]}"#).unwrap();
        let (ok, log, _) = lookalike(
            dir.path(),
            &[
                "build",
                "--catalog",
                "shop.csv",
                "--out",
                "site",
                "--no-detector",
                "--labels",
                "head.json",
            ],
        );
        assert!(!ok && log.contains("head.json") && log.contains("takes 4 values"), "{log}");
        assert!(!log.contains("embedding:"), "refused before embedding: {log}");
        assert_eq!(std::fs::read(dir.path().join("site/data/index.lkf")).unwrap(), index);
    }

    /// Decompression bombs and a truncated JPEG in a catalog: skipped with
    /// their reasons, the rest indexed, and the build's memory bounded.
    #[test]
    fn bombs_in_a_catalog_are_skipped_and_memory_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut rows =
            vec![("1563".to_string(), fashion("1563")), ("1580".to_string(), fashion("1580"))];
        let real = std::fs::read(fashion("1563")).unwrap();
        for (name, bytes) in [
            ("png-bomb", cases::hostile_image(0)),
            ("jpeg-claims-11000", cases::hostile_image(1)),
            ("truncated", real[..real.len() * 2 / 3].to_vec()),
        ] {
            let path = dir.path().join(format!("{name}.img"));
            std::fs::write(&path, bytes).unwrap();
            rows.push((name.to_string(), path));
        }
        // Just under the limit (127 MB decoded): indexed, twice, in parallel.
        for name in ["largest-allowed-1", "largest-allowed-2"] {
            let path = dir.path().join(format!("{name}.png"));
            std::fs::write(&path, cases::png_bomb(6_500, 8)).unwrap();
            rows.push((name.to_string(), path));
        }
        catalog(dir.path(), &rows);
        let (ok, log, peak) = lookalike(
            dir.path(),
            &["build", "--catalog", "shop.csv", "--out", "site", "--no-detector"],
        );
        assert!(ok, "{log}");
        super::figure(&format!(
            "build with decompression bombs and two images at the size limit: peak memory {peak:.0} MB"
        ));
        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join("site/data/catalog.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            manifest["products"].as_array().unwrap().len(),
            4,
            "the real images and those at the limit are indexed"
        );
        let skipped: Vec<serde_json::Value> = serde_json::from_slice(
            &std::fs::read(dir.path().join("site/data/skipped.json")).unwrap(),
        )
        .unwrap();
        let reasons: Vec<(String, String)> = skipped
            .iter()
            .map(|s| {
                (s["id"].as_str().unwrap().to_string(), s["reason"].as_str().unwrap().to_string())
            })
            .collect();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(
            reasons.iter().any(|(id, r)| id == "png-bomb" && r.contains("limit")),
            "{reasons:?}"
        );
        assert!(
            reasons.iter().any(|(id, r)| id == "jpeg-claims-11000" && r.contains("limit")),
            "{reasons:?}"
        );
        assert!(
            reasons.iter().any(|(id, r)| id == "truncated" && r.contains("truncated")),
            "{reasons:?}"
        );
        assert!(peak < 1536.0, "peak memory {peak:.0} MB");
    }
}

/// Starts `lookalike serve DIR` on a free loopback port; returns the
/// process and the address it printed.
fn start_serve(dir: &std::path::Path) -> (std::process::Child, std::net::SocketAddr) {
    let mut server = Command::new(env!("CARGO_BIN_EXE_lookalike"))
        .args(["serve", dir.to_str().unwrap(), "--port", "0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(server.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line.split("http://").nth(1).and_then(|rest| rest.split('/').next()?.parse().ok());
    (server, addr.unwrap_or_else(|| panic!("no address in {line:?}")))
}

/// `serve` with 300 slow clients (headers that never end) and 150 that
/// never read their response connected at once: a normal client is still
/// answered, memory stays bounded, and stalled clients are let go.
#[test]
fn serve_keeps_answering_under_slow_and_stalled_clients() {
    use std::io::Read;
    use std::net::TcpStream;
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "<!doctype html><title>ok</title>").unwrap();
    std::fs::write(site.path().join("big.bin"), vec![7u8; 16 << 20]).unwrap();
    let (mut server, addr) = start_serve(site.path());
    let get = |path: &str| -> (Duration, Vec<u8>) {
        let started = Instant::now();
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        (started.elapsed(), response)
    };
    let slow: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /index.html HTTP/1.1\r\nHost: x\r\nX-Slow: ").unwrap();
            s
        })
        .collect();
    let stalled: Vec<TcpStream> = (0..150)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut times = Vec::new();
    for _ in 0..20 {
        let (took, response) = get("/index.html");
        assert!(
            response.starts_with(b"HTTP/1.1 200") && response.ends_with(b"<title>ok</title>"),
            "{}",
            String::from_utf8_lossy(&response)
        );
        times.push(took);
    }
    let (took_big, big) = get("/big.bin");
    assert!(big.len() > 16 << 20, "the whole file arrives while 150 clients stall on it");
    times.sort();
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.id())).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    let (rss, peak) = (field("VmRSS:"), field("VmHWM:"));
    figure(&format!(
        "serve with 300 slow and 150 non-reading clients: page median {:.1} ms, max {:.1} ms; 16 MB file in {:.0} ms; server memory {rss:.0} MB (peak {peak:.0} MB)",
        times[10].as_secs_f64() * 1e3,
        times[19].as_secs_f64() * 1e3,
        took_big.as_secs_f64() * 1e3
    ));
    assert!(peak < 256.0, "server memory stays bounded: {peak:.0} MB");
    // A slow client is let go once its headers are overdue.
    let mut first = slow.into_iter().next().unwrap();
    first.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut rest = Vec::new();
    let closed = first.read_to_end(&mut rest).is_ok();
    assert!(closed, "a client whose headers never end is disconnected");
    drop(stalled);
    server.kill().unwrap();
    server.wait().unwrap();
}

/// Malformed and hostile requests to `serve`: random bytes, absurd request
/// lines, encoded escapes from the root, absolute-form and CONNECT targets,
/// pipelined and truncated requests. None reads a file outside the site,
/// none takes the server down, and a normal request still works after.
#[test]
fn serve_survives_malformed_requests() {
    use rand::{RngExt, SeedableRng, rngs::StdRng};
    use std::io::Read;
    use std::net::TcpStream;
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    std::fs::create_dir_all(site.join("www")).unwrap();
    std::fs::write(site.join("index.html"), "<title>ok</title>").unwrap();
    std::fs::write(dir.path().join("secret.txt"), "PRIVATE-BYTES").unwrap();
    let (mut server, addr) = start_serve(&site);
    let exchange = |request: &[u8]| -> Vec<u8> {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        stream.set_write_timeout(Some(Duration::from_secs(15))).unwrap();
        let _ = stream.write_all(request);
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        response
    };
    let crafted: Vec<Vec<u8>> = [
        "GET /../secret.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /%2e%2e/secret.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /%2e%2e%2fsecret.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /..%5csecret.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /www/..%2f..%2fsecret.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET http://127.0.0.1/../secret.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET //secret.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /%00 HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /%ff%fe HTTP/1.1\r\nHost: x\r\n\r\n",
        "CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: x\r\n\r\n",
        "DELETE /index.html HTTP/1.1\r\nHost: x\r\n\r\n",
        "PUT /evil.html HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nevil",
        "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /../secret.txt HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\n",
        "GET / HTTP/9.9\r\n\r\n",
        "GET\r\n\r\n",
        "\r\n\r\n\r\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .chain(std::iter::once(format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a/".repeat(40_000)).into_bytes()))
    .collect();
    let mut rng = StdRng::seed_from_u64(12);
    let random: Vec<Vec<u8>> = (0..200)
        .map(|i| {
            let mut bytes: Vec<u8> = b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
            if i % 2 == 0 {
                (0..rng.random_range(1..2000)).map(|_| rng.random()).collect()
            } else {
                for _ in 0..rng.random_range(1..6) {
                    let at = rng.random_range(0..bytes.len());
                    bytes[at] = rng.random();
                }
                bytes
            }
        })
        .collect();
    let mut answered = 0;
    for request in crafted.iter().chain(&random) {
        let response = exchange(request);
        assert!(
            !response.windows(13).any(|w| w == b"PRIVATE-BYTES"),
            "leaked a file outside the site for {:?}",
            String::from_utf8_lossy(&request[..request.len().min(80)])
        );
        answered += usize::from(!response.is_empty());
    }
    assert!(!site.join("evil.html").exists() && site.join("index.html").is_file());
    let ok = exchange(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(
        ok.starts_with(b"HTTP/1.1 200") && ok.ends_with(b"<title>ok</title>"),
        "{}",
        String::from_utf8_lossy(&ok)
    );
    assert!(server.try_wait().unwrap().is_none(), "the server is still running");
    figure(&format!(
        "hostile HTTP requests to serve: {} sent, {answered} answered, none leaked or took the server down",
        crafted.len() + random.len()
    ));
    server.kill().unwrap();
    server.wait().unwrap();
}
