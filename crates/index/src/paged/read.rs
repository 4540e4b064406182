//! Querying a paged index without doing any I/O: a query either answers
//! from the pages it has, or says which pages it needs next. The caller
//! fetches them (byte ranges in the browser, a file natively), hands them
//! in, and asks again; each ask redoes the query's arithmetic, which is
//! microseconds, while a round of fetches is tens of milliseconds.
//!
//! A product query takes three rounds: its lookup page, the lists its entry
//! names, the metadata of the results. A vector query: the projection (once
//! per session), the centroid pages of its best cells, its lists, the
//! metadata.

use super::PagedError;
use super::layout::{
    Head, ListPage, PageRef, decode_centroids, decode_projection, find_in_lookup, lookup_bucket,
};
use lookalike_forest::{LabelFilter, Metric, NO_LABEL, Projection, metric, score_all};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

/// The smallest page cache: room for a few queries' pages, so that a query
/// never evicts what it fetched a round earlier.
pub const MIN_CACHE_BYTES: usize = 16 << 20;

/// A query's answer so far.
#[derive(Debug, Clone, PartialEq)]
pub enum Step<T> {
    /// Fetch these pages (one round), hand them in, and ask again.
    Need(Vec<PageRef>),
    Done(T),
}

/// One result, with the product's metadata record (a JSON object).
#[derive(Debug, Clone, PartialEq)]
pub struct PagedHit {
    pub item: u32,
    pub id: String,
    pub score: f32,
    pub record: String,
}

/// What to look for, and how much to read for it.
#[derive(Debug, Clone, PartialEq)]
pub struct PagedQuery {
    pub k: usize,
    pub filter: LabelFilter,
    /// Keep only items with the query product's label (product queries).
    pub same_label: bool,
    /// Bytes of list pages a query reads before it widens; it widens (by
    /// doubling) only while fewer than `k` items pass its filter.
    pub list_bytes: usize,
    /// Cells whose centroid pages a vector query reads to choose its lists
    /// (product queries need none: their lists are in their lookup entry).
    pub cells: usize,
}

impl PagedQuery {
    /// A product query's defaults.
    pub fn top(k: usize) -> Self {
        PagedQuery {
            k,
            filter: LabelFilter::Any,
            same_label: false,
            list_bytes: DEFAULT_LIST_BYTES,
            cells: DEFAULT_CELLS,
        }
    }

    /// A vector query's defaults: it has no build-time neighbours to go
    /// by, so it reads more lists, chosen by their centroids.
    pub fn vector(k: usize) -> Self {
        PagedQuery { list_bytes: DEFAULT_VECTOR_LIST_BYTES, ..Self::top(k) }
    }
}

/// List bytes a query reads by default: on a million items, about five
/// lists of 256 items at 128 dimensions, recall@10 about 0.9 (bench scale).
pub const DEFAULT_LIST_BYTES: usize = 160 << 10;
/// List bytes a vector query reads by default: about 19 lists of 128
/// items at 128 dimensions (recall@10 about 0.9 on a million items in
/// bench scale, where IVF itself needs 8 to 16 probes).
pub const DEFAULT_VECTOR_LIST_BYTES: usize = 320 << 10;
/// Cells a vector query reads by default: a centroid page is about 2 KB
/// (16 lists at 128 dimensions), and is kept for the queries after.
pub const DEFAULT_CELLS: usize = 16;
/// Widening stops after this many doublings.
const MAX_WIDENINGS: u32 = 3;
/// Lists a vector query considers, best first.
const VECTOR_CANDIDATE_LISTS: usize = 64;

/// A paged index's head and the pages fetched so far (bounded).
pub struct PagedIndex {
    head: Head,
    cache: PageCache,
    projection: Option<Projection>,
    /// Ids already looked up: (page offset, entry).
    lookups: HashMap<String, Option<super::LookupEntry>>,
}

impl PagedIndex {
    /// Parses the head; `cache_bytes` bounds the pages kept (at least
    /// [`MIN_CACHE_BYTES`]).
    pub fn from_head(bytes: &[u8], cache_bytes: usize) -> Result<PagedIndex, PagedError> {
        Ok(PagedIndex {
            head: Head::decode(bytes)?,
            cache: PageCache::new(cache_bytes.max(MIN_CACHE_BYTES)),
            projection: None,
            lookups: HashMap::new(),
        })
    }

    pub fn head(&self) -> &Head {
        &self.head
    }

    /// Forgets every fetched page (and looked-up id): the next query is
    /// cold again.
    pub fn clear_cache(&mut self) {
        self.cache = PageCache::new(self.cache.budget);
        self.projection = None;
        self.lookups.clear();
    }

    /// Bytes of pages held now.
    pub fn cached_bytes(&self) -> usize {
        self.cache.used
    }

    /// Hands in `bytes` fetched from `start` of the pages file: every
    /// page of `wanted` inside that range is checked and kept. A page that
    /// fails its check is an error (and is not kept).
    pub fn accept(
        &mut self,
        wanted: &[PageRef],
        start: u64,
        bytes: &[u8],
    ) -> Result<usize, PagedError> {
        let end = start + bytes.len() as u64;
        let mut kept = 0;
        for page in wanted {
            if page.offset >= start && page.end() <= end {
                let slice = &bytes[(page.offset - start) as usize..(page.end() - start) as usize];
                page.verify(slice)?;
                self.cache.insert(page.offset, slice.into());
                kept += 1;
            }
        }
        Ok(kept)
    }

    /// The look-alikes of catalog product `id`; `Done(None)` when the
    /// index has no such id.
    pub fn query_item(
        &mut self,
        id: &str,
        query: &PagedQuery,
    ) -> Result<Step<Option<Vec<PagedHit>>>, PagedError> {
        let entry = match self.lookup(id)? {
            Step::Need(pages) => return Ok(Step::Need(pages)),
            Step::Done(None) => return Ok(Step::Done(None)),
            Step::Done(Some(entry)) => entry,
        };
        let own_list = self.head.list_of(entry.item);
        let own = match self.list(own_list) {
            Some(page) => page,
            // The own list is the first probe: fetch it with the others.
            None => {
                let first = &entry.probes[..entry.held as usize];
                return Ok(Step::Need(self.missing_lists(&self.chosen(first, query.list_bytes))));
            }
        };
        let (vector, label) = {
            let page = ListPage::decode(&own, &self.head, own_list)?;
            let i = (entry.item - self.head.lists[own_list].first_item) as usize;
            (page.vector(i), page.label(i))
        };
        let filter = match (&query.filter, query.same_label && label != NO_LABEL) {
            (LabelFilter::Any, true) => LabelFilter::Equals(label),
            (filter, _) => filter.clone(),
        };
        // Unfiltered, the lists that held the item's neighbours at build
        // time are enough; a filter may need the others too.
        let candidates = match filter {
            LabelFilter::Any => &entry.probes[..entry.held as usize],
            _ => &entry.probes[..],
        };
        let candidates = candidates.to_vec();
        self.rank(&vector, &candidates, &PagedQuery { filter, ..query.clone() }, Some(entry.item))
            .map(|step| match step {
                Step::Need(p) => Step::Need(p),
                Step::Done(hits) => Step::Done(Some(hits)),
            })
    }

    /// The look-alikes of a vector: the embedder's (projected here when the
    /// index was built with PCA) or one already in the index's space.
    pub fn query_vector(
        &mut self,
        vector: &[f32],
        query: &PagedQuery,
    ) -> Result<Step<Vec<PagedHit>>, PagedError> {
        if vector.iter().any(|v| !v.is_finite()) {
            return Err(PagedError::BadQuery("the vector has a non-finite value".into()));
        }
        let mut vector = if vector.len() == self.head.dims {
            vector.to_vec()
        } else {
            match self.head.projection {
                Some((in_dims, page)) if vector.len() == in_dims => {
                    if self.projection.is_none() {
                        let Some(bytes) = self.cache.get(page.offset) else {
                            return Ok(Step::Need(vec![page]));
                        };
                        self.projection = Some(decode_projection(&bytes, &self.head, &page)?);
                    }
                    self.projection.as_ref().unwrap().apply(vector)
                }
                _ => {
                    return Err(PagedError::BadQuery(format!(
                        "the vector has {} values, the index takes {}{}",
                        vector.len(),
                        self.head.dims,
                        self.head
                            .projection
                            .map_or(String::new(), |(d, _)| format!(" (or {d} before projection)"))
                    )));
                }
            }
        };
        if self.head.metric == Metric::Angular {
            let norm = metric::dot(&vector, &vector).sqrt();
            if norm > 0.0 {
                vector.iter_mut().for_each(|v| *v /= norm);
            }
        }
        let cells = score_all(
            &self.head.coarse,
            self.head.dims,
            self.head.metric,
            &vector,
            query.cells.clamp(1, 64),
        );
        let missing: Vec<PageRef> = cells
            .iter()
            .map(|&(c, _)| self.head.centroid_pages[c as usize])
            .filter(|p| !self.cache.contains(p.offset))
            .collect();
        if !missing.is_empty() {
            return Ok(Step::Need(missing));
        }
        let mut lists = Vec::new();
        for &(cell, _) in &cells {
            let page = self.head.centroid_pages[cell as usize];
            let centroids = decode_centroids(&self.cache.get(page.offset).unwrap(), &page)?;
            let first = self.head.cell_lists[cell as usize];
            for (list, score) in score_all(
                &centroids,
                self.head.dims,
                self.head.metric,
                &vector,
                VECTOR_CANDIDATE_LISTS,
            ) {
                lists.push((first + list, score));
            }
        }
        lists.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        lists.truncate(VECTOR_CANDIDATE_LISTS);
        let candidates: Vec<u32> = lists.into_iter().map(|(l, _)| l).collect();
        self.rank(&vector, &candidates, query, None)
    }

    /// The records of items `first..first + count` (clamped to the index):
    /// a page of the catalog to show before any query.
    pub fn browse(&mut self, first: u32, count: u32) -> Result<Step<Vec<PagedHit>>, PagedError> {
        let end = first.saturating_add(count.min(1000)).min(self.head.items);
        let items: Vec<(u32, f32)> = (first.min(end)..end).map(|i| (i, 0.0)).collect();
        // Items are numbered list by list: their lists are a run.
        let mut lists: Vec<usize> = items.iter().map(|&(i, _)| self.head.list_of(i)).collect();
        lists.dedup();
        let missing = self.missing_lists(&lists);
        if !missing.is_empty() {
            return Ok(Step::Need(missing));
        }
        self.with_records(&items)
    }

    /// The lookup entry of `id`.
    pub fn lookup(&mut self, id: &str) -> Result<Step<Option<super::LookupEntry>>, PagedError> {
        if let Some(found) = self.lookups.get(id) {
            return Ok(Step::Done(found.clone()));
        }
        let page = self.head.lookup_pages[lookup_bucket(id, self.head.lookup_pages.len())];
        let Some(bytes) = self.cache.get(page.offset) else {
            return Ok(Step::Need(vec![page]));
        };
        let found = find_in_lookup(&bytes, &self.head, &page, id)?;
        if self.lookups.len() > 4096 {
            self.lookups.clear();
        }
        self.lookups.insert(id.to_string(), found.clone());
        Ok(Step::Done(found))
    }

    /// The pages of `lists` not held yet.
    fn missing_lists(&self, lists: &[usize]) -> Vec<PageRef> {
        lists
            .iter()
            .map(|&l| self.head.lists[l].page)
            .filter(|p| !self.cache.contains(p.offset))
            .collect()
    }

    /// Candidate lists (deduplicated, in order) within `budget` bytes.
    fn chosen(&self, candidates: &[u32], budget: usize) -> Vec<usize> {
        let mut chosen: Vec<usize> = Vec::new();
        let mut bytes = 0usize;
        for &list in candidates {
            let list = list as usize;
            if chosen.contains(&list) {
                continue;
            }
            let len = self.head.lists[list].page.len as usize;
            if !chosen.is_empty() && bytes + len > budget {
                break;
            }
            bytes += len;
            chosen.push(list);
        }
        chosen
    }

    /// Scores the items of the chosen lists, widening while fewer than `k`
    /// pass the filter, then fetches the winners' metadata.
    fn rank(
        &mut self,
        vector: &[f32],
        candidates: &[u32],
        query: &PagedQuery,
        exclude: Option<u32>,
    ) -> Result<Step<Vec<PagedHit>>, PagedError> {
        let k = query.k.min(self.head.items as usize);
        // A widened query's pages must fit the cache twice over, or a
        // round could evict what the last one fetched.
        let budget = query.list_bytes.clamp(1, self.cache.budget / (2 << MAX_WIDENINGS));
        let distinct = candidates.iter().collect::<std::collections::HashSet<_>>().len();
        let mut widenings = 0;
        let scored = loop {
            let lists = self.chosen(candidates, budget << widenings);
            let missing = self.missing_lists(&lists);
            if !missing.is_empty() {
                return Ok(Step::Need(missing));
            }
            let mut scored = Vec::new();
            for &list in &lists {
                let bytes = self.list(list).expect("checked above");
                let page = ListPage::decode(&bytes, &self.head, list)?;
                score_list(
                    &page,
                    vector,
                    self.head.metric,
                    self.head.lists[list].first_item,
                    &query.filter,
                    exclude,
                    &mut scored,
                );
            }
            if scored.len() >= k || lists.len() == distinct || widenings >= MAX_WIDENINGS {
                break scored;
            }
            widenings += 1;
        };
        let mut scored = scored;
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.truncate(k);
        self.with_records(&scored)
    }

    /// The hits with their metadata records, or the metadata pages needed.
    fn with_records(&mut self, scored: &[(u32, f32)]) -> Result<Step<Vec<PagedHit>>, PagedError> {
        let per = self.head.meta_per_page as usize;
        // Each hit's metadata page, from its list page (decoded once per list).
        let mut meta_of_list: HashMap<usize, Vec<PageRef>> = HashMap::new();
        let mut wanted = Vec::with_capacity(scored.len());
        for &(item, _) in scored {
            let list = self.head.list_of(item);
            let pages = match meta_of_list.entry(list) {
                Entry::Occupied(known) => known.into_mut(),
                Entry::Vacant(slot) => {
                    let bytes = self.cache.get(self.head.lists[list].page.offset);
                    let bytes = bytes.expect("a scored list is held");
                    slot.insert(ListPage::decode(&bytes, &self.head, list)?.meta_pages)
                }
            };
            let position = (item - self.head.lists[list].first_item) as usize;
            wanted.push((pages[position / per], position % per));
        }
        let mut missing: Vec<PageRef> = Vec::new();
        for &(meta, _) in &wanted {
            if !self.cache.contains(meta.offset) && !missing.contains(&meta) {
                missing.push(meta);
            }
        }
        if !missing.is_empty() {
            return Ok(Step::Need(missing));
        }
        let mut hits = Vec::with_capacity(scored.len());
        for (&(item, score), &(meta, line)) in scored.iter().zip(&wanted) {
            let text = self.cache.get(meta.offset).expect("checked above");
            let record = record_at(&text, line, &meta)?;
            let id = id_of(&record).ok_or_else(|| PagedError::BadPage {
                offset: meta.offset,
                reason: format!("item {item}'s record has no string id"),
            })?;
            hits.push(PagedHit { item, id, score, record });
        }
        Ok(Step::Done(hits))
    }

    /// A held list page.
    fn list(&mut self, list: usize) -> Option<Arc<[u8]>> {
        self.cache.get(self.head.lists[list].page.offset)
    }
}

/// Scores every item of a list page that passes `filter`.
fn score_list(
    page: &ListPage<'_>,
    query: &[f32],
    metric: Metric,
    first_item: u32,
    filter: &LabelFilter,
    exclude: Option<u32>,
    out: &mut Vec<(u32, f32)>,
) {
    let dims = query.len();
    // Decoded value j = offset[j] + step[j] * code[j].
    let offset: Vec<f32> = (0..dims).map(|j| page.centroid[j] + page.base[j]).collect();
    let weighted: Vec<f32> = query.iter().zip(&page.step).map(|(q, s)| q * s).collect();
    let constant = metric::dot(query, &offset);
    let mut code = vec![0u8; dims];
    for i in 0..page.count {
        let item = first_item + i as u32;
        if Some(item) == exclude || !filter.accepts(page.label(i)) {
            continue;
        }
        page.levels(i, &mut code);
        let score = match metric {
            Metric::Angular | Metric::Dot => {
                constant + code.iter().zip(&weighted).map(|(&c, w)| c as f32 * w).sum::<f32>()
            }
            Metric::Euclidean => {
                let d2: f32 = (0..dims)
                    .map(|j| {
                        let d = query[j] - (offset[j] + page.step[j] * code[j] as f32);
                        d * d
                    })
                    .sum();
                -d2.sqrt()
            }
        };
        out.push((item, score));
    }
}

/// Line `line` of a metadata page.
fn record_at(text: &[u8], line: usize, page: &PageRef) -> Result<String, PagedError> {
    let bad = |reason: &str| PagedError::BadPage { offset: page.offset, reason: reason.into() };
    let text = std::str::from_utf8(text).map_err(|_| bad("metadata is not UTF-8"))?;
    text.split_terminator('\n')
        .nth(line)
        .map(str::to_string)
        .ok_or_else(|| bad("metadata page is short"))
}

/// A record's `id`, read without building a JSON tree (the browsing wasm
/// stays small: no `serde_json::Value`).
fn id_of(record: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Id {
        id: String,
    }
    serde_json::from_str::<Id>(record).ok().map(|r| r.id)
}

/// Pages by offset, least recently used evicted past a byte budget.
struct PageCache {
    budget: usize,
    used: usize,
    tick: u64,
    pages: HashMap<u64, (Arc<[u8]>, u64)>,
}

impl PageCache {
    fn new(budget: usize) -> Self {
        PageCache { budget, used: 0, tick: 0, pages: HashMap::new() }
    }

    fn contains(&self, offset: u64) -> bool {
        self.pages.contains_key(&offset)
    }

    fn get(&mut self, offset: u64) -> Option<Arc<[u8]>> {
        self.tick += 1;
        let tick = self.tick;
        self.pages.get_mut(&offset).map(|(bytes, used)| {
            *used = tick;
            bytes.clone()
        })
    }

    fn insert(&mut self, offset: u64, bytes: Arc<[u8]>) {
        if self.pages.contains_key(&offset) {
            return;
        }
        while self.used + bytes.len() > self.budget && !self.pages.is_empty() {
            let (&oldest, _) = self.pages.iter().min_by_key(|(_, (_, used))| *used).unwrap();
            let (gone, _) = self.pages.remove(&oldest).unwrap();
            self.used -= gone.len();
        }
        self.tick += 1;
        self.used += bytes.len();
        self.pages.insert(offset, (bytes, self.tick));
    }
}

/// Byte ranges that fetch `pages` in few requests: pages sorted by offset,
/// and merged when the gap between them is at most `max_gap` bytes (a gap
/// costs bytes, a request costs a round trip's share of the connections).
pub fn coalesce(pages: &[PageRef], max_gap: u64) -> Vec<(u64, u64)> {
    let mut sorted: Vec<&PageRef> = pages.iter().collect();
    sorted.sort_by_key(|p| p.offset);
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for page in sorted {
        match ranges.last_mut() {
            Some((_, end)) if page.offset <= *end + max_gap => *end = (*end).max(page.end()),
            _ => ranges.push((page.offset, page.end())),
        }
    }
    ranges
}
