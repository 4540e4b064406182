//! Finding the fashion items in a photo:
//!
//! - the garment parser ([`crate::parse`]), trained here on street photos'
//!   per-pixel labels: garments, shoes, bags and accessories with masks;
//! - [`nanodet`]: COCO objects; with the parser, only its people are used
//!   (several people keep their garments apart); without it, its bags and
//!   ties are items too;
//! - [`movenet`]: a person's 17 joints, which [`garments`] turns into the
//!   regions a top, a bottom, a full-length garment and shoes occupy (the
//!   composed detector, used when no parser is loaded);
//! - [`foreground`]: for packshots (one product on a plain background), the
//!   product's box without any model. A packshot is one product: its
//!   foreground is its only item, as the catalog indexed it.
//!
//! The report's parameters apply: a class list, a minimum score and a
//! maximum number of boxes. The same code runs natively and in the browser.

pub mod boxes;
pub mod coco;
pub mod foreground;
pub mod garments;
pub mod groups;
pub mod movenet;
pub mod nanodet;
pub mod readback;

pub use boxes::{BBox, nms};
pub use foreground::foreground_box;
pub use garments::Garment;

use crate::model::tfjs::{GraphModel, TfjsError};
use crate::parse::{Mask, Parser, Part, figures, regions, whole_garments};
use burn::tensor::Device;
use image::RgbImage;
use movenet::MoveNet;
use nanodet::NanoDet;
use serde::{Deserialize, Serialize};

/// The classes a photo is searched for unless the caller says otherwise:
/// the garments, shoes and bags a catalog sells (the parser's names; the
/// composed detector's bags and ties when no parser is loaded). Hats,
/// glasses, belts and accessories are one `--classes` away.
pub const DEFAULT_CLASSES: [&str; 9] = [
    "upper body",
    "outerwear",
    "lower body",
    "full length",
    "shoes",
    "bag",
    "handbag",
    "backpack",
    "tie",
];
/// At most this many items per photo by default: one of each of the six
/// default kinds a person wears or carries (a top, a jacket, trousers or a
/// dress, shoes and a bag). The report's 3 is `--max-boxes 3`.
pub const DEFAULT_MAX_BOXES: usize = 6;
/// Every class the detectors can name and a class list may hold.
pub fn known_classes() -> Vec<&'static str> {
    let mut all: Vec<&str> = Garment::ALL.iter().map(|g| g.name()).collect();
    all.extend(Part::items().map(Part::name).filter(|n| !all.contains(n)).collect::<Vec<_>>());
    all.extend(coco::COCO_CLASSES);
    all.push(PRODUCT_CLASS);
    all
}
/// The class of a packshot's foreground box.
pub const PRODUCT_CLASS: &str = "product";
/// Garment regions come from joint confidences, which run lower than
/// detector scores; they have their own threshold.
pub const MIN_REGION_SCORE: f32 = 0.3;
/// People larger than this share of the photo get their own pose pass on a
/// crop; at most this many people are parsed.
const MAX_PEOPLE: usize = 2;
/// Boxes of the same class overlapping more than this are one item.
const SAME_ITEM_IOU: f32 = 0.9;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectOptions {
    /// Classes to keep (see [`known_classes`]).
    pub classes: Vec<String>,
    /// Minimum detector score (the report's 0.6).
    pub min_score: f32,
    /// At most this many boxes, best first (the report's 3).
    pub max_boxes: usize,
}

/// Why detection options were refused or a detector failed.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("unknown class `{class}`; known classes: {known}")]
    UnknownClass { class: String, known: String },
    #[error("minimum score {0} is not between 0 and 1")]
    MinScore(f32),
    /// The graph failed to run (shapes, values).
    #[error(transparent)]
    Model(#[from] TfjsError),
    #[error("reading the {model}'s outputs back: {message}")]
    Readback { model: &'static str, message: String },
    #[error("{model} outputs of sizes {found:?}, expected {expected:?}")]
    OutputSizes { model: &'static str, found: Vec<usize>, expected: Vec<usize> },
}

impl Default for DetectOptions {
    fn default() -> Self {
        Self {
            classes: DEFAULT_CLASSES.iter().map(|c| c.to_string()).collect(),
            min_score: 0.6,
            max_boxes: DEFAULT_MAX_BOXES,
        }
    }
}

impl DetectOptions {
    /// Checks the class list against what the detectors can name.
    pub fn validate(&self) -> Result<(), DetectError> {
        let known = known_classes();
        if let Some(unknown) = self.classes.iter().find(|c| !known.contains(&c.as_str())) {
            return Err(DetectError::UnknownClass {
                class: unknown.clone(),
                known: known.join(", "),
            });
        }
        if !(0.0..=1.0).contains(&self.min_score) {
            return Err(DetectError::MinScore(self.min_score));
        }
        Ok(())
    }

    fn allows(&self, class: &str) -> bool {
        self.classes.iter().any(|c| c == class)
    }
}

/// One item found in a photo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub class: String,
    pub score: f32,
    pub bbox: BBox,
    /// Which pixels are the item's (parser items only): cuts the item out
    /// of its background before it is embedded and its colour read.
    #[serde(skip)]
    pub mask: Option<Mask>,
}

/// A packshot's one item: its foreground, of class `product`; `None` when
/// the photo's border is not plain (not a packshot).
pub fn packshot_item(image: &RgbImage) -> Option<Item> {
    let bbox = foreground_box(image)?;
    Some(Item { class: PRODUCT_CLASS.to_string(), score: 1.0, bbox, mask: None })
}

/// Margin added around an item's box before cropping, as a share of its
/// size: the embedder saw whole objects with some context during training.
pub const CROP_MARGIN: f32 = 0.1;

impl Item {
    /// The pixels `(x, y, width, height)` of a `width` x `height` photo that
    /// the item's crop takes: its box and a margin.
    pub fn region(&self, width: u32, height: u32) -> (u32, u32, u32, u32) {
        self.bbox.scaled(1.0 + CROP_MARGIN, 1.0 + CROP_MARGIN).pixels(width, height)
    }

    /// The item's crop of `image`, as it is embedded and its colour read:
    /// cut out of its background when it has a mask.
    pub fn crop(&self, image: &image::DynamicImage) -> image::DynamicImage {
        let region = self.region(image.width(), image.height());
        match &self.mask {
            Some(mask) => mask.dilated(CUT_OUT_GROWTH).cut_out(image, region),
            None => {
                let (x, y, w, h) = region;
                image.crop_imm(x, y, w, h)
            }
        }
    }
}

/// The overlay the page draws over a photo for `items` (those with masks):
/// see [`crate::parse::overlay`].
pub fn overlay(items: &[Item], width: u32, height: u32) -> image::RgbaImage {
    let masked: Vec<(Part, BBox, &Mask)> = items
        .iter()
        .filter_map(|i| Some((Part::from_name(&i.class)?, i.bbox, i.mask.as_ref()?)))
        .collect();
    crate::parse::overlay(&masked, width, height)
}

/// A cut-out keeps this many grid cells (about 5% of a photo's side)
/// around the item's mask (see [`Mask::dilated`]): the grid is coarse, and
/// a garment's outline and a little of the body wearing it are what catalog
/// photos show too. Measured on CCP's validation photos against the fashion
/// catalog, a one-cell margin cost 0.04 of subCategory fit against plain
/// boxes; three cells lose 0.01.
pub const CUT_OUT_GROWTH: usize = 3;

/// The detector; every model may be absent (then its classes are never
/// found), and with none only packshot foregrounds are found.
#[derive(Debug, Clone)]
pub struct Detector {
    objects: Option<NanoDet>,
    pose: Option<MoveNet>,
    parser: Option<Parser>,
}

impl Detector {
    pub fn new(
        objects: Option<&GraphModel>,
        pose: Option<&GraphModel>,
        device: &Device,
    ) -> Result<Self, TfjsError> {
        Ok(Self {
            objects: objects.map(|g| NanoDet::new(g, device)).transpose()?,
            pose: pose.map(|g| MoveNet::new(g, device)).transpose()?,
            parser: None,
        })
    }

    /// Finds garments with `parser` instead of the pose model (which is
    /// then not needed).
    pub fn with_parser(mut self, parser: Parser) -> Self {
        self.parser = Some(parser);
        self
    }

    /// The items in `image`, best first, within the options' limits.
    ///
    /// A packshot (a plain background all round) is one product: its
    /// foreground is its only item, of class `product`, whatever the class
    /// list, so a shopper's packshot is searched as the catalog indexed its
    /// own. Street photos go to the models.
    pub async fn detect(
        &self,
        image: &RgbImage,
        options: &DetectOptions,
    ) -> Result<Vec<Item>, DetectError> {
        if let Some(product) = packshot_item(image) {
            return Ok(vec![product]);
        }
        if let Some(parser) = &self.parser {
            return self.parsed_items(parser, image, options).await;
        }
        let mut items = Vec::new();
        let mut people = Vec::new();
        if let Some(objects) = &self.objects {
            for object in objects.detect(image, options.min_score).await? {
                if object.label == "person" {
                    people.push(object.bbox);
                }
                if options.allows(object.label) {
                    items.push(Item {
                        class: object.label.to_string(),
                        score: object.score,
                        bbox: object.bbox,
                        mask: None,
                    });
                }
            }
        }
        if let Some(pose) = &self.pose {
            let wanted = Garment::ALL.iter().any(|g| options.allows(g.name()));
            if wanted {
                items.extend(self.garments(pose, image, &people, options).await?);
            }
        }
        Ok(select(dedupe(items), options.max_boxes))
    }

    /// The parser's items. The person detector runs only when the parser
    /// sees more than one figure: then its people keep their garments apart
    /// (in a browser it costs twice the parser, for nothing on the usual
    /// one-person photo). Bags and ties are the parser's then, with masks.
    async fn parsed_items(
        &self,
        parser: &Parser,
        image: &RgbImage,
        options: &DetectOptions,
    ) -> Result<Vec<Item>, DetectError> {
        let map = parser.parse(image).await?;
        let mut people = Vec::new();
        if let Some(objects) = &self.objects
            && figures(&map) >= 2
        {
            let found = objects.detect(image, options.min_score).await?;
            people.extend(found.into_iter().filter(|o| o.label == "person").map(|o| o.bbox));
        }
        // The parser's reading, then the garments it split read whole.
        let found = regions(&map, |part| options.allows(part.name()), &people);
        let whole = whole_garments(&map, &found, &people);
        let items = found
            .into_iter()
            .chain(whole)
            .filter(|r| r.score >= options.min_score)
            .map(|r| Item {
                class: r.part.name().to_string(),
                score: r.score,
                bbox: r.bbox,
                mask: Some(r.mask),
            })
            .collect();
        Ok(select(dedupe(items), options.max_boxes))
    }

    /// Garment regions of each person: on a crop around every detected person
    /// (MoveNet is most precise when the person fills its input), or on the
    /// whole photo when no object detector ran.
    async fn garments(
        &self,
        pose: &MoveNet,
        image: &RgbImage,
        people: &[BBox],
        options: &DetectOptions,
    ) -> Result<Vec<Item>, DetectError> {
        let (w, h) = image.dimensions();
        let whole = BBox::new(0.0, 0.0, w as f32, h as f32);
        let crops: Vec<BBox> = if self.objects.is_some() {
            people
                .iter()
                .take(MAX_PEOPLE)
                .map(|p| p.scaled(1.25, 1.1).clip(w as f32, h as f32))
                .collect()
        } else {
            vec![whole]
        };
        let mut items = Vec::new();
        for crop in crops {
            let (x, y, cw, ch) = crop.pixels(w, h);
            let view = image::imageops::crop_imm(image, x, y, cw, ch).to_image();
            let points = pose.keypoints(&view).await?;
            for (garment, bbox, score) in garments::garment_regions(&points, cw, ch) {
                if score >= MIN_REGION_SCORE && options.allows(garment.name()) {
                    let bbox = BBox::new(
                        bbox.x0 + x as f32,
                        bbox.y0 + y as f32,
                        bbox.x1 + x as f32,
                        bbox.y1 + y as f32,
                    );
                    items.push(Item { class: garment.name().to_string(), score, bbox, mask: None });
                }
            }
        }
        Ok(items)
    }
}

/// The best `max_boxes` items, one per class first: a photo's top, bottom and
/// shoes before a second cut of the same top. Best first.
pub fn select(items: Vec<Item>, max_boxes: usize) -> Vec<Item> {
    let (mut chosen, mut rest): (Vec<Item>, Vec<Item>) = (Vec::new(), Vec::new());
    for item in items {
        if chosen.len() < max_boxes && !chosen.iter().any(|c| c.class == item.class) {
            chosen.push(item);
        } else {
            rest.push(item);
        }
    }
    chosen.extend(rest.into_iter().take(max_boxes.saturating_sub(chosen.len())));
    chosen.sort_by(|a, b| b.score.total_cmp(&a.score));
    chosen
}

/// Best first, with same-class duplicates (e.g. one person's regions found
/// twice) merged into the better one.
fn dedupe(mut items: Vec<Item>) -> Vec<Item> {
    items.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Item> = Vec::new();
    for item in items {
        if !kept.iter().any(|k| k.class == item.class && k.bbox.iou(&item.bbox) > SAME_ITEM_IOU) {
            kept.push(item);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(class: &str, score: f32) -> Item {
        Item { class: class.into(), score, bbox: BBox::new(0.0, 0.0, 1.0, 1.0), mask: None }
    }

    #[test]
    fn the_box_limit_goes_to_different_classes_first() {
        let items = vec![
            item("upper body", 0.9),
            item("upper body", 0.85),
            item("lower body", 0.8),
            item("shoes", 0.5),
        ];
        let chosen: Vec<String> = select(items.clone(), 3).into_iter().map(|i| i.class).collect();
        assert_eq!(chosen, ["upper body", "lower body", "shoes"]);
        // With room left, the second cut of a class comes back, best first.
        let all: Vec<f32> = select(items, 10).into_iter().map(|i| i.score).collect();
        assert_eq!(all, [0.9, 0.85, 0.8, 0.5]);
    }

    #[test]
    fn options_are_checked() {
        let mut options = DetectOptions::default();
        assert!(options.validate().is_ok());
        options.classes.push("hat".into());
        assert!(options.validate().is_ok(), "the parser names hats");
        options.classes.push("cravat".into());
        assert!(options.validate().unwrap_err().to_string().contains("unknown class `cravat`"));
        options.classes.pop();
        options.min_score = 1.5;
        assert!(options.validate().unwrap_err().to_string().contains("1.5"));
    }
}
