//! Growing the trees. Each tree is grown on its own (in parallel natively)
//! from its own seeded RNG, then appended to the forest's flat arrays, so a
//! build is deterministic whatever the thread count.

use super::{Forest, ForestParams, Metric, Node, metric};
use rand::{RngExt, SeedableRng, rngs::StdRng};

/// Steps of the 2-means run that picks each hyperplane (Annoy uses 200).
const TWO_MEANS_STEPS: usize = 200;
/// Tries at a 2-means hyperplane before an arbitrary split.
const SPLIT_ATTEMPTS: usize = 3;
/// A split that puts more than this share of the items on one side is retried.
const MAX_IMBALANCE: f64 = 0.95;

/// One tree's nodes, hyperplanes and leaf lists, indexed from zero.
#[derive(Default)]
pub(super) struct TreeParts {
    pub(super) nodes: Vec<Node>,
    pub(super) planes: Vec<f32>,
    pub(super) offsets: Vec<f32>,
    pub(super) leaf_items: Vec<u32>,
}

pub(super) struct TreeGrower<'a> {
    vectors: &'a [f32],
    dims: usize,
    metric: Metric,
    leaf_size: usize,
    rng: StdRng,
    pub(super) parts: TreeParts,
}

/// Grows `params.n_trees` trees over the tree-space `vectors` into `forest`.
pub(super) fn grow_trees(forest: &mut Forest, vectors: &[f32], params: &ForestParams) {
    let grow_one = |tree: usize| {
        // Mix the tree number into the seed so trees differ but builds repeat.
        let seed = params.seed ^ (tree as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut grower =
            TreeGrower::new(vectors, forest.dims, forest.metric, forest.leaf_size, seed);
        let mut items: Vec<u32> = (0..forest.labels.len() as u32).collect();
        grower.grow(&mut items);
        grower.parts
    };
    #[cfg(not(target_arch = "wasm32"))]
    let trees: Vec<TreeParts> = {
        use rayon::prelude::*;
        (0..params.n_trees).into_par_iter().map(grow_one).collect()
    };
    #[cfg(target_arch = "wasm32")]
    let trees: Vec<TreeParts> = (0..params.n_trees).map(grow_one).collect();

    for tree in trees {
        append_tree(forest, tree);
    }
}

/// Appends a tree, shifting its local indices into the forest's arrays.
pub(super) fn append_tree(forest: &mut Forest, tree: TreeParts) {
    let root = append_parts(forest, tree, None);
    forest.roots.push(root);
}

/// Appends a tree's parts to the forest's arrays, shifting their indices,
/// and returns where its root landed. `items`, when given, maps the tree's
/// local item numbers to the forest's.
pub(super) fn append_parts(forest: &mut Forest, tree: TreeParts, items: Option<&[u32]>) -> u32 {
    let node_base = forest.n_nodes() as u32;
    let split_base = forest.offsets.len() as u32;
    let leaf_base = forest.leaf_items.len() as u32;
    let shifted = tree.nodes.into_iter().flat_map(|node| {
        match node {
            Node::Leaf { start, len } => Node::Leaf { start: start + leaf_base, len },
            Node::Split { split, left, right } => Node::Split {
                split: split + split_base,
                left: left + node_base,
                right: right + node_base,
            },
        }
        .encode()
    });
    forest.nodes.make_mut().extend(shifted);
    forest.planes.make_mut().extend(tree.planes);
    forest.offsets.make_mut().extend(tree.offsets);
    match items {
        Some(items) => forest
            .leaf_items
            .make_mut()
            .extend(tree.leaf_items.iter().map(|&local| items[local as usize])),
        None => forest.leaf_items.make_mut().extend(tree.leaf_items),
    }
    node_base
}

impl<'a> TreeGrower<'a> {
    pub(super) fn new(
        vectors: &'a [f32],
        dims: usize,
        metric: Metric,
        leaf_size: usize,
        seed: u64,
    ) -> Self {
        TreeGrower {
            vectors,
            dims,
            metric,
            leaf_size,
            rng: StdRng::seed_from_u64(seed),
            parts: TreeParts::default(),
        }
    }

    fn vector(&self, item: u32) -> &[f32] {
        let start = item as usize * self.dims;
        &self.vectors[start..start + self.dims]
    }

    /// Grows the subtree over `items` and returns its root. The parent's slot
    /// is taken before the children's, so children always come later.
    pub(super) fn grow(&mut self, items: &mut [u32]) -> u32 {
        let index = self.parts.nodes.len() as u32;
        if items.len() <= self.leaf_size {
            let start = self.parts.leaf_items.len() as u32;
            self.parts.leaf_items.extend_from_slice(items);
            self.parts.nodes.push(Node::Leaf { start, len: items.len() as u32 });
            return index;
        }
        self.parts.nodes.push(Node::Leaf { start: 0, len: 0 }); // placeholder
        let (normal, offset, right_start) = self.split(items);
        let split = self.parts.offsets.len() as u32;
        self.parts.planes.extend_from_slice(&normal);
        self.parts.offsets.push(offset);
        let (left_items, right_items) = items.split_at_mut(right_start);
        let left = self.grow(left_items);
        let right = self.grow(right_items);
        self.parts.nodes[index as usize] = Node::Split { split, left, right };
        index
    }

    /// Chooses a hyperplane and partitions `items` by it: those with a
    /// non-positive margin first. Returns the plane and where the right side starts.
    fn split(&mut self, items: &mut [u32]) -> (Vec<f32>, f32, usize) {
        for _ in 0..SPLIT_ATTEMPTS {
            let (normal, offset) = self.two_means_plane(items);
            let right_start =
                partition(items, |item| metric::dot(&normal, self.vector(item)) + offset > 0.0);
            let larger = right_start.max(items.len() - right_start) as f64;
            if larger <= MAX_IMBALANCE * items.len() as f64 {
                return (normal, offset, right_start);
            }
        }
        // Duplicates or degenerate data: split arbitrarily in halves. A zero
        // normal gives every query a zero margin, so search visits both sides.
        for i in (1..items.len()).rev() {
            let j = self.rng.random_range(0..=i);
            items.swap(i, j);
        }
        (vec![0.0; self.dims], 0.0, items.len() / 2)
    }

    /// Annoy's hyperplane: run a few steps of 2-means from two random items and
    /// take the plane that bisects the two centroids.
    fn two_means_plane(&mut self, items: &[u32]) -> (Vec<f32>, f32) {
        let count = items.len();
        let i = self.rng.random_range(0..count);
        let mut j = self.rng.random_range(0..count - 1);
        j += usize::from(j >= i);
        let mut p = self.vector(items[i]).to_vec();
        let mut q = self.vector(items[j]).to_vec();
        let (mut p_count, mut q_count) = (1.0f32, 1.0f32);
        for _ in 0..TWO_MEANS_STEPS {
            let pick = items[self.rng.random_range(0..count)];
            let x = self.vector(pick);
            let dp = p_count * distance_for_means(self.metric, &p, x);
            let dq = q_count * distance_for_means(self.metric, &q, x);
            if dp < dq {
                running_mean(&mut p, &mut p_count, x);
            } else if dq < dp {
                running_mean(&mut q, &mut q_count, x);
            }
        }
        let mut normal: Vec<f32> = p.iter().zip(&q).map(|(a, b)| a - b).collect();
        metric::normalize(&mut normal);
        let offset = match self.metric {
            // Items of equal norm: the bisecting plane passes through the origin.
            Metric::Angular | Metric::Dot => 0.0,
            Metric::Euclidean => {
                let midpoint: Vec<f32> = p.iter().zip(&q).map(|(a, b)| (a + b) / 2.0).collect();
                -metric::dot(&normal, &midpoint)
            }
        };
        (normal, offset)
    }
}

fn distance_for_means(metric: Metric, centre: &[f32], x: &[f32]) -> f32 {
    match metric {
        // Centroids of equal-norm vectors are shorter: compare directions.
        Metric::Angular | Metric::Dot => {
            let norm = metric::dot(centre, centre).sqrt().max(f32::MIN_POSITIVE);
            1.0 - metric::dot(centre, x) / norm
        }
        Metric::Euclidean => metric::squared_distance(centre, x),
    }
}

fn running_mean(mean: &mut [f32], count: &mut f32, x: &[f32]) {
    for (m, v) in mean.iter_mut().zip(x) {
        *m = (*m * *count + v) / (*count + 1.0);
    }
    *count += 1.0;
}

/// Moves the items for which `goes_right` is false to the front; returns
/// the index of the first right item.
fn partition(items: &mut [u32], mut goes_right: impl FnMut(u32) -> bool) -> usize {
    let mut boundary = 0;
    for i in 0..items.len() {
        if !goes_right(items[i]) {
            items.swap(i, boundary);
            boundary += 1;
        }
    }
    boundary
}
