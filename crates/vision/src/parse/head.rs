//! The parser's head: a small decoder over the backbone's feature pyramid.
//!
//! Each stride's map is brought to `HIDDEN` channels by a 1x1 convolution
//! at its own resolution and only then upsampled to stride 8 and summed (a
//! 1x1 convolution commutes with bilinear upsampling, so this is the same as
//! upsampling first, at a fraction of the cost). A 3x3 convolution then
//! mixes neighbouring cells (edges of a garment agree with their
//! neighbours), and a last 1x1 convolution gives one logit per class.
//!
//! The backbone is not part of this module: it is the embedder the site
//! already ships, frozen, so the head's record is all the parser adds.

use super::Part;
use crate::model::efficientnet::Pyramid;
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Dropout, DropoutConfig, PaddingConfig2d};
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor};

/// Channels of the head's hidden layers.
pub const HIDDEN: usize = 64;
/// Share of hidden activations dropped while training: 578 photos are few
/// for 70,000 parameters, and without it the head learns them by heart
/// (validation loss rising from the fifth epoch).
const DROPOUT: f64 = 0.3;

#[derive(Module, Debug)]
pub struct ParserHead {
    lateral8: Conv2d,
    lateral16: Conv2d,
    lateral32: Conv2d,
    lateral_head: Conv2d,
    /// 3x3 convolutions on the stride-32 grid: each cell then sees most of
    /// a person (a dress or a top over a skirt, a coat or a blouse, is a
    /// question about the whole outfit, not a patch).
    wide1: Conv2d,
    wide2: Conv2d,
    context: Conv2d,
    classify: Conv2d,
    dropout: Dropout,
}

fn conv(
    channels_in: usize,
    channels_out: usize,
    kernel: usize,
    bias: bool,
    device: &Device,
) -> Conv2d {
    Conv2dConfig::new([channels_in, channels_out], [kernel, kernel])
        .with_padding(PaddingConfig2d::Same)
        .with_bias(bias)
        .init(device)
}

/// Bilinear resize of `[batch, C, h, w]` maps to `size` (height, width).
pub fn upsample(x: Tensor<4>, size: [usize; 2]) -> Tensor<4> {
    if x.dims()[2..] == size {
        return x;
    }
    interpolate(x, InterpolateOptions::new(InterpolateMode::Bilinear).with_output_size(size))
}

impl ParserHead {
    /// A head with fresh weights (seeded by the device's RNG) over a
    /// backbone whose pyramid has `channels` (finest first).
    pub fn new(channels: [usize; 4], device: &Device) -> Self {
        Self {
            lateral8: conv(channels[0], HIDDEN, 1, true, device),
            lateral16: conv(channels[1], HIDDEN, 1, false, device),
            lateral32: conv(channels[2], HIDDEN, 1, false, device),
            lateral_head: conv(channels[3], HIDDEN, 1, true, device),
            wide1: conv(HIDDEN, HIDDEN, 3, true, device),
            wide2: conv(HIDDEN, HIDDEN, 3, true, device),
            context: conv(HIDDEN, HIDDEN, 3, true, device),
            classify: conv(HIDDEN, Part::COUNT, 1, true, device),
            dropout: DropoutConfig::new(DROPOUT).init(),
        }
    }

    /// Class logits at stride 8, `[batch, classes, H/8, W/8]`.
    pub fn forward(&self, pyramid: Pyramid) -> Tensor<4> {
        use burn::tensor::activation::relu;
        let [_, _, h, w] = pyramid.s8.dims();
        let coarse =
            relu(self.lateral32.forward(pyramid.s32) + self.lateral_head.forward(pyramid.head));
        let coarse = relu(self.wide1.forward(self.dropout.forward(coarse)));
        let coarse = self.wide2.forward(coarse);
        let x = self.lateral8.forward(pyramid.s8)
            + upsample(self.lateral16.forward(pyramid.s16), [h, w])
            + upsample(coarse, [h, w]);
        let x = self.dropout.forward(burn::tensor::activation::relu(x));
        let x = burn::tensor::activation::relu(self.context.forward(x));
        self.classify.forward(self.dropout.forward(x))
    }
}
