//! # Brief overview
//!
//! The paged index: a site's index laid out so that a browser fetches only
//! what a query needs, by HTTP byte range from one static file (or from
//! fixed-size chunk files on hosts that ignore ranges). It is how a catalog
//! of a million products is searched from a static host: the first visit
//! downloads a head of a few hundred kilobytes, a product query about
//! 200 KB more, in three rounds of requests.
//!
//! Items are partitioned by two-level k-means ([`lookalike_forest::TwoLevel`])
//! into lists of a few hundred; a list page holds its items' 8-bit residual
//! codes and labels, followed by their metadata. A product id's lookup page
//! names its item and the lists its query probes, so a product query never
//! needs centroids; a vector query picks lists from the head's cells and
//! the cells' centroid pages. The layout is in `docs/index-format.md`.
//!
//! The reader does no I/O ([`PagedIndex`] answers [`Step::Need`] with the
//! pages it lacks), so the browser, the native tool and the tests drive
//! the same code with their own fetching.
//!
//! ```
//! use lookalike_forest::Metric;
//! use lookalike_index::paged::{PagedIndex, PagedParams, PagedQuery, PagedSource, Step, write_paged};
//! let ids: Vec<String> = (0..300).map(|i| format!("p{i}")).collect();
//! let vectors: Vec<f32> = (0..300).flat_map(|i| { let a = i as f32 / 60.0; [a.cos(), a.sin(), 1.0] }).collect();
//! let record = |i: usize| format!("{{\"id\":\"p{i}\"}}");
//! let source = PagedSource { metric: Metric::Angular, dims: 3, vectors, ids: &ids,
//!     labels: &vec![u32::MAX; 300], label_names: &[], projection: None, record: &record };
//! let mut pages = Vec::new();
//! let head = write_paged(source, &PagedParams { list_size: 20, ..PagedParams::default() }, &mut pages, &mut |_| {}).unwrap();
//! let mut index = PagedIndex::from_head(&head.encode(), 0).unwrap();
//! let hits = loop {
//!     match index.query_item("p7", &PagedQuery::top(3)).unwrap() {
//!         Step::Need(wanted) => for p in &wanted {
//!             index.accept(&[*p], p.offset, &pages[p.offset as usize..p.end() as usize]).unwrap();
//!         },
//!         Step::Done(hits) => break hits.unwrap(),
//!     }
//! };
//! assert!(["p6", "p8"].contains(&hits[0].id.as_str()));
//! ```

mod layout;
mod read;
mod write;

pub use layout::{HEAD_MAGIC, Head, LookupEntry, PageRef};
pub use read::{
    DEFAULT_CELLS, DEFAULT_LIST_BYTES, MIN_CACHE_BYTES, PagedHit, PagedIndex, PagedQuery, Step,
    coalesce,
};
pub use write::{PROBE_CELLS, PagedParams, PagedSource, write_paged};

/// What can go wrong with a paged index.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PagedError {
    #[error("paged index head: {0}")]
    BadHead(String),
    #[error("paged index: page at byte {offset}: {reason}")]
    BadPage { offset: u64, reason: String },
    #[error("paged index: {0} ends early")]
    Truncated(&'static str),
    #[error("paged query: {0}")]
    BadQuery(String),
    #[error("building a paged index: {0}")]
    Build(String),
    #[error("building a paged index: {0}")]
    Partition(#[from] lookalike_forest::ForestError),
    #[error("writing a paged index: {0}")]
    Io(String),
}

#[cfg(test)]
mod tests;
