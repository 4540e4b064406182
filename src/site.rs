//! The built site's manifest (`data/catalog.json`): what the page needs to
//! show the catalog and to find the model and the index. Written by the
//! native builder, read by the page (and by `query` and `eval`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Version of the manifest layout; bumped on incompatible changes.
pub const MANIFEST_VERSION: u32 = 1;
/// Paths inside a built site.
pub const MANIFEST_PATH: &str = "data/catalog.json";
pub const INDEX_PATH: &str = "data/index.lkf";
pub const MODEL_PATH: &str = "data/model.bpk";
pub const THUMBS_DIR: &str = "thumbs";
pub const LABELS_PATH: &str = "data/labels.json";
pub const DETECTOR_DIR: &str = "data/detector";
/// The garment parser's head, in `DETECTOR_DIR`.
pub const PARSER_FILE: &str = "parser.bpk";
pub const ATTRIBUTES_PATH: &str = "data/attributes.json";
/// A paged site's index (docs/index-format.md, "The paged index").
pub const PAGED_DIR: &str = "data/paged";
pub const PAGED_HEAD_PATH: &str = "data/paged/head.lkh";
pub const PAGED_PAGES_PATH: &str = "data/paged/pages.lkp";
pub const PAGED_CHUNKS_DIR: &str = "data/paged/chunks";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SiteManifest {
    pub version: u32,
    pub model: ModelInfo,
    /// Relative path of the index file.
    pub index: String,
    pub id_column: String,
    pub label_column: Option<String>,
    /// In index order: item `i` of the index is `products[i]`. Empty for a
    /// paged site, whose products are in its metadata pages.
    pub products: Vec<SiteProduct>,
    /// Set for a paged site: where its head and pages are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paged: Option<PagedInfo>,
    /// The detector the page runs on a shopper's photo, when shipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector: Option<DetectorInfo>,
    /// Relative path of the label head, when shipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<String>,
    /// Relative path of the attribute heads learned from the catalog (a JSON
    /// array of label heads, in the order of the index's appearance parts):
    /// a shopper's photo needs them to be described like the catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<String>,
}

/// A paged site's index files. `index` then names the head.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PagedInfo {
    pub head: String,
    /// The pages file, read by byte range.
    pub pages: String,
    pub pages_bytes: u64,
    pub items: u32,
    /// The same bytes as fixed-size chunk files (`NNNNNN.bin`), for hosts
    /// that do not honour byte ranges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<ChunkInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChunkInfo {
    pub dir: String,
    pub size: u64,
}

/// The detector's files in the site, and the options to run it with: the
/// object detector, and either the garment parser's head (which runs on
/// the site's embedder, `MODEL_PATH`) or the pose model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DetectorInfo {
    pub objects: String,
    pub objects_shards: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pose: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pose_shards: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parser: Option<String>,
    pub options: lookalike_vision::DetectOptions,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelInfo {
    pub name: String,
    /// Relative path of the Burnpack record.
    pub file: String,
    pub input_size: u32,
    pub dims: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SiteProduct {
    pub id: String,
    pub label: Option<String>,
    /// Relative path of the thumbnail.
    pub thumb: String,
    /// A human title when the catalog has one (name, title, productDisplayName...).
    pub title: Option<String>,
    pub metadata: Map<String, Value>,
    /// The part of the product's image this index item was embedded from,
    /// when it was not the whole image. A product with several crops (a model
    /// wearing a top and trousers) appears once per crop, in index order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop: Option<Crop>,
}

/// A region of a product image: what was found there, and where (pixels:
/// x, y, width, height).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Crop {
    pub class: String,
    pub bbox: [u32; 4],
}

/// Columns that are taken as a product's title, in order of preference.
pub const TITLE_COLUMNS: &[&str] =
    &["title", "name", "productDisplayName", "prod_name", "product_name", "description"];

/// Picks a display title from a product's metadata.
pub fn title_of(metadata: &Map<String, Value>) -> Option<String> {
    TITLE_COLUMNS.iter().find_map(|c| match metadata.get(*c) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        _ => None,
    })
}
