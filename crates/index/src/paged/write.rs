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
    /// Items per list: a list page is about `list_size * (dims * code_bits
    /// / 8 + 2)` bytes.
    pub list_size: usize,
    /// Bits per code value, 4 or 8: 4 scans twice the items per byte
    /// fetched, 8 ranks them more exactly.
    pub code_bits: u32,
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
            list_size: 128,
            code_bits: 8,
            probes: 8,
            probe_cells: PROBE_CELLS,
            meta_per_page: 8,
            ids_per_lookup_page: 128,
            seed: 0x9a6e_d1d3,
        }
    }
}

/// Cells searched for each item's probes at build time, where looking
/// wider costs nothing at query time.
pub const PROBE_CELLS: usize = 24;

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
    let (parts, own) = parts.without_empty_lists(own);

    // New item numbers run list by list; `order[new] = old`.
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.sort_by_key(|&i| (own[i as usize], i));
    let mut renumbered = vec![0u32; n];
    for (new, &old) in order.iter().enumerate() {
        renumbered[old as usize] = new as u32;
    }
    let mut list_starts = vec![0usize; parts.list_count() + 1];
    own.iter().for_each(|&l| list_starts[l as usize + 1] += 1);
    for l in 0..parts.list_count() {
        list_starts[l + 1] += list_starts[l];
    }
    let members = |list: usize| &order[list_starts[list]..list_starts[list + 1]];
    progress(&format!(
        "{} lists in {} cells; finding each item's neighbours to choose its probes",
        parts.list_count(),
        parts.cell_count()
    ));
    // In blocks, to show progress: this is the build's longest stage.
    let mut probes = Vec::with_capacity(n * (params.probes + 1));
    for block in (0..n).step_by(PROGRESS_BLOCK) {
        let rows = block..(block + PROGRESS_BLOCK).min(n);
        probes.extend(neighbour_probes(&source, &parts, &own, &members, params, rows.clone()));
        progress(&format!("neighbours of {} of {n} items", rows.end));
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

    // Metadata first, so that each list page can carry its pages' checks.
    progress("writing metadata pages");
    let mut meta_refs: Vec<Vec<(u32, u32)>> = Vec::with_capacity(parts.list_count());
    let mut meta_spans = Vec::with_capacity(parts.list_count());
    for list in 0..parts.list_count() {
        let start = out.offset;
        let mut refs = Vec::new();
        for chunk in members(list).chunks(params.meta_per_page) {
            let mut page = String::new();
            for &i in chunk {
                let record = (source.record)(i as usize);
                if record.contains('\n') {
                    return Err(PagedError::Build(format!(
                        "the record of '{}' spans lines",
                        source.ids[i as usize]
                    )));
                }
                page.push_str(&record);
                page.push('\n');
            }
            let written = out.put(page.as_bytes())?;
            refs.push((written.len, written.crc));
        }
        meta_refs.push(refs);
        meta_spans.push((start, out.offset - start));
    }
    progress("writing list pages");
    let mut lists = Vec::with_capacity(parts.list_count());
    for list in 0..parts.list_count() {
        let members = members(list);
        let centroid = &parts.fine[list * dims..(list + 1) * dims];
        let (base, step, codes) =
            quantise(&source.vectors, dims, members, centroid, params.code_bits);
        let labels: Vec<u32> = members.iter().map(|&i| source.labels[i as usize]).collect();
        let page = out.put(&ListPage::encode(
            centroid,
            &base,
            &step,
            &labels,
            &codes,
            wide_labels,
            &meta_refs[list],
        ))?;
        let (meta_start, meta_len) = meta_spans[list];
        lists.push(ListEntry { first_item: list_starts[list] as u32, page, meta_start, meta_len });
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
                held: probes[i as usize * (params.probes + 1)] as u8,
                probes: probes
                    [i as usize * (params.probes + 1) + 1..(i as usize + 1) * (params.probes + 1)]
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
        code_bits: params.code_bits,
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

/// Each item's probes, best first, each run led by how many hold a
/// neighbour (`probes + 1` values per item): the lists that hold its nearest
/// neighbours (found at build time by scoring every item of its
/// [`NEIGHBOUR_LISTS`] nearest lists), the list holding the most first, then the
/// nearest lists by centroid. A product query reads exactly where its
/// look-alikes are, instead of guessing from centroids.
fn neighbour_probes<'m>(
    source: &PagedSource<'_>,
    parts: &TwoLevel,
    own: &[u32],
    members: &(dyn Fn(usize) -> &'m [u32] + Sync),
    params: &PagedParams,
    rows: std::ops::Range<usize>,
) -> Vec<u32> {
    let dims = source.dims;
    let first = rows.start;
    let by_centroid = parts.probes_all(
        &source.vectors[rows.start * dims..rows.end * dims],
        &own[rows.clone()],
        NEIGHBOUR_LISTS,
        params.probe_cells,
    );
    let one = |i: usize| -> Vec<u32> {
        let vector = &source.vectors[i * dims..(i + 1) * dims];
        let near = &by_centroid[(i - first) * NEIGHBOUR_LISTS..(i - first + 1) * NEIGHBOUR_LISTS];
        let mut best: Vec<(f32, u32)> = Vec::with_capacity(NEIGHBOURS + 1);
        let mut seen = Vec::new();
        for &list in near {
            if seen.contains(&list) {
                continue;
            }
            seen.push(list);
            for &m in members(list as usize) {
                if m as usize == i {
                    continue;
                }
                let score = source
                    .metric
                    .score(vector, &source.vectors[m as usize * dims..(m as usize + 1) * dims]);
                if best.len() < NEIGHBOURS || score > best[best.len() - 1].0 {
                    let at = best.partition_point(|b| b.0 >= score);
                    best.insert(at, (score, list));
                    best.truncate(NEIGHBOURS);
                }
            }
        }
        // Lists by how many of the neighbours they hold, then by centroid.
        let mut counted: Vec<(usize, usize, u32)> = Vec::new();
        for (rank, &list) in seen.iter().enumerate() {
            let count = best.iter().filter(|b| b.1 == list).count();
            counted.push((count, rank, list));
        }
        counted.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut probes = vec![own[i]];
        let mut held = 1;
        for (count, _, list) in counted {
            if list != own[i] && probes.len() < params.probes {
                probes.push(list);
                if count > 0 {
                    held = probes.len();
                }
            }
        }
        probes.resize(params.probes, own[i]);
        // The count rides in front of the probes.
        std::iter::once(held as u32).chain(probes).collect::<Vec<u32>>()
    };
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        rows.into_par_iter().flat_map_iter(one).collect()
    }
    #[cfg(target_arch = "wasm32")]
    rows.flat_map(one).collect()
}

/// Items per progress report of the neighbour search.
const PROGRESS_BLOCK: usize = 100_000;
/// Lists scored exactly to find an item's neighbours at build time: on a
/// million synthetic items, IVF at 24 probes finds 0.99 of the true top 10.
const NEIGHBOUR_LISTS: usize = 24;
/// Neighbours found per item to choose its probes.
const NEIGHBOURS: usize = 10;

/// Checks the source and normalises its vectors; returns the item count.
fn check(source: &mut PagedSource<'_>, params: &PagedParams) -> Result<usize, PagedError> {
    let dims = source.dims;
    let bad = |reason: String| Err(PagedError::Build(reason));
    if dims == 0 || dims > super::layout::MAX_DIMS || !source.vectors.len().is_multiple_of(dims) {
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

/// Codes of the members' residuals from the list centroid, `bits` per
/// value, with each dimension's own range: residuals inside a list span a
/// small part of a vector's range, so even 16 levels over them are fine.
fn quantise(
    vectors: &[f32],
    dims: usize,
    members: &[u32],
    centroid: &[f32],
    bits: u32,
) -> (Vec<f32>, Vec<f32>, Vec<u8>) {
    let top = ((1u32 << bits) - 1) as f32;
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
    let step: Vec<f32> = low.iter().zip(&high).map(|(l, h)| (h - l) / top).collect();
    let code_bytes = (dims * bits as usize).div_ceil(8);
    let mut codes = vec![0u8; members.len() * code_bytes];
    for (m, &i) in members.iter().enumerate() {
        let code = &mut codes[m * code_bytes..(m + 1) * code_bytes];
        for (j, (v, c)) in
            vectors[i as usize * dims..(i as usize + 1) * dims].iter().zip(centroid).enumerate()
        {
            let q = if step[j] > 0.0 { ((v - c - low[j]) / step[j]).round() } else { 0.0 };
            let level = q.clamp(0.0, top) as u8;
            if bits == 8 {
                code[j] = level;
            } else {
                code[j / 2] |= level << (4 * (j % 2));
            }
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
