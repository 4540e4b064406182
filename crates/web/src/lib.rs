//! # Brief overview
//!
//! The browsing wasm: what the page and the storefront widget load to find
//! look-alikes of catalog products, and to rank a photo's vector once the
//! model worker (`lookalike-web-models`) has computed it. It holds the
//! index, the forest and the ranking, and no model: a storefront pays for
//! a few hundred kilobytes, not for Burn.
//!
//! ```js
//! import init, { LookalikeIndex } from './pkg/lookalike_web.js';
//! await init();
//! const index = LookalikeIndex.fromBytes(new Uint8Array(await (await fetch('data/index.lkf')).arrayBuffer()));
//! const hits = index.queryItem(0, 10, undefined, false);   // [{item, id, score}, ...]
//! // A photo's crop, described by the model worker:
//! const blended = index.queryVector(vector, 10, undefined, undefined, parts, { colour: 0.3 });
//! ```

mod paged;
pub use paged::PagedLookalike;

use lookalike_forest::{LabelFilter, NO_LABEL, Neighbor, Query};
use lookalike_index::Index;
use lookalike_index::Weights;
use lookalike_index::rank::{search_item_distinct, search_vector_distinct};
use serde::Serialize;
use wasm_bindgen::prelude::*;

/// A search result as the page sees it.
#[derive(Serialize)]
struct Hit<'a> {
    item: u32,
    id: &'a str,
    score: f32,
}

/// The forest and product ids of a built site.
#[wasm_bindgen]
pub struct LookalikeIndex {
    index: Index,
}

#[wasm_bindgen]
impl LookalikeIndex {
    /// Parses and validates an index file fetched from the site. The bytes
    /// are copied into wasm memory once and the big sections are then used in
    /// place, not decoded into further copies.
    #[wasm_bindgen(js_name = fromBytes)]
    pub fn from_bytes(bytes: Vec<u8>) -> Result<LookalikeIndex, JsError> {
        let index = Index::from_shared(std::sync::Arc::new(bytes))?;
        Ok(LookalikeIndex { index })
    }

    #[wasm_bindgen(getter)]
    pub fn length(&self) -> usize {
        self.index.forest.len()
    }

    #[wasm_bindgen(getter)]
    pub fn dims(&self) -> usize {
        self.index.forest.dims()
    }

    #[wasm_bindgen(js_name = itemOf)]
    pub fn item_of(&self, id: &str) -> Option<u32> {
        self.index.item_of(id)
    }

    #[wasm_bindgen(js_name = labelNames)]
    pub fn label_names(&self) -> Vec<String> {
        self.index.label_names.clone()
    }

    /// The similarity's parts and default weights:
    /// `{visual_weight, parts: [{name, dims, weight}]}`, or `null` for an
    /// index that has only the embedding.
    #[wasm_bindgen(getter)]
    pub fn appearance(&self) -> Result<JsValue, JsError> {
        let layout = self.index.appearance.as_ref().map(|t| &t.layout);
        Ok(serde_wasm_bindgen::to_value(&layout)?)
    }

    /// The look-alikes of catalog item `item`, other products only; with
    /// `same_label`, only items of its label; with `label`, only that label.
    /// `weights` (`{colour: 0.3, ...}`) replace the default weights of the
    /// parts they name.
    #[wasm_bindgen(js_name = queryItem)]
    pub fn query_item(
        &self,
        item: u32,
        k: usize,
        search_k: Option<usize>,
        same_label: bool,
        label: Option<String>,
        weights: JsValue,
    ) -> Result<JsValue, JsError> {
        self.check_item(item)?;
        let own = self.index.forest.label(item);
        let filter = match label {
            Some(name) => self.label_filter(&name)?,
            None if same_label && own != NO_LABEL => LabelFilter::Equals(own),
            None => LabelFilter::Any,
        };
        let weights = self.weights(weights)?;
        let hits = search_item_distinct(
            &self.index,
            item,
            &Query { k, search_k, filter },
            weights.as_ref(),
        );
        self.to_js(&hits)
    }

    /// The look-alikes of an outside vector (a shopper's photo); `label`
    /// restricts them to one label name. `parts` (from
    /// `LookalikeAttributes.describe`) and `weights` blend in colour and
    /// learned attributes; without `parts` only the embedding counts.
    #[wasm_bindgen(js_name = queryVector)]
    pub fn query_vector(
        &self,
        vector: &[f32],
        k: usize,
        search_k: Option<usize>,
        label: Option<String>,
        parts: Option<Vec<f32>>,
        weights: JsValue,
    ) -> Result<JsValue, JsError> {
        let filter = match label {
            Some(name) => self.label_filter(&name)?,
            None => LabelFilter::Any,
        };
        if let (Some(parts), Some(table)) = (&parts, &self.index.appearance)
            && parts.len() != table.layout.dims()
        {
            return Err(JsError::new(&format!(
                "parts: expected {} values, got {}",
                table.layout.dims(),
                parts.len()
            )));
        }
        let weights = self.weights(weights)?;
        let hits = search_vector_distinct(
            &self.index,
            vector,
            parts.as_deref(),
            &Query { k, search_k, filter },
            weights.as_ref(),
        )?;
        self.to_js(&hits)
    }

    /// The index's default weights with the overrides of a JS object
    /// (`undefined`: the defaults).
    fn weights(&self, overrides: JsValue) -> Result<Option<Weights>, JsError> {
        let Some(table) = &self.index.appearance else { return Ok(None) };
        if overrides.is_undefined() || overrides.is_null() {
            return Ok(None);
        }
        let map: std::collections::BTreeMap<String, f32> =
            serde_wasm_bindgen::from_value(overrides)
                .map_err(|e| JsError::new(&format!("weights: {e}")))?;
        let overrides: Vec<(String, f32)> = map.into_iter().collect();
        Ok(Some(Weights::defaults(&table.layout).with_overrides(&overrides, &table.layout)?))
    }

    /// The stored appearance parts of an item (colour signature, then the
    /// learned attributes' probabilities; 8-bit precision), empty when the
    /// index has none.
    #[wasm_bindgen(js_name = itemParts)]
    pub fn item_parts(&self, item: u32) -> Result<Vec<f32>, JsError> {
        self.check_item(item)?;
        Ok(self.index.appearance.as_ref().map(|t| t.item(item)).unwrap_or_default())
    }

    /// The stored vector of an item, in tree space (normalised, projected).
    #[wasm_bindgen(js_name = itemVector)]
    pub fn item_vector(&self, item: u32) -> Result<Vec<f32>, JsError> {
        self.check_item(item)?;
        Ok(self.index.forest.stored_vector(item))
    }

    /// A vector mapped into tree space, as the index compares it.
    #[wasm_bindgen(js_name = toTreeSpace)]
    pub fn to_tree_space(&self, vector: &[f32]) -> Result<Vec<f32>, JsError> {
        Ok(self.index.forest.to_tree_space(vector)?)
    }

    /// Refuses an item number the index does not have.
    fn check_item(&self, item: u32) -> Result<(), JsError> {
        if item as usize >= self.index.forest.len() {
            return Err(JsError::new(&format!("no item {item}")));
        }
        Ok(())
    }

    fn label_filter(&self, name: &str) -> Result<LabelFilter, JsError> {
        match self.index.label_number(name) {
            Some(n) => Ok(LabelFilter::Equals(n)),
            None => Err(JsError::new(&format!("unknown label '{name}'"))),
        }
    }

    fn to_js(&self, hits: &[Neighbor]) -> Result<JsValue, JsError> {
        let hits: Vec<Hit> = hits
            .iter()
            .map(|n| Hit { item: n.item, id: &self.index.ids[n.item as usize], score: n.score })
            .collect();
        Ok(serde_wasm_bindgen::to_value(&hits)?)
    }
}
