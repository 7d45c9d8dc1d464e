//! The built-in models, written with the layers of [`crate::nn`]: LeNet-5 and ConvNet-S (the
//! benchmark workloads W1 and W2) and the classic CNN families, sized for small inputs
//! (28×28 to 32×32, one or three channels): AlexNet, VGG-11/16 with and without batch norm,
//! GoogLeNet, ResNet-18 and ResNet-20. Each reads its input's shape, so it takes any channel
//! count and any size its downsampling allows, and returns `[n, 10]` logits. Parameter names
//! follow torchvision's models where torchvision has the model (`features.0.weight`,
//! `layer1.0.bn1.running_mean`, `inception3a.branch2.1.conv.weight`).

use std::fmt;
use std::str::FromStr;

use crate::ir::{Pool2d, TensorId};
use crate::nn::{Architecture, Conv2dOptions, Init, Net};
use crate::{Error, Result};

/// A built-in model is an [`Architecture`] as a user's function is.
impl Architecture for Model {
    fn build(&self, net: &mut Net<'_>, x: TensorId, n_classes: usize) -> Result<TensorId> {
        Model::build(*self, net, x, n_classes)
    }
}

/// The built-in models.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    /// W1: LeNet-5 (conv 5×5 6, pool, conv 5×5 16, pool, 120, 84, 10), ReLU, max pooling.
    Lenet5,
    /// W2: a VGG-style net (2×conv3×3 32, pool, 2×conv3×3 64, pool, 256, 10).
    ConvnetS,
    /// AlexNet (Krizhevsky et al. 2012) for small inputs: five convolutions (5×5 64, 5×5 192,
    /// 3×3 384, 256, 256), local response normalisation after the first two, three 3×3
    /// stride-2 max pools, adaptive average pooling to 2×2, and the classifier's two hidden
    /// layers (1024 wide) with dropout.
    Alexnet,
    /// VGG-11 (configuration A), torchvision's layer indices; for small inputs the last pool
    /// is left out where the map is already 1×1, average pooling goes to 1×1 and the
    /// classifier's hidden layers are 512 wide, with dropout.
    Vgg11,
    /// VGG-11 with batch norm after every convolution.
    Vgg11Bn,
    /// VGG-16 (configuration D), sized as [`Model::Vgg11`].
    Vgg16,
    /// VGG-16 with batch norm after every convolution.
    Vgg16Bn,
    /// GoogLeNet (Szegedy et al. 2014): nine Inception blocks with 1×1, 3×3, 5×5 and pool
    /// branches (each convolution without bias, with batch norm and ReLU, as torchvision's
    /// `BasicConv2d`), at a quarter of the channels and with a 3×3 stride-1 stem for small
    /// inputs; no auxiliary classifiers.
    Googlenet,
    /// ResNet-18 with the small-input stem (a 3×3 stride-1 convolution, no max pool).
    Resnet18,
    /// ResNet-20 (He et al. 2016, §4.2): a 3×3 convolution of 16 channels, then three stages
    /// of three basic blocks (16, 32, 64 channels; the second and third halve the size),
    /// global average pooling and a linear layer; every convolution without bias and
    /// followed by batch norm. Shortcuts that change shape are 1×1 convolutions with batch
    /// norm (option B), named as torchvision's ResNets (`layer2.0.downsample.0`).
    Resnet20,
}

/// VGG configurations: channels of each convolution, `0` for a 2×2 max pool.
const VGG11: &[usize] = &[64, 0, 128, 0, 256, 256, 0, 512, 512, 0, 512, 512, 0];
const VGG16: &[usize] = &[
    64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0,
];

/// GoogLeNet's Inception blocks (torchvision's, channels divided by 4): name, then 1×1,
/// 3×3 reduce, 3×3, 5×5 reduce, 5×5 and pool projection channels; `None` marks a max pool.
const INCEPTIONS: &[Option<(&str, [usize; 6])>] = &[
    Some(("inception3a", [16, 24, 32, 4, 8, 8])),
    Some(("inception3b", [32, 32, 48, 8, 24, 16])),
    None,
    Some(("inception4a", [48, 24, 52, 4, 12, 16])),
    Some(("inception4b", [40, 28, 56, 6, 16, 16])),
    Some(("inception4c", [32, 32, 64, 6, 16, 16])),
    Some(("inception4d", [28, 36, 72, 8, 16, 16])),
    Some(("inception4e", [64, 40, 80, 8, 32, 32])),
    None,
    Some(("inception5a", [64, 40, 80, 8, 32, 32])),
    Some(("inception5b", [96, 48, 96, 12, 32, 32])),
];

impl Model {
    /// Every model, for `--model list`, `--help` and tests.
    pub const ALL: [Model; 10] = [
        Model::Lenet5,
        Model::ConvnetS,
        Model::Alexnet,
        Model::Vgg11,
        Model::Vgg11Bn,
        Model::Vgg16,
        Model::Vgg16Bn,
        Model::Googlenet,
        Model::Resnet18,
        Model::Resnet20,
    ];

    /// Appends the model to `net` for `x: [n, c, h, w]` (any channel count; any size its
    /// pools leave at least one pixel of); returns the logits `[n, n_classes]`.
    pub fn build(self, net: &mut Net<'_>, x: TensorId, n_classes: usize) -> Result<TensorId> {
        match self {
            Model::Lenet5 => {
                let x = net.conv2d_relu("conv1", x, 6, Conv2dOptions::new(5).padding(2))?;
                let x = net.max_pool2d("pool1", x, 2)?;
                let x = net.conv2d_relu("conv2", x, 16, 5)?;
                let x = net.max_pool2d("pool2", x, 2)?;
                let x = net.flatten("flatten", x)?;
                let x = net.linear_relu("fc1", x, 120)?;
                let x = net.linear_relu("fc2", x, 84)?;
                net.linear("fc3", x, n_classes)
            }
            Model::ConvnetS => {
                let mut x = x;
                for (i, c_out) in [(1, 32), (2, 32), (3, 64), (4, 64)] {
                    x = net.conv2d_relu(
                        &format!("conv{i}"),
                        x,
                        c_out,
                        Conv2dOptions::new(3).padding(1),
                    )?;
                    if i % 2 == 0 {
                        x = net.max_pool2d(&format!("pool{}", i / 2), x, 2)?;
                    }
                }
                let x = net.flatten("flatten", x)?;
                let x = net.linear_relu("fc1", x, 256)?;
                net.linear("fc2", x, n_classes)
            }
            Model::Alexnet => alexnet(net, x, n_classes),
            Model::Vgg11 => vgg(net, x, VGG11, false, n_classes),
            Model::Vgg11Bn => vgg(net, x, VGG11, true, n_classes),
            Model::Vgg16 => vgg(net, x, VGG16, false, n_classes),
            Model::Vgg16Bn => vgg(net, x, VGG16, true, n_classes),
            Model::Googlenet => googlenet(net, x, n_classes),
            Model::Resnet18 => resnet(net, x, &[64, 128, 256, 512], 2, n_classes),
            Model::Resnet20 => resnet(net, x, &[16, 32, 64], 3, n_classes),
        }
    }

    /// Trainable parameters and buffer values (running statistics) of the model for inputs
    /// of `[c, h, w]` and `n_classes`; builds its graph on the CPU, nothing else.
    pub fn sizes(self, [c, h, w]: [usize; 3], n_classes: usize) -> Result<(usize, usize)> {
        let mut g = crate::ir::Graph::new();
        let x = g.input("images", crate::shape::Shape::f32([2, c, h, w]));
        let mut net = Net::new(&mut g, 0);
        self.build(&mut net, x, n_classes)?;
        let parts = net.into_parts();
        let count = |ts: &[(String, TensorId)]| -> usize {
            ts.iter().map(|(_, t)| g.shape(*t).numel()).sum()
        };
        Ok((count(&parts.params), count(&parts.buffers)))
    }

    /// The CLI name.
    pub fn name(self) -> &'static str {
        match self {
            Model::Lenet5 => "lenet5",
            Model::ConvnetS => "convnet-s",
            Model::Alexnet => "alexnet",
            Model::Vgg11 => "vgg11",
            Model::Vgg11Bn => "vgg11_bn",
            Model::Vgg16 => "vgg16",
            Model::Vgg16Bn => "vgg16_bn",
            Model::Googlenet => "googlenet",
            Model::Resnet18 => "resnet18",
            Model::Resnet20 => "resnet20",
        }
    }
}

/// AlexNet for small inputs (see [`Model::Alexnet`]); `features.i` and `classifier.i` count
/// every layer, as torchvision's `nn.Sequential` does.
fn alexnet(net: &mut Net<'_>, x: TensorId, n_classes: usize) -> Result<TensorId> {
    let x = net.conv2d_relu("features.0", x, 64, Conv2dOptions::new(5).padding(2))?;
    let x = net.local_response_norm("features.2", x, 5)?;
    let x = net.max_pool2d("features.3", x, Pool2d::new(3).stride(2))?;
    let x = net.conv2d_relu("features.4", x, 192, Conv2dOptions::new(5).padding(2))?;
    let x = net.local_response_norm("features.6", x, 5)?;
    let x = net.max_pool2d("features.7", x, Pool2d::new(3).stride(2))?;
    let x = net.conv2d_relu("features.8", x, 384, Conv2dOptions::new(3).padding(1))?;
    let x = net.conv2d_relu("features.10", x, 256, Conv2dOptions::new(3).padding(1))?;
    let x = net.conv2d_relu("features.12", x, 256, Conv2dOptions::new(3).padding(1))?;
    let x = net.max_pool2d("features.14", x, Pool2d::new(3).stride(2))?;
    let x = net.adaptive_avg_pool2d("avgpool", x, [2, 2])?;
    let x = net.flatten("flatten", x)?;
    let x = net.dropout("classifier.0", x, 0.5)?;
    let x = net.linear_relu("classifier.1", x, 1024)?;
    let x = net.dropout("classifier.3", x, 0.5)?;
    let x = net.linear_relu("classifier.4", x, 1024)?;
    net.linear("classifier.6", x, n_classes)
}

/// VGG (see [`Model::Vgg11`]): torchvision's `features` indices (convolution, batch norm,
/// ReLU and pool each take one), then `avgpool` and `classifier.0/3/6`; torchvision's
/// initialisation.
fn vgg(
    net: &mut Net<'_>,
    x: TensorId,
    config: &[usize],
    batch_norm: bool,
    n_classes: usize,
) -> Result<TensorId> {
    net.set_init(Init::Vgg);
    let mut x = x;
    let mut idx = 0;
    for &c_out in config {
        if c_out == 0 {
            let [_, _, h, w] = net.graph().shape(x).dims4_u32();
            if h >= 2 && w >= 2 {
                x = net.max_pool2d(&format!("features.{idx}"), x, 2)?;
            }
            idx += 1;
        } else if batch_norm {
            x = net.conv2d(
                &format!("features.{idx}"),
                x,
                c_out,
                Conv2dOptions::new(3).padding(1),
            )?;
            x = net.batch_norm2d(&format!("features.{}", idx + 1), x)?;
            x = net.relu(&format!("features.{}", idx + 2), x)?;
            idx += 3;
        } else {
            x = net.conv2d_relu(
                &format!("features.{idx}"),
                x,
                c_out,
                Conv2dOptions::new(3).padding(1),
            )?;
            idx += 2;
        }
    }
    let x = net.global_avg_pool2d("avgpool", x)?;
    let x = net.flatten("flatten", x)?;
    let x = net.linear_relu("classifier.0", x, 512)?;
    let x = net.dropout("classifier.2", x, 0.5)?;
    let x = net.linear_relu("classifier.3", x, 512)?;
    let x = net.dropout("classifier.5", x, 0.5)?;
    net.linear("classifier.6", x, n_classes)
}

/// torchvision's `BasicConv2d`: a convolution without bias, batch norm, ReLU; parameters
/// `{name}.conv.weight`, `{name}.bn.*`.
fn basic_conv(
    net: &mut Net<'_>,
    name: &str,
    x: TensorId,
    c_out: usize,
    k: usize,
) -> Result<TensorId> {
    let x = net.conv2d(
        &format!("{name}.conv"),
        x,
        c_out,
        Conv2dOptions::new(k).padding(k / 2).bias(false),
    )?;
    let x = net.batch_norm2d(&format!("{name}.bn"), x)?;
    net.relu(&format!("{name}.relu"), x)
}

/// GoogLeNet (see [`Model::Googlenet`]).
fn googlenet(net: &mut Net<'_>, x: TensorId, n_classes: usize) -> Result<TensorId> {
    let x = basic_conv(net, "conv1", x, 16, 3)?;
    let x = basic_conv(net, "conv2", x, 16, 1)?;
    let x = basic_conv(net, "conv3", x, 48, 3)?;
    let mut x = net.max_pool2d("maxpool2", x, Pool2d::new(3).stride(2).padding(1))?;
    let mut n_pools = 2;
    for block in INCEPTIONS {
        x = match *block {
            Some((name, channels)) => inception(net, name, x, channels)?,
            None => {
                n_pools += 1;
                net.max_pool2d(
                    &format!("maxpool{n_pools}"),
                    x,
                    Pool2d::new(3).stride(2).padding(1),
                )?
            }
        };
    }
    let x = net.global_avg_pool2d("avgpool", x)?;
    let x = net.flatten("flatten", x)?;
    let x = net.dropout("dropout", x, 0.2)?;
    net.linear("fc", x, n_classes)
}

/// An Inception block: 1×1; 1×1 then 3×3; 1×1 then 5×5; 3×3 max pool then 1×1; the four
/// concatenated along channels.
fn inception(
    net: &mut Net<'_>,
    name: &str,
    x: TensorId,
    [c1, c3_reduce, c3, c5_reduce, c5, pool_proj]: [usize; 6],
) -> Result<TensorId> {
    let b1 = basic_conv(net, &format!("{name}.branch1"), x, c1, 1)?;
    let b2 = basic_conv(net, &format!("{name}.branch2.0"), x, c3_reduce, 1)?;
    let b2 = basic_conv(net, &format!("{name}.branch2.1"), b2, c3, 3)?;
    let b3 = basic_conv(net, &format!("{name}.branch3.0"), x, c5_reduce, 1)?;
    let b3 = basic_conv(net, &format!("{name}.branch3.1"), b3, c5, 5)?;
    let b4 = net.max_pool2d(
        &format!("{name}.branch4.0"),
        x,
        Pool2d::new(3).stride(1).padding(1),
    )?;
    let b4 = basic_conv(net, &format!("{name}.branch4.1"), b4, pool_proj, 1)?;
    net.cat_channels(&format!("{name}.cat"), &[b1, b2, b3, b4])
}

/// A ResNet of basic blocks for small inputs: a 3×3 stride-1 convolution with batch norm and
/// ReLU, then one stage per width of `blocks` blocks (every stage after the first halves the
/// size in its first block), global average pooling and the linear classifier;
/// torchvision's names and initialisation.
fn resnet(
    net: &mut Net<'_>,
    x: TensorId,
    widths: &[usize],
    blocks: usize,
    n_classes: usize,
) -> Result<TensorId> {
    net.set_init(Init::Resnet);
    let x = net.conv2d(
        "conv1",
        x,
        widths[0],
        Conv2dOptions::new(3).padding(1).bias(false),
    )?;
    let x = net.batch_norm2d("bn1", x)?;
    let mut x = net.relu("relu", x)?;
    for (stage, &c_out) in widths.iter().enumerate() {
        for block in 0..blocks {
            let stride = if stage > 0 && block == 0 { 2 } else { 1 };
            let name = format!("layer{}.{block}", stage + 1);
            x = basic_block(net, &name, x, c_out, stride)?;
        }
    }
    let x = net.global_avg_pool2d("avgpool", x)?;
    let x = net.flatten("flatten", x)?;
    net.linear("fc", x, n_classes)
}

/// ResNet's basic block: `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`, both
/// convolutions 3×3, the first with `stride`; the shortcut is `x`, or a 1×1 convolution with
/// batch norm where the shape changes.
fn basic_block(
    net: &mut Net<'_>,
    name: &str,
    x: TensorId,
    c_out: usize,
    stride: usize,
) -> Result<TensorId> {
    let c_in = net.graph().shape(x).dims[1];
    let y = net.conv2d(
        &format!("{name}.conv1"),
        x,
        c_out,
        Conv2dOptions::new(3).stride(stride).padding(1).bias(false),
    )?;
    let y = net.batch_norm2d(&format!("{name}.bn1"), y)?;
    let y = net.relu(&format!("{name}.relu1"), y)?;
    let y = net.conv2d(
        &format!("{name}.conv2"),
        y,
        c_out,
        Conv2dOptions::new(3).padding(1).bias(false),
    )?;
    let y = net.batch_norm2d(&format!("{name}.bn2"), y)?;
    let shortcut = if stride != 1 || c_in != c_out {
        let s = net.conv2d(
            &format!("{name}.downsample.0"),
            x,
            c_out,
            Conv2dOptions::new(1).stride(stride).bias(false),
        )?;
        net.batch_norm2d(&format!("{name}.downsample.1"), s)?
    } else {
        x
    };
    let y = net.add(&format!("{name}.add"), y, shortcut)?;
    net.relu(&format!("{name}.relu2"), y)
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Model {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Model::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "unknown model {s:?}; choose one of: {}",
                    Model::ALL.map(Model::name).join(", ")
                ))
            })
    }
}
