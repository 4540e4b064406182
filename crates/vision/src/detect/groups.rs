//! The five garment groups detection is scored by (docs/detection.md): a
//! catalog's labels and the detector's classes each count for one group, so
//! a detector class can be matched with a labelled street photo's box.

use super::Garment;

/// The groups recall is reported for, and the CCP labels in each.
pub const GROUPS: [(&str, &[&str]); 5] = [
    (
        "upper body",
        &[
            "blouse",
            "shirt",
            "t-shirt",
            "top",
            "sweater",
            "coat",
            "blazer",
            "jacket",
            "cardigan",
            "hoodie",
            "sweatshirt",
            "vest",
            "jumper",
            "bodysuit",
            "cape",
            "bra",
        ],
    ),
    ("lower body", &["pants", "jeans", "skirt", "shorts", "leggings"]),
    ("full length", &["dress", "romper", "suit", "jumpsuit"]),
    (
        "shoes",
        &[
            "shoes", "sandals", "boots", "loafers", "heels", "sneakers", "flats", "pumps",
            "wedges", "clogs",
        ],
    ),
    ("bags", &["bag", "purse", "wallet"]),
];

/// The group a detector class counts for.
pub fn group_of_class(class: &str) -> Option<&'static str> {
    Some(match class {
        c if c == Garment::UpperBody.name() => "upper body",
        "outerwear" => "upper body",
        c if c == Garment::LowerBody.name() => "lower body",
        c if c == Garment::FullLength.name() => "full length",
        c if c == Garment::Shoes.name() => "shoes",
        "bag" | "handbag" | "backpack" | "suitcase" => "bags",
        _ => return None,
    })
}

pub fn group_of_label(label: &str) -> Option<&'static str> {
    GROUPS.iter().find(|(_, labels)| labels.contains(&label)).map(|(g, _)| *g)
}
