//! A random-projection forest for approximate nearest neighbours, built the
//! way Spotify's Annoy builds it, and stored compactly for the browser.
//!
//! Each tree splits the items recursively by a hyperplane that separates two
//! centroids found by a short 2-means run, until at most `leaf_size` items
//! remain. A query walks all trees at once, best-first by its margin to each
//! hyperplane, collects `search_k` candidates from the leaves it reaches, and
//! scores them exactly against the stored vectors. More trees and a larger
//! `search_k` trade time for recall.
//!
//! Everything happens in *tree space*: the input vector, normalised (angular),
//! optionally projected by a PCA learned at build time ([`pca`]), and for the
//! dot metric augmented by one coordinate. Vectors are stored as f32, f16 or
//! 8-bit codes ([`storage`]).
//!
//! Optionally the items are also linked into a neighbour graph
//! ([`GraphParams`]): a query then walks the graph from the leaf one tree
//! reaches, scoring only the neighbours of the best items seen, which at
//! recall 0.95 is a small fraction of what the trees alone must score. The
//! graph answers unfiltered queries; the trees answer what it cannot (a rare
//! label).
//!
//! Label filters are applied *inside* the walk: a filtered query keeps walking
//! until it has enough candidates that pass, so it still returns `k` results
//! whenever `k` items pass the filter.
//!
//! Nodes live in one flat array and a parent always precedes its children,
//! which makes every tree acyclic by construction and lets the file loader
//! check that cheaply.
//!
//! ```
//! use lookalike_forest::{Forest, ForestParams, Metric, Query};
//! let vectors = vec![1.0, 0.0, 0.9, 0.1, 0.0, 1.0, -1.0, 0.0];
//! let forest = Forest::build(vectors, 2, None, &ForestParams::new(Metric::Angular)).unwrap();
//! let hits = forest.search_item(0, &Query::top(1));
//! assert_eq!(hits[0].item, 1);
//! assert!(hits[0].score > 0.99);
//! ```

mod buf;
mod build;
mod clusters;
mod graph;
mod graph_build;
mod incremental;
pub mod metric;
mod parts;
pub mod pca;
mod search;
pub mod storage;

pub use buf::{Buf, SharedBytes};
pub use clusters::{TwoLevel, score_all};
pub use graph::{GraphParams, MAX_DEGREE, NO_LINK};
pub use metric::Metric;
pub use parts::{ForestPart, ForestParts, GraphPart};
pub use pca::Projection;
pub use search::{DEFAULT_BEAM, LabelFilter, Neighbor, Query, WalkStats};
pub use storage::{Encoding, VectorStore};

/// Marks an item without a label.
pub const NO_LABEL: u32 = u32::MAX;
/// Flags a node of the flat array as a leaf.
pub(crate) const LEAF_FLAG: u32 = 1 << 31;

/// How to build a forest.
#[derive(Debug, Clone)]
pub struct ForestParams {
    pub metric: Metric,
    /// More trees: better recall, larger index, slower build.
    pub n_trees: usize,
    /// Most items in one leaf.
    pub leaf_size: usize,
    /// Builds with the same seed and inputs are identical.
    pub seed: u64,
    /// How item vectors are stored.
    pub encoding: Encoding,
    /// Project to this many dimensions by PCA first; `None` keeps them all.
    pub pca_dims: Option<usize>,
    /// Also keep the full input vectors in this encoding, and re-rank each
    /// query's best candidates exactly with them (see [`RESCORE_POOL`]).
    pub rescore: Option<Encoding>,
    /// Also link the items into a neighbour graph, which then answers
    /// unfiltered queries ([`graph`](crate::GraphParams)): faster at high
    /// recall, `4 * degree` more bytes per item.
    pub graph: Option<GraphParams>,
}

/// With re-scoring, the best `RESCORE_POOL * k` candidates by the compact
/// codes are re-ranked with the full vectors.
pub const RESCORE_POOL: usize = 4;

impl ForestParams {
    pub fn new(metric: Metric) -> Self {
        Self {
            metric,
            // On the 2,064-product catalog (1280-d): recall@10 0.93 at the
            // default search_k and 0.98 at 200.
            n_trees: 10,
            leaf_size: 32,
            seed: 0x100c_a11c,
            encoding: Encoding::F16,
            pca_dims: None,
            rescore: None,
            graph: None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ForestError {
    #[error("vectors must have at least one dimension")]
    ZeroDimensions,
    #[error("{len} values are not a whole number of {dims}-dimensional vectors")]
    RaggedVectors { len: usize, dims: usize },
    #[error("{labels} labels for {items} items")]
    LabelCount { labels: usize, items: usize },
    #[error("item {item} has a non-finite value")]
    NonFinite { item: usize },
    #[error("too many items for one index ({0}); the limit is 2^31")]
    TooManyItems(usize),
    #[error("leaf_size and n_trees must be at least 1")]
    BadParams,
    #[error("PCA to {pca} dimensions needs 1 <= dims <= {dims}")]
    BadPca { pca: usize, dims: usize },
    #[error("vector has {found} values, the index takes {expected}")]
    WrongDimension { found: usize, expected: usize },
    /// Arrays read from a file do not fit together ([`Forest::from_parts`]).
    #[error("malformed {part:?}: {reason}")]
    Malformed { part: ForestPart, reason: String },
}

/// One node of the flat node array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Node {
    /// Items `leaf_items[start..start+len]`.
    Leaf { start: u32, len: u32 },
    /// Hyperplane `split` (normal in `planes`, offset in `offsets`); `right` is
    /// the side with a positive margin.
    Split { split: u32, left: u32, right: u32 },
}

impl Node {
    pub(crate) fn encode(self) -> [u32; 3] {
        match self {
            Node::Leaf { start, len } => [LEAF_FLAG | len, start, 0],
            Node::Split { split, left, right } => [split, left, right],
        }
    }

    pub(crate) fn decode(raw: [u32; 3]) -> Node {
        if raw[0] & LEAF_FLAG != 0 {
            Node::Leaf { start: raw[1], len: raw[0] & !LEAF_FLAG }
        } else {
            Node::Split { split: raw[0], left: raw[1], right: raw[2] }
        }
    }
}

/// The forest: stored vectors, per-item labels and the trees over them.
#[derive(Debug, Clone, PartialEq)]
pub struct Forest {
    pub(crate) metric: Metric,
    /// Dimension of the vectors given to `build` and `search_vector`.
    pub(crate) input_dims: usize,
    /// Dimension of tree space (after projection and augmentation).
    pub(crate) dims: usize,
    pub(crate) projection: Option<Projection>,
    /// For the dot metric: the norm every augmented item has.
    pub(crate) max_norm: f32,
    /// Tree-space vectors, `n_items * dims`.
    pub(crate) store: VectorStore,
    /// Input-space vectors (normalised for angular), `n_items * input_dims`,
    /// for exact re-scoring; absent in compact sites.
    pub(crate) rescore: Option<VectorStore>,
    /// One per item; [`NO_LABEL`] when unlabelled.
    pub(crate) labels: Buf<u32>,
    /// Removed items (incremental changes); never returned by a search.
    pub(crate) deleted: Vec<bool>,
    /// How many of `deleted` are set.
    pub(crate) removed: usize,
    pub(crate) leaf_size: usize,
    /// The root node of each tree.
    pub(crate) roots: Vec<u32>,
    /// Three u32 per node ([`Node::encode`]), read through [`Forest::node`].
    pub(crate) nodes: Buf<u32>,
    /// `n_splits * dims` hyperplane normals.
    pub(crate) planes: Buf<f32>,
    /// One per split: the margin is `dot(normal, x) + offset`.
    pub(crate) offsets: Buf<f32>,
    pub(crate) leaf_items: Buf<u32>,
    /// The neighbour graph, when the forest was built with one.
    pub(crate) graph: Option<graph::Graph>,
    /// Euclidean forests: each stored vector's squared norm, so that a
    /// distance is one dot product with the store's codes. Derived from the
    /// store, never written.
    pub(crate) sq_norms: Buf<f32>,
}

impl Forest {
    /// Builds a forest over `vectors` (row-major, `dims` per item).
    /// `labels`, when given, has one entry per item ([`NO_LABEL`] for none).
    pub fn build(
        vectors: Vec<f32>,
        dims: usize,
        labels: Option<Vec<u32>>,
        params: &ForestParams,
    ) -> Result<Forest, ForestError> {
        if dims == 0 {
            return Err(ForestError::ZeroDimensions);
        }
        if !vectors.len().is_multiple_of(dims) {
            return Err(ForestError::RaggedVectors { len: vectors.len(), dims });
        }
        if params.leaf_size == 0 || params.n_trees == 0 {
            return Err(ForestError::BadParams);
        }
        let n_items = vectors.len() / dims;
        if n_items >= LEAF_FLAG as usize {
            return Err(ForestError::TooManyItems(n_items));
        }
        if let Some(item) =
            vectors.chunks_exact(dims).position(|v| v.iter().any(|x| !x.is_finite()))
        {
            return Err(ForestError::NonFinite { item });
        }
        let labels = labels.unwrap_or_else(|| vec![NO_LABEL; n_items]);
        if labels.len() != n_items {
            return Err(ForestError::LabelCount { labels: labels.len(), items: n_items });
        }
        if let Some(pca) = params.pca_dims
            && (pca == 0 || pca > dims)
        {
            return Err(ForestError::BadPca { pca, dims });
        }

        let rescore = params.rescore.map(|encoding| {
            let mut full = vectors.clone();
            if params.metric == Metric::Angular {
                full.chunks_exact_mut(dims).for_each(metric::normalize);
            }
            VectorStore::encode(full, dims, encoding)
        });
        let (tree_vectors, projection, max_norm, tree_dims) =
            to_tree_space_for_build(vectors, dims, params);
        let mut forest = Forest {
            metric: params.metric,
            input_dims: dims,
            dims: tree_dims,
            projection,
            max_norm,
            store: VectorStore::encode(Vec::new(), tree_dims, params.encoding),
            rescore,
            labels: labels.into(),
            deleted: vec![false; n_items],
            removed: 0,
            leaf_size: params.leaf_size,
            roots: Vec::new(),
            nodes: Buf::default(),
            planes: Buf::default(),
            offsets: Buf::default(),
            leaf_items: Buf::default(),
            graph: None,
            sq_norms: Buf::default(),
        };
        build::grow_trees(&mut forest, &tree_vectors, params);
        if let Some(graph) = &params.graph {
            let points = graph_build::Points::new(&tree_vectors, tree_dims);
            let seeds = |item: u32| forest.leaf_seeds(points.vector(item));
            let built = graph_build::build_graph(&points, graph, params.seed, seeds);
            forest.graph = Some(built);
        }
        forest.store = VectorStore::encode(tree_vectors, tree_dims, params.encoding);
        forest.sq_norms = squared_norms(params.metric, &forest.store, tree_dims);
        Ok(forest)
    }

    /// Maps an input vector to tree space: what a query is compared in.
    pub fn to_tree_space(&self, vector: &[f32]) -> Result<Vec<f32>, ForestError> {
        if vector.len() != self.input_dims {
            return Err(ForestError::WrongDimension {
                found: vector.len(),
                expected: self.input_dims,
            });
        }
        let mut v = vector.to_vec();
        if self.metric == Metric::Angular {
            metric::normalize(&mut v);
        }
        if let Some(projection) = &self.projection {
            v = projection.apply(&v);
            if self.metric == Metric::Angular {
                metric::normalize(&mut v);
            }
        }
        if self.metric == Metric::Dot {
            v.push(0.0); // a query's extra coordinate: scores stay inner products
        }
        Ok(v)
    }

    /// Number of items ever added, removed ones included (item numbers are stable).
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Items that can be returned (not removed).
    pub fn live_len(&self) -> usize {
        self.len() - self.removed
    }

    /// Whether any item was removed (so searches must check).
    pub(crate) fn has_removed(&self) -> bool {
        self.removed > 0
    }

    pub fn is_deleted(&self, item: u32) -> bool {
        self.deleted[item as usize]
    }

    /// Dimension of the vectors the forest takes.
    // The stored dimension is `stored_dims`; what a caller passes is this.
    #[allow(clippy::misnamed_getters)]
    pub fn dims(&self) -> usize {
        self.input_dims
    }

    /// Dimension of the stored vectors (after projection).
    pub fn stored_dims(&self) -> usize {
        self.dims
    }

    pub fn metric(&self) -> Metric {
        self.metric
    }

    pub fn encoding(&self) -> Encoding {
        self.store.encoding()
    }

    pub fn projection(&self) -> Option<&Projection> {
        self.projection.as_ref()
    }

    pub fn n_trees(&self) -> usize {
        self.roots.len()
    }

    pub fn leaf_size(&self) -> usize {
        self.leaf_size
    }

    /// The stored tree-space vector of `item`, decoded.
    pub fn stored_vector(&self, item: u32) -> Vec<f32> {
        self.store.decode(item as usize, self.dims)
    }

    pub fn label(&self, item: u32) -> u32 {
        self.labels[item as usize]
    }

    /// The items of the leaf each tree's plain descent reaches: where a
    /// graph walk starts, near the query, instead of crossing the space from
    /// one entry point (EFANNA's idea; HNSW's upper layers do the same job).
    pub(crate) fn leaf_seeds(&self, vector: &[f32]) -> Vec<u32> {
        let mut seeds = Vec::new();
        for &root in &self.roots {
            if let Node::Leaf { start, len } = self.node(self.descend(root, vector)) {
                seeds.extend_from_slice(&self.leaf_items[start as usize..(start + len) as usize]);
            }
        }
        seeds
    }

    pub(crate) fn node(&self, index: u32) -> Node {
        let at = index as usize * 3;
        Node::decode([self.nodes[at], self.nodes[at + 1], self.nodes[at + 2]])
    }

    pub(crate) fn n_nodes(&self) -> usize {
        self.nodes.len() / 3
    }

    pub(crate) fn set_node(&mut self, index: u32, node: Node) {
        let at = index as usize * 3;
        self.nodes.make_mut()[at..at + 3].copy_from_slice(&node.encode());
    }

    /// The neighbour graph's parameters, when the forest has one.
    pub fn graph_params(&self) -> Option<GraphParams> {
        self.graph.as_ref().map(|g| g.params)
    }

    /// Whether the big arrays are viewed in place in the file they came from.
    pub fn is_zero_copy(&self) -> bool {
        self.nodes.is_shared() && self.offsets.is_shared() && self.store.is_shared()
    }
}

/// Euclidean forests score by `2 q.x - |x|^2`, one dot product with the
/// codes: this is `|x|^2` of every stored (decoded) vector; empty otherwise.
pub(crate) fn squared_norms(metric: Metric, store: &VectorStore, dims: usize) -> Buf<f32> {
    if metric != Metric::Euclidean || dims == 0 {
        return Buf::default();
    }
    let n = store.value_count() / dims;
    let norms: Vec<f32> = (0..n)
        .map(|item| {
            let v = store.decode(item, dims);
            metric::dot(&v, &v)
        })
        .collect();
    norms.into()
}

/// Normalises, projects and augments the build's vectors; returns them with
/// the projection, the dot metric's norm and the tree-space dimension.
fn to_tree_space_for_build(
    mut vectors: Vec<f32>,
    dims: usize,
    params: &ForestParams,
) -> (Vec<f32>, Option<Projection>, f32, usize) {
    let angular = params.metric == Metric::Angular;
    if angular {
        vectors.chunks_exact_mut(dims).for_each(metric::normalize);
    }
    let mut tree_dims = dims;
    let mut projection = None;
    if let Some(out) = params.pca_dims.filter(|&p| p < dims) {
        // Centring changes inner products, so the dot metric projects uncentred.
        let p = Projection::fit(&vectors, dims, out, params.metric != Metric::Dot, params.seed);
        vectors = p.apply_all(&vectors);
        tree_dims = out;
        if angular {
            vectors.chunks_exact_mut(tree_dims).for_each(metric::normalize);
        }
        projection = Some(p);
    }
    let mut max_norm = 0.0;
    if params.metric == Metric::Dot {
        max_norm = vectors
            .chunks_exact(tree_dims)
            .map(|v| metric::dot(v, v).sqrt())
            .fold(0.0f32, f32::max);
        vectors = vectors.chunks_exact(tree_dims).flat_map(|v| augment(v, max_norm)).collect();
        tree_dims += 1;
    }
    (vectors, projection, max_norm, tree_dims)
}

/// Test data shaped like embeddings: points in a random `rank`-dimensional
/// subspace of `dims`, plus uniform noise of amplitude `noise`.
#[cfg(test)]
pub(crate) fn low_rank_vectors(
    n: usize,
    dims: usize,
    rank: usize,
    noise: f32,
    seed: u64,
) -> Vec<f32> {
    use rand::{RngExt, SeedableRng, rngs::StdRng};
    let mut rng = StdRng::seed_from_u64(seed);
    let axes: Vec<f32> = (0..rank * dims).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let mut out = Vec::with_capacity(n * dims);
    for _ in 0..n {
        let c: Vec<f32> = (0..rank).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        for d in 0..dims {
            let clean: f32 = (0..rank).map(|a| c[a] * axes[a * dims + d]).sum();
            out.push(clean + if noise > 0.0 { rng.random_range(-noise..noise) } else { 0.0 });
        }
    }
    out
}

/// Annoy's dot-product reduction: append `sqrt(M^2 - |x|^2)`.
pub(crate) fn augment(vector: &[f32], max_norm: f32) -> Vec<f32> {
    let extra = (max_norm * max_norm - metric::dot(vector, vector)).max(0.0).sqrt();
    vector.iter().copied().chain(std::iter::once(extra)).collect()
}
