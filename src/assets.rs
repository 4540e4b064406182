//! What a site needs, carried inside the binary (see `build.rs`): the page,
//! its scripts, the built wasm packages and the default models. A binary
//! that was `cargo install`ed or copied elsewhere builds a site from any
//! folder; a checkout can still override the page with `--assets` and any
//! model with its own flag.
//!
//! Models are read by path throughout (their format is told by the
//! extension, and a detector's shards lie beside its `model.json`), so the
//! embedded ones are written once into the cache, in a folder named by their
//! content hash, and used from there.

use crate::fsutil::write_atomic;
use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_assets.rs"));
}

/// The wasm packages the page loads: the browsing engine, and the models
/// that the photo worker loads.
pub const WASM_PACKAGES: [&str; 4] = [
    "www/pkg/lookalike_web.js",
    "www/pkg/lookalike_web_bg.wasm",
    "www/pkg/lookalike_web_models.js",
    "www/pkg/lookalike_web_models_bg.wasm",
];

/// An embedded file's bytes, by its path in the checkout (`www/app.js`,
/// `models/nanodet.json`).
pub fn embedded(path: &str) -> Option<&'static [u8]> {
    embedded::FILES.iter().find(|(name, _)| *name == path).map(|(_, bytes)| *bytes)
}

/// The embedded page: `index.html` and everything under `www/`.
pub fn page_files() -> impl Iterator<Item = (&'static str, &'static [u8])> {
    embedded::FILES
        .iter()
        .copied()
        .filter(|(name, _)| *name == "index.html" || name.starts_with("www/"))
}

/// Checks that the embedded page is whole (this binary was built after the
/// wasm packages were).
pub fn check_page() -> Result<()> {
    for path in std::iter::once("index.html").chain(WASM_PACKAGES) {
        if embedded(path).is_none() {
            bail!(
                "this lookalike binary was built without {path} (build it with ./build.sh, which builds the wasm first), \
                 or pass --assets with a folder holding index.html and www/pkg/"
            );
        }
    }
    Ok(())
}

/// The path of a default model (`models/NAME`), written from the binary
/// into `cache_dir` the first time. The whole `models/` set is written
/// together, so a detector's shards lie beside its graph.
pub fn default_model(cache_dir: &Path, name: &str) -> Result<PathBuf> {
    let relative = format!("models/{name}");
    if embedded(&relative).is_none() {
        bail!(
            "this lookalike binary carries no {relative} (build it with ./build.sh); name the file on the command line"
        );
    }
    let folder = cache_dir.join("models").join(models_digest());
    for (name, bytes) in embedded_models() {
        let path = folder.join(name.trim_start_matches("models/"));
        let current = std::fs::metadata(&path).map(|m| m.len()).ok();
        if current != Some(bytes.len() as u64) {
            std::fs::create_dir_all(&folder)
                .with_context(|| format!("creating {}", folder.display()))?;
            write_atomic(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(folder.join(name))
}

fn embedded_models() -> impl Iterator<Item = (&'static str, &'static [u8])> {
    embedded::FILES.iter().copied().filter(|(name, _)| name.starts_with("models/"))
}

/// The embedded models' content hash (their folder's name in the cache),
/// computed once per run: a build asks for up to four default models, and
/// hashing them all (tens of MB) each time would be wasted.
fn models_digest() -> &'static str {
    static DIGEST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DIGEST.get_or_init(|| {
        let mut hasher = Sha256::new();
        for (name, bytes) in embedded_models() {
            hasher.update(name.as_bytes());
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        }
        hasher.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
    })
}

/// Whether an embedded default model exists (`labels.json` is optional).
pub fn has_default_model(name: &str) -> bool {
    embedded(&format!("models/{name}")).is_some()
}
