"""Pre-activation (ResNet v2) residual blocks of the paper's figures 6 and 8.

Encoder blocks (paper 7.2):
  A: three 3x3 convolutions added to a 1x1-convolution shortcut (the width may change);
  B: three 3x3 convolutions added to the block's input (identity shortcut);
  C: three 3x3 convolutions, the middle one with stride 2, added to a downsampling
     shortcut (2x2 average pooling and a 1x1 convolution): H and W are halved.
Decoder blocks mirror them with transposed convolutions; C doubles H and W, its
shortcut being a 2x2 stride-2 transposed convolution (a 1x1 stride-2 one would leave
every other pixel empty).

"Pre-activation" means each convolution is preceded by BatchNorm + ReLU and the sum
is left un-activated, as in He et al. 2016 (identity mappings); the shortcut of A and
C takes the pre-activated input, as ResNet v2 does for projection shortcuts.
"""
from __future__ import annotations

from typing import Literal

import keras
from keras import layers

BlockKind = Literal["A", "B", "C"]


def _pre_activation(x: keras.KerasTensor, name: str) -> keras.KerasTensor:
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _conv(transposed: bool, filters: int, kernel: int, strides: int, name: str) -> layers.Layer:
    # A stride-1 transposed convolution with 'same' padding is a convolution with a
    # flipped kernel: the same family of functions. We build those as Conv2D because
    # ONNX Runtime's ConvTranspose is several times slower on CPU; only the upsampling
    # (stride-2) convolutions of the decoder stay transposed.
    cls = layers.Conv2DTranspose if transposed and strides > 1 else layers.Conv2D
    return cls(filters, kernel, strides=strides, padding="same", use_bias=False, name=name)


def residual_block(
    x: keras.KerasTensor,
    kind: BlockKind,
    out_width: int,
    inner_width: int,
    name: str,
    transposed: bool = False,
) -> keras.KerasTensor:
    """One block A, B or C; `transposed` builds the decoder's mirror.

    Shapes: A and B keep H, W; encoder C halves them, decoder C doubles them.
    B needs its input already at `out_width` (identity shortcut).
    """
    if kind not in ("A", "B", "C"):
        raise ValueError(f"residual block kind must be 'A', 'B' or 'C', got {kind!r}")
    if kind == "B" and x.shape[-1] != out_width:
        raise ValueError(f"block B keeps the width: input has {x.shape[-1]} channels, asked {out_width}")
    pre = _pre_activation(x, f"{name}_pre")
    middle_stride = 2 if kind == "C" else 1

    if kind == "A":
        shortcut = _conv(transposed, out_width, 1, 1, f"{name}_short")(pre)
    elif kind == "B":
        shortcut = x
    elif transposed:
        shortcut = _conv(True, out_width, 2, 2, f"{name}_short")(pre)
    else:
        # Average-pool then 1x1 conv (ResNet-D's downsampling shortcut) rather than a
        # 1x1 stride-2 conv: it sees every pixel instead of one in four, and TF 2.21's
        # oneDNN Conv2DBackpropFilter crashes (segfault) on 1x1 stride-2 convs with few
        # channels at 64x64 and above, which the `cpu` profile has.
        pooled = layers.AveragePooling2D(2, name=f"{name}_short_pool")(pre)
        shortcut = _conv(False, out_width, 1, 1, f"{name}_short")(pooled)

    h = _conv(transposed, inner_width, 3, 1, f"{name}_conv1")(pre)
    h = _pre_activation(h, f"{name}_conv2_pre")
    h = _conv(transposed, inner_width, 3, middle_stride, f"{name}_conv2")(h)
    h = _pre_activation(h, f"{name}_conv3_pre")
    h = _conv(transposed, out_width, 3, 1, f"{name}_conv3")(h)
    return layers.Add(name=f"{name}_add")([shortcut, h])


def residual_stage(
    x: keras.KerasTensor,
    width: int,
    bottleneck_ratio: int,
    name: str,
    transposed: bool = False,
) -> keras.KerasTensor:
    """Blocks A, B, C at one width: halves (encoder) or doubles (decoder) H and W once."""
    inner = max(1, width // bottleneck_ratio)
    x = residual_block(x, "A", width, inner, f"{name}_A", transposed)
    x = residual_block(x, "B", width, inner, f"{name}_B", transposed)
    return residual_block(x, "C", width, inner, f"{name}_C", transposed)
