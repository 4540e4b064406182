//! The paged index against exact search, on clustered data, through the
//! same ask-fetch-ask loop the browser runs.

use super::*;
use lookalike_forest::{LabelFilter, Metric, NO_LABEL, Projection, metric};
use rand::{RngExt, SeedableRng, rngs::StdRng};

/// `n` vectors around `groups` centres in `dims` dimensions.
fn clustered(n: usize, dims: usize, groups: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    let centres: Vec<f32> = (0..groups * dims).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    (0..n)
        .flat_map(|_| {
            let g = rng.random_range(0..groups);
            (0..dims)
                .map(|j| centres[g * dims + j] + rng.random_range(-0.3f32..0.3))
                .collect::<Vec<_>>()
        })
        .collect()
}

struct Built {
    pages: Vec<u8>,
    head: Vec<u8>,
    ids: Vec<String>,
    vectors: Vec<f32>,
    labels: Vec<u32>,
}

fn build(
    n: usize,
    dims: usize,
    metric: Metric,
    projection: Option<&Projection>,
    raw: &[f32],
) -> Built {
    let vectors = match projection {
        Some(p) => p.apply_all(raw),
        None => raw.to_vec(),
    };
    let ids: Vec<String> = (0..n).map(|i| format!("sku-{i}")).collect();
    let labels: Vec<u32> =
        (0..n as u32).map(|i| if i % 50 == 0 { NO_LABEL } else { i % 3 }).collect();
    let names = vec!["a".to_string(), "b".into(), "c".into()];
    let record = |i: usize| format!("{{\"id\":\"sku-{i}\",\"title\":\"Product {i}\"}}");
    let source = PagedSource {
        metric,
        dims,
        vectors: vectors.clone(),
        ids: &ids,
        labels: &labels,
        label_names: &names,
        projection,
        record: &record,
    };
    let mut pages = Vec::new();
    let params = PagedParams { list_size: 64, ..PagedParams::default() };
    let head = write_paged(source, &params, &mut pages, &mut |_| {}).unwrap();
    Built { pages, head: head.encode(), ids, vectors, labels }
}

/// Runs a query to its end, fetching from `pages`; returns the answer and
/// the rounds of fetches it took.
fn drive<T>(
    index: &mut PagedIndex,
    pages: &[u8],
    mut ask: impl FnMut(&mut PagedIndex) -> Result<Step<T>, PagedError>,
) -> Result<(T, usize), PagedError> {
    for rounds in 0..12 {
        match ask(index)? {
            Step::Done(answer) => return Ok((answer, rounds)),
            Step::Need(wanted) => {
                for (start, end) in coalesce(&wanted, 4096) {
                    index.accept(&wanted, start, &pages[start as usize..end as usize])?;
                }
            }
        }
    }
    panic!("a query that never ends");
}

fn exact(
    vectors: &[f32],
    dims: usize,
    metric: Metric,
    query: &[f32],
    k: usize,
    skip: Option<usize>,
) -> Vec<usize> {
    let mut scored: Vec<(usize, f32)> = vectors
        .chunks_exact(dims)
        .enumerate()
        .filter(|(i, _)| Some(*i) != skip)
        .map(|(i, v)| (i, metric.score(&normalised(query, metric), &normalised(v, metric))))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    scored.into_iter().take(k).map(|(i, _)| i).collect()
}

fn normalised(v: &[f32], m: Metric) -> Vec<f32> {
    if m != Metric::Angular {
        return v.to_vec();
    }
    let norm = metric::dot(v, v).sqrt();
    v.iter().map(|x| x / norm).collect()
}

fn source_of(hit: &PagedHit) -> usize {
    hit.id.strip_prefix("sku-").unwrap().parse().unwrap()
}

#[test]
fn product_and_vector_queries_find_the_exact_neighbours_in_three_rounds() {
    for metric in [Metric::Angular, Metric::Euclidean] {
        let (n, dims) = (6000, 24);
        let raw = clustered(n, dims, 60, 3);
        let built = build(n, dims, metric, None, &raw);
        let mut index = PagedIndex::from_head(&built.head, 0).unwrap();
        let (mut found, mut wanted) = (0, 0);
        for q in (0..n).step_by(97) {
            let (hits, rounds) = drive(&mut index, &built.pages, |ix| {
                ix.query_item(&built.ids[q], &PagedQuery::top(10))
            })
            .unwrap();
            let hits = hits.unwrap();
            assert!(rounds <= 3, "{rounds} rounds for a product query");
            assert_eq!(hits.len(), 10);
            assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
            assert!(hits.iter().all(|h| h.record.contains("\"title\":\"Product ")));
            let truth = exact(
                &built.vectors,
                dims,
                metric,
                &built.vectors[q * dims..(q + 1) * dims],
                10,
                Some(q),
            );
            found += hits.iter().filter(|h| truth.contains(&source_of(h))).count();
            wanted += 10;
            assert!(
                !hits.iter().any(|h| source_of(h) == q),
                "the query product is never its own look-alike"
            );
        }
        let recall = found as f64 / wanted as f64;
        assert!(recall >= 0.9, "{metric:?}: product recall@10 {recall:.3}");

        let (mut found, mut wanted) = (0, 0);
        let queries = clustered(40, dims, 60, 99);
        for query in queries.chunks_exact(dims) {
            let (hits, rounds) =
                drive(&mut index, &built.pages, |ix| ix.query_vector(query, &PagedQuery::top(10)))
                    .unwrap();
            assert!(rounds <= 3, "{rounds} rounds for a vector query");
            let truth = exact(&built.vectors, dims, metric, query, 10, None);
            found += hits.iter().filter(|h| truth.contains(&source_of(h))).count();
            wanted += 10;
        }
        // Fresh points between a blob's members are harder than products.
        let recall = found as f64 / wanted as f64;
        assert!(recall >= 0.85, "{metric:?}: vector recall@10 {recall:.3}");
    }
}

#[test]
fn label_filters_unknown_ids_and_projected_queries() {
    let (n, in_dims, dims) = (3000, 40, 16);
    let raw = clustered(n, in_dims, 30, 5);
    let projection = Projection::fit(&raw, in_dims, dims, true, 1);
    let built = build(n, dims, Metric::Angular, Some(&projection), &raw);
    let mut index = PagedIndex::from_head(&built.head, 0).unwrap();
    let same = PagedQuery { same_label: true, ..PagedQuery::top(10) };
    let (hits, _) = drive(&mut index, &built.pages, |ix| ix.query_item("sku-7", &same)).unwrap();
    let hits = hits.unwrap();
    assert_eq!(hits.len(), 10);
    assert!(hits.iter().all(|h| built.labels[source_of(h)] == built.labels[7]), "same label only");
    let only_c = PagedQuery { filter: LabelFilter::Equals(2), ..PagedQuery::top(5) };
    let (hits, _) =
        drive(&mut index, &built.pages, |ix| ix.query_vector(&raw[..in_dims], &only_c)).unwrap();
    assert_eq!(hits.len(), 5);
    assert!(hits.iter().all(|h| built.labels[source_of(h)] == 2));
    // The embedder's vector is projected with the page's basis, and finds
    // the product it came from.
    let (hits, _) = drive(&mut index, &built.pages, |ix| {
        ix.query_vector(&raw[in_dims * 11..in_dims * 12], &PagedQuery::top(1))
    })
    .unwrap();
    assert_eq!(hits[0].id, "sku-11");
    let (missing, rounds) =
        drive(&mut index, &built.pages, |ix| ix.query_item("no-such-sku", &PagedQuery::top(5)))
            .unwrap();
    assert_eq!(missing, None);
    assert!(rounds <= 1);
    let bad = index.query_vector(&[1.0; 7], &PagedQuery::top(3));
    assert!(matches!(bad, Err(PagedError::BadQuery(m)) if m.contains("7 values")));
    assert!(matches!(
        index.query_vector(&[f32::NAN; 16], &PagedQuery::top(3)),
        Err(PagedError::BadQuery(_))
    ));
}

#[test]
fn a_damaged_page_or_head_is_an_error_never_an_answer() {
    let (n, dims) = (2000, 8);
    let built = build(n, dims, Metric::Angular, None, &clustered(n, dims, 20, 8));
    // Flip one byte anywhere in the pages: the query that reads it fails
    // with the page's offset, every other answer is unchanged.
    let mut rng = StdRng::seed_from_u64(4);
    let clean_index = || PagedIndex::from_head(&built.head, 0).unwrap();
    let mut clean = clean_index();
    let query = |ix: &mut PagedIndex| ix.query_item("sku-3", &PagedQuery::top(10));
    let (expected, _) = drive(&mut clean, &built.pages, query).unwrap();
    let mut failures = 0;
    for _ in 0..200 {
        let mut pages = built.pages.clone();
        let at = rng.random_range(0..pages.len());
        pages[at] ^= 1 << rng.random_range(0..8);
        match drive(&mut clean_index(), &pages, query) {
            Ok((answer, _)) => assert_eq!(answer, expected, "a damaged page gave another answer"),
            Err(PagedError::BadPage { offset, .. }) => {
                assert!(offset <= at as u64);
                failures += 1;
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(failures > 0);
    // Heads: truncated, flipped, or claiming another pages file.
    for cut in [0, 7, 12, built.head.len() / 2, built.head.len() - 1] {
        assert!(matches!(
            PagedIndex::from_head(&built.head[..cut], 0),
            Err(PagedError::BadHead(_))
        ));
    }
    let mut flipped = built.head.clone();
    flipped[30] ^= 0x40;
    assert!(
        matches!(PagedIndex::from_head(&flipped, 0), Err(PagedError::BadHead(m)) if m.contains("checksum"))
    );
    let mut head = Head::decode(&built.head).unwrap();
    head.pages_len += 1;
    assert!(
        matches!(PagedIndex::from_head(&head.encode(), 0), Err(PagedError::BadHead(m)) if m.contains("add up"))
    );
    let mut head = Head::decode(&built.head).unwrap();
    head.lists[3].first_item = head.lists[2].first_item;
    assert!(PagedIndex::from_head(&head.encode(), 0).is_err());
}

#[test]
fn the_cache_stays_within_its_budget() {
    // About 20 MB of pages, more than the smallest cache holds.
    let (n, dims) = (30_000, 640);
    let built = build(n, dims, Metric::Angular, None, &clustered(n, dims, 100, 6));
    assert!(built.pages.len() > MIN_CACHE_BYTES);
    let mut index = PagedIndex::from_head(&built.head, 0).unwrap();
    for q in (0..n).step_by(31) {
        drive(&mut index, &built.pages, |ix| ix.query_item(&built.ids[q], &PagedQuery::top(10)))
            .unwrap();
        assert!(index.cached_bytes() <= MIN_CACHE_BYTES);
    }
    assert!(index.cached_bytes() > MIN_CACHE_BYTES / 2, "the cache is used");
}

#[test]
fn nearby_pages_merge_into_one_range() {
    let page = |offset, len| PageRef { offset, len, crc: 0 };
    let ranges = coalesce(&[page(500, 100), page(0, 100), page(150, 50), page(10_000, 10)], 100);
    assert_eq!(ranges, vec![(0, 200), (500, 600), (10_000, 10_010)]);
    assert_eq!(coalesce(&[], 100), vec![]);
}

#[test]
fn bad_sources_are_refused_with_the_reason() {
    let ids = vec!["a".to_string(), "a".to_string()];
    let record = |_| String::from("{}");
    let source = |ids: &'static [String], vectors: Vec<f32>| PagedSource {
        metric: Metric::Angular,
        dims: 2,
        vectors,
        ids,
        labels: &[NO_LABEL, NO_LABEL],
        label_names: &[],
        projection: None,
        record: &record,
    };
    let ids: &'static [String] = Box::leak(ids.into_boxed_slice());
    let err =
        write_paged(source(ids, vec![1.0; 4]), &PagedParams::default(), Vec::new(), &mut |_| {})
            .unwrap_err();
    assert!(err.to_string().contains("duplicate id 'a'"), "{err}");
    let ids: &'static [String] =
        Box::leak(vec!["a".to_string(), "b".to_string()].into_boxed_slice());
    let err = write_paged(
        source(ids, vec![1.0, f32::NAN, 0.0, 1.0]),
        &PagedParams::default(),
        Vec::new(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("item 0 ('a') has a non-finite value"), "{err}");
    let err =
        write_paged(source(ids, vec![1.0; 5]), &PagedParams::default(), Vec::new(), &mut |_| {})
            .unwrap_err();
    assert!(err.to_string().contains("not whole"), "{err}");
}

#[test]
fn mutated_heads_and_pages_never_panic() {
    let (n, dims) = (1500, 8);
    let built = build(n, dims, Metric::Euclidean, None, &clustered(n, dims, 15, 12));
    let mut rng = StdRng::seed_from_u64(21);
    let query = |ix: &mut PagedIndex, pages: &[u8]| {
        let _ = drive(ix, pages, |ix| ix.query_item("sku-9", &PagedQuery::top(10)));
        let _ = drive(ix, pages, |ix| ix.query_vector(&[0.5; 8], &PagedQuery::vector(10)));
        let _ = drive(ix, pages, |ix| ix.browse(0, 40));
    };
    for _ in 0..400 {
        // A head whose checksum is made to match its mutation: only the
        // field checks stand between it and the reader.
        let mut head = built.head.clone();
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(8..head.len() - 4);
            head[at] = rng.random();
        }
        let body = head.len() - 4;
        let crc = crc32fast::hash(&head[..body]);
        head[body..].copy_from_slice(&crc.to_le_bytes());
        if let Ok(mut index) = PagedIndex::from_head(&head, 0) {
            query(&mut index, &built.pages);
        }
    }
}
