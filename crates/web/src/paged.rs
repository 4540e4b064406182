//! The paged index in the browser: a query is a loop of steps, and the
//! page's JS (`www/engine.js`) does the fetching between them, so the wasm
//! never blocks and needs no async runtime.
//!
//! ```js
//! const paged = new PagedLookalike(headBytes, 32 << 20);
//! for (;;) {
//!   const step = paged.stepItem('15970', 10, false, undefined);
//!   if (step.hits) break;                       // [{item, id, score, record}]
//!   await Promise.all(step.need.map(async ([start, end]) =>
//!     paged.accept(start, await fetchRange(start, end))));
//! }
//! ```
//!
//! `need` lists byte ranges of the pages file, already merged (pages less
//! than [`MERGE_GAP`] apart share a request): one round of requests.

use lookalike_forest::LabelFilter;
use lookalike_index::paged::{PageRef, PagedHit, PagedIndex, PagedQuery, Step, coalesce};
use serde::Serialize;
use wasm_bindgen::prelude::*;

/// Pages closer than this are fetched in one request: a few kilobytes
/// more are cheaper than a request more on a 6-connection HTTP/1.1 host.
pub const MERGE_GAP: u64 = 4 << 10;

#[derive(Serialize)]
struct Hit<'a> {
    item: u32,
    id: &'a str,
    score: f32,
    /// The product's metadata (id, label, thumb, title, metadata), as JSON.
    record: &'a str,
}

#[derive(Serialize)]
struct StepOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    need: Option<Vec<(f64, f64)>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hits: Option<Vec<Hit<'a>>>,
    /// The id is not in the index.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    missing: bool,
}

/// A paged site's index in the page.
#[wasm_bindgen]
pub struct PagedLookalike {
    index: PagedIndex,
    /// The pages the last step asked for.
    wanted: Vec<PageRef>,
}

#[wasm_bindgen]
impl PagedLookalike {
    /// Parses the head (`data/paged/head.lkh`); `cache_bytes` bounds the
    /// pages kept in memory (at least 16 MB).
    #[wasm_bindgen(constructor)]
    pub fn new(head: &[u8], cache_bytes: usize) -> Result<PagedLookalike, JsError> {
        Ok(PagedLookalike { index: PagedIndex::from_head(head, cache_bytes)?, wanted: Vec::new() })
    }

    #[wasm_bindgen(getter)]
    pub fn length(&self) -> u32 {
        self.index.head().items
    }

    #[wasm_bindgen(getter)]
    pub fn dims(&self) -> usize {
        self.index.head().dims
    }

    /// Bytes the pages file must have (checked against what a host sends).
    #[wasm_bindgen(getter, js_name = pagesBytes)]
    pub fn pages_bytes(&self) -> f64 {
        self.index.head().pages_len as f64
    }

    #[wasm_bindgen(js_name = labelNames)]
    pub fn label_names(&self) -> Vec<String> {
        self.index.head().label_names.clone()
    }

    /// Bytes of pages held in memory now.
    #[wasm_bindgen(getter, js_name = cachedBytes)]
    pub fn cached_bytes(&self) -> usize {
        self.index.cached_bytes()
    }

    /// Forgets every page fetched so far (the next query is cold).
    #[wasm_bindgen(js_name = clearCache)]
    pub fn clear_cache(&mut self) {
        self.index.clear_cache();
    }

    /// One step of a product query: `{need: [[start, end], ...]}` (fetch
    /// these byte ranges, `accept` each, and step again), `{hits}`, or
    /// `{missing: true}` for an id the index does not have.
    #[wasm_bindgen(js_name = stepItem)]
    pub fn step_item(
        &mut self,
        id: &str,
        k: usize,
        same_label: bool,
        label: Option<String>,
    ) -> Result<JsValue, JsError> {
        let query = PagedQuery { same_label, filter: self.filter(label)?, ..PagedQuery::top(k) };
        match self.index.query_item(id, &query)? {
            Step::Need(pages) => self.need(pages),
            Step::Done(None) => to_js(&StepOut { need: None, hits: None, missing: true }),
            Step::Done(Some(hits)) => hits_out(&hits),
        }
    }

    /// One step of a vector query (the embedder's vector, or one in the
    /// index's space); answers like [`Self::step_item`].
    #[wasm_bindgen(js_name = stepVector)]
    pub fn step_vector(
        &mut self,
        vector: &[f32],
        k: usize,
        label: Option<String>,
    ) -> Result<JsValue, JsError> {
        let query = PagedQuery { filter: self.filter(label)?, ..PagedQuery::vector(k) };
        match self.index.query_vector(vector, &query)? {
            Step::Need(pages) => self.need(pages),
            Step::Done(hits) => hits_out(&hits),
        }
    }

    /// One step of reading the records of items `first..first + count`
    /// (a page of the catalog to show); answers like [`Self::step_item`].
    #[wasm_bindgen(js_name = stepBrowse)]
    pub fn step_browse(&mut self, first: u32, count: u32) -> Result<JsValue, JsError> {
        match self.index.browse(first, count)? {
            Step::Need(pages) => self.need(pages),
            Step::Done(hits) => hits_out(&hits),
        }
    }

    /// Hands in bytes fetched from `start` of the pages file; the pages of
    /// the last step inside them are checked (a bad one is an error) and
    /// kept. Returns how many were kept.
    pub fn accept(&mut self, start: f64, bytes: &[u8]) -> Result<usize, JsError> {
        if !(start >= 0.0 && start.fract() == 0.0) {
            return Err(JsError::new(&format!("accept: bad start {start}")));
        }
        Ok(self.index.accept(&self.wanted, start as u64, bytes)?)
    }

    fn need(&mut self, pages: Vec<PageRef>) -> Result<JsValue, JsError> {
        let ranges =
            coalesce(&pages, MERGE_GAP).into_iter().map(|(s, e)| (s as f64, e as f64)).collect();
        self.wanted = pages;
        to_js(&StepOut { need: Some(ranges), hits: None, missing: false })
    }

    fn filter(&self, label: Option<String>) -> Result<LabelFilter, JsError> {
        let Some(name) = label else { return Ok(LabelFilter::Any) };
        match self.index.head().label_names.iter().position(|n| *n == name) {
            Some(n) => Ok(LabelFilter::Equals(n as u32)),
            None => Err(JsError::new(&format!("unknown label '{name}'"))),
        }
    }
}

fn hits_out(hits: &[PagedHit]) -> Result<JsValue, JsError> {
    let hits = hits
        .iter()
        .map(|h| Hit { item: h.item, id: &h.id, score: h.score, record: &h.record })
        .collect();
    to_js(&StepOut { need: None, hits: Some(hits), missing: false })
}

fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsError> {
    Ok(value.serialize(&serde_wasm_bindgen::Serializer::json_compatible())?)
}
