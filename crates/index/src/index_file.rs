//! The static index file the site ships: the forest plus the product ids and
//! label names its item numbers refer to. The layout is documented in
//! `docs/index-format.md`; this module is its only reader and writer.
//!
//! Loading never trusts the bytes: lengths, offsets, checksums and every
//! node reference are checked, so a truncated, corrupted, foreign or newer
//! file is an error with a reason, never a panic or an endless loop.

use crate::appearance::{Layout, PartsTable};
use lookalike_forest::{
    Buf, Encoding, Forest, ForestError, ForestPart, ForestParts, GraphParams, GraphPart,
    MAX_DEGREE, Metric, NO_LABEL, NO_LINK, Projection, SharedBytes, VectorStore,
};
use std::collections::HashMap;
use std::sync::Arc;

pub const MAGIC: [u8; 8] = *b"LKALIKE\0";
/// The newest format version this build reads and the one it writes.
/// Version 3 extends the header checksum over the section table.
pub const FORMAT_VERSION: u16 = 3;
const HEADER_LEN: usize = 64;
const SECTION_ENTRY_LEN: usize = 24;
const SECTION_ALIGN: usize = 64;
/// Item and label numbers are written as u16 when they fit, which halves
/// the leaf lists; this u16 stands for "no label".
const NO_LABEL_U16: u16 = u16::MAX;

/// Section kinds, in the order they are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Section {
    Vectors = 1,
    Labels = 2,
    Roots = 3,
    Nodes = 4,
    Planes = 5,
    Offsets = 6,
    LeafItems = 7,
    Ids = 8,
    LabelNames = 9,
    Scales = 10,
    ProjectionMean = 11,
    ProjectionBasis = 12,
    Deleted = 13,
    RescoreVectors = 14,
    RescoreScales = 15,
    /// Optional: every item's colour signature and learned attributes
    /// ([`crate::appearance::PartsTable`]): a u32 length, the layout as
    /// JSON, then one byte per value.
    Appearance = 16,
    /// Optional: the neighbour graph. Degree (u32), entry item (u32),
    /// alpha (f32) and build beam (u32), then `n * degree` links, each as
    /// wide as a leaf list's item numbers (the "none" value marks an
    /// unused slot).
    Graph = 17,
}

/// Bytes before a graph section's links.
const GRAPH_PREFIX: usize = 16;

const ALL_SECTIONS: [Section; 17] = [
    Section::Vectors,
    Section::Scales,
    Section::Labels,
    Section::Roots,
    Section::Nodes,
    Section::Planes,
    Section::Offsets,
    Section::LeafItems,
    Section::Ids,
    Section::LabelNames,
    Section::ProjectionMean,
    Section::ProjectionBasis,
    Section::Deleted,
    Section::RescoreVectors,
    Section::RescoreScales,
    Section::Appearance,
    Section::Graph,
];
/// Header byte 60 when there are no re-scoring vectors.
const NO_RESCORE: u8 = 0xFF;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IndexFileError {
    #[error("file is {0} bytes, too short for an index header")]
    TooShort(usize),
    #[error("not a lookalike index (bad magic bytes)")]
    NotAnIndex,
    #[error(
        "index format version {found} is newer than this build reads (up to {FORMAT_VERSION}); rebuild the index or update lookalike"
    )]
    NewerVersion { found: u16 },
    #[error("index header checksum mismatch: the file is corrupted")]
    HeaderChecksum,
    #[error("unknown {what} code {code} in header")]
    UnknownCode { what: &'static str, code: u8 },
    #[error("section table runs past the end of the file")]
    TableOutOfBounds,
    #[error(
        "unknown section kind {0} in an unsigned (version 1 or 2) section table: the file is corrupted"
    )]
    UnknownSection(u32),
    #[error("section {0:?} is missing")]
    MissingSection(Section),
    #[error("section {0:?} runs past the end of the file (truncated download?)")]
    SectionOutOfBounds(Section),
    #[error("section {0:?} checksum mismatch: the file is corrupted")]
    SectionChecksum(Section),
    #[error("section {section:?} is {found} bytes, expected {expected}")]
    SectionLength { section: Section, expected: usize, found: usize },
    #[error("malformed {section:?}: {reason}")]
    Malformed { section: Section, reason: String },
}

/// Why [`Index::open`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("{0}: {1}")]
    Invalid(String, IndexFileError),
}

/// A forest together with what its item numbers mean.
#[derive(Debug, Clone, PartialEq)]
pub struct Index {
    pub forest: Forest,
    /// Product id of each item.
    pub ids: Vec<String>,
    /// Name of each label number used in the forest.
    pub label_names: Vec<String>,
    /// Colour and learned attributes of every item, when the site has them.
    pub appearance: Option<PartsTable>,
}

/// The fixed-size fields of the header.
struct Header {
    version: u16,
    metric: Metric,
    encoding: Encoding,
    /// Bytes per item number in leaf lists and per label: 2 or 4.
    item_width: usize,
    label_width: usize,
    dims: usize,
    n_items: usize,
    n_trees: usize,
    leaf_size: usize,
    n_splits: usize,
    n_nodes: usize,
    n_sections: usize,
    input_dims: usize,
    max_norm: f32,
    projection_dims: usize,
    rescore: Option<Encoding>,
}

impl Index {
    /// The item number of a product id.
    pub fn item_of(&self, id: &str) -> Option<u32> {
        self.ids.iter().position(|x| x == id).map(|i| i as u32)
    }

    pub fn label_name(&self, item: u32) -> Option<&str> {
        let label = self.forest.label(item);
        (label != NO_LABEL).then(|| self.label_names[label as usize].as_str())
    }

    pub fn label_number(&self, name: &str) -> Option<u32> {
        self.label_names.iter().position(|l| l == name).map(|i| i as u32)
    }

    /// Serialises the index in format version [`FORMAT_VERSION`], with the
    /// forest's vector encoding. Hyperplanes are written as f16 unless the
    /// vectors are exact f32.
    pub fn to_bytes(&self) -> Vec<u8> {
        let f = self.forest.to_parts();
        let n_items = f.labels.len();
        let encoding = f.store.encoding();
        let item_width = if n_items < u16::MAX as usize { 2 } else { 4 };
        let label_width = if self.label_names.len() < NO_LABEL_U16 as usize { 2 } else { 4 };
        let plane_encoding = plane_encoding(encoding);
        let projection = f.projection.as_ref();

        let mut payloads: Vec<(Section, Vec<u8>)> = Vec::new();
        for section in ALL_SECTIONS {
            let bytes = match section {
                Section::Vectors => store_values(&f.store),
                Section::Scales => match store_scales(&f.store) {
                    Some(bytes) => bytes,
                    None => continue,
                },
                Section::RescoreVectors => match &f.rescore {
                    Some(store) => store_values(store),
                    None => continue,
                },
                Section::RescoreScales => match f.rescore.as_ref().and_then(store_scales) {
                    Some(bytes) => bytes,
                    None => continue,
                },
                Section::Labels => narrow(&f.labels, label_width, NO_LABEL),
                Section::Roots => u32_bytes(&f.roots),
                Section::Nodes => u32_bytes(&f.nodes),
                Section::Planes => encode_floats(&f.planes, plane_encoding),
                Section::Offsets => f32_bytes(&f.offsets),
                Section::LeafItems => narrow(&f.leaf_items, item_width, u32::MAX),
                Section::Ids => string_table(&self.ids),
                Section::LabelNames => string_table(&self.label_names),
                Section::ProjectionMean => match projection {
                    Some(p) => encode_floats(&p.mean, Encoding::F16),
                    None => continue,
                },
                Section::ProjectionBasis => match projection {
                    Some(p) => encode_floats(&p.basis, Encoding::F16),
                    None => continue,
                },
                Section::Graph => match &f.graph {
                    Some(graph) => {
                        let mut bytes = Vec::with_capacity(GRAPH_PREFIX + graph.links.len() * 4);
                        bytes.extend((graph.params.degree as u32).to_le_bytes());
                        bytes.extend(graph.entry.to_le_bytes());
                        bytes.extend(graph.params.alpha.to_le_bytes());
                        bytes.extend((graph.params.build_beam as u32).to_le_bytes());
                        bytes.extend(narrow(&graph.links, item_width, NO_LINK));
                        bytes
                    }
                    None => continue,
                },
                Section::Appearance => match &self.appearance {
                    Some(table) => appearance_bytes(table),
                    None => continue,
                },
                Section::Deleted => {
                    if !f.deleted.iter().any(|d| *d) {
                        continue;
                    }
                    let mut bitmap = vec![0u8; n_items.div_ceil(8)];
                    for (i, _) in f.deleted.iter().enumerate().filter(|(_, d)| **d) {
                        bitmap[i / 8] |= 1 << (i % 8);
                    }
                    bitmap
                }
            };
            payloads.push((section, bytes));
        }

        let mut out = vec![0u8; HEADER_LEN + payloads.len() * SECTION_ENTRY_LEN];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[12] = f.metric.to_code();
        out[13] = encoding.code();
        out[14] = item_width as u8;
        out[15] = label_width as u8;
        for (at, value) in [
            (16, f.dims),
            (20, n_items),
            (24, f.roots.len()),
            (28, f.leaf_size),
            (32, f.n_splits()),
            (36, f.n_nodes()),
            (40, payloads.len()),
            (48, f.input_dims),
            (56, projection.map_or(0, |p| p.out_dims)),
        ] {
            out[at..at + 4].copy_from_slice(&(value as u32).to_le_bytes());
        }
        out[52..56].copy_from_slice(&f.max_norm.to_le_bytes());
        out[60] = f.rescore.as_ref().map_or(NO_RESCORE, |store| store.encoding().code());

        for (i, (section, bytes)) in payloads.iter().enumerate() {
            out.resize(out.len().next_multiple_of(SECTION_ALIGN), 0);
            let entry = HEADER_LEN + i * SECTION_ENTRY_LEN;
            let offset = out.len() as u64;
            out[entry..entry + 4].copy_from_slice(&(*section as u32).to_le_bytes());
            out[entry + 4..entry + 8].copy_from_slice(&crc32fast::hash(bytes).to_le_bytes());
            out[entry + 8..entry + 16].copy_from_slice(&offset.to_le_bytes());
            out[entry + 16..entry + 24].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        // Signed last: the checksum covers the section table too.
        let crc = header_crc(&out, FORMAT_VERSION).expect("the table was just written");
        out[44..48].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Parses and validates an index file (format version 1 to 3), copying
    /// the bytes once; see [`Index::from_shared`] to avoid even that.
    pub fn from_bytes(bytes: &[u8]) -> Result<Index, IndexFileError> {
        Index::from_shared(Arc::new(bytes.to_vec()))
    }

    /// Parses and validates an index file held in shared bytes. Sections whose
    /// layout in the file is their layout in memory (f32 values, 8-bit codes,
    /// 4-byte numbers, nodes) are viewed in place, not copied; f16 values and
    /// 2-byte numbers are widened.
    pub fn from_shared(bytes: SharedBytes) -> Result<Index, IndexFileError> {
        let data: &[u8] = (*bytes).as_ref();
        let h = read_header(data)?;
        let sections = read_section_table(data, h.n_sections, h.version)?;
        let get = |section: Section,
                   expected_len: Option<usize>|
         -> Result<(usize, usize), IndexFileError> {
            let (start, end) =
                *sections.get(&(section as u32)).ok_or(IndexFileError::MissingSection(section))?;
            match expected_len {
                Some(expected) if expected != end - start => {
                    Err(IndexFileError::SectionLength { section, expected, found: end - start })
                }
                _ => Ok((start, end)),
            }
        };
        let size = |section: Section, parts: &[usize]| -> Result<usize, IndexFileError> {
            parts
                .iter()
                .try_fold(1usize, |acc, &p| acc.checked_mul(p))
                .ok_or(IndexFileError::Malformed { section, reason: "sizes overflow".into() })
        };
        let floats = |(start, end): (usize, usize), encoding: Encoding| -> Buf<f32> {
            match encoding {
                Encoding::F16 => decode_floats(&data[start..end], Encoding::F16).into(),
                _ => Buf::view(&bytes, start, end),
            }
        };
        let numbers = |(start, end): (usize, usize), width: usize, none: u32| -> Buf<u32> {
            if width == 4 {
                Buf::view(&bytes, start, end)
            } else {
                widen(&data[start..end], width, none).into()
            }
        };

        let read_store =
            |encoding: Encoding, dims: usize, values_section: Section, scales_section: Section| {
                let values = get(
                    values_section,
                    Some(size(values_section, &[h.n_items, dims, encoding.width()])?),
                )?;
                Ok::<_, IndexFileError>(match encoding {
                    Encoding::F32 | Encoding::F16 => VectorStore::F32 {
                        values: floats(values, encoding),
                        from_f16: encoding == Encoding::F16,
                    },
                    Encoding::I8PerVector | Encoding::I8PerDim => {
                        let n_scales = encoding.scale_count(h.n_items, dims);
                        let scales = get(scales_section, None)?;
                        // Per-dimension stores written before centres hold scales only.
                        let legacy = encoding == Encoding::I8PerDim
                            && Some(scales.1 - scales.0) == dims.checked_mul(4);
                        let expected = size(scales_section, &[n_scales, 4])?;
                        if !legacy && scales.1 - scales.0 != expected {
                            return Err(IndexFileError::SectionLength {
                                section: scales_section,
                                expected,
                                found: scales.1 - scales.0,
                            });
                        }
                        VectorStore::I8 {
                            codes: Buf::view(&bytes, values.0, values.1),
                            scales: floats(scales, Encoding::F32),
                            per_dim: encoding == Encoding::I8PerDim,
                        }
                    }
                })
            };
        let store = read_store(h.encoding, h.dims, Section::Vectors, Section::Scales)?;
        let rescore = match h.rescore {
            Some(encoding) => Some(read_store(
                encoding,
                h.input_dims,
                Section::RescoreVectors,
                Section::RescoreScales,
            )?),
            None => None,
        };
        let labels = numbers(
            get(Section::Labels, Some(size(Section::Labels, &[h.n_items, h.label_width])?))?,
            h.label_width,
            NO_LABEL,
        );
        let (roots_start, roots_end) =
            get(Section::Roots, Some(size(Section::Roots, &[h.n_trees, 4])?))?;
        let roots = u32s(&data[roots_start..roots_end]);
        let (nodes_start, nodes_end) =
            get(Section::Nodes, Some(size(Section::Nodes, &[h.n_nodes, 12])?))?;
        let nodes = Buf::view(&bytes, nodes_start, nodes_end);
        let plane_encoding = plane_encoding_for_version(h.encoding, h.version);
        let planes = floats(
            get(
                Section::Planes,
                Some(size(Section::Planes, &[h.n_splits, h.dims, plane_encoding.width()])?),
            )?,
            plane_encoding,
        );
        let offsets = floats(
            get(Section::Offsets, Some(size(Section::Offsets, &[h.n_splits, 4])?))?,
            Encoding::F32,
        );
        let leaf_range = get(Section::LeafItems, None)?;
        if (leaf_range.1 - leaf_range.0) % h.item_width != 0 {
            return Err(IndexFileError::Malformed {
                section: Section::LeafItems,
                reason: format!("length is not a multiple of {}", h.item_width),
            });
        }
        let leaf_items = numbers(leaf_range, h.item_width, u32::MAX);
        let (ids_start, ids_end) = get(Section::Ids, None)?;
        let ids = read_string_table(&data[ids_start..ids_end], Section::Ids)?;
        let (names_start, names_end) = get(Section::LabelNames, None)?;
        let label_names = read_string_table(&data[names_start..names_end], Section::LabelNames)?;
        let projection = if h.projection_dims > 0 {
            let (mean_start, mean_end) = get(
                Section::ProjectionMean,
                Some(size(Section::ProjectionMean, &[h.input_dims, 2])?),
            )?;
            let (basis_start, basis_end) = get(
                Section::ProjectionBasis,
                Some(size(Section::ProjectionBasis, &[h.projection_dims, h.input_dims, 2])?),
            )?;
            Some(Projection {
                in_dims: h.input_dims,
                out_dims: h.projection_dims,
                mean: decode_floats(&data[mean_start..mean_end], Encoding::F16),
                basis: decode_floats(&data[basis_start..basis_end], Encoding::F16),
            })
        } else {
            None
        };
        let deleted = match sections.get(&(Section::Deleted as u32)) {
            None => vec![false; h.n_items],
            Some(&(start, end)) => {
                let bitmap = &data[start..end];
                if bitmap.len() != h.n_items.div_ceil(8) {
                    return Err(IndexFileError::SectionLength {
                        section: Section::Deleted,
                        expected: h.n_items.div_ceil(8),
                        found: bitmap.len(),
                    });
                }
                (0..h.n_items).map(|i| bitmap[i / 8] & (1 << (i % 8)) != 0).collect()
            }
        };

        let graph = match sections.get(&(Section::Graph as u32)) {
            None => None,
            Some(&(start, end)) => {
                let prefix =
                    data.get(start..start + GRAPH_PREFIX).filter(|_| start + GRAPH_PREFIX <= end);
                let Some(prefix) = prefix else {
                    return Err(IndexFileError::Malformed {
                        section: Section::Graph,
                        reason: "shorter than its 16-byte prefix".into(),
                    });
                };
                let word =
                    |at: usize| u32::from_le_bytes(prefix[at..at + 4].try_into().expect("4 bytes"));
                let degree = word(0) as usize;
                let expected = GRAPH_PREFIX
                    + size(Section::Graph, &[h.n_items, degree.min(MAX_DEGREE + 1), h.item_width])?;
                if end - start != expected {
                    return Err(IndexFileError::SectionLength {
                        section: Section::Graph,
                        expected,
                        found: end - start,
                    });
                }
                Some(GraphPart {
                    params: GraphParams {
                        degree,
                        alpha: f32::from_bits(word(8)),
                        build_beam: word(12) as usize,
                    },
                    entry: word(4),
                    links: numbers((start + GRAPH_PREFIX, end), h.item_width, NO_LINK),
                })
            }
        };
        let forest = Forest::from_parts(ForestParts {
            metric: h.metric,
            input_dims: h.input_dims,
            dims: h.dims,
            projection,
            max_norm: h.max_norm,
            store,
            rescore,
            labels,
            deleted,
            leaf_size: h.leaf_size,
            roots,
            nodes,
            planes,
            offsets,
            leaf_items,
            graph,
        })
        .map_err(malformed_forest)?;
        let index = Index {
            forest,
            ids,
            label_names,
            appearance: match sections.get(&(Section::Appearance as u32)) {
                Some(&(start, end)) => Some(read_appearance(&data[start..end], h.n_items)?),
                None => None,
            },
        };
        index.validate()?;
        Ok(index)
    }

    /// Maps an index file into memory and loads it without copying its big
    /// sections (native only).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: &std::path::Path) -> Result<Index, OpenError> {
        let file =
            std::fs::File::open(path).map_err(|e| OpenError::Io(path.display().to_string(), e))?;
        // Safety: the map is read-only and the site's files are replaced by
        // rename (write_atomic), never rewritten in place while mapped.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| OpenError::Io(path.display().to_string(), e))?;
        Index::from_shared(Arc::new(map))
            .map_err(|e| OpenError::Invalid(path.display().to_string(), e))
    }

    /// Checks what the forest cannot: that every item has an id and every
    /// label number a name ([`Forest::from_parts`] checked the rest).
    fn validate(&self) -> Result<(), IndexFileError> {
        let f = &self.forest;
        let malformed =
            |section, reason: String| Err(IndexFileError::Malformed { section, reason });
        if self.ids.len() != f.len() {
            return malformed(
                Section::Ids,
                format!("{} ids for {} items", self.ids.len(), f.len()),
            );
        }
        if let Some(label) = (0..f.len() as u32)
            .map(|i| f.label(i))
            .find(|&l| l != NO_LABEL && l as usize >= self.label_names.len())
        {
            return malformed(Section::Labels, format!("label {label} has no name"));
        }
        Ok(())
    }
}

/// A forest's complaint about its arrays, named by the file's section.
fn malformed_forest(error: ForestError) -> IndexFileError {
    match error {
        ForestError::Malformed { part, reason } => {
            let section = match part {
                ForestPart::Vectors => Section::Vectors,
                ForestPart::Labels => Section::Labels,
                ForestPart::Roots => Section::Roots,
                ForestPart::Nodes => Section::Nodes,
                ForestPart::Planes => Section::Planes,
                ForestPart::Offsets => Section::Offsets,
                ForestPart::LeafItems => Section::LeafItems,
                ForestPart::Projection => Section::ProjectionBasis,
                ForestPart::Deleted => Section::Deleted,
                ForestPart::Graph => Section::Graph,
            };
            IndexFileError::Malformed { section, reason }
        }
        other => IndexFileError::Malformed { section: Section::Vectors, reason: other.to_string() },
    }
}

fn store_values(store: &VectorStore) -> Vec<u8> {
    match store {
        VectorStore::F32 { values, .. } => encode_floats(values, store.encoding()),
        VectorStore::I8 { codes, .. } => codes.iter().map(|&c| c as u8).collect(),
    }
}

fn store_scales(store: &VectorStore) -> Option<Vec<u8>> {
    match store {
        VectorStore::I8 { scales, .. } => Some(f32_bytes(scales)),
        VectorStore::F32 { .. } => None,
    }
}

/// Hyperplanes only route queries: f16 is plenty unless vectors are exact.
fn plane_encoding(vectors: Encoding) -> Encoding {
    if vectors == Encoding::F32 { Encoding::F32 } else { Encoding::F16 }
}

/// Version 1 stored hyperplanes in the vectors' encoding (f32 or f16).
fn plane_encoding_for_version(vectors: Encoding, version: u16) -> Encoding {
    if version == 1 { vectors } else { plane_encoding(vectors) }
}

/// The header's checksum: bytes 0..44, from version 2 also 48..64, from
/// version 3 also the section table (whose end is checked here first).
fn header_crc(bytes: &[u8], version: u16) -> Result<u32, IndexFileError> {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&bytes[0..44]);
    if version >= 2 {
        hasher.update(&bytes[48..HEADER_LEN]);
    }
    if version >= 3 {
        hasher.update(&bytes[HEADER_LEN..section_table_end(bytes, read_u32(bytes, 40) as usize)?]);
    }
    Ok(hasher.finalize())
}

fn section_table_end(bytes: &[u8], n_sections: usize) -> Result<usize, IndexFileError> {
    n_sections
        .checked_mul(SECTION_ENTRY_LEN)
        .and_then(|len| len.checked_add(HEADER_LEN))
        .filter(|&end| end <= bytes.len())
        .ok_or(IndexFileError::TableOutOfBounds)
}

fn read_header(bytes: &[u8]) -> Result<Header, IndexFileError> {
    if bytes.len() < HEADER_LEN {
        return Err(IndexFileError::TooShort(bytes.len()));
    }
    if bytes[0..8] != MAGIC {
        return Err(IndexFileError::NotAnIndex);
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version > FORMAT_VERSION {
        return Err(IndexFileError::NewerVersion { found: version });
    }
    if version == 0 {
        return Err(IndexFileError::UnknownCode { what: "format version", code: 0 });
    }
    if read_u32(bytes, 44) != header_crc(bytes, version)? {
        return Err(IndexFileError::HeaderChecksum);
    }
    let metric = Metric::from_code(bytes[12])
        .ok_or(IndexFileError::UnknownCode { what: "metric", code: bytes[12] })?;
    let encoding = Encoding::from_code(bytes[13])
        .ok_or(IndexFileError::UnknownCode { what: "vector encoding", code: bytes[13] })?;
    let width = |code: u8, what| match (version, code) {
        (1, _) => Ok(4),
        (_, 2 | 4) => Ok(code as usize),
        _ => Err(IndexFileError::UnknownCode { what, code }),
    };
    let field = |at: usize| read_u32(bytes, at) as usize;
    let dims = field(16);
    Ok(Header {
        version,
        metric,
        encoding,
        item_width: width(bytes[14], "item width")?,
        label_width: width(bytes[15], "label width")?,
        dims,
        n_items: field(20),
        n_trees: field(24),
        leaf_size: field(28),
        n_splits: field(32),
        n_nodes: field(36),
        n_sections: field(40),
        input_dims: if version == 1 { dims } else { field(48) },
        max_norm: if version == 1 {
            0.0
        } else {
            f32::from_le_bytes(bytes[52..56].try_into().expect("4 bytes"))
        },
        projection_dims: if version == 1 { 0 } else { field(56) },
        rescore: match (version, bytes[60]) {
            (1, _) | (_, NO_RESCORE) => None,
            (_, code) => Some(
                Encoding::from_code(code)
                    .ok_or(IndexFileError::UnknownCode { what: "rescore encoding", code })?,
            ),
        },
    })
}

fn appearance_bytes(table: &PartsTable) -> Vec<u8> {
    let layout = serde_json::to_vec(&table.layout).expect("a layout serialises");
    let mut out = (layout.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&layout);
    out.extend_from_slice(&table.codes);
    out
}

fn read_appearance(bytes: &[u8], n_items: usize) -> Result<PartsTable, IndexFileError> {
    let malformed =
        |reason: String| IndexFileError::Malformed { section: Section::Appearance, reason };
    if bytes.len() < 4 {
        return Err(malformed("shorter than its length field".into()));
    }
    let layout_end = (read_u32(bytes, 0) as usize).checked_add(4).filter(|&end| end <= bytes.len());
    let layout_end = layout_end.ok_or_else(|| malformed("layout runs past the section".into()))?;
    let layout: Layout = serde_json::from_slice(&bytes[4..layout_end])
        .map_err(|e| malformed(format!("layout: {e}")))?;
    let dims = layout.checked_dims().map_err(|e| malformed(format!("layout: {e}")))?;
    let codes = &bytes[layout_end..];
    let expected = dims.checked_mul(n_items).ok_or_else(|| malformed("sizes overflow".into()))?;
    if codes.len() != expected {
        return Err(malformed(format!(
            "{} values for {n_items} items of {dims} parts' values",
            codes.len()
        )));
    }
    Ok(PartsTable { layout, codes: codes.to_vec() })
}

/// The byte range of each known section, checked against the file's end and
/// its checksum.
///
/// From version 3 the table is covered by the header checksum, so a kind
/// this build does not know is a later revision's section and is skipped.
/// Versions 1 and 2 left the table unsigned: there an unknown kind can only
/// be a damaged one (every kind they wrote is known), and is refused rather
/// than silently dropping a section.
fn read_section_table(
    bytes: &[u8],
    n_sections: usize,
    version: u16,
) -> Result<HashMap<u32, (usize, usize)>, IndexFileError> {
    let table_end = section_table_end(bytes, n_sections)?;
    let mut sections = HashMap::new();
    for entry in (HEADER_LEN..table_end).step_by(SECTION_ENTRY_LEN) {
        let kind = read_u32(bytes, entry);
        let crc = read_u32(bytes, entry + 4);
        let offset = read_u64(bytes, entry + 8);
        let length = read_u64(bytes, entry + 16);
        let Some(section) = ALL_SECTIONS.iter().copied().find(|s| *s as u32 == kind) else {
            if version >= 3 {
                continue; // sections from later minor revisions are skipped
            }
            return Err(IndexFileError::UnknownSection(kind));
        };
        if sections.contains_key(&kind) {
            return Err(IndexFileError::Malformed {
                section,
                reason: "the section appears twice".into(),
            });
        }
        let end = offset
            .checked_add(length)
            .filter(|&end| end <= bytes.len() as u64)
            .ok_or(IndexFileError::SectionOutOfBounds(section))?;
        let (start, end) = (offset as usize, end as usize);
        if crc32fast::hash(&bytes[start..end]) != crc {
            return Err(IndexFileError::SectionChecksum(section));
        }
        sections.insert(kind, (start, end));
    }
    Ok(sections)
}

fn encode_floats(values: &[f32], encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::F16 => {
            values.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect()
        }
        _ => f32_bytes(values),
    }
}

fn decode_floats(bytes: &[u8], encoding: Encoding) -> Vec<f32> {
    match encoding {
        Encoding::F16 => {
            bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
        }
        _ => f32s(bytes),
    }
}

/// Writes u32 numbers in `width` bytes; `none` (the "no value" marker) maps
/// to the narrow type's maximum.
fn narrow(values: &[u32], width: usize, none: u32) -> Vec<u8> {
    if width == 4 {
        return u32_bytes(values);
    }
    values.iter().flat_map(|&v| if v == none { u16::MAX } else { v as u16 }.to_le_bytes()).collect()
}

fn widen(bytes: &[u8], width: usize, none: u32) -> Vec<u32> {
    if width == 4 {
        return u32s(bytes);
    }
    bytes
        .chunks_exact(2)
        .map(|c| match u16::from_le_bytes([c[0], c[1]]) {
            u16::MAX => none,
            v => v as u32,
        })
        .collect()
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn u32_bytes(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect()
}

fn u32s(bytes: &[u8]) -> Vec<u32> {
    bytes.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes"))).collect()
}

/// `count`, then `count + 1` end offsets into the UTF-8 blob that follows.
fn string_table(strings: &[String]) -> Vec<u8> {
    let mut out = (strings.len() as u32).to_le_bytes().to_vec();
    let mut end = 0u32;
    out.extend_from_slice(&end.to_le_bytes());
    for s in strings {
        end += s.len() as u32;
        out.extend_from_slice(&end.to_le_bytes());
    }
    for s in strings {
        out.extend_from_slice(s.as_bytes());
    }
    out
}

fn read_string_table(bytes: &[u8], section: Section) -> Result<Vec<String>, IndexFileError> {
    let malformed = |reason: &str| IndexFileError::Malformed { section, reason: reason.into() };
    if bytes.len() < 4 {
        return Err(malformed("too short"));
    }
    let count = read_u32(bytes, 0) as usize;
    let blob_start = count
        .checked_add(1)
        .and_then(|n| n.checked_mul(4))
        .and_then(|n| n.checked_add(4))
        .filter(|&start| start <= bytes.len())
        .ok_or_else(|| malformed("offset table runs past the section"))?;
    let blob = &bytes[blob_start..];
    let ends = u32s(&bytes[4..blob_start]);
    ends.windows(2)
        .map(|w| {
            let (start, end) = (w[0] as usize, w[1] as usize);
            let slice =
                blob.get(start..end).ok_or_else(|| malformed("string runs past the section"))?;
            std::str::from_utf8(slice).map(str::to_string).map_err(|_| malformed("invalid UTF-8"))
        })
        .collect()
}

/// Re-signs a mutated file: recomputes every section's checksum and the
/// header's. For tests (the hostile-input suite): with it, the structural
/// checks, not the checksums, are what stand between hostile bytes and the
/// search code. A checksum detects damage; it was never a signature.
#[doc(hidden)]
pub fn resign(bytes: &mut [u8]) {
    if bytes.len() < HEADER_LEN {
        return;
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    let n_sections = read_u32(bytes, 40) as usize;
    for i in 0..n_sections.min(16) {
        let entry = HEADER_LEN + i * SECTION_ENTRY_LEN;
        if entry + SECTION_ENTRY_LEN > bytes.len() {
            break;
        }
        let (offset, len) =
            (read_u64(bytes, entry + 8) as usize, read_u64(bytes, entry + 16) as usize);
        if let Some(payload) = offset.checked_add(len).and_then(|end| bytes.get(offset..end)) {
            let crc = crc32fast::hash(payload);
            bytes[entry + 4..entry + 8].copy_from_slice(&crc.to_le_bytes());
        }
    }
    // The header last: from version 3 it covers the table.
    if let Ok(crc) = header_crc(bytes, version) {
        bytes[44..48].copy_from_slice(&crc.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lookalike_forest::{Encoding, ForestParams};
    use proptest::prelude::*;

    fn sample_index() -> Index {
        sample_index_with(ForestParams::new(Metric::Angular))
    }

    fn sample_index_with(params: ForestParams) -> Index {
        let n = 300;
        let vectors: Vec<f32> = (0..n * 8).map(|i| ((i * 7919) % 101) as f32 - 50.0).collect();
        let labels: Vec<u32> =
            (0..n as u32).map(|i| if i % 7 == 0 { NO_LABEL } else { i % 3 }).collect();
        let forest = Forest::build(vectors, 8, Some(labels), &params).unwrap();
        Index {
            forest,
            ids: (0..n).map(|i| format!("sku-{i}")).collect(),
            label_names: vec!["shoe".into(), "bag".into(), "hat ünicode".into()],
            appearance: None,
        }
    }

    #[test]
    fn every_configuration_round_trips_exactly() {
        let configs = [
            ForestParams { encoding: Encoding::F32, ..ForestParams::new(Metric::Angular) },
            ForestParams { encoding: Encoding::F16, ..ForestParams::new(Metric::Euclidean) },
            ForestParams { encoding: Encoding::I8PerVector, ..ForestParams::new(Metric::Dot) },
            ForestParams {
                encoding: Encoding::I8PerDim,
                pca_dims: Some(4),
                ..ForestParams::new(Metric::Angular)
            },
            ForestParams {
                encoding: Encoding::I8PerDim,
                pca_dims: Some(4),
                rescore: Some(Encoding::F16),
                ..ForestParams::new(Metric::Angular)
            },
            graph_params(),
        ];
        for params in configs {
            let mut index = sample_index_with(params.clone());
            index.forest.remove(17);
            let back = Index::from_bytes(&index.to_bytes()).unwrap();
            // The trees are written in visit order, and hyperplanes as f16
            // unless the vectors are exact.
            let mut parts = index.forest.to_parts();
            if params.encoding != Encoding::F32 {
                parts
                    .planes
                    .make_mut()
                    .iter_mut()
                    .for_each(|v| *v = half::f16::from_f32(*v).to_f32());
            }
            index.forest = Forest::from_parts(parts).unwrap();
            assert_eq!(back, index, "{params:?}");
            assert_eq!(back.label_name(1), Some("bag"));
            assert_eq!(back.item_of("sku-42"), Some(42));
            assert!(back.forest.is_deleted(17));
        }
    }

    fn with_appearance(mut index: Index) -> Index {
        use crate::appearance::Part;
        let layout = Layout {
            visual_weight: 0.6,
            parts: vec![Part { name: "colour".into(), dims: 3, weight: 0.4 }],
        };
        let rows: Vec<Vec<f32>> =
            (0..index.forest.len()).map(|i| vec![(i % 3) as f32 / 2.0, 1.0, 0.0]).collect();
        index.appearance = Some(PartsTable::encode(layout, &rows));
        index
    }

    #[test]
    fn the_appearance_section_round_trips() {
        let index = with_appearance(sample_index());
        let back = Index::from_bytes(&index.to_bytes()).unwrap();
        assert_eq!(back.appearance, index.appearance);
        assert_eq!(back.appearance.unwrap().item(4), vec![128.0 / 255.0, 1.0, 0.0]);
    }

    #[test]
    fn an_appearance_table_of_the_wrong_size_is_named() {
        let mut index = with_appearance(sample_index());
        index.appearance.as_mut().unwrap().codes.pop();
        let err = Index::from_bytes(&index.to_bytes()).unwrap_err();
        assert!(
            matches!(err, IndexFileError::Malformed { section: Section::Appearance, .. }),
            "{err}"
        );
    }

    #[test]
    fn loading_views_the_big_sections_in_place() {
        let params =
            ForestParams { encoding: Encoding::I8PerDim, ..ForestParams::new(Metric::Angular) };
        let bytes: SharedBytes = Arc::new(sample_index_with(params).to_bytes());
        let index = Index::from_shared(bytes).unwrap();
        assert!(index.forest.is_zero_copy());
        let path = std::env::temp_dir().join(format!("lookalike-open-{}.lkf", std::process::id()));
        std::fs::write(
            &path,
            sample_index_with(ForestParams {
                encoding: Encoding::F32,
                ..ForestParams::new(Metric::Angular)
            })
            .to_bytes(),
        )
        .unwrap();
        let mapped = Index::open(&path).unwrap();
        assert!(mapped.forest.is_zero_copy());
        assert_eq!(mapped.forest.search_item(3, &lookalike_forest::Query::top(4)).len(), 4);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn smaller_encodings_make_smaller_files() {
        let size = |encoding| {
            sample_index_with(ForestParams { encoding, ..ForestParams::new(Metric::Angular) })
                .to_bytes()
                .len()
        };
        let (f32_size, f16_size, i8_size) =
            (size(Encoding::F32), size(Encoding::F16), size(Encoding::I8PerDim));
        assert!(f32_size > f16_size && f16_size > i8_size, "{f32_size} {f16_size} {i8_size}");
    }

    #[test]
    fn incremental_changes_survive_a_round_trip() {
        let mut index = sample_index();
        let item = index.forest.add(&[1.0; 8], 2).unwrap();
        index.ids.push("sku-new".into());
        let back = Index::from_bytes(&index.to_bytes()).unwrap();
        let hits = back.forest.search_vector(&[1.0; 8], &lookalike_forest::Query::top(1)).unwrap();
        assert_eq!(hits[0].item, item);
    }

    #[test]
    fn foreign_truncated_newer_and_corrupted_files_are_named_errors() {
        let bytes = sample_index().to_bytes();
        assert_eq!(Index::from_bytes(b"GIF89a"), Err(IndexFileError::TooShort(6)));
        let mut foreign = bytes.clone();
        foreign[0] = b'X';
        assert_eq!(Index::from_bytes(&foreign), Err(IndexFileError::NotAnIndex));
        let mut newer = bytes.clone();
        newer[8] = 9;
        assert_eq!(Index::from_bytes(&newer), Err(IndexFileError::NewerVersion { found: 9 }));
        let truncated = &bytes[..bytes.len() - 10];
        assert!(matches!(Index::from_bytes(truncated), Err(IndexFileError::SectionOutOfBounds(_))));
        let mut flipped = bytes.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 0x40;
        assert!(matches!(Index::from_bytes(&flipped), Err(IndexFileError::SectionChecksum(_))));
        let mut header = bytes;
        header[20] ^= 1;
        assert_eq!(Index::from_bytes(&header), Err(IndexFileError::HeaderChecksum));
    }

    /// Where `section` starts in a written file.
    fn section_start(bytes: &[u8], section: Section) -> usize {
        read_section_table(bytes, read_u32(bytes, 40) as usize, FORMAT_VERSION).unwrap()
            [&(section as u32)]
            .0
    }

    fn graph_params() -> ForestParams {
        ForestParams {
            encoding: Encoding::I8PerDim,
            n_trees: 1,
            graph: Some(lookalike_forest::GraphParams { degree: 8, build_beam: 24, alpha: 1.2 }),
            ..ForestParams::new(Metric::Euclidean)
        }
    }

    #[test]
    fn hostile_graphs_are_refused_with_the_section_named() {
        let bytes = sample_index_with(graph_params()).to_bytes();
        let graph = section_start(&bytes, Section::Graph);
        let word = |bytes: &mut Vec<u8>, at: usize, value: u32| {
            bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
        };
        // A link to an item that does not exist (300 items; links are u16 here).
        let mut bad_link = bytes.clone();
        bad_link[graph + GRAPH_PREFIX..graph + GRAPH_PREFIX + 2]
            .copy_from_slice(&300u16.to_le_bytes());
        // An entry point that does not exist.
        let mut bad_entry = bytes.clone();
        word(&mut bad_entry, graph + 4, 5000);
        // A degree that does not match the section's length, and an absurd one.
        let mut bad_degree = bytes.clone();
        word(&mut bad_degree, graph, 9);
        let mut huge_degree = bytes.clone();
        word(&mut huge_degree, graph, u32::MAX);
        let mut bad_alpha = bytes.clone();
        word(&mut bad_alpha, graph + 8, f32::NAN.to_bits());
        for (what, mut damaged) in [
            ("link", bad_link),
            ("entry", bad_entry),
            ("degree", bad_degree),
            ("huge degree", huge_degree),
            ("alpha", bad_alpha),
        ] {
            resign(&mut damaged);
            let err = Index::from_bytes(&damaged).unwrap_err();
            assert!(
                matches!(
                    err,
                    IndexFileError::Malformed { section: Section::Graph, .. }
                        | IndexFileError::SectionLength { section: Section::Graph, .. }
                ),
                "{what}: {err}"
            );
        }
    }

    #[test]
    fn trees_that_share_a_node_are_refused() {
        let index = sample_index();
        let mut bytes = index.to_bytes();
        // Point the right child of the first split at its left child: a DAG
        // whose walk doubles at every level.
        // A split's first word has the leaf flag (bit 31) clear.
        let parts = index.forest.to_parts();
        let first_split = (0..parts.n_nodes()).find(|&n| parts.nodes[3 * n] >> 31 == 0).unwrap();
        let at = section_start(&bytes, Section::Nodes) + first_split * 12;
        let left = bytes[at + 4..at + 8].to_vec();
        bytes[at + 8..at + 12].copy_from_slice(&left);
        resign(&mut bytes);
        let err = Index::from_bytes(&bytes).unwrap_err();
        assert!(err.to_string().contains("reached twice"), "{err}");
        // Two roots naming one tree are refused the same way.
        let mut bytes = index.to_bytes();
        let roots = section_start(&bytes, Section::Roots);
        let first = bytes[roots..roots + 4].to_vec();
        bytes[roots + 4..roots + 8].copy_from_slice(&first);
        resign(&mut bytes);
        assert!(Index::from_bytes(&bytes).unwrap_err().to_string().contains("reached twice"));
    }

    #[test]
    fn the_section_table_is_covered_by_the_header_checksum() {
        let bytes = with_appearance(sample_index()).to_bytes();
        let n_sections = read_u32(&bytes, 40) as usize;
        for i in 0..n_sections {
            for (field, flip) in [(0, 0x01u8), (4, 0x80), (8, 0x02), (16, 0x01)] {
                let mut damaged = bytes.clone();
                damaged[HEADER_LEN + i * SECTION_ENTRY_LEN + field] ^= flip;
                assert_eq!(
                    Index::from_bytes(&damaged),
                    Err(IndexFileError::HeaderChecksum),
                    "entry {i} field {field}"
                );
            }
        }
    }

    #[test]
    fn overflowing_or_hostile_appearance_layouts_are_refused() {
        let index = with_appearance(sample_index());
        let n = index.forest.len();
        for layout in [
            r#"{"visual_weight":0.5,"parts":[{"name":"colour","dims":18446744073709551615,"weight":0.1},{"name":"kind","dims":4,"weight":0.1}]}"#,
            r#"{"visual_weight":0.5,"parts":[{"name":"colour","dims":3,"weight":-1.0}]}"#,
            r#"{"visual_weight":1e39,"parts":[{"name":"colour","dims":3,"weight":0.1}]}"#,
            r#"{"visual_weight":0.5,"parts":[{"name":"colour","dims":1,"weight":0.1},{"name":"colour","dims":2,"weight":0.1}]}"#,
        ] {
            let mut section = (layout.len() as u32).to_le_bytes().to_vec();
            section.extend_from_slice(layout.as_bytes());
            section.extend(std::iter::repeat_n(7u8, 3 * n));
            let err = read_appearance(&section, n).unwrap_err();
            assert!(
                matches!(err, IndexFileError::Malformed { section: Section::Appearance, .. }),
                "{layout}: {err}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        /// Any mutation of a valid file either loads into an index that can be
        /// searched, or is refused with an error; it never panics.
        #[test]
        fn mutated_files_never_panic(edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8),
                                     cut in any::<usize>(), resigned in any::<bool>()) {
            let mut bytes = sample_index().to_bytes();
            for (at, value) in edits {
                let len = bytes.len();
                bytes[at % len] = value;
            }
            if cut % 4 == 0 {
                let keep = cut % bytes.len();
                bytes.truncate(keep);
            }
            if resigned && bytes.len() >= HEADER_LEN {
                resign(&mut bytes);
            }
            if let Ok(index) = Index::from_bytes(&bytes)
                && !index.forest.is_empty() {
                    let _ = index.forest.search_item(0, &lookalike_forest::Query::top(5));
                }
        }

        /// The same for a file with a neighbour graph: a hostile graph is
        /// refused or walked in bounded time.
        #[test]
        fn mutated_graph_files_never_panic(edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
            let mut bytes = sample_index_with(graph_params()).to_bytes();
            for (at, value) in edits {
                let len = bytes.len();
                bytes[at % len] = value;
            }
            resign(&mut bytes);
            if let Ok(index) = Index::from_bytes(&bytes)
                && !index.forest.is_empty() {
                    let _ = index.forest.search_item(0, &lookalike_forest::Query::top(5));
                }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = Index::from_bytes(&bytes);
        }
    }
}
