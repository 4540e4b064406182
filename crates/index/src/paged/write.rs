//! Writing a paged index: partition the items, renumber them list by list,
//! and stream the pages out, holding one list's pages at a time.

use super::PagedError;
use super::layout::{
    Head, ListEntry, ListPage, LookupEntry, PageRef, encode_centroids, encode_lookup,
    encode_projection, lookup_bucket,
};
use lookalike_forest::{Metric, Projection, TwoLevel, metric};
use std::collections::HashSet;
use std::io::Write;

/// How a paged index is laid out. The defaults keep a product query near
/// 200 KB on a million items (docs/index-format.md, "The paged index").
#[derive(Debug, Clone, PartialEq)]
pub struct PagedParams {
    /// Items per list: a list page is about `list_size * (dims + 2)` bytes.
    pub list_size: usize,
    /// Lists each item's lookup entry names, best first: the most a
    /// product query can probe.
    pub probes: usize,
    /// Cells searched for an item's probes and a vector query's lists.
    pub probe_cells: usize,
    /// Items per metadata page.
    pub meta_per_page: usize,
    /// Ids per lookup page, on average.
    pub ids_per_lookup_page: usize,
    pub seed: u64,
}

impl Default for PagedParams {
    fn default() -> Self {
        PagedParams {
            list_size: 256,
            probes: 12,
            probe_cells: PROBE_CELLS,
            meta_per_page: 16,
            ids_per_lookup_page: 256,
            seed: 0x9a6e_d1d3,
        }
    }
}

/// Cells searched for each item's probes at build time, where looking
/// wider costs nothing at query time.
pub const PROBE_CELLS: usize = 8;

/// What goes into a paged index. Item `i` is `vectors[i * dims..]`,
/// `ids[i]`, `labels[i]` and `record(i)` (its metadata, one line of JSON
/// with at least an `id` field).
pub struct PagedSource<'a> {
    pub metric: Metric,
    pub dims: usize,
    /// In the index's space (after any projection); normalised here for
    /// angular.
    pub vectors: Vec<f32>,
    pub ids: &'a [String],
    pub labels: &'a [u32],
    pub label_names: &'a [String],
    pub projection: Option<&'a Projection>,
    pub record: &'a (dyn Fn(usize) -> String + Sync),
}

/// Writes the pages of `source` to `pages` and returns the head that
/// describes them. `progress` hears each stage.
pub fn write_paged<W: Write>(
    mut source: PagedSource<'_>,
    params: &PagedParams,
    pages: W,
    progress: &mut dyn FnMut(&str),
) -> Result<Head, PagedError> {
    let dims = source.dims;
    let n = check(&mut source, params)?;
    progress(&format!("partitioning {n} items into lists of about {}", params.list_size));
    let parts =
        TwoLevel::train(&source.vectors, dims, source.metric, params.list_size, params.seed)?;
    let own = parts.assign_all(&source.vectors);
    progress(&format!(
        "{} lists in {} cells; choosing each item's probes",
        parts.list_count(),
        parts.cell_count()
    ));
    let probes = parts.probes_all(&source.vectors, &own, params.probes, params.probe_cells);

    // New item numbers run list by list; `order[new] = old`.
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.sort_by_key(|&i| (own[i as usize], i));
    let mut renumbered = vec![0u32; n];
    for (new, &old) in order.iter().enumerate() {
        renumbered[old as usize] = new as u32;
    }

    let mut out = PageWriter { out: pages, offset: 0 };
    let wide_labels = source.label_names.len() >= u16::MAX as usize;
    let projection = match source.projection {
        Some(p) => Some((p.in_dims, out.put(&encode_projection(&p.mean, &p.basis))?)),
        None => None,
    };
    let mut centroid_pages = Vec::with_capacity(parts.cell_count());
    for cell in 0..parts.cell_count() {
        let lists = parts.cell_lists[cell] as usize..parts.cell_lists[cell + 1] as usize;
        centroid_pages
            .push(out.put(&encode_centroids(&parts.fine[lists.start * dims..lists.end * dims]))?);
    }

    progress("writing list pages and metadata");
    let mut lists = Vec::with_capacity(parts.list_count());
    let mut start = 0usize;
    for list in 0..parts.list_count() as u32 {
        let end = start + order[start..].iter().take_while(|&&i| own[i as usize] == list).count();
        let members = &order[start..end];
        if members.is_empty() {
            // A list that received no item is dropped (it would be an
            // empty page); its centroid stays, and no item names it.
            return Err(PagedError::Build(format!("list {list} received no items")));
        }
        let centroid = &parts.fine[list as usize * dims..(list as usize + 1) * dims];
        let (base, step, codes) = quantise(&source.vectors, dims, members, centroid);
        let labels: Vec<u32> = members.iter().map(|&i| source.labels[i as usize]).collect();
        let meta: Vec<Vec<u8>> = members
            .chunks(params.meta_per_page)
            .map(|chunk| {
                let mut page = String::new();
                for &i in chunk {
                    page.push_str(&(source.record)(i as usize));
                    page.push('\n');
                }
                page.into_bytes()
            })
            .collect();
        let refs: Vec<(u32, u32)> =
            meta.iter().map(|m| (m.len() as u32, crc32fast::hash(m))).collect();
        let block_start = out.offset;
        let page = out.put(&ListPage::encode(
            centroid,
            &base,
            &step,
            &labels,
            &codes,
            wide_labels,
            &refs,
        ))?;
        for m in &meta {
            out.put(m)?;
        }
        lists.push(ListEntry {
            first_item: start as u32,
            page,
            block_len: out.offset - block_start,
        });
        start = end;
    }
    if lists.len() != parts.list_count() {
        return Err(PagedError::Build("lists do not cover the items".into()));
    }

    progress("writing the id lookup");
    let buckets = n.div_ceil(params.ids_per_lookup_page).max(1);
    let mut by_bucket: Vec<(u32, u32)> = (0..n as u32)
        .map(|i| (lookup_bucket(&source.ids[i as usize], buckets) as u32, i))
        .collect();
    by_bucket.sort_unstable();
    let mut lookup_pages = Vec::with_capacity(buckets);
    let mut entries = by_bucket.as_slice();
    for bucket in 0..buckets as u32 {
        let count = entries.iter().take_while(|&&(b, _)| b == bucket).count();
        let page: Vec<LookupEntry> = entries[..count]
            .iter()
            .map(|&(_, i)| LookupEntry {
                id: source.ids[i as usize].clone(),
                item: renumbered[i as usize],
                probes: probes[i as usize * params.probes..(i as usize + 1) * params.probes]
                    .to_vec(),
            })
            .collect();
        lookup_pages.push(out.put(&encode_lookup(&page))?);
        entries = &entries[count..];
    }
    out.out.flush().map_err(|e| PagedError::Io(e.to_string()))?;
    Ok(Head {
        metric: source.metric,
        dims,
        items: n as u32,
        meta_per_page: params.meta_per_page as u32,
        probes: params.probes as u32,
        label_names: source.label_names.to_vec(),
        coarse: parts.coarse,
        cell_lists: parts.cell_lists,
        centroid_pages,
        lists,
        lookup_pages,
        projection,
        pages_len: out.offset,
    })
}

/// Checks the source and normalises its vectors; returns the item count.
fn check(source: &mut PagedSource<'_>, params: &PagedParams) -> Result<usize, PagedError> {
    let dims = source.dims;
    let bad = |reason: String| Err(PagedError::Build(reason));
    if dims == 0 || dims > super::layout::MAX_DIMS || source.vectors.len() % dims != 0 {
        return bad(format!(
            "{} values are not whole {dims}-dimensional vectors",
            source.vectors.len()
        ));
    }
    let n = source.vectors.len() / dims;
    if n == 0 || n > u32::MAX as usize / 2 {
        return bad(format!("{n} items (1 to 2^31)"));
    }
    if source.ids.len() != n || source.labels.len() != n {
        return bad(format!(
            "{} ids and {} labels for {n} vectors",
            source.ids.len(),
            source.labels.len()
        ));
    }
    if params.list_size == 0
        || params.probes == 0
        || params.probes > 64
        || params.meta_per_page == 0
        || params.ids_per_lookup_page == 0
    {
        return bad("list size, probes (1 to 64), items per metadata page and ids per lookup page must be positive".into());
    }
    let mut seen = HashSet::with_capacity(n);
    for id in source.ids {
        if id.len() > u16::MAX as usize {
            return bad(format!("id of {} bytes (the most is 65,535)", id.len()));
        }
        if !seen.insert(id.as_str()) {
            return bad(format!("duplicate id '{id}'"));
        }
    }
    if let Some(p) = source.projection
        && (p.out_dims != dims || p.mean.len() != p.in_dims || p.basis.len() != dims * p.in_dims)
    {
        return bad("the projection does not match the vectors".into());
    }
    for (i, v) in source.vectors.chunks_exact_mut(dims).enumerate() {
        if v.iter().any(|x| !x.is_finite()) {
            return bad(format!("item {i} ('{}') has a non-finite value", source.ids[i]));
        }
        if source.metric == Metric::Angular {
            let norm = metric::dot(v, v).sqrt();
            if norm > 0.0 {
                v.iter_mut().for_each(|x| *x /= norm);
            }
        }
    }
    Ok(n)
}

/// 8-bit codes of the members' residuals from the list centroid, with each
/// dimension's own range: residuals inside a list span a small part of a
/// vector's range, so 256 levels over them are far finer than over the raw
/// values.
fn quantise(
    vectors: &[f32],
    dims: usize,
    members: &[u32],
    centroid: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<u8>) {
    let mut low = vec![f32::INFINITY; dims];
    let mut high = vec![f32::NEG_INFINITY; dims];
    for &i in members {
        for (j, (v, c)) in
            vectors[i as usize * dims..(i as usize + 1) * dims].iter().zip(centroid).enumerate()
        {
            low[j] = low[j].min(v - c);
            high[j] = high[j].max(v - c);
        }
    }
    let step: Vec<f32> = low.iter().zip(&high).map(|(l, h)| (h - l) / 255.0).collect();
    let mut codes = Vec::with_capacity(members.len() * dims);
    for &i in members {
        for (j, (v, c)) in
            vectors[i as usize * dims..(i as usize + 1) * dims].iter().zip(centroid).enumerate()
        {
            let q = if step[j] > 0.0 { ((v - c - low[j]) / step[j]).round() } else { 0.0 };
            codes.push(q.clamp(0.0, 255.0) as u8);
        }
    }
    (low, step, codes)
}

/// Appends pages, tracking where each lands and its checksum.
struct PageWriter<W: Write> {
    out: W,
    offset: u64,
}

impl<W: Write> PageWriter<W> {
    fn put(&mut self, bytes: &[u8]) -> Result<PageRef, PagedError> {
        let len =
            u32::try_from(bytes.len()).map_err(|_| PagedError::Build("a page over 4 GB".into()))?;
        self.out.write_all(bytes).map_err(|e| PagedError::Io(e.to_string()))?;
        let page = PageRef { offset: self.offset, len, crc: crc32fast::hash(bytes) };
        self.offset += len as u64;
        Ok(page)
    }
}
