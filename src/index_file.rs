//! The static index file the site ships: the forest plus the product ids and
//! label names its item numbers refer to. The layout is documented in
//! `docs/index-format.md`; this module is its only reader and writer.
//!
//! Loading never trusts the bytes: lengths, offsets, checksums and every
//! node reference are checked, so a truncated, corrupted, foreign or newer
//! file is an error with a reason, never a panic or an endless loop.

use crate::forest::{Forest, Metric, NO_LABEL, Node};
use std::collections::HashMap;

pub const MAGIC: [u8; 8] = *b"LKALIKE\0";
/// The newest format version this build reads and the one it writes.
pub const FORMAT_VERSION: u16 = 1;
const HEADER_LEN: usize = 64;
const SECTION_ENTRY_LEN: usize = 24;
const SECTION_ALIGN: usize = 64;

/// How vectors and hyperplanes are stored in the file. Both decode to f32 on
/// load, so search code is the same for every encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VectorEncoding {
    /// Exact, 4 bytes per value.
    F32,
    /// IEEE half precision, 2 bytes per value: ranking is unchanged in
    /// practice (relative error 1e-3 on unit vectors) at half the download.
    #[default]
    F16,
}

impl VectorEncoding {
    fn code(self) -> u8 {
        match self {
            VectorEncoding::F32 => 0,
            VectorEncoding::F16 => 1,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(VectorEncoding::F32),
            1 => Some(VectorEncoding::F16),
            _ => None,
        }
    }

    fn width(self) -> usize {
        match self {
            VectorEncoding::F32 => 4,
            VectorEncoding::F16 => 2,
        }
    }

    fn encode(self, values: &[f32]) -> Vec<u8> {
        match self {
            VectorEncoding::F32 => f32_bytes(values),
            VectorEncoding::F16 => values.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect(),
        }
    }

    fn decode(self, bytes: &[u8]) -> Vec<f32> {
        match self {
            VectorEncoding::F32 => f32s(bytes),
            VectorEncoding::F16 => bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
        }
    }
}

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
}

const ALL_SECTIONS: [Section; 9] = [
    Section::Vectors,
    Section::Labels,
    Section::Roots,
    Section::Nodes,
    Section::Planes,
    Section::Offsets,
    Section::LeafItems,
    Section::Ids,
    Section::LabelNames,
];

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IndexFileError {
    #[error("file is {0} bytes, too short for an index header")]
    TooShort(usize),
    #[error("not a lookalike index (bad magic bytes)")]
    NotAnIndex,
    #[error("index format version {found} is newer than this build reads (up to {FORMAT_VERSION}); rebuild the index or update lookalike")]
    NewerVersion { found: u16 },
    #[error("index header checksum mismatch: the file is corrupted")]
    HeaderChecksum,
    #[error("unknown {what} code {code} in header")]
    UnknownCode { what: &'static str, code: u8 },
    #[error("section table runs past the end of the file")]
    TableOutOfBounds,
    #[error("section {0:?} is missing")]
    MissingSection(Section),
    #[error("section {0:?} runs past the end of the file (truncated download?)")]
    SectionOutOfBounds(Section),
    #[error("section {0:?} checksum mismatch: the file is corrupted")]
    SectionChecksum(Section),
    #[error("section {section:?} is {found} bytes, expected {expected}")]
    SectionLength {
        section: Section,
        expected: usize,
        found: usize,
    },
    #[error("malformed {section:?}: {reason}")]
    Malformed { section: Section, reason: String },
}

/// A forest together with what its item numbers mean.
#[derive(Debug, Clone, PartialEq)]
pub struct Index {
    pub forest: Forest,
    /// Product id of each item.
    pub ids: Vec<String>,
    /// Name of each label number used in the forest.
    pub label_names: Vec<String>,
}

impl Index {
    /// The item number of a product id.
    pub fn item_of(&self, id: &str) -> Option<u32> {
        self.ids.iter().position(|x| x == id).map(|i| i as u32)
    }

    /// A lookup table from product id to item, for many lookups.
    pub fn id_table(&self) -> HashMap<&str, u32> {
        self.ids.iter().enumerate().map(|(i, id)| (id.as_str(), i as u32)).collect()
    }

    pub fn label_name(&self, item: u32) -> Option<&str> {
        let label = self.forest.label(item);
        (label != NO_LABEL).then(|| self.label_names[label as usize].as_str())
    }

    pub fn label_number(&self, name: &str) -> Option<u32> {
        self.label_names.iter().position(|l| l == name).map(|i| i as u32)
    }

    /// Serialises the index in format version [`FORMAT_VERSION`], vectors as f16.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_bytes_with(VectorEncoding::default())
    }

    /// Serialises the index with the given vector encoding.
    pub fn to_bytes_with(&self, encoding: VectorEncoding) -> Vec<u8> {
        let f = &self.forest;
        let payloads: Vec<(Section, Vec<u8>)> = ALL_SECTIONS
            .iter()
            .map(|&section| {
                let bytes = match section {
                    Section::Vectors => encoding.encode(&f.vectors),
                    Section::Labels => u32_bytes(&f.labels),
                    Section::Roots => u32_bytes(&f.roots),
                    Section::Nodes => {
                        u32_bytes(&f.nodes.iter().flat_map(|n| n.encode()).collect::<Vec<_>>())
                    }
                    Section::Planes => encoding.encode(&f.planes),
                    Section::Offsets => f32_bytes(&f.offsets),
                    Section::LeafItems => u32_bytes(&f.leaf_items),
                    Section::Ids => string_table(&self.ids),
                    Section::LabelNames => string_table(&self.label_names),
                };
                (section, bytes)
            })
            .collect();

        let mut out = vec![0u8; HEADER_LEN + payloads.len() * SECTION_ENTRY_LEN];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[12] = f.metric.to_code();
        out[13] = encoding.code();
        for (at, value) in [
            (16, f.dims),
            (20, f.len()),
            (24, f.n_trees()),
            (28, f.leaf_size),
            (32, f.offsets.len()),
            (36, f.nodes.len()),
            (40, payloads.len()),
        ] {
            out[at..at + 4].copy_from_slice(&(value as u32).to_le_bytes());
        }
        let header_crc = crc32fast::hash(&out[0..44]);
        out[44..48].copy_from_slice(&header_crc.to_le_bytes());

        for (i, (section, bytes)) in payloads.iter().enumerate() {
            out.resize(out.len().next_multiple_of(SECTION_ALIGN), 0);
            let entry = HEADER_LEN + i * SECTION_ENTRY_LEN;
            out[entry..entry + 4].copy_from_slice(&(*section as u32).to_le_bytes());
            out[entry + 4..entry + 8].copy_from_slice(&crc32fast::hash(bytes).to_le_bytes());
            let offset = out.len() as u64;
            out[entry + 8..entry + 16].copy_from_slice(&offset.to_le_bytes());
            out[entry + 16..entry + 24].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(bytes);
        }
        out
    }

    /// Parses and validates an index file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Index, IndexFileError> {
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
        if read_u32(bytes, 44) != crc32fast::hash(&bytes[0..44]) {
            return Err(IndexFileError::HeaderChecksum);
        }
        let metric = Metric::from_code(bytes[12])
            .ok_or(IndexFileError::UnknownCode { what: "metric", code: bytes[12] })?;
        let encoding = VectorEncoding::from_code(bytes[13])
            .ok_or(IndexFileError::UnknownCode { what: "vector encoding", code: bytes[13] })?;
        let header = |at: usize| read_u32(bytes, at) as usize;
        let (dims, n_items, n_trees, leaf_size, n_splits, n_nodes, n_sections) =
            (header(16), header(20), header(24), header(28), header(32), header(36), header(40));

        let table_end = n_sections
            .checked_mul(SECTION_ENTRY_LEN)
            .and_then(|len| len.checked_add(HEADER_LEN))
            .filter(|&end| end <= bytes.len())
            .ok_or(IndexFileError::TableOutOfBounds)?;
        let mut sections: HashMap<u32, &[u8]> = HashMap::new();
        for entry in (HEADER_LEN..table_end).step_by(SECTION_ENTRY_LEN) {
            let kind = read_u32(bytes, entry);
            let crc = read_u32(bytes, entry + 4);
            let offset = read_u64(bytes, entry + 8);
            let length = read_u64(bytes, entry + 16);
            let Some(section) = ALL_SECTIONS.iter().copied().find(|s| *s as u32 == kind) else {
                continue; // sections from later minor revisions are skipped
            };
            let payload = offset
                .checked_add(length)
                .filter(|&end| end <= bytes.len() as u64)
                .map(|end| &bytes[offset as usize..end as usize])
                .ok_or(IndexFileError::SectionOutOfBounds(section))?;
            if crc32fast::hash(payload) != crc {
                return Err(IndexFileError::SectionChecksum(section));
            }
            sections.insert(kind, payload);
        }
        let get = |section: Section, expected_len: Option<usize>| -> Result<&[u8], IndexFileError> {
            let payload = *sections.get(&(section as u32)).ok_or(IndexFileError::MissingSection(section))?;
            match expected_len {
                Some(expected) if expected != payload.len() => Err(IndexFileError::SectionLength {
                    section,
                    expected,
                    found: payload.len(),
                }),
                _ => Ok(payload),
            }
        };
        let size = |count: usize, width: usize| count.checked_mul(width);
        let overflow = |section| IndexFileError::Malformed { section, reason: "sizes overflow".into() };

        let row_bytes = dims.checked_mul(encoding.width()).ok_or(overflow(Section::Vectors))?;
        let vectors = encoding.decode(get(Section::Vectors, Some(size(n_items, row_bytes).ok_or(overflow(Section::Vectors))?))?);
        let labels = u32s(get(Section::Labels, Some(size(n_items, 4).ok_or(overflow(Section::Labels))?))?);
        let roots = u32s(get(Section::Roots, Some(size(n_trees, 4).ok_or(overflow(Section::Roots))?))?);
        let raw_nodes = u32s(get(Section::Nodes, Some(size(n_nodes, 12).ok_or(overflow(Section::Nodes))?))?);
        let planes = encoding.decode(get(Section::Planes, Some(size(n_splits, row_bytes).ok_or(overflow(Section::Planes))?))?);
        let offsets = f32s(get(Section::Offsets, Some(size(n_splits, 4).ok_or(overflow(Section::Offsets))?))?);
        let leaf_bytes = get(Section::LeafItems, None)?;
        if leaf_bytes.len() % 4 != 0 {
            return Err(IndexFileError::Malformed {
                section: Section::LeafItems,
                reason: "length is not a multiple of 4".into(),
            });
        }
        let leaf_items = u32s(leaf_bytes);
        let ids = read_string_table(get(Section::Ids, None)?, Section::Ids)?;
        let label_names = read_string_table(get(Section::LabelNames, None)?, Section::LabelNames)?;
        let nodes: Vec<Node> = raw_nodes.chunks_exact(3).map(|c| Node::decode([c[0], c[1], c[2]])).collect();

        let index = Index {
            forest: Forest {
                metric,
                dims,
                vectors,
                labels,
                leaf_size,
                roots,
                nodes,
                planes,
                offsets,
                leaf_items,
            },
            ids,
            label_names,
        };
        index.validate()?;
        Ok(index)
    }

    /// Checks every cross-reference, so searching a loaded index cannot index
    /// out of bounds or loop.
    fn validate(&self) -> Result<(), IndexFileError> {
        let f = &self.forest;
        let malformed = |section, reason: String| Err(IndexFileError::Malformed { section, reason });
        if f.dims == 0 {
            return malformed(Section::Vectors, "zero dimensions".into());
        }
        if self.ids.len() != f.len() {
            return malformed(Section::Ids, format!("{} ids for {} items", self.ids.len(), f.len()));
        }
        if let Some(label) = f.labels.iter().find(|&&l| l != NO_LABEL && l as usize >= self.label_names.len()) {
            return malformed(Section::Labels, format!("label {label} has no name"));
        }
        if let Some(root) = f.roots.iter().find(|&&r| r as usize >= f.nodes.len()) {
            return malformed(Section::Roots, format!("root {root} is not a node"));
        }
        if let Some(item) = f.leaf_items.iter().find(|&&i| i as usize >= f.len()) {
            return malformed(Section::LeafItems, format!("item {item} does not exist"));
        }
        for (index, node) in f.nodes.iter().enumerate() {
            let ok = match *node {
                Node::Leaf { start, len } => (start as usize)
                    .checked_add(len as usize)
                    .is_some_and(|end| end <= f.leaf_items.len()),
                // Children strictly after their parent: no cycles possible.
                Node::Split { split, left, right } => {
                    (split as usize) < f.offsets.len()
                        && (left as usize) > index
                        && (right as usize) > index
                        && (left as usize) < f.nodes.len()
                        && (right as usize) < f.nodes.len()
                }
            };
            if !ok {
                return malformed(Section::Nodes, format!("node {index} has invalid references"));
            }
        }
        Ok(())
    }
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
            let slice = blob.get(start..end).ok_or_else(|| malformed("string runs past the section"))?;
            std::str::from_utf8(slice).map(str::to_string).map_err(|_| malformed("invalid UTF-8"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forest::ForestParams;
    use proptest::prelude::*;

    fn sample_index() -> Index {
        let n = 300;
        let vectors: Vec<f32> = (0..n * 8).map(|i| ((i * 7919) % 101) as f32 - 50.0).collect();
        let labels: Vec<u32> = (0..n as u32).map(|i| if i % 7 == 0 { NO_LABEL } else { i % 3 }).collect();
        let forest = Forest::build(vectors, 8, Some(labels), &ForestParams::new(Metric::Angular)).unwrap();
        Index {
            forest,
            ids: (0..n).map(|i| format!("sku-{i}")).collect(),
            label_names: vec!["shoe".into(), "bag".into(), "hat ünicode".into()],
        }
    }

    #[test]
    fn f16_round_trip_keeps_everything_but_the_last_bits() {
        let index = sample_index();
        let back = Index::from_bytes(&index.to_bytes()).unwrap();
        assert_eq!((&back.ids, &back.label_names, &back.forest.nodes), (&index.ids, &index.label_names, &index.forest.nodes));
        let max_error = back.forest.vectors.iter().zip(&index.forest.vectors).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(max_error < 1e-3, "{max_error}");
        let saved = index.to_bytes_with(VectorEncoding::F32).len() - index.to_bytes().len();
        let halved = (index.forest.vectors.len() + index.forest.planes.len()) * 2;
        assert!(saved + 128 >= halved, "saved {saved} of {halved} bytes");
    }

    #[test]
    fn round_trip_is_exact() {
        let index = sample_index();
        let back = Index::from_bytes(&index.to_bytes_with(VectorEncoding::F32)).unwrap();
        assert_eq!(back, index);
        assert_eq!(back.label_name(1), Some("bag"));
        assert_eq!(back.item_of("sku-42"), Some(42));
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

    /// Re-signs a mutated file so the structural checks, not the checksums,
    /// are what stand between hostile bytes and the search code.
    fn resign(bytes: &mut [u8]) {
        let crc = crc32fast::hash(&bytes[0..44]);
        bytes[44..48].copy_from_slice(&crc.to_le_bytes());
        let n_sections = read_u32(bytes, 40) as usize;
        for i in 0..n_sections.min(16) {
            let entry = HEADER_LEN + i * SECTION_ENTRY_LEN;
            if entry + SECTION_ENTRY_LEN > bytes.len() {
                return;
            }
            let (offset, len) = (read_u64(bytes, entry + 8) as usize, read_u64(bytes, entry + 16) as usize);
            if let Some(payload) = offset.checked_add(len).and_then(|end| bytes.get(offset..end)) {
                let crc = crc32fast::hash(payload);
                bytes[entry + 4..entry + 8].copy_from_slice(&crc.to_le_bytes());
            }
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
            if let Ok(index) = Index::from_bytes(&bytes) {
                if !index.forest.is_empty() {
                    let _ = index.forest.search_item(0, &crate::forest::Query::top(5));
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = Index::from_bytes(&bytes);
        }
    }
}
