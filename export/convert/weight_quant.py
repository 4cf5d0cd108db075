"""Weight-only int8 for convolution models: BN folding, per-channel GPTQ rounding, bias correction.

Why weight-only (issue 11): int8 *activations* make the answers depend on the CPU's int8
kernels (onnxruntime's U8S8 path saturates int16 on AVX2 without VNNI: 79.5 % top-1 there
against 96.6 % on the VNNI build machine; an SME CPU model gave garbage in LiteRT). With
int8 weights and float activations the runtime turns the weights back into float once
(onnxruntime folds DequantizeLinear of an initializer; LiteRT evaluates a DEQUANTIZE of a
constant at preparation), so the arithmetic is the fp32 file's on every CPU and only the
rounding of the weights differs from fp32. That rounding is chosen here to keep the
answers: each output channel gets its own scale (max |w| / 127, never clipped), the
integer grid is picked with GPTQ (Frantar et al. 2023; each rounding error is pushed onto
the weights not yet rounded, weighted by the inverse Hessian of the layer's inputs), and
every bias is then corrected so that the mean of each channel on the calibration faces
equals the float model's (empirical bias correction, Nagel et al. 2019).

Everything numeric that decides a stored byte runs in float64 (numpy / torch), so the
files do not depend on the build machine's SIMD width: the TorchScript exporter's own BN
folding ran in float32 with CPU-specific kernels and gave 1-ulp different weights on
AVX2 and AVX-512 machines (the `mini_xception_fp32.onnx` bytes differed).
"""
from __future__ import annotations

import copy
from typing import Dict, Iterable, List, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

QMAX = 127
GPTQ_DAMPING = 0.01  # fraction of the mean Hessian diagonal added to it (GPTQ's default)
BATCH = 32


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of `model` in eval mode where every Conv2d directly followed by a BatchNorm2d
    inside an nn.Sequential carries the BN (float64 arithmetic) and the BN is an Identity."""
    folded = copy.deepcopy(model).eval()
    for seq in [m for m in folded.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = seq._modules[a], seq._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                seq._modules[a] = _fold(conv, bn)
                seq._modules[b] = nn.Identity()
    return folded


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    w = conv.weight.detach().numpy().astype(np.float64)
    b = conv.bias.detach().numpy().astype(np.float64) if conv.bias is not None else np.zeros(w.shape[0])
    gamma, beta = bn.weight.detach().numpy().astype(np.float64), bn.bias.detach().numpy().astype(np.float64)
    mean, var = bn.running_mean.numpy().astype(np.float64), bn.running_var.numpy().astype(np.float64)
    scale = gamma / np.sqrt(var + bn.eps)
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                    padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True)
    with torch.no_grad():
        out.weight.copy_(torch.from_numpy((w * scale[:, None, None, None]).astype(np.float32)))
        out.bias.copy_(torch.from_numpy(((b - mean) * scale + beta).astype(np.float32)))
    return out.eval()


def channel_scales(weight: np.ndarray) -> np.ndarray:
    """Symmetric per-output-channel scales, float32 [O]: max |w| / 127 (a channel of zeros gets 1)."""
    peak = np.abs(weight.reshape(weight.shape[0], -1)).max(axis=1).astype(np.float32)
    return np.where(peak > 0, peak / np.float32(QMAX), np.float32(1.0)).astype(np.float32)


def _round(w: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return np.clip(np.round(w / scale), -QMAX, QMAX)


def _conv_hessians(conv: nn.Conv2d, inputs: Iterable[torch.Tensor]) -> np.ndarray:
    """Per group, X X^T of the unfolded layer inputs (float64) [groups, K, K]."""
    groups = conv.groups
    k = conv.in_channels // groups * conv.kernel_size[0] * conv.kernel_size[1]
    hessians = np.zeros((groups, k, k))
    for x in inputs:
        cols = F.unfold(x.double(), conv.kernel_size, dilation=conv.dilation, padding=conv.padding,
                        stride=conv.stride)  # [N, C*kh*kw, L], channel-major
        cols = cols.reshape(x.shape[0], groups, k, -1).permute(1, 2, 0, 3).reshape(groups, k, -1)
        hessians += torch.bmm(cols, cols.transpose(1, 2)).numpy()
    return hessians


def gptq_round(weight: np.ndarray, scale: np.ndarray, hessian: np.ndarray) -> np.ndarray:
    """Integers q [O, K] (|q| <= 127) for rows w [O, K] with scales [O], GPTQ order 0..K-1."""
    w = weight.astype(np.float64).copy()
    s = scale.astype(np.float64)[:, None]
    h = hessian.copy()
    dead = np.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h += np.eye(len(h)) * GPTQ_DAMPING * np.mean(np.diag(h))
    # Upper Cholesky factor of H^-1, as in the GPTQ reference implementation.
    hinv = np.linalg.cholesky(np.linalg.inv(h)).T
    q = np.zeros_like(w)
    for i in range(w.shape[1]):
        q[:, i] = _round(w[:, i:i + 1], s)[:, 0]
        err = (w[:, i] - q[:, i] * s[:, 0]) / hinv[i, i]
        w[:, i + 1:] -= np.outer(err, hinv[i, i + 1:])
    return q


class _Stop(Exception):
    pass


def _layer_inputs(model: nn.Module, layer: nn.Module, calibration: torch.Tensor) -> List[torch.Tensor]:
    """The inputs `layer` receives in `model` on `calibration`, batch by batch (the forward
    pass stops at the layer)."""
    items: List[torch.Tensor] = []

    def hook(module, args):
        items.append(args[0].detach())
        raise _Stop

    handle = layer.register_forward_pre_hook(hook)
    try:
        with torch.no_grad():
            for start in range(0, len(calibration), BATCH):
                try:
                    model(calibration[start:start + BATCH])
                except _Stop:
                    pass
    finally:
        handle.remove()
    return items


def _output_means(model: nn.Module, calibration: torch.Tensor) -> Dict[str, np.ndarray]:
    """Per-channel mean output of every Conv2d of `model` on `calibration` (one pass)."""
    sums: Dict[str, torch.Tensor] = {}
    count: Dict[str, int] = {}

    def hook(module, args, result, name):
        sums[name] = sums.get(name, 0) + result.detach().sum(dim=(0, 2, 3))
        count[name] = count.get(name, 0) + result.shape[0] * result.shape[2] * result.shape[3]

    handles = [m.register_forward_hook(lambda mod, a, r, n=n: hook(mod, a, r, n))
               for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            for start in range(0, len(calibration), BATCH):
                model(calibration[start:start + BATCH])
    finally:
        for h in handles:
            h.remove()
    return {name: (sums[name] / count[name]).numpy() for name in sums}


def quantize_weights(model: nn.Module, calibration: np.ndarray, keep_float: Tuple[str, ...] = (),
                     gptq: bool = True, bias_correction: bool = True
                     ) -> Tuple[nn.Module, Dict[str, Tuple[np.ndarray, np.ndarray]]]:
    """Weight-only int8 of every Conv2d of a BN-folded `model`, in forward order.

    calibration: float32 [N, ...] model inputs. keep_float: module names left in float.
    The calibration passes run in float64, so the result does not depend on the CPU's
    float32 kernels. Returns (a float32 copy of `model` whose conv weights are exactly
    float32(q) * scale, as the files dequantize them, with corrected biases;
    {module name: (q int8 [O, ...], scale float32 [O])}).
    """
    reference = copy.deepcopy(model).eval().double()
    work = copy.deepcopy(model).eval().double()
    x = torch.from_numpy(np.ascontiguousarray(calibration, dtype=np.float32)).double()
    work_modules = dict(work.named_modules())
    wanted = _output_means(reference, x) if bias_correction else {}
    table: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
    biases: Dict[str, np.ndarray] = {}
    for name in _forward_order(work, x[:1]):
        if name in keep_float:
            continue
        conv = work_modules[name]
        weight = dict(model.named_modules())[name].weight.detach().numpy()  # the float32 weights
        scale = channel_scales(weight)
        rows = weight.reshape(weight.shape[0], -1)
        inputs = _layer_inputs(work, conv, x)
        if gptq:
            hessians = _conv_hessians(conv, inputs)
            per_group = weight.shape[0] // conv.groups
            q = np.concatenate([gptq_round(rows[g * per_group:(g + 1) * per_group],
                                           scale[g * per_group:(g + 1) * per_group], hessians[g])
                                for g in range(conv.groups)])
        else:
            q = _round(rows, scale[:, None])
        q = q.astype(np.int8).reshape(weight.shape)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(_dequantize(q, scale)))
        if bias_correction and conv.bias is not None:
            want = wanted[name]
            with torch.no_grad():
                got = _channel_means([conv(item) for item in inputs])
            bias = conv.bias.detach().numpy().astype(np.float32).astype(np.float64) + want - got
            biases[name] = bias.astype(np.float32)
            with torch.no_grad():
                conv.bias.copy_(torch.from_numpy(biases[name].astype(np.float64)))
        table[name] = (q, scale)
    out = copy.deepcopy(model).eval()
    out_modules = dict(out.named_modules())
    with torch.no_grad():
        for name, (q, scale) in table.items():
            out_modules[name].weight.copy_(torch.from_numpy(_dequantize(q, scale)))
            if name in biases:
                out_modules[name].bias.copy_(torch.from_numpy(biases[name]))
    return out, table


def _dequantize(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """float32(q) * scale per output channel, rounded to float32 as the runtimes compute it."""
    return q.astype(np.float32) * scale.reshape((-1,) + (1,) * (q.ndim - 1)).astype(np.float32)


def _channel_means(outputs: List[torch.Tensor]) -> np.ndarray:
    total = sum(o.double().sum(dim=(0, 2, 3)) for o in outputs)
    count = sum(o.shape[0] * o.shape[2] * o.shape[3] for o in outputs)
    return (total / count).numpy()


def _forward_order(model: nn.Module, sample: torch.Tensor) -> List[str]:
    """Names of the Conv2d modules in the order the forward pass calls them."""
    order: List[str] = []
    handles = [m.register_forward_hook(lambda mod, a, r, n=n: order.append(n))
               for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model(sample)
    finally:
        for h in handles:
            h.remove()
    return order
