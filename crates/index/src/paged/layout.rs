//! The paged index's bytes: the head (fetched whole on the first visit) and
//! the four kinds of page (fetched by byte range as queries need them).
//! `docs/index-format.md` ("The paged index") is the reference; this module
//! is the only code that reads or writes them.
//!
//! Every page is checked against the length and CRC-32 the head gives it
//! before a byte of it is read, so a page that was truncated, replaced or
//! corrupted on the way is an error naming its offset, never a wrong answer.
//! The head carries no offsets: they are the running sum of the page
//! lengths, in the order the pages are written, so they cannot disagree.
//!
//! Pages file order: the projection page (optional), one centroid page per
//! cell, the metadata pages (list by list), the list pages, the lookup
//! pages. List pages are adjacent, in an order that keeps neighbouring
//! lists together, so a query's lists often arrive in one range.

use super::PagedError;
use lookalike_forest::Metric;

pub const HEAD_MAGIC: [u8; 8] = *b"LKPAGED\0";
pub const HEAD_VERSION: u32 = 1;
/// Most dimensions, labels, items per page: beyond these a head is refused
/// before anything is allocated for it.
pub const MAX_DIMS: usize = 4096;
const MAX_PROBES: usize = 64;
const NO_LABEL_U16: u16 = u16::MAX;

/// Where a page is in the pages file, and what it must hash to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageRef {
    pub offset: u64,
    pub len: u32,
    pub crc: u32,
}

impl PageRef {
    pub fn end(&self) -> u64 {
        self.offset + self.len as u64
    }

    /// Checks `bytes` are this page.
    pub fn verify(&self, bytes: &[u8]) -> Result<(), PagedError> {
        if bytes.len() != self.len as usize {
            return Err(PagedError::BadPage {
                offset: self.offset,
                reason: format!("{} bytes, expected {}", bytes.len(), self.len),
            });
        }
        if crc32fast::hash(bytes) != self.crc {
            return Err(PagedError::BadPage {
                offset: self.offset,
                reason: "checksum mismatch".into(),
            });
        }
        Ok(())
    }
}

/// One fine list: its items are `first_item..` the next list's first item.
#[derive(Debug, Clone, PartialEq)]
pub struct ListEntry {
    pub first_item: u32,
    pub page: PageRef,
    /// Where the list's metadata pages start, and their total length.
    pub meta_start: u64,
    pub meta_len: u64,
}

/// What the head says; everything a query needs before its first fetch.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub metric: Metric,
    pub dims: usize,
    pub items: u32,
    /// Bits per residual code value: 8, or 4 (two values a byte, low
    /// nibble first).
    pub code_bits: u32,
    /// Items per metadata page (the last page of a list may hold fewer).
    pub meta_per_page: u32,
    /// Lists each lookup entry names for its item's query, best first.
    pub probes: u32,
    pub label_names: Vec<String>,
    /// `cells x dims`.
    pub coarse: Vec<f32>,
    /// Lists of cell `c` are `cell_lists[c]..cell_lists[c + 1]`.
    pub cell_lists: Vec<u32>,
    pub centroid_pages: Vec<PageRef>,
    pub lists: Vec<ListEntry>,
    pub lookup_pages: Vec<PageRef>,
    /// PCA from the embedder's dimensions: `(in_dims, page)`.
    pub projection: Option<(usize, PageRef)>,
    /// Length of the pages file, checked against what the head adds up to.
    pub pages_len: u64,
}

impl Head {
    /// Labels are written as u16 when they fit.
    pub fn wide_labels(&self) -> bool {
        self.label_names.len() >= NO_LABEL_U16 as usize
    }

    /// Bytes of one item's code.
    pub fn code_bytes(&self) -> usize {
        (self.dims * self.code_bits as usize).div_ceil(8)
    }

    pub fn cells(&self) -> usize {
        self.cell_lists.len() - 1
    }

    /// Items of list `list`.
    pub fn list_items(&self, list: usize) -> std::ops::Range<u32> {
        let end = self.lists.get(list + 1).map_or(self.items, |l| l.first_item);
        self.lists[list].first_item..end
    }

    /// The list holding `item`.
    pub fn list_of(&self, item: u32) -> usize {
        self.lists.partition_point(|l| l.first_item <= item) - 1
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Writer::default();
        out.bytes(&HEAD_MAGIC);
        out.u32(HEAD_VERSION);
        out.u32(self.metric.to_code() as u32);
        out.u32(self.dims as u32);
        out.u32(self.items);
        out.u32(self.code_bits);
        out.u32(self.meta_per_page);
        out.u32(self.probes);
        out.u64(self.pages_len);
        out.u32(self.label_names.len() as u32);
        for name in &self.label_names {
            out.string(name);
        }
        match &self.projection {
            Some((in_dims, page)) => {
                out.u32(*in_dims as u32);
                out.page(page);
            }
            None => out.u32(0),
        }
        out.u32(self.cells() as u32);
        // f16: the cells only choose which centroid pages to read.
        for value in &self.coarse {
            out.bytes(&half::f16::from_f32(*value).to_le_bytes());
        }
        for (c, page) in self.centroid_pages.iter().enumerate() {
            out.u32(self.cell_lists[c + 1] - self.cell_lists[c]);
            out.page(page);
        }
        out.u32(self.lists.len() as u32);
        for list in &self.lists {
            out.u32(list.first_item);
            out.page(&list.page);
            out.u64(list.meta_len);
        }
        out.u32(self.lookup_pages.len() as u32);
        for page in &self.lookup_pages {
            out.page(page);
        }
        let crc = crc32fast::hash(&out.0);
        out.u32(crc);
        out.0
    }

    /// Parses and checks a head: magic, version, checksum, every count
    /// against what the bytes can hold, and page offsets that add up to the
    /// pages file's length.
    pub fn decode(bytes: &[u8]) -> Result<Head, PagedError> {
        let bad = |reason: &str| PagedError::BadHead(reason.to_string());
        if bytes.len() < 12 || bytes[..8] != HEAD_MAGIC {
            return Err(bad("not a lookalike paged index head (wrong magic)"));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().unwrap()) {
            return Err(bad("checksum mismatch (truncated or corrupted)"));
        }
        let mut r = Reader::new(&body[8..], "head");
        let version = r.u32()?;
        if version != HEAD_VERSION {
            return Err(bad(&format!("version {version}; this build reads {HEAD_VERSION}")));
        }
        let metric = Metric::from_code(r.u32()? as u8).ok_or_else(|| bad("unknown metric"))?;
        let dims = r.u32()? as usize;
        if dims == 0 || dims > MAX_DIMS {
            return Err(bad(&format!("{dims} dimensions (1 to {MAX_DIMS})")));
        }
        let items = r.u32()?;
        let code_bits = r.u32()?;
        if code_bits != 4 && code_bits != 8 {
            return Err(bad(&format!("{code_bits}-bit codes (4 or 8)")));
        }
        let meta_per_page = r.u32()?;
        let probes = r.u32()?;
        if meta_per_page == 0 || probes == 0 || probes as usize > MAX_PROBES {
            return Err(bad("items per metadata page or probes per item out of range"));
        }
        let pages_len = r.u64()?;
        let label_count = r.count(4)?;
        let label_names = (0..label_count).map(|_| r.string()).collect::<Result<Vec<_>, _>>()?;
        let mut offset = 0u64;
        let in_dims = r.u32()? as usize;
        let projection = if in_dims == 0 {
            None
        } else {
            if in_dims > MAX_DIMS || in_dims < dims {
                return Err(bad(&format!("projection from {in_dims} dimensions")));
            }
            Some((in_dims, r.page(&mut offset)?))
        };
        let cells = r.count(2 * dims + 12)?;
        if cells == 0 {
            return Err(bad("no cells"));
        }
        let coarse = (0..cells * dims)
            .map(|_| r.take(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()))
            .collect::<Result<Vec<_>, _>>()?;
        if coarse.iter().any(|v| !v.is_finite()) {
            return Err(bad("a coarse centroid is not finite"));
        }
        let mut cell_lists = vec![0u32];
        let mut centroid_pages = Vec::with_capacity(cells);
        for _ in 0..cells {
            let count = r.u32()?;
            let next = cell_lists
                .last()
                .unwrap()
                .checked_add(count)
                .ok_or_else(|| bad("list count overflows"))?;
            cell_lists.push(next);
            let page = r.page(&mut offset)?;
            if page.len as u64 != 4 + count as u64 * dims as u64 {
                return Err(bad("a centroid page's length does not match its lists"));
            }
            centroid_pages.push(page);
        }
        let list_count = r.count(20)?;
        if list_count != *cell_lists.last().unwrap() as usize || list_count == 0 {
            return Err(bad("the cells' lists do not add up to the list count"));
        }
        // Entries first: the list pages come after all the metadata, so
        // their offsets need the metadata's total length.
        let mut lists: Vec<ListEntry> = Vec::with_capacity(list_count);
        for _ in 0..list_count {
            let first_item = r.u32()?;
            let len = r.u32()?;
            let crc = r.u32()?;
            let meta_len = r.u64()?;
            let previous = lists.last().map_or(0, |l| l.first_item + 1);
            if first_item < previous || first_item >= items || (lists.is_empty() && first_item != 0)
            {
                return Err(bad("list item ranges are not increasing from 0"));
            }
            let meta_start = offset;
            offset = offset.checked_add(meta_len).ok_or_else(|| bad("offsets overflow"))?;
            lists.push(ListEntry {
                first_item,
                page: PageRef { offset: 0, len, crc },
                meta_start,
                meta_len,
            });
        }
        for list in &mut lists {
            list.page.offset = offset;
            offset += list.page.len as u64;
        }
        let lookup_count = r.count(8)?;
        if lookup_count == 0 {
            return Err(bad("no lookup pages"));
        }
        let lookup_pages =
            (0..lookup_count).map(|_| r.page(&mut offset)).collect::<Result<Vec<_>, _>>()?;
        if !r.is_empty() {
            return Err(bad("bytes after the last field"));
        }
        if offset != pages_len {
            return Err(bad(&format!("pages add up to {offset} bytes, the head says {pages_len}")));
        }
        Ok(Head {
            metric,
            dims,
            items,
            code_bits,
            meta_per_page,
            probes,
            label_names,
            coarse,
            cell_lists,
            centroid_pages,
            lists,
            lookup_pages,
            projection,
            pages_len,
        })
    }
}

/// A list page, parsed in place: every item's 8-bit residual code, label and
/// where its metadata is.
///
/// Bytes: `count` (u32), the list's centroid (`dims` f32), the residuals'
/// per-dimension `base` and `step` (`dims` f32 each: value = centroid +
/// base + step * code), `count` labels (u16, or u32 when the head says
/// so), `count` codes of [`Head::code_bytes`] each, the metadata page count (u32) and their
/// `(len, crc)` (u32 each; the pages follow the list page in its block).
pub struct ListPage<'a> {
    pub count: usize,
    pub centroid: Vec<f32>,
    pub base: Vec<f32>,
    pub step: Vec<f32>,
    labels: &'a [u8],
    wide_labels: bool,
    pub codes: &'a [u8],
    code_bytes: usize,
    code_bits: u32,
    pub meta_pages: Vec<PageRef>,
}

impl<'a> ListPage<'a> {
    pub fn encode(
        centroid: &[f32],
        base: &[f32],
        step: &[f32],
        labels: &[u32],
        codes: &[u8],
        wide_labels: bool,
        meta_pages: &[(u32, u32)],
    ) -> Vec<u8> {
        let mut out = Writer::default();
        out.u32(labels.len() as u32);
        for v in centroid.iter().chain(base).chain(step) {
            out.f32(*v);
        }
        for &label in labels {
            if wide_labels {
                out.u32(label);
            } else {
                out.0.extend_from_slice(&(label.min(NO_LABEL_U16 as u32) as u16).to_le_bytes());
            }
        }
        out.bytes(codes);
        out.u32(meta_pages.len() as u32);
        for &(len, crc) in meta_pages {
            out.u32(len);
            out.u32(crc);
        }
        out.0
    }

    /// Parses a verified list page of `list` (whose block starts at
    /// `page.offset`) and checks it against the head.
    pub fn decode(bytes: &'a [u8], head: &Head, list: usize) -> Result<ListPage<'a>, PagedError> {
        let entry = &head.lists[list];
        let offset = entry.page.offset;
        let bad = |reason: String| PagedError::BadPage { offset, reason };
        let dims = head.dims;
        let mut r = Reader::new(bytes, "list page");
        let count = r.u32()? as usize;
        let expected = head.list_items(list).len();
        if count != expected {
            return Err(bad(format!("{count} items, the head says {expected}")));
        }
        let floats = (0..3 * dims).map(|_| r.f32()).collect::<Result<Vec<_>, _>>()?;
        if floats.iter().any(|v| !v.is_finite()) {
            return Err(bad("a centroid or scale is not finite".into()));
        }
        let wide_labels = head.wide_labels();
        let labels = r.take(count * if wide_labels { 4 } else { 2 })?;
        let code_bytes = head.code_bytes();
        let codes = r.take(count * code_bytes)?;
        let meta_count = r.count(8)?;
        if meta_count != count.div_ceil(head.meta_per_page as usize) {
            return Err(bad(format!("{meta_count} metadata pages for {count} items")));
        }
        let mut meta_offset = entry.meta_start;
        let meta_pages =
            (0..meta_count).map(|_| r.page(&mut meta_offset)).collect::<Result<Vec<_>, _>>()?;
        if !r.is_empty() || meta_offset != entry.meta_start + entry.meta_len {
            return Err(bad("the metadata pages do not fill the list's metadata".into()));
        }
        let labelled = ListPage {
            count,
            centroid: floats[..dims].to_vec(),
            base: floats[dims..2 * dims].to_vec(),
            step: floats[2 * dims..].to_vec(),
            labels,
            wide_labels,
            codes,
            code_bytes,
            code_bits: head.code_bits,
            meta_pages,
        };
        if let Some(i) = (0..count).find(|&i| {
            let label = labelled.label(i);
            label != lookalike_forest::NO_LABEL && label as usize >= head.label_names.len()
        }) {
            return Err(bad(format!("item {i} has a label past the label names")));
        }
        Ok(labelled)
    }

    pub fn label(&self, i: usize) -> u32 {
        if self.wide_labels {
            u32::from_le_bytes(self.labels[4 * i..4 * i + 4].try_into().unwrap())
        } else {
            match u16::from_le_bytes([self.labels[2 * i], self.labels[2 * i + 1]]) {
                NO_LABEL_U16 => lookalike_forest::NO_LABEL,
                label => label as u32,
            }
        }
    }

    /// Item `i`'s code levels, one per dimension, into `levels`.
    pub fn levels(&self, i: usize, levels: &mut [u8]) {
        let code = &self.codes[i * self.code_bytes..(i + 1) * self.code_bytes];
        if self.code_bits == 8 {
            levels.copy_from_slice(code);
        } else {
            for (j, level) in levels.iter_mut().enumerate() {
                *level = (code[j / 2] >> (4 * (j % 2))) & 0x0f;
            }
        }
    }

    /// Item `i`'s vector as stored (decoded from its code).
    pub fn vector(&self, i: usize) -> Vec<f32> {
        let mut code = vec![0u8; self.centroid.len()];
        self.levels(i, &mut code);
        (0..self.centroid.len())
            .map(|j| self.centroid[j] + self.base[j] + self.step[j] * code[j] as f32)
            .collect()
    }
}

/// One lookup entry: a product id, its item and the lists its query probes.
#[derive(Debug, Clone, PartialEq)]
pub struct LookupEntry {
    pub id: String,
    pub item: u32,
    /// How many of the probes hold one of the item's neighbours found at
    /// build time (at least 1): what an unfiltered query reads.
    pub held: u8,
    pub probes: Vec<u32>,
}

/// Lookup page bytes: `count` (u32), then per entry the item (u32), the id
/// (u16 length, UTF-8), `held` (u8) and `probes` list numbers (u32 each).
pub fn encode_lookup(entries: &[LookupEntry]) -> Vec<u8> {
    let mut out = Writer::default();
    out.u32(entries.len() as u32);
    for entry in entries {
        out.u32(entry.item);
        out.0.extend_from_slice(&(entry.id.len() as u16).to_le_bytes());
        out.bytes(entry.id.as_bytes());
        out.0.push(entry.held);
        entry.probes.iter().for_each(|&p| out.u32(p));
    }
    out.0
}

/// Finds `id` in a verified lookup page; every entry read is checked
/// against the head.
pub fn find_in_lookup(
    bytes: &[u8],
    head: &Head,
    page: &PageRef,
    id: &str,
) -> Result<Option<LookupEntry>, PagedError> {
    let bad = |reason: String| PagedError::BadPage { offset: page.offset, reason };
    let mut r = Reader::new(bytes, "lookup page");
    let count = r.count(7)?;
    for _ in 0..count {
        let item = r.u32()?;
        let len = u16::from_le_bytes(r.take(2)?.try_into().unwrap()) as usize;
        let name = r.take(len)?;
        let held = r.take(1)?[0];
        let probes = r.take(4 * head.probes as usize)?;
        if name == id.as_bytes() {
            if item >= head.items {
                return Err(bad(format!("item {item} of {}", head.items)));
            }
            let probes: Vec<u32> =
                probes.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect();
            if probes.iter().any(|&p| p as usize >= head.lists.len()) {
                return Err(bad("a probe names a list past the last".into()));
            }
            if held == 0 || held as u32 > head.probes {
                return Err(bad(format!("{held} probes hold neighbours, of {}", head.probes)));
            }
            return Ok(Some(LookupEntry { id: id.to_string(), item, held, probes }));
        }
    }
    if !r.is_empty() {
        return Err(bad("bytes after the last entry".into()));
    }
    Ok(None)
}

/// The lookup page an id is on: FNV-1a, stable across builds and targets.
pub fn lookup_bucket(id: &str, pages: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in id.as_bytes() {
        hash = (hash ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    (hash % pages as u64) as usize
}

/// Centroid page bytes: the cell's list centroids as 8-bit values and one
/// scale (f32, first): enough to rank lists, at a byte per value.
pub fn encode_centroids(centroids: &[f32]) -> Vec<u8> {
    let largest = centroids.iter().fold(0f32, |m, v| m.max(v.abs()));
    let scale = if largest > 0.0 { largest / 127.0 } else { 1.0 };
    let mut out = scale.to_le_bytes().to_vec();
    out.extend(centroids.iter().map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8 as u8));
    out
}

pub fn decode_centroids(bytes: &[u8], page: &PageRef) -> Result<Vec<f32>, PagedError> {
    let scale = f32::from_le_bytes(bytes[..4].try_into().expect("length checked by the head"));
    if !scale.is_finite() {
        return Err(PagedError::BadPage {
            offset: page.offset,
            reason: "centroid scale is not finite".into(),
        });
    }
    Ok(bytes[4..].iter().map(|&b| b as i8 as f32 * scale).collect())
}

/// Projection page bytes: the mean (`in_dims` f32), then the basis
/// (`dims x in_dims` f32).
pub fn encode_projection(mean: &[f32], basis: &[f32]) -> Vec<u8> {
    mean.iter().chain(basis).flat_map(|v| v.to_le_bytes()).collect()
}

pub fn decode_projection(
    bytes: &[u8],
    head: &Head,
    page: &PageRef,
) -> Result<lookalike_forest::Projection, PagedError> {
    let in_dims = head.projection.map_or(0, |(d, _)| d);
    if bytes.len() != 4 * in_dims * (head.dims + 1) {
        return Err(PagedError::BadPage { offset: page.offset, reason: "projection size".into() });
    }
    let values: Vec<f32> =
        bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    if values.iter().any(|v| !v.is_finite()) {
        return Err(PagedError::BadPage {
            offset: page.offset,
            reason: "projection not finite".into(),
        });
    }
    Ok(lookalike_forest::Projection {
        in_dims,
        out_dims: head.dims,
        mean: values[..in_dims].to_vec(),
        basis: values[in_dims..].to_vec(),
    })
}

#[derive(Default)]
pub(crate) struct Writer(pub Vec<u8>);

impl Writer {
    fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f32(&mut self, v: f32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn string(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.bytes(s.as_bytes());
    }
    fn page(&mut self, page: &PageRef) {
        self.u32(page.len);
        self.u32(page.crc);
    }
}

/// Checked little-endian reads: running out of bytes is an error naming
/// what was being read.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Reader { bytes, what }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PagedError> {
        if n > self.bytes.len() {
            return Err(PagedError::Truncated(self.what));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, PagedError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }

    fn u64(&mut self) -> Result<u64, PagedError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }

    fn f32(&mut self) -> Result<f32, PagedError> {
        Ok(f32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }

    /// A count of records that take at least `min_bytes` each: one the
    /// remaining bytes cannot hold is refused before anything is allocated.
    fn count(&mut self, min_bytes: usize) -> Result<usize, PagedError> {
        let count = self.u32()? as usize;
        if count.saturating_mul(min_bytes.max(1)) > self.bytes.len() {
            return Err(PagedError::Truncated(self.what));
        }
        Ok(count)
    }

    fn string(&mut self) -> Result<String, PagedError> {
        let len = self.count(1)?;
        String::from_utf8(self.take(len)?.to_vec())
            .map_err(|_| PagedError::BadHead("a label name is not UTF-8".into()))
    }

    /// A `(len, crc)` pair placed at `*offset`, which moves past it.
    fn page(&mut self, offset: &mut u64) -> Result<PageRef, PagedError> {
        let len = self.u32()?;
        let crc = self.u32()?;
        let page = PageRef { offset: *offset, len, crc };
        *offset += len as u64;
        Ok(page)
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}
