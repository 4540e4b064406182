//! # Brief overview
//!
//! The garment parser: which pixels of a photo are a top, a coat, trousers,
//! a dress, shoes, a bag, a hat, glasses, a belt or another accessory (and
//! which are skin, hair or background), trained here on Clothing
//! Co-Parsing's per-pixel labels (docs/detection.md).
//!
//! - [`Part`]: the classes, grouped the way shoppers search;
//! - [`Parser`]: the embedder's backbone (frozen, already shipped) and a
//!   small trained head ([`ParserHead`]), photo in, [`ParseMap`] out;
//! - [`regions`]: connected regions of the map joined into items, each with
//!   its box, score and [`Mask`]; [`whole_garments`]: a second reading of
//!   the garments the map split between a dress and a top or skirt;
//! - [`overlay`]: the items drawn over the photo, as the page shows them;
//! - `train` (native only): the head's training on cached backbone features.
//!
//! ```
//! use burn::tensor::Device;
//! use lookalike_vision::model::efficientnet::{EfficientNetLite, Variant};
//! use lookalike_vision::parse::{Parser, ParserHead, Part, regions};
//! use lookalike_vision::detect::readback::block_on;
//! let device = Device::flex();
//! let backbone = EfficientNetLite::new(Variant::Lite0, false, &device);
//! // Random weights here; `head_from_burnpack_bytes` loads trained ones.
//! let head = ParserHead::new(Parser::head_channels(&backbone), &device);
//! let parser = Parser::new(backbone, head, device);
//! let map = block_on(parser.parse(&image::RgbImage::new(110, 166))).unwrap();
//! assert_eq!((map.width, map.height), (56, 88)); // a stride-4 grid over a 224 x 352 input
//! let items = regions(&map, |part| part != Part::Hat, &[]);
//! assert!(items.iter().all(|item| item.part.is_item() && item.part != Part::Hat));
//! ```

mod classes;
mod head;
mod mask;
mod overlay;
mod parser;
mod regions;
#[cfg(not(target_arch = "wasm32"))]
pub mod train;

pub use classes::Part;
pub use head::ParserHead;
pub use mask::Mask;
pub use overlay::overlay;
pub use parser::{
    INPUT_PIXELS, ParseMap, Parser, head_from_burnpack_bytes, head_to_burnpack_bytes, input_size,
};
pub use regions::{Region, figures, regions, whole_garments};
