//! Garment regions from body keypoints: where a top, a bottom, a full-length
//! garment and shoes sit on a person, however they stand.
//!
//! The proportions below were fitted on the development part of the CCP
//! street-fashion photos (`lookalike bench detect` measures them); they are
//! expressed in torso lengths so they hold at any scale.

use super::boxes::BBox;
use super::movenet::{KEYPOINTS, Keypoint, joint::*, joints_box};

/// The garment groups a person is split into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Garment {
    UpperBody,
    LowerBody,
    FullLength,
    Shoes,
}

impl Garment {
    pub const ALL: [Garment; 4] =
        [Garment::UpperBody, Garment::LowerBody, Garment::FullLength, Garment::Shoes];

    pub fn name(self) -> &'static str {
        match self {
            Garment::UpperBody => "upper body",
            Garment::LowerBody => "lower body",
            Garment::FullLength => "full length",
            Garment::Shoes => "shoes",
        }
    }
}

/// A joint counts as seen above this heatmap score.
const MIN_JOINT_SCORE: f32 = 0.2;
/// Alternative cuts (a long top, a short bottom) rank just below the main ones.
const ALTERNATIVE_WEIGHT: f32 = 0.9;

/// One way to cut a garment region out of a person: around which joints, and
/// how far past them, in torso lengths (left, top, right, bottom; negative
/// shrinks).
struct Cut {
    garment: Garment,
    joints: &'static [usize],
    grow: [f32; 4],
    alternative: bool,
}

const TORSO: [usize; 6] =
    [LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_ELBOW, RIGHT_ELBOW, LEFT_HIP, RIGHT_HIP];
const TORSO_TO_KNEES: [usize; 8] = [
    LEFT_SHOULDER,
    RIGHT_SHOULDER,
    LEFT_ELBOW,
    RIGHT_ELBOW,
    LEFT_HIP,
    RIGHT_HIP,
    LEFT_KNEE,
    RIGHT_KNEE,
];
const LEGS: [usize; 6] = [LEFT_HIP, RIGHT_HIP, LEFT_KNEE, RIGHT_KNEE, LEFT_ANKLE, RIGHT_ANKLE];
const THIGHS: [usize; 4] = [LEFT_HIP, RIGHT_HIP, LEFT_KNEE, RIGHT_KNEE];
const SHOULDERS_TO_KNEES: [usize; 6] =
    [LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_HIP, RIGHT_HIP, LEFT_KNEE, RIGHT_KNEE];
const ANKLES: [usize; 2] = [LEFT_ANKLE, RIGHT_ANKLE];
const TRUNK: [usize; 4] = [LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_HIP, RIGHT_HIP];

/// Fitted on CCP's development photos by grid search (see the module docs):
/// a top and a bottom get alternative cuts because one box cannot fit both a
/// blouse and a long coat, or both trousers and a skirt.
const CUTS: [Cut; 7] = [
    Cut {
        garment: Garment::UpperBody,
        joints: &TORSO,
        grow: [0.1, 0.1, 0.1, -0.1],
        alternative: false,
    },
    Cut {
        garment: Garment::LowerBody,
        joints: &LEGS,
        grow: [0.1, 0.1, 0.1, 0.1],
        alternative: false,
    },
    Cut {
        garment: Garment::Shoes,
        joints: &ANKLES,
        grow: [0.1, 0.0, 0.1, 0.3],
        alternative: false,
    },
    // A dress is one garment where most people wear two: it ranks with the
    // alternatives, so the report's 3 boxes go to top, bottom and shoes first.
    Cut {
        garment: Garment::FullLength,
        joints: &SHOULDERS_TO_KNEES,
        grow: [0.2, 0.1, 0.2, -0.1],
        alternative: true,
    },
    Cut {
        garment: Garment::UpperBody,
        joints: &TORSO_TO_KNEES,
        grow: [0.2, 0.1, 0.2, -0.1],
        alternative: true,
    },
    Cut {
        garment: Garment::LowerBody,
        joints: &THIGHS,
        grow: [0.2, 0.1, 0.2, -0.1],
        alternative: true,
    },
    // Loose tops: the trunk alone, grown on every side.
    Cut {
        garment: Garment::UpperBody,
        joints: &TRUNK,
        grow: [0.2, 0.2, 0.2, 0.2],
        alternative: true,
    },
];

/// The regions of one person, each with a confidence (the mean score of the
/// joints that define it, a little less for alternative cuts). Regions whose
/// joints are not seen are left out.
pub fn garment_regions(
    points: &[Keypoint; KEYPOINTS],
    width: u32,
    height: u32,
) -> Vec<(Garment, BBox, f32)> {
    let mean_y = |a: usize, b: usize| (points[a].y + points[b].y) / 2.0;
    let torso =
        (mean_y(LEFT_HIP, RIGHT_HIP) - mean_y(LEFT_SHOULDER, RIGHT_SHOULDER)).abs().max(1.0);
    let (w, h) = (width as f32, height as f32);
    CUTS.iter()
        .filter_map(|cut| {
            let (b, score) = joints_box(points, cut.joints, MIN_JOINT_SCORE, 2)?;
            let [left, top, right, bottom] = cut.grow.map(|g| g * torso);
            let grown = BBox::new(b.x0 - left, b.y0 - top, b.x1 + right, b.y1 + bottom).clip(w, h);
            let weight = if cut.alternative { ALTERNATIVE_WEIGHT } else { 1.0 };
            (grown.area() > 0.0).then_some((cut.garment, grown, score * weight))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A person standing upright, 100 px from shoulders to hips.
    fn standing() -> [Keypoint; KEYPOINTS] {
        let mut points = [Keypoint { x: 0.0, y: 0.0, score: 0.9 }; KEYPOINTS];
        let mut set = |j: usize, x: f32, y: f32| points[j] = Keypoint { x, y, score: 0.9 };
        set(LEFT_SHOULDER, 140.0, 100.0);
        set(RIGHT_SHOULDER, 60.0, 100.0);
        set(LEFT_ELBOW, 150.0, 150.0);
        set(RIGHT_ELBOW, 50.0, 150.0);
        set(LEFT_HIP, 125.0, 200.0);
        set(RIGHT_HIP, 75.0, 200.0);
        set(LEFT_KNEE, 125.0, 280.0);
        set(RIGHT_KNEE, 75.0, 280.0);
        set(LEFT_ANKLE, 125.0, 360.0);
        set(RIGHT_ANKLE, 75.0, 360.0);
        points
    }

    #[test]
    fn regions_stack_from_shoulders_to_feet() {
        let regions = garment_regions(&standing(), 200, 420);
        let main = |g: Garment| {
            regions.iter().find(|(r, _, _)| *r == g).map(|(_, b, s)| (*b, *s)).unwrap()
        };
        let (upper, lower, shoes) =
            (main(Garment::UpperBody), main(Garment::LowerBody), main(Garment::Shoes));
        // Torso 100 px: the top runs from 10 px above the shoulders to 10 px above the hips.
        assert_eq!((upper.0.y0, upper.0.y1), (90.0, 190.0));
        assert_eq!((lower.0.y0, lower.0.y1), (190.0, 370.0));
        assert!(shoes.0.y0 >= 350.0 && shoes.0.y1 <= 420.0, "{:?}", shoes.0);
        // Main cuts outrank the alternatives of the same garment.
        let scores: Vec<f32> = regions
            .iter()
            .filter(|(g, _, _)| *g == Garment::UpperBody)
            .map(|(_, _, s)| *s)
            .collect();
        assert!(scores.len() == 3 && scores[0] > scores[1] && scores[0] > scores[2], "{scores:?}");
    }

    #[test]
    fn unseen_joints_give_no_region() {
        let mut points = standing();
        for j in [LEFT_ANKLE, RIGHT_ANKLE] {
            points[j].score = 0.05;
        }
        let regions = garment_regions(&points, 200, 420);
        assert!(regions.iter().all(|(g, _, _)| *g != Garment::Shoes));
        // Regions are clipped to the image.
        assert!(regions.iter().all(|(_, b, _)| b.x0 >= 0.0 && b.x1 <= 200.0 && b.y1 <= 420.0));
    }
}
