//! What the parser names: the parts of a photo the way shoppers search for
//! them, and how the Clothing Co-Parsing (CCP) dataset's 59 labels fold
//! into them.

/// One class of the parser's output. The order is the model's output
/// channels: changing it invalidates every trained head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    Background,
    Skin,
    Hair,
    UpperBody,
    Outerwear,
    LowerBody,
    FullLength,
    Shoes,
    Bag,
    Hat,
    Glasses,
    Belt,
    Accessory,
}

impl Part {
    /// Every class, in output-channel order.
    pub const ALL: [Part; 13] = [
        Part::Background,
        Part::Skin,
        Part::Hair,
        Part::UpperBody,
        Part::Outerwear,
        Part::LowerBody,
        Part::FullLength,
        Part::Shoes,
        Part::Bag,
        Part::Hat,
        Part::Glasses,
        Part::Belt,
        Part::Accessory,
    ];
    pub const COUNT: usize = Part::ALL.len();

    /// The class's name in class lists, items and reports. The four garment
    /// regions share their names with the pose-based detector's.
    pub fn name(self) -> &'static str {
        match self {
            Part::Background => "background",
            Part::Skin => "skin",
            Part::Hair => "hair",
            Part::UpperBody => "upper body",
            Part::Outerwear => "outerwear",
            Part::LowerBody => "lower body",
            Part::FullLength => "full length",
            Part::Shoes => "shoes",
            Part::Bag => "bag",
            Part::Hat => "hat",
            Part::Glasses => "glasses",
            Part::Belt => "belt",
            Part::Accessory => "accessory",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the class is something a shopper can buy (an item), as
    /// opposed to the person and the scene around it.
    pub fn is_item(self) -> bool {
        !matches!(self, Part::Background | Part::Skin | Part::Hair)
    }

    /// The item classes, in output order.
    pub fn items() -> impl Iterator<Item = Part> {
        Part::ALL.into_iter().filter(|p| p.is_item())
    }

    pub fn from_name(name: &str) -> Option<Part> {
        Part::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The class a CCP label belongs to; `None` for a label CCP does not have.
    ///
    /// Legwear (stockings, tights, socks) counts as skin: it covers the legs
    /// under a skirt or a dress, and as "lower body" it would merge with the
    /// skirt and stretch its box to the ankles.
    pub fn from_ccp_label(label: &str) -> Option<Part> {
        Some(match label {
            "null" => Part::Background,
            "skin" | "stockings" | "tights" | "socks" => Part::Skin,
            "hair" => Part::Hair,
            "blouse" | "bodysuit" | "bra" | "hoodie" | "intimate" | "jumper" | "shirt"
            | "sweater" | "sweatshirt" | "t-shirt" | "top" | "vest" => Part::UpperBody,
            "blazer" | "cape" | "cardigan" | "coat" | "jacket" => Part::Outerwear,
            "jeans" | "leggings" | "panties" | "pants" | "shorts" | "skirt" => Part::LowerBody,
            "dress" | "jumpsuit" | "romper" | "suit" | "swimwear" => Part::FullLength,
            "boots" | "clogs" | "flats" | "heels" | "loafers" | "pumps" | "sandals" | "shoes"
            | "sneakers" | "wedges" => Part::Shoes,
            "bag" | "purse" | "wallet" => Part::Bag,
            "hat" => Part::Hat,
            "glasses" | "sunglasses" => Part::Glasses,
            "belt" => Part::Belt,
            "accessories" | "bracelet" | "earrings" | "gloves" | "necklace" | "ring" | "scarf"
            | "tie" | "watch" => Part::Accessory,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_channels_are_in_order() {
        for (i, part) in Part::ALL.into_iter().enumerate() {
            assert_eq!(part.index(), i);
            assert_eq!(Part::from_name(part.name()), Some(part));
        }
        assert_eq!(Part::items().count(), 10);
    }

    #[test]
    fn every_ccp_label_has_a_class() {
        // CCP's label_list.mat, in order (label 0 is null).
        let labels = "null accessories bag belt blazer blouse bodysuit boots bra bracelet cape \
            cardigan clogs coat dress earrings flats glasses gloves hair hat heels hoodie intimate \
            jacket jeans jumper leggings loafers necklace panties pants pumps purse ring romper \
            sandals scarf shirt shoes shorts skin skirt sneakers socks stockings suit sunglasses \
            sweater sweatshirt swimwear t-shirt tie tights top vest wallet watch wedges";
        let labels: Vec<&str> = labels.split_whitespace().collect();
        assert_eq!(labels.len(), 59);
        for label in labels {
            assert!(Part::from_ccp_label(label).is_some(), "{label}");
        }
        assert_eq!(Part::from_ccp_label("purse"), Some(Part::Bag));
        assert_eq!(Part::from_ccp_label("coat"), Some(Part::Outerwear));
        assert_eq!(Part::from_ccp_label("cravat"), None);
    }
}
