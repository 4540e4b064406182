//! From the parser's grid to items: connected regions of each class,
//! joined into one item per garment and person ([`regions`]), and the
//! garments it split between a dress and a top or skirt read whole as
//! well ([`whole_garments`]).
//!
//! A garment is often cut in pieces (a blouse by the arms and a bag strap,
//! a dress by a belt, a pair of shoes by the gap between the feet), and a
//! shopper searches the garment, not the pieces. A person wears one of each
//! kind of thing, so the pieces of a worn class (garments, shoes, hats,
//! glasses, belts) on one person are one item; carried things (bags) and
//! accessories can come several to a person, so only their close pieces
//! (within the larger's size) are joined. Which person a piece is on comes
//! from the person detector when the photo shows several figures; with
//! one, every piece is on that person.

use super::{Mask, ParseMap, Part};
use crate::detect::BBox;

/// Pieces smaller than this many cells are noise (a grid cell is about a
/// hundredth of a street photo's width).
const MIN_CELLS: usize = 4;
/// Pieces smaller than this share of their class's largest piece are
/// specks: joined to it, they would stretch its box for nothing.
const SPECK_SHARE: f32 = 0.1;
/// Pieces of a carried class are joined when the gap between their boxes
/// is at most this share of the larger piece's longer side.
const JOIN_REACH: f32 = 1.0;

/// Whether a person has at most one item of this class (so its pieces on
/// one person are one item).
fn worn_once(part: Part) -> bool {
    !matches!(part, Part::Bag | Part::Accessory)
}

/// One item found by the parser.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    pub part: Part,
    /// How sure the parser is that the item is there: the highest
    /// probability of its class over its cells, as a keypoint detector
    /// scores an object by its heatmap's peak. An item's edges are always
    /// uncertain, and the smaller the item the more of it is edge: a mean
    /// over its cells would rank a bag below a coat the parser is no surer
    /// of.
    pub score: f32,
    /// In photo pixels.
    pub bbox: BBox,
    pub mask: Mask,
}

/// A connected piece of one class, in grid cells.
struct Piece {
    cells: Vec<usize>,
    /// `[x0, y0, x1, y1]`, inclusive.
    bounds: [usize; 4],
}

impl Piece {
    fn longer_side(&self) -> usize {
        (self.bounds[2] - self.bounds[0] + 1).max(self.bounds[3] - self.bounds[1] + 1)
    }

    fn gap(&self, other: &Piece) -> usize {
        let gap = |a0: usize, a1: usize, b0: usize, b1: usize| {
            b0.saturating_sub(a1 + 1).max(a0.saturating_sub(b1 + 1))
        };
        gap(self.bounds[0], self.bounds[2], other.bounds[0], other.bounds[2]).max(gap(
            self.bounds[1],
            self.bounds[3],
            other.bounds[1],
            other.bounds[3],
        ))
    }
}

/// Cell bounds `[x0, y0, x1, y1]` (inclusive) of nothing yet.
const NO_BOUNDS: [usize; 4] = [usize::MAX, usize::MAX, 0, 0];

/// `bounds` stretched to hold cell `index` of a grid `width` cells across.
fn stretch(bounds: &mut [usize; 4], index: usize, width: usize) {
    let (x, y) = (index % width, index / width);
    *bounds = [bounds[0].min(x), bounds[1].min(y), bounds[2].max(x), bounds[3].max(y)];
}

/// Cell bounds as a box in photo pixels.
fn bbox_of(bounds: [usize; 4], map: &ParseMap) -> BBox {
    let (cw, ch) = map.cell_size();
    BBox::new(
        bounds[0] as f32 * cw,
        bounds[1] as f32 * ch,
        (bounds[2] + 1) as f32 * cw,
        (bounds[3] + 1) as f32 * ch,
    )
}

/// The 4-neighbours of cell `index` on a `width` x `height` grid.
fn neighbours(index: usize, width: usize, height: usize) -> impl Iterator<Item = usize> {
    let (x, y) = (index % width, index / width);
    [
        (x > 0).then(|| index - 1),
        (x + 1 < width).then(|| index + 1),
        (y > 0).then(|| index - width),
        (y + 1 < height).then(|| index + width),
    ]
    .into_iter()
    .flatten()
}

/// The 4-connected pieces of the cells `member` accepts.
fn pieces(cells: usize, width: usize, member: impl Fn(usize) -> bool) -> Vec<Piece> {
    let height = cells / width.max(1);
    let mut seen = vec![false; cells];
    let mut found = Vec::new();
    for start in 0..cells {
        if seen[start] || !member(start) {
            continue;
        }
        seen[start] = true;
        let mut stack = vec![start];
        let mut cells = Vec::new();
        let mut bounds = NO_BOUNDS;
        while let Some(i) = stack.pop() {
            cells.push(i);
            stretch(&mut bounds, i, width);
            for j in neighbours(i, width, height) {
                if !seen[j] && member(j) {
                    seen[j] = true;
                    stack.push(j);
                }
            }
        }
        found.push(Piece { cells, bounds });
    }
    found
}

/// A figure (a person) takes at least this share of the grid.
const MIN_FIGURE_SHARE: f32 = 0.03;

/// How many people the map shows: separate blobs of anything but
/// background (skin, hair, garments) of a fair size. Telling people apart
/// needs the person detector, which costs more than the parser in a
/// browser; this says when it is worth running.
pub fn figures(map: &ParseMap) -> usize {
    let labels = map.labels();
    let cells = labels.len();
    let blobs = pieces(cells, map.width, |i| labels[i] != Part::Background);
    let least = (MIN_FIGURE_SHARE * cells as f32).max(MIN_CELLS as f32);
    blobs.iter().filter(|b| b.cells.len() as f32 >= least).count()
}

/// The person (index into `people`) at photo point `(x, y)`: the box holding
/// it, the smallest when several do.
fn person_at(x: f32, y: f32, people: &[BBox]) -> Option<usize> {
    people
        .iter()
        .enumerate()
        .filter(|(_, p)| p.x0 <= x && x <= p.x1 && p.y0 <= y && y <= p.y1)
        .min_by(|a, b| a.1.area().total_cmp(&b.1.area()))
        .map(|(i, _)| i)
}

/// The person a piece belongs to: the one at its box's centre.
fn owner(piece: &Piece, map: &ParseMap, people: &[BBox]) -> Option<usize> {
    let (cw, ch) = map.cell_size();
    let cx = (piece.bounds[0] + piece.bounds[2] + 1) as f32 / 2.0 * cw;
    let cy = (piece.bounds[1] + piece.bounds[3] + 1) as f32 / 2.0 * ch;
    person_at(cx, cy, people)
}

/// The items of the classes `wanted` accepts, best first. `people`: person
/// boxes from a detector; with two or more, pieces join only within one.
pub fn regions(map: &ParseMap, wanted: impl Fn(Part) -> bool, people: &[BBox]) -> Vec<Region> {
    let labels = map.labels();
    let mut out = Vec::new();
    for part in Part::items().filter(|p| wanted(*p)) {
        let member = |i: usize| labels[i] == part;
        let mut found = pieces(labels.len(), map.width, member);
        let largest = found.iter().map(|p| p.cells.len()).max().unwrap_or(0);
        found.retain(|p| {
            p.cells.len() >= MIN_CELLS && p.cells.len() as f32 >= SPECK_SHARE * largest as f32
        });
        let owners: Vec<Option<usize>> = if people.len() >= 2 {
            found.iter().map(|p| owner(p, map, people)).collect()
        } else {
            vec![None; found.len()]
        };
        // Join pieces (union-find): close, and of the same person.
        let mut group: Vec<usize> = (0..found.len()).collect();
        fn root(group: &mut [usize], mut i: usize) -> usize {
            while group[i] != i {
                group[i] = group[group[i]];
                i = group[i];
            }
            i
        }
        for a in 0..found.len() {
            for b in a + 1..found.len() {
                let reach = JOIN_REACH * found[a].longer_side().max(found[b].longer_side()) as f32;
                let close = worn_once(part) || found[a].gap(&found[b]) as f32 <= reach;
                if owners[a] == owners[b] && close {
                    let (ra, rb) = (root(&mut group, a), root(&mut group, b));
                    group[ra.max(rb)] = ra.min(rb);
                }
            }
        }
        let roots: Vec<usize> = (0..found.len()).map(|i| root(&mut group, i)).collect();
        for (leader, _) in roots.iter().enumerate().filter(|(i, r)| i == *r) {
            let mut mask = Mask::empty(map.width, map.height, map.photo_width, map.photo_height);
            let mut bounds = NO_BOUNDS;
            let mut score: f32 = 0.0;
            let members = found.iter().zip(&roots).filter(|(_, r)| **r == leader);
            for (piece, _) in members {
                for &cell in &piece.cells {
                    mask.cells[cell] = true;
                    score = score.max(map.probability(part, cell));
                    stretch(&mut bounds, cell, map.width);
                }
            }
            let bbox = bbox_of(bounds, map);
            out.push(Region { part, score, bbox, mask });
        }
    }
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out
}

/// Whether `cell`, labelled `label`, may be part of the same garment as a
/// touching region of `part` that the parser split: a dress read partly as
/// a top and partly as a skirt, or the reverse. Only these garments are
/// confused that way.
fn one_garment_with(part: Part, map: &ParseMap, cell: usize, label: Part) -> bool {
    let nearer = |a: Part, b: Part| map.probability(a, cell) > map.probability(b, cell);
    match (part, label) {
        (Part::FullLength, Part::UpperBody | Part::LowerBody) => true,
        (Part::LowerBody, Part::FullLength) => nearer(Part::LowerBody, Part::UpperBody),
        (Part::UpperBody, Part::FullLength) => nearer(Part::UpperBody, Part::LowerBody),
        _ => false,
    }
}

/// Garment regions grown into the neighbouring cells they may be one
/// garment with: a second reading of each, next to the parser's own.
///
/// The parser's hardest call is a dress against a top over a skirt (or
/// trousers), and it often makes it cell by cell: the bodice of a dress
/// read as a top, its hem as a dress, or a skirt's waist as a dress. Then
/// each region's box is a part of the garment and none is the garment. So
/// each dress region is also offered grown into the top and skirt cells
/// that touch it; a skirt or trousers into the touching dress cells that
/// are nearer a skirt than a top; a top into those nearer a top. A grown
/// item keeps its region's class and score (it is the same find, read
/// whole); the box limit and the detector's de-duplication decide which
/// readings are shown. Regions that grow by less than a piece
/// (`MIN_CELLS`) give nothing: their box would be the region's own.
/// `people`: as for [`regions`]; with two or more, a region grows only over
/// its own person's cells, or one woman's dress would take her
/// neighbour's top.
pub fn whole_garments(map: &ParseMap, found: &[Region], people: &[BBox]) -> Vec<Region> {
    let labels = map.labels();
    let (cw, ch) = map.cell_size();
    let person_of_cell = |cell: usize| {
        let (x, y) = ((cell % map.width) as f32 + 0.5, (cell / map.width) as f32 + 0.5);
        person_at(x * cw, y * ch, people)
    };
    let mut out = Vec::new();
    for region in found {
        let b = region.bbox;
        let owner = person_at((b.x0 + b.x1) / 2.0, (b.y0 + b.y1) / 2.0, people);
        let same_person = |cell: usize| people.len() < 2 || person_of_cell(cell) == owner;
        let mut mask = region.mask.clone();
        let mut stack: Vec<usize> = (0..mask.cells.len()).filter(|&i| mask.cells[i]).collect();
        let mut bounds = NO_BOUNDS;
        for &i in &stack {
            stretch(&mut bounds, i, map.width);
        }
        let mut grown = 0;
        while let Some(i) = stack.pop() {
            for j in neighbours(i, map.width, map.height) {
                if !mask.cells[j]
                    && one_garment_with(region.part, map, j, labels[j])
                    && same_person(j)
                {
                    mask.cells[j] = true;
                    grown += 1;
                    stack.push(j);
                    stretch(&mut bounds, j, map.width);
                }
            }
        }
        if grown < MIN_CELLS {
            continue;
        }
        let bbox = bbox_of(bounds, map);
        out.push(Region { part: region.part, score: region.score, bbox, mask });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A map whose cells are certain of the classes drawn in `rows`
    /// (`.` background, `S` shoes, `U` upper body, `B` bag, `L` lower
    /// body, `D` full length).
    fn map_of(rows: &[&str], photo: (u32, u32)) -> ParseMap {
        let (width, height) = (rows[0].len(), rows.len());
        let mut probabilities = vec![0.0; Part::COUNT * width * height];
        for (y, row) in rows.iter().enumerate() {
            for (x, c) in row.chars().enumerate() {
                let part = match c {
                    'S' => Part::Shoes,
                    'U' => Part::UpperBody,
                    'B' => Part::Bag,
                    'L' => Part::LowerBody,
                    'D' => Part::FullLength,
                    _ => Part::Background,
                };
                probabilities[part.index() * width * height + y * width + x] = 0.9;
                let other = if part == Part::Background { Part::Skin } else { Part::Background };
                probabilities[other.index() * width * height + y * width + x] = 0.1;
            }
        }
        ParseMap { width, height, probabilities, photo_width: photo.0, photo_height: photo.1 }
    }

    #[test]
    fn a_pair_of_shoes_is_one_item_and_specks_are_dropped() {
        let map = map_of(
            &["UUUU......", "UUUU.....B", "UUUU......", "..........", "SS..SS....", "SS..SS...."],
            (100, 60),
        );
        let found = regions(&map, |_| true, &[]);
        let classes: Vec<Part> = found.iter().map(|r| r.part).collect();
        // The lone bag cell is under MIN_CELLS.
        assert_eq!(classes.len(), 2, "{classes:?}");
        let shoes = found.iter().find(|r| r.part == Part::Shoes).unwrap();
        assert_eq!(shoes.bbox, BBox::new(0.0, 40.0, 60.0, 60.0));
        assert!((shoes.score - 0.9).abs() < 1e-6);
        assert!(shoes.mask.contains(5, 45) && !shoes.mask.contains(25, 45));
        let upper = found.iter().find(|r| r.part == Part::UpperBody).unwrap();
        assert_eq!(upper.bbox, BBox::new(0.0, 0.0, 40.0, 30.0));
        // Only the classes asked for.
        assert!(regions(&map, |p| p == Part::Bag, &[]).is_empty());
    }

    #[test]
    fn a_person_wears_one_top_but_may_carry_two_bags() {
        // A top cut in two far apart (by a bag strap, an arm), and two bags.
        let map = map_of(
            &[
                "UUU.....UUU.",
                "UUU.....UUU.",
                "............",
                "............",
                "............",
                "BB........BB",
                "BB........BB",
            ],
            (120, 70),
        );
        let found = regions(&map, |_| true, &[]);
        let tops: Vec<&Region> = found.iter().filter(|r| r.part == Part::UpperBody).collect();
        assert_eq!(tops.len(), 1);
        assert_eq!(tops[0].bbox, BBox::new(0.0, 0.0, 110.0, 20.0));
        assert_eq!(found.iter().filter(|r| r.part == Part::Bag).count(), 2);
    }

    #[test]
    fn an_item_is_scored_by_its_surest_cell() {
        // A bag sure at its core, unsure on its edges: the edges do not make
        // the bag itself less likely.
        let mut map = map_of(&["......", ".BBBB.", ".BBBB.", "......"], (60, 40));
        let cells = map.width * map.height;
        for (i, row) in ["......", ".BBBB.", ".BBBB.", "......"].iter().enumerate() {
            for (x, c) in row.chars().enumerate() {
                let core = (2..=3).contains(&x);
                if c == 'B' && !core {
                    let cell = i * map.width + x;
                    map.probabilities[Part::Bag.index() * cells + cell] = 0.5;
                    map.probabilities[Part::Background.index() * cells + cell] = 0.5;
                }
            }
        }
        let found = regions(&map, |_| true, &[]);
        assert_eq!(found.len(), 1);
        assert!((found[0].score - 0.9).abs() < 1e-6, "{}", found[0].score);
        assert_eq!(found[0].bbox, BBox::new(10.0, 10.0, 50.0, 30.0));
    }

    #[test]
    fn figures_are_counted_from_what_is_not_background() {
        let one = map_of(&["UU........", "UU........", "SS........"], (100, 30));
        assert_eq!(figures(&one), 1);
        let two = map_of(&["UU......UU", "UU......UU", "SS......SS"], (100, 30));
        assert_eq!(figures(&two), 2);
        // A speck is not a person.
        let speck = map_of(&["UU........", "UU........", "SS.......B"], (100, 30));
        assert_eq!(figures(&speck), 1);
    }

    #[test]
    fn two_people_keep_their_shoes_apart() {
        let map = map_of(&["..........", "SS..SS....", "SS..SS...."], (100, 30));
        assert_eq!(regions(&map, |_| true, &[]).len(), 1);
        let people = [BBox::new(0.0, 0.0, 30.0, 30.0), BBox::new(30.0, 0.0, 100.0, 30.0)];
        let found = regions(&map, |_| true, &people);
        assert_eq!(found.len(), 2);
    }

    #[test]
    fn a_garment_split_between_a_dress_and_a_top_or_skirt_is_also_offered_whole() {
        // A top, then cells read as a dress, then a skirt: one dress, or a
        // top over a long skirt. The dress cells are nearer a skirt than a top.
        let rows = ["..UU..", "..UU..", "..DD..", "..DD..", "..LL..", "..LL..", "......"];
        let mut map = map_of(&rows, (60, 70));
        let cells = map.width * map.height;
        for (i, _) in rows.concat().chars().enumerate().filter(|(_, c)| *c == 'D') {
            map.probabilities[Part::LowerBody.index() * cells + i] = 0.08;
            map.probabilities[Part::UpperBody.index() * cells + i] = 0.02;
        }
        let found = regions(&map, |_| true, &[]);
        assert_eq!(found.len(), 3);
        let whole = whole_garments(&map, &found, &[]);
        let read: Vec<(Part, BBox)> = whole.iter().map(|r| (r.part, r.bbox)).collect();
        assert_eq!(read.len(), 2, "{read:?}");
        // The dress takes the top and the skirt; the skirt takes the dress
        // cells nearer a skirt; the top takes none.
        assert!(read.contains(&(Part::FullLength, BBox::new(20.0, 0.0, 40.0, 60.0))));
        assert!(read.contains(&(Part::LowerBody, BBox::new(20.0, 20.0, 40.0, 60.0))));
        assert!(whole.iter().all(|r| (r.score - 0.9).abs() < 1e-6));
        let dress = whole.iter().find(|r| r.part == Part::FullLength).unwrap();
        assert_eq!(dress.mask.cells.iter().filter(|c| **c).count(), 12);
        // Shoes and bags are not read as one another.
        let apart = map_of(&["SS.BB", "SS.BB", "SSBB."], (50, 30));
        assert!(whole_garments(&apart, &regions(&apart, |_| true, &[]), &[]).is_empty());
    }

    #[test]
    fn a_garment_is_read_whole_only_on_its_own_person() {
        // Two women side by side: a dress on the left touching a top on the
        // right. As one figure, the dress takes the top; as two people, not.
        let map = map_of(&["DDDUUU", "DDDUUU", "DDD...", "DDD..."], (60, 40));
        let grown = |people: &[BBox]| {
            let found = regions(&map, |_| true, people);
            whole_garments(&map, &found, people)
                .into_iter()
                .map(|r| (r.part, r.bbox))
                .collect::<Vec<_>>()
        };
        assert_eq!(grown(&[]), [(Part::FullLength, BBox::new(0.0, 0.0, 60.0, 40.0))]);
        let people = [BBox::new(0.0, 0.0, 30.0, 40.0), BBox::new(30.0, 0.0, 60.0, 40.0)];
        assert!(grown(&people).is_empty());
    }
}
