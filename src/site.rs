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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SiteManifest {
    pub version: u32,
    pub model: ModelInfo,
    /// Relative path of the index file.
    pub index: String,
    pub id_column: String,
    pub label_column: Option<String>,
    /// In index order: item `i` of the index is `products[i]`.
    pub products: Vec<SiteProduct>,
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
}

/// Columns that are taken as a product's title, in order of preference.
pub const TITLE_COLUMNS: &[&str] = &["title", "name", "productDisplayName", "prod_name", "product_name", "description"];

/// Picks a display title from a product's metadata.
pub fn title_of(metadata: &Map<String, Value>) -> Option<String> {
    TITLE_COLUMNS.iter().find_map(|c| match metadata.get(*c) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        _ => None,
    })
}
