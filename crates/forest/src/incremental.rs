//! Changing a built forest without rebuilding it.
//!
//! - `add` appends an item and drops it down every tree by the existing
//!   hyperplanes into a leaf. A leaf that grows past twice the leaf size is
//!   split by a fresh 2-means hyperplane, so trees stay balanced locally.
//!   With a graph, the item is linked as the build links one: a walk towards
//!   it, robust prune, reverse links pruned where a row is full.
//! - `remove` marks an item as removed: it is skipped by every search (which
//!   then walks a little further to fill `search_k`), and its slot is kept so
//!   item numbers stay stable until the next full build. A graph keeps its
//!   links: walks pass through it as before.
//!
//! What it costs: the hyperplanes were fitted to the items present at build
//! time, so items added later are placed well but the splits do not adapt to
//! them, and removed items still occupy leaves. Recall at a fixed `search_k`
//! degrades slowly (see `docs/forest.md` for measurements); rebuild when a
//! fifth of the catalog has changed.

use super::build::{TreeGrower, append_parts};
use super::graph::{Beam, NO_LINK, Trace, Visited, prune, walk, with_reverse_links};
use super::{Forest, ForestError, Metric, Node, augment, metric};

impl Forest {
    /// Adds an item and returns its number.
    pub fn add(&mut self, vector: &[f32], label: u32) -> Result<u32, ForestError> {
        if vector.iter().any(|x| !x.is_finite()) {
            return Err(ForestError::NonFinite { item: self.len() });
        }
        let mut tree_vector = self.to_tree_space(vector)?;
        if self.metric == Metric::Dot {
            // Items carry sqrt(M^2 - |x|^2); a longer new item is clamped to 0,
            // which is why a changed norm range calls for a rebuild.
            tree_vector.pop();
            tree_vector = augment(&tree_vector, self.max_norm);
        }
        let item = self.len() as u32;
        if let Some(full) = &mut self.rescore {
            let mut v = vector.to_vec();
            if self.metric == Metric::Angular {
                super::metric::normalize(&mut v);
            }
            full.push(&v);
        }
        self.store.push(&tree_vector);
        self.labels.make_mut().push(label);
        self.deleted.push(false);
        // Descend with the vector as stored, so later searches agree with it.
        let stored = self.stored_vector(item);
        if self.metric == Metric::Euclidean {
            self.sq_norms.make_mut().push(super::metric::dot(&stored, &stored));
        }
        if self.graph.is_some() {
            self.link_into_graph(item);
        }
        for tree in 0..self.roots.len() {
            let leaf = self.descend(self.roots[tree], &stored);
            self.append_to_leaf(leaf, item);
        }
        Ok(item)
    }

    /// Removes an item from all future results; `false` if it was already gone.
    pub fn remove(&mut self, item: u32) -> bool {
        match self.deleted.get_mut(item as usize) {
            Some(deleted) if !*deleted => {
                *deleted = true;
                self.removed += 1;
                true
            }
            _ => false,
        }
    }

    /// The leaf `vector` falls into, starting at `node`.
    /// Links a new item into the graph the way the build links one: a walk
    /// towards it, robust prune, and reverse links pruned where a row is full.
    fn link_into_graph(&mut self, item: u32) {
        let dims = self.dims;
        let store = &self.store;
        let between = |a: u32, b: u32| {
            metric::squared_distance(
                &store.decode(a as usize, dims),
                &store.decode(b as usize, dims),
            )
        };
        let graph = self.graph.as_mut().expect("checked by the caller");
        let params = graph.params;
        graph.links.make_mut().extend(std::iter::repeat_n(NO_LINK, params.degree));
        let mut visited = Visited::new(item as usize + 1);
        let mut trace = Trace::default();
        let pool = walk(
            |i| graph.row(i),
            &[graph.entry],
            Beam { ef: params.build_beam, width: 1 },
            &mut visited,
            |other| between(item, other),
            |_| {},
            Some(&mut trace),
        );
        let mut expanded = trace.expanded;
        expanded.extend(pool);
        let row = prune(item, expanded, params.degree, params.alpha, between);
        let mut rows: Vec<(u32, Vec<u32>)> = vec![(item, row.clone())];
        for &to in &row {
            let merged = with_reverse_links(
                to,
                graph.row(to),
                &[item],
                params.degree,
                params.alpha,
                between,
            );
            rows.push((to, merged));
        }
        let links = graph.links.make_mut();
        for (at, row) in rows {
            let slots = &mut links[at as usize * params.degree..(at as usize + 1) * params.degree];
            slots.fill(NO_LINK);
            slots[..row.len()].copy_from_slice(&row);
        }
    }

    pub(crate) fn descend(&self, mut node: u32, vector: &[f32]) -> u32 {
        loop {
            match self.node(node) {
                Node::Leaf { .. } => return node,
                Node::Split { split, left, right } => {
                    node = if self.margin(split, vector) > 0.0 { right } else { left };
                }
            }
        }
    }

    fn append_to_leaf(&mut self, leaf: u32, item: u32) {
        let Node::Leaf { start, len } = self.node(leaf) else {
            unreachable!("descend ends at a leaf")
        };
        let mut items: Vec<u32> = self.leaf_items[start as usize..(start + len) as usize].to_vec();
        items.push(item);
        if items.len() <= 2 * self.leaf_size {
            // Move the leaf to the end of the list; the old range becomes
            // garbage that serialisation leaves out.
            let new_start = self.leaf_items.len() as u32;
            self.leaf_items.make_mut().extend_from_slice(&items);
            self.set_node(leaf, Node::Leaf { start: new_start, len: items.len() as u32 });
        } else {
            self.split_leaf(leaf, &items);
        }
    }

    /// Replaces leaf `leaf` by a subtree grown over `items`.
    fn split_leaf(&mut self, leaf: u32, items: &[u32]) {
        let local: Vec<f32> = items.iter().flat_map(|&i| self.stored_vector(i)).collect();
        let mut local_items: Vec<u32> = (0..items.len() as u32).collect();
        let mut grower =
            TreeGrower::new(&local, self.dims, self.metric, self.leaf_size, u64::from(items[0]));
        grower.grow(&mut local_items);
        let root = append_parts(self, grower.parts, Some(items));
        // The subtree's root takes the leaf's place; its children come later
        // in the array, so the parent-before-child order still holds.
        let root_node = self.node(root);
        self.set_node(leaf, root_node);
    }

    /// The trees as they are reached from the roots, renumbered in visit
    /// order (a parent still precedes its children), with leaf items laid
    /// out contiguously and only the splits still in use. A leaf that grew
    /// into a subtree leaves the subtree's old root and the leaf's items
    /// behind; written out as they are, that orphan would give its children
    /// a second parent, which a reader rightly refuses.
    pub(crate) fn compacted(&self) -> Compacted {
        let mut out = Compacted::default();
        let dims = self.dims;
        for &root in &self.roots {
            out.roots.push(out.nodes.len() as u32);
            // Depth first, children numbered as they are pushed: each node's
            // number is known before its children are visited.
            out.nodes.push(Node::Leaf { start: 0, len: 0 });
            let mut stack = vec![(root, out.nodes.len() as u32 - 1)];
            while let Some((old, new)) = stack.pop() {
                let node = match self.node(old) {
                    Node::Leaf { start, len } => {
                        let new_start = out.leaf_items.len() as u32;
                        out.leaf_items.extend_from_slice(
                            &self.leaf_items[start as usize..(start + len) as usize],
                        );
                        Node::Leaf { start: new_start, len }
                    }
                    Node::Split { split, left, right } => {
                        let new_split = out.offsets.len() as u32;
                        out.offsets.push(self.offsets[split as usize]);
                        out.planes.extend_from_slice(
                            &self.planes[split as usize * dims..(split as usize + 1) * dims],
                        );
                        let (new_left, new_right) =
                            (out.nodes.len() as u32, out.nodes.len() as u32 + 1);
                        out.nodes.push(Node::Leaf { start: 0, len: 0 });
                        out.nodes.push(Node::Leaf { start: 0, len: 0 });
                        stack.push((right, new_right));
                        stack.push((left, new_left));
                        Node::Split { split: new_split, left: new_left, right: new_right }
                    }
                };
                out.nodes[new as usize] = node;
            }
        }
        out
    }
}

/// The forest's trees without garbage ([`Forest::compacted`]).
#[derive(Default)]
pub(crate) struct Compacted {
    pub roots: Vec<u32>,
    pub nodes: Vec<Node>,
    pub planes: Vec<f32>,
    pub offsets: Vec<f32>,
    pub leaf_items: Vec<u32>,
}

#[cfg(test)]
mod tests {
    use super::super::{Encoding, ForestParams, NO_LABEL, Query};
    use super::*;
    use rand::{RngExt, SeedableRng, rngs::StdRng};

    fn clustered(n: usize, dims: usize, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        let centres: Vec<f32> = (0..20 * dims).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        (0..n)
            .flat_map(|_| {
                let c = rng.random_range(0..20);
                (0..dims)
                    .map(|d| centres[c * dims + d] + rng.random_range(-0.3f32..0.3))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn recall(forest: &Forest, items: impl Iterator<Item = u32>, search_k: usize) -> f64 {
        let (mut found, mut total) = (0, 0);
        for item in items {
            let query = Query::top(10).with_search_k(search_k);
            let exact = forest.exact_search_item(item, &query);
            let approx = forest.search_item(item, &query);
            found += exact.iter().filter(|e| approx.iter().any(|a| a.item == e.item)).count();
            total += exact.len();
        }
        found as f64 / total as f64
    }

    #[test]
    fn added_items_are_found_and_recall_stays_close_to_a_rebuild() {
        let (n, dims) = (4000, 32);
        let vectors = clustered(n, dims, 5);
        let params = ForestParams { encoding: Encoding::F32, ..ForestParams::new(Metric::Angular) };
        let base = n * 3 / 4;
        let mut grown =
            Forest::build(vectors[..base * dims].to_vec(), dims, None, &params).unwrap();
        for v in vectors[base * dims..].chunks_exact(dims) {
            grown.add(v, NO_LABEL).unwrap();
        }
        let rebuilt = Forest::build(vectors.clone(), dims, None, &params).unwrap();
        let probe = || (0..n as u32).step_by(20);
        let (r_grown, r_rebuilt) = (recall(&grown, probe(), 300), recall(&rebuilt, probe(), 300));
        assert!(r_grown >= r_rebuilt - 0.05, "grown {r_grown} vs rebuilt {r_rebuilt}");
        // A new item is its own nearest neighbour by vector.
        let last = (n - 1) as u32;
        let hits = grown.search_vector(&vectors[(n - 1) * dims..], &Query::top(1)).unwrap();
        assert_eq!(hits[0].item, last);
        // Written out, the leaves the splits left behind are dropped, and
        // the compacted forest answers the same.
        let parts = grown.to_parts();
        assert!(parts.leaf_items.len() < grown.leaf_items.len(), "garbage is left out");
        let compacted = Forest::from_parts(parts).unwrap();
        assert_eq!(
            compacted.search_item(7, &Query::top(10)),
            grown.search_item(7, &Query::top(10))
        );
    }

    #[test]
    fn removed_items_never_come_back() {
        let vectors = clustered(1000, 8, 9);
        let mut forest =
            Forest::build(vectors, 8, None, &ForestParams::new(Metric::Euclidean)).unwrap();
        let before = forest.search_item(0, &Query::top(10));
        for hit in &before[..5] {
            assert!(forest.remove(hit.item));
        }
        assert!(!forest.remove(before[0].item));
        let after = forest.search_item(0, &Query::top(10));
        assert_eq!(after.len(), 10);
        assert!(after.iter().all(|h| !forest.is_deleted(h.item)));
        assert_eq!(forest.live_len(), 995);
    }

    #[test]
    fn dot_metric_items_can_be_added() {
        let vectors = clustered(500, 6, 2);
        let mut forest =
            Forest::build(vectors.clone(), 6, None, &ForestParams::new(Metric::Dot)).unwrap();
        let item = forest.add(&vectors[..6], 3).unwrap();
        let hits = forest.search_vector(&vectors[..6], &Query::top(500)).unwrap();
        assert!(hits.iter().any(|h| h.item == item));
        assert_eq!(forest.label(item), 3);
    }
}
