//! `lookalike bench quality`: how good the look-alikes are, by exact cosine
//! search over the embeddings (so the forest's approximation is not part of
//! the figure), on three shared catalogs:
//!
//! - fashion: precision@10 of the same articleType, subCategory, baseColour,
//!   and articleType and baseColour together (every product queried against
//!   the whole catalog, itself excluded);
//! - H&M: recall@10 of another product of the same design (group_id);
//! - grocery: shop photos as queries against the catalogue ("iconic")
//!   images: recall@1 and @5 of the same product.
//!
//! Reference figures for plain EfficientNet-Lite0 features (from the issue):
//! fashion articleType 0.671, articleType and baseColour 0.169.

use super::catalog_embeddings;
use crate::catalog::Product;
use crate::forest::{Encoding, Forest, ForestParams, Metric, Query};
use crate::model::FEATURE_DIM;
use anyhow::Result;
use serde_json::{Value, json};
use std::path::PathBuf;

pub struct QualityOptions {
    pub json: bool,
    pub data_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub model: PathBuf,
}

fn field<'a>(product: &'a Product, column: &str) -> Option<&'a str> {
    product.metadata.get(column).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Exact cosine search over `vectors`, as a forest that is only brute-forced.
fn exact_index(vectors: Vec<f32>) -> Result<Forest> {
    let params = ForestParams { encoding: Encoding::F32, n_trees: 1, ..ForestParams::new(Metric::Angular) };
    Ok(Forest::build(vectors, FEATURE_DIM, None, &params)?)
}

pub fn run(options: &QualityOptions) -> Result<()> {
    let load = |name| catalog_embeddings(&options.data_dir, &options.cache_dir, &options.model, name, None);

    // Fashion: same-attribute precision@10.
    let fashion = load("fashion-product-images")?;
    let index = exact_index(fashion.vectors)?;
    // Each criterion: the query's key (None: the query is not counted) and
    // whether a neighbour shares it (a neighbour without the field does not).
    let key = |p: &Product, columns: &[&str]| -> Option<Vec<String>> {
        columns.iter().map(|c| field(p, c).map(str::to_string)).collect()
    };
    let criteria: [&[&str]; 4] = [&["articleType"], &["subCategory"], &["baseColour"], &["articleType", "baseColour"]];
    let mut sums = [0.0f64; 4];
    let mut counts = [0usize; 4];
    for (item, query) in fashion.products.iter().enumerate() {
        let hits = index.exact_search_item(item as u32, &Query::top(10));
        for (c, columns) in criteria.iter().enumerate() {
            let Some(wanted) = key(query, columns) else { continue };
            let same = hits.iter().filter(|h| key(&fashion.products[h.item as usize], columns).as_ref() == Some(&wanted)).count();
            sums[c] += same as f64 / 10.0;
            counts[c] += 1;
        }
    }
    let precision: Vec<f64> = sums.iter().zip(&counts).map(|(s, &n)| s / n.max(1) as f64).collect();

    // H&M: another product of the same design among the first 10.
    let hm = load("hm-product-groups")?;
    let index = exact_index(hm.vectors)?;
    let group = |p: &Product| field(p, "group_id").map(str::to_string);
    let (mut found, mut queries) = (0usize, 0usize);
    for (item, query) in hm.products.iter().enumerate() {
        let siblings = hm.products.iter().filter(|p| group(p) == group(query)).count();
        if siblings < 2 {
            continue;
        }
        queries += 1;
        let hits = index.exact_search_item(item as u32, &Query::top(10));
        found += usize::from(hits.iter().any(|h| group(&hm.products[h.item as usize]) == group(query)));
    }
    let hm_recall = found as f64 / queries.max(1) as f64;

    // Grocery: shop photos against the iconic images.
    let grocery = load("grocery-store-packages")?;
    let is_iconic = |p: &Product| field(p, "image_type") == Some("iconic");
    let iconic: Vec<usize> = (0..grocery.products.len()).filter(|&i| is_iconic(&grocery.products[i])).collect();
    let vector = |i: usize| &grocery.vectors[i * FEATURE_DIM..(i + 1) * FEATURE_DIM];
    let index = exact_index(iconic.iter().flat_map(|&i| vector(i).to_vec()).collect())?;
    let (mut at1, mut at5, mut photos) = (0usize, 0usize, 0usize);
    for (i, photo) in grocery.products.iter().enumerate().filter(|(_, p)| !is_iconic(p)) {
        photos += 1;
        let hits = index.exact_search_vector(vector(i), &Query::top(5))?;
        let rank = hits.iter().position(|h| group(&grocery.products[iconic[h.item as usize]]) == group(photo));
        at1 += usize::from(rank == Some(0));
        at5 += usize::from(rank.is_some());
    }

    let report = json!({
        "fashion": {
            "n": fashion.products.len(),
            "precision_at_10_articleType": precision[0],
            "precision_at_10_subCategory": precision[1],
            "precision_at_10_baseColour": precision[2],
            "precision_at_10_articleType_and_baseColour": precision[3],
            "reference_articleType": 0.671,
            "reference_articleType_and_baseColour": 0.169,
        },
        "hm": { "queries": queries, "recall_at_10_same_group": hm_recall },
        "grocery": {
            "photos": photos,
            "iconic": iconic.len(),
            "recall_at_1": at1 as f64 / photos.max(1) as f64,
            "recall_at_5": at5 as f64 / photos.max(1) as f64,
        },
    });
    if options.json {
        println!("{report}");
    } else {
        println!("exact cosine search over EfficientNet-Lite0 features (white pad-resize to 224)");
        println!("fashion ({} products), precision@10 of the same:", fashion.products.len());
        println!("  articleType              {:.3}  (reference 0.671, ratio {:.3})", precision[0], precision[0] / 0.671);
        println!("  subCategory              {:.3}", precision[1]);
        println!("  baseColour               {:.3}", precision[2]);
        println!("  articleType + baseColour {:.3}  (reference 0.169, ratio {:.3})", precision[3], precision[3] / 0.169);
        println!("H&M ({queries} products with a sibling): recall@10 of the same design {hm_recall:.3}");
        println!(
            "grocery ({photos} shop photos against {} catalogue images): recall@1 {:.3}, recall@5 {:.3}",
            iconic.len(),
            at1 as f64 / photos.max(1) as f64,
            at5 as f64 / photos.max(1) as f64
        );
    }
    Ok(())
}
