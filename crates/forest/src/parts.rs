//! The forest's arrays, laid bare for a file format: what a writer stores
//! and what a reader hands back. [`Forest::to_parts`] lays them out (leaves
//! compacted, garbage from incremental changes left out) and
//! [`Forest::from_parts`] checks every cross-reference before a search can
//! touch them, so a forest read from hostile bytes cannot index out of
//! bounds, loop or take exponential time.
//!
//! # Memory layout
//!
//! With `n` items, `d` tree-space dimensions, `s` splits and `m` nodes:
//!
//! | array | length | meaning |
//! |---|---|---|
//! | `store` | `n * d` values | tree-space vectors ([`VectorStore`]: f32, f16 or 8-bit codes with scales) |
//! | `rescore` | `n * input_dims` | optional full vectors for exact re-scoring |
//! | `labels` | `n` | label number per item, [`NO_LABEL`] for none |
//! | `deleted` | `n` | removed items (never returned) |
//! | `roots` | trees | the root node of each tree |
//! | `nodes` | `3 * m` u32 | a leaf is `[LEAF_FLAG \| len, start, 0]` (items `leaf_items[start..start+len]`); a split is `[split, left, right]` |
//! | `planes` | `s * d` | hyperplane normals, one row per split |
//! | `offsets` | `s` | the margin is `dot(planes[split], x) + offsets[split]` |
//! | `leaf_items` | any | item numbers of the leaves, back to back |
//! | `graph.links` | `n * degree` u32 | optional neighbour graph: each item's links, then [`NO_LINK`](crate::NO_LINK) in unused slots |
//!
//! A parent always precedes its children in `nodes`, and every node has at
//! most one parent (a root counts as one): the trees are acyclic and share
//! no subtree, which is what makes a walk visit each node at most once.

use crate::graph::{Graph, MAX_DEGREE, NO_LINK};
use crate::{
    Buf, Forest, ForestError, GraphParams, LEAF_FLAG, Metric, Node, Projection, VectorStore,
};

/// Which array a malformed forest's problem is in (a file maps it to its
/// own section names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForestPart {
    Vectors,
    Labels,
    Roots,
    Nodes,
    Planes,
    Offsets,
    LeafItems,
    Projection,
    Deleted,
    Graph,
}

/// The neighbour graph's arrays and scalars, as stored.
#[derive(Debug, Clone)]
pub struct GraphPart {
    pub params: GraphParams,
    pub entry: u32,
    pub links: Buf<u32>,
}

/// A forest's arrays and scalars, as stored (see the module's layout table).
#[derive(Debug, Clone)]
pub struct ForestParts {
    pub metric: Metric,
    /// Dimension of the vectors a query gives.
    pub input_dims: usize,
    /// Dimension of tree space (after projection, plus one for the dot metric).
    pub dims: usize,
    pub projection: Option<Projection>,
    /// For the dot metric: the norm every augmented item has.
    pub max_norm: f32,
    pub store: VectorStore,
    pub rescore: Option<VectorStore>,
    pub labels: Buf<u32>,
    pub deleted: Vec<bool>,
    pub leaf_size: usize,
    pub roots: Vec<u32>,
    pub nodes: Buf<u32>,
    pub planes: Buf<f32>,
    pub offsets: Buf<f32>,
    pub leaf_items: Buf<u32>,
    pub graph: Option<GraphPart>,
}

impl ForestParts {
    /// Number of splits (rows of `planes`).
    pub fn n_splits(&self) -> usize {
        self.offsets.len()
    }

    /// Number of nodes (three u32 each in `nodes`).
    pub fn n_nodes(&self) -> usize {
        self.nodes.len() / 3
    }
}

impl Forest {
    /// The forest's arrays for writing: the trees renumbered as they are
    /// reached from the roots, leaves laid out contiguously, and what
    /// incremental changes left behind dropped.
    pub fn to_parts(&self) -> ForestParts {
        let trees = self.compacted();
        ForestParts {
            metric: self.metric,
            input_dims: self.input_dims,
            dims: self.dims,
            projection: self.projection.clone(),
            max_norm: self.max_norm,
            store: self.store.clone(),
            rescore: self.rescore.clone(),
            labels: self.labels.clone(),
            deleted: self.deleted.clone(),
            leaf_size: self.leaf_size,
            roots: trees.roots,
            nodes: trees.nodes.iter().flat_map(|n| n.encode()).collect::<Vec<u32>>().into(),
            planes: trees.planes.into(),
            offsets: trees.offsets.into(),
            leaf_items: trees.leaf_items.into(),
            graph: self.graph.as_ref().map(|g| GraphPart {
                params: g.params,
                entry: g.entry,
                links: g.links.clone(),
            }),
        }
    }

    /// A forest from arrays read from a file, after checking that they fit
    /// together: sizes, dimensions, every node, root and item reference, and
    /// the one-parent rule. Views into shared bytes stay views.
    pub fn from_parts(parts: ForestParts) -> Result<Forest, ForestError> {
        check(&parts)?;
        let removed = parts.deleted.iter().filter(|d| **d).count();
        let sq_norms = crate::squared_norms(parts.metric, &parts.store, parts.dims);
        Ok(Forest {
            metric: parts.metric,
            input_dims: parts.input_dims,
            dims: parts.dims,
            projection: parts.projection,
            max_norm: parts.max_norm,
            store: parts.store,
            rescore: parts.rescore,
            labels: parts.labels,
            deleted: parts.deleted,
            removed,
            leaf_size: parts.leaf_size,
            roots: parts.roots,
            nodes: parts.nodes,
            planes: parts.planes,
            offsets: parts.offsets,
            leaf_items: parts.leaf_items,
            graph: parts.graph.map(|g| Graph { params: g.params, entry: g.entry, links: g.links }),
            sq_norms,
        })
    }
}

fn check(p: &ForestParts) -> Result<(), ForestError> {
    let malformed = |part, reason: String| Err(ForestError::Malformed { part, reason });
    let n = p.labels.len();
    if p.dims == 0 || p.input_dims == 0 {
        return malformed(ForestPart::Vectors, "zero dimensions".into());
    }
    if n >= LEAF_FLAG as usize {
        return malformed(ForestPart::Labels, format!("{n} items; the limit is 2^31"));
    }
    let augmented = usize::from(p.metric == Metric::Dot);
    let expected_dims = p.projection.as_ref().map_or(p.input_dims, |pr| pr.out_dims) + augmented;
    if p.dims != expected_dims {
        return malformed(
            ForestPart::Vectors,
            format!("{} stored dimensions, expected {expected_dims}", p.dims),
        );
    }
    if let Some(pr) = &p.projection {
        if pr.out_dims > pr.in_dims || pr.in_dims != p.input_dims {
            return malformed(
                ForestPart::Projection,
                "projects to more dimensions than it takes".into(),
            );
        }
        if pr.mean.len() != pr.in_dims
            || Some(pr.basis.len()) != pr.in_dims.checked_mul(pr.out_dims)
        {
            return malformed(ForestPart::Projection, "mean or basis has the wrong length".into());
        }
    }
    if !p.store.holds(n, p.dims) {
        return malformed(
            ForestPart::Vectors,
            format!("the stored vectors are not {n} of {} values", p.dims),
        );
    }
    if let Some(rescore) = &p.rescore
        && !rescore.holds(n, p.input_dims)
    {
        return malformed(
            ForestPart::Vectors,
            format!("the re-scoring vectors are not {n} of {} values", p.input_dims),
        );
    }
    if p.deleted.len() != n {
        return malformed(ForestPart::Deleted, format!("{} flags for {n} items", p.deleted.len()));
    }
    if !p.nodes.len().is_multiple_of(3) {
        return malformed(ForestPart::Nodes, "not a whole number of nodes".into());
    }
    if Some(p.planes.len()) != p.offsets.len().checked_mul(p.dims) {
        return malformed(
            ForestPart::Planes,
            format!(
                "{} values for {} splits of {} dimensions",
                p.planes.len(),
                p.offsets.len(),
                p.dims
            ),
        );
    }
    if let Some(graph) = &p.graph {
        check_graph(graph, n)?;
    }
    let n_nodes = p.n_nodes();
    if let Some(root) = p.roots.iter().find(|&&r| r as usize >= n_nodes) {
        return malformed(ForestPart::Roots, format!("root {root} is not a node"));
    }
    if let Some(item) = p.leaf_items.iter().find(|&&i| i as usize >= n) {
        return malformed(ForestPart::LeafItems, format!("item {item} does not exist"));
    }
    // Every node has at most one parent (a root counts as one): trees that
    // share a subtree would make a walk exponential in the depth, a hang for
    // the page. With it, a search visits each node at most once.
    let mut has_parent = vec![false; n_nodes];
    let mut adopt = |node: u32, part: ForestPart| {
        let seen = std::mem::replace(&mut has_parent[node as usize], true);
        if seen {
            malformed(part, format!("node {node} is reached twice (trees must not share nodes)"))
        } else {
            Ok(())
        }
    };
    for &root in p.roots.iter() {
        adopt(root, ForestPart::Roots)?;
    }
    for index in 0..n_nodes {
        let at = index * 3;
        let node = Node::decode([p.nodes[at], p.nodes[at + 1], p.nodes[at + 2]]);
        let ok = match node {
            Node::Leaf { start, len } => (start as usize)
                .checked_add(len as usize)
                .is_some_and(|end| end <= p.leaf_items.len()),
            // Children strictly after their parent: no cycles possible.
            Node::Split { split, left, right } => {
                (split as usize) < p.offsets.len()
                    && (left as usize) > index
                    && (right as usize) > index
                    && (left as usize) < n_nodes
                    && (right as usize) < n_nodes
            }
        };
        if !ok {
            return malformed(ForestPart::Nodes, format!("node {index} has invalid references"));
        }
        if let Node::Split { left, right, .. } = node {
            adopt(left, ForestPart::Nodes)?;
            adopt(right, ForestPart::Nodes)?;
        }
    }
    Ok(())
}

/// A graph's rows must fit the items and name only items (or [`NO_LINK`]);
/// a walk marks what it visits, so any such graph is searched in bounded time.
fn check_graph(graph: &GraphPart, n: usize) -> Result<(), ForestError> {
    let malformed =
        |reason: String| Err(ForestError::Malformed { part: ForestPart::Graph, reason });
    let degree = graph.params.degree;
    if degree == 0 || degree > MAX_DEGREE {
        return malformed(format!("degree {degree} is outside 1..={MAX_DEGREE}"));
    }
    if Some(graph.links.len()) != n.checked_mul(degree) {
        return malformed(format!("{} links for {n} items of degree {degree}", graph.links.len()));
    }
    if n > 0 && graph.entry as usize >= n {
        return malformed(format!("entry item {} does not exist", graph.entry));
    }
    if let Some(link) = graph.links.iter().find(|&&l| l != NO_LINK && l as usize >= n) {
        return malformed(format!("link to item {link}, which does not exist"));
    }
    if !(graph.params.alpha.is_finite() && graph.params.alpha >= 1.0) {
        return malformed(format!("alpha {} is not a finite number >= 1", graph.params.alpha));
    }
    Ok(())
}
