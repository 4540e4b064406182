//! Embeds what a site needs into the `lookalike` binary: the page
//! (`index.html`, `www/` with the built wasm packages in `www/pkg/`) and the
//! default models (`models/`), so an installed or copied binary builds a site
//! from any folder. Files that are not there yet (a fresh clone before
//! `./build.sh` built the wasm and converted the models) are simply left
//! out; the tool then asks for `--assets` or `--model` by name.
//!
//! `LOOKALIKE_ASSETS_DIR` points at another folder holding `index.html`,
//! `www/` and `models/` (default: this checkout).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The default models a site is built with (the embedder's Burn record, the
/// detector's TF.js graphs and the label head).
const MODEL_FILES: [&str; 8] = [
    "efficientnet-lite0.bpk",
    "parser.bpk",
    "parser.json",
    "nanodet.json",
    "nanodet.bin",
    "movenet-lightning.json",
    "movenet-lightning.bin",
    "labels.json",
];

fn main() {
    println!("cargo::rerun-if-env-changed=LOOKALIKE_ASSETS_DIR");
    let root = std::env::var_os("LOOKALIKE_ASSETS_DIR").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"))
    });
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    files.push(("index.html".into(), root.join("index.html")));
    for folder in ["www", "www/pkg"] {
        let dir = root.join(folder);
        // Watching the folder notices files that appear (the wasm, once built).
        println!("cargo::rerun-if-changed={}", dir.display());
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_file())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        files.extend(names.into_iter().map(|name| (format!("{folder}/{name}"), dir.join(name))));
    }
    println!("cargo::rerun-if-changed={}", root.join("models").display());
    for name in MODEL_FILES {
        files.push((format!("models/{name}"), root.join("models").join(name)));
    }

    let mut out = String::from(
        "/// Embedded files: (path relative to the checkout, bytes).\npub static FILES: &[(&str, &[u8])] = &[\n",
    );
    for (name, path) in files.iter().filter(|(_, path)| path.is_file()) {
        println!("cargo::rerun-if-changed={}", path.display());
        writeln!(
            out,
            "    ({name:?}, include_bytes!({:?})),",
            absolute(path).display().to_string()
        )
        .expect("writing to a string");
    }
    out.push_str("];\n");
    let target = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"))
        .join("embedded_assets.rs");
    std::fs::write(&target, out).expect("writing the embedded asset list");
}

fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}
