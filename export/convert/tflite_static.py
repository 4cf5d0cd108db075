"""Static int8 TFLite (int8 activations and weights) by quantization-aware distillation (issue 23).

The weight-only int8 files agree everywhere but run at fp32 speed; a static int8 file runs on
the CPU's int8 kernels (0.68x the `fer` file's time on the development VM) but calibration
alone lost 6-9 % top-1 on single views (README, issue 23: not shipped). This route fine-tunes
the batch-norm-folded model with fake quantization (PT2E, per-channel symmetric int8 weights,
per-tensor int8 activations, the same quantizer litert-torch lowers) to match the fp32
model's own probabilities on unlabelled face crops (a KL loss at temperature `temperature`:
no emotion labels), then converts.

litert-torch's QAT annotator also matches conv+BN patterns by tracing a plain function, which
torch 2.13's `torch.export` refuses; the model reaching it has batch norm folded already, so
those patterns are dropped (`_FoldedQuantizer`) and the fake quantizers go in with
`prepare_pt2e`, the graph exported with a dynamic batch so it trains on mini-batches.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import numpy as np
import torch

from export.convert.tflite_export import _quiet


@dataclass(frozen=True)
class DistilConfig:
    epochs: int = 0  # 0: calibrate the ranges only
    lr: float = 2e-5
    batch_size: int = 32
    temperature: float = 2.0
    freeze_observers_after: int = 1  # epochs of range tracking before the scales are fixed
    seed: int = 0


def _quantizer():
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config

    class _FoldedQuantizer(PT2EQuantizer):
        STATIC_QAT_ONLY_OPS: list = []  # conv+BN patterns: BN is folded before this point

    return _FoldedQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_qat=True))


def _kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) of softmax outputs softened at `temperature` (x T^2, Hinton's scale)."""
    log_s = torch.log_softmax(torch.log(student.clamp_min(1e-12)) / temperature, 1)
    log_t = torch.log_softmax(torch.log(teacher.clamp_min(1e-12)) / temperature, 1)
    return (log_t.exp() * (log_t - log_s)).sum(1).mean() * temperature ** 2


def distil_int8(folded: torch.nn.Module, faces: np.ndarray, config: DistilConfig = DistilConfig(),
                log: Optional[Callable[[str], None]] = None, teacher: Optional[torch.nn.Module] = None):
    """(prepared graph, quantizer): `folded` (BN folded, outputs probabilities) with fake
    quantization, calibrated and fine-tuned on `faces` (float32 [N, 1, S, S]) to reproduce the
    probabilities of `teacher` (default: `folded` itself; pass the fp32 model when `folded`
    starts from rounded weights, so the target is the fp32 file's answers). Pass both to `to_tflite`."""
    _quiet()
    from torchao.quantization.pt2e import move_exported_model_to_eval, move_exported_model_to_train
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    torch.manual_seed(config.seed)
    size = faces.shape[-1]
    with torch.no_grad():
        targets = (teacher or folded).eval()(torch.from_numpy(faces))
    quantizer = _quantizer()
    batch = torch.export.Dim("batch", min=1, max=4096)
    graph = torch.export.export(folded, (torch.zeros(2, 1, size, size),), dynamic_shapes=({0: batch},)).module()
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad():  # initial ranges from every face
        for i in range(0, len(faces), 64):
            prepared(torch.from_numpy(faces[i:i + 64]))
    optimizer = torch.optim.Adam(prepared.parameters(), lr=config.lr)
    rng = np.random.default_rng(config.seed)
    for epoch in range(config.epochs):
        move_exported_model_to_train(prepared)
        if epoch >= config.freeze_observers_after:
            prepared.apply(torch.ao.quantization.disable_observer)
        total = 0.0
        for idx in np.array_split(rng.permutation(len(faces)), max(1, len(faces) // config.batch_size)):
            loss = _kl(prepared(torch.from_numpy(faces[idx])), targets[idx], config.temperature)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss) * len(idx)
        if log:
            log(f"epoch {epoch}: distillation loss {total / len(faces):.5f}")
    move_exported_model_to_eval(prepared)
    prepared.apply(torch.ao.quantization.disable_observer)
    return prepared, quantizer


def _fake_quantizers(prepared) -> List[Tuple[str, torch.nn.Module, bool]]:
    """(name, module, is_activation) of every fake quantizer in graph order; weights are per channel."""
    return [(name, module, module.scale.numel() == 1) for name, module in prepared.named_modules()
            if hasattr(module, "fake_quant_enabled")]


def sensitivity(prepared, faces: np.ndarray, reference: np.ndarray) -> List[dict]:
    """Where the int8 error comes from: the prepared model's divergence from `reference`
    probabilities ([N, 7], the fp32 model's) on `faces` with every quantizer on, with only the
    weights quantized, and with each activation quantizer alone on (the rest in float).
    Rows: {point, mean_kl, top1_agreement, max_abs_prob_diff}; the prepared model is left as found."""
    quantizers = _fake_quantizers(prepared)
    x = torch.from_numpy(np.ascontiguousarray(faces, dtype=np.float32))

    def row(point: str) -> dict:
        with torch.no_grad():
            got = np.concatenate([prepared(x[i:i + 256]).numpy() for i in range(0, len(x), 256)])
        kl = (reference * (np.log(reference + 1e-12) - np.log(got + 1e-12))).sum(1)
        return {"point": point, "mean_kl": round(float(kl.mean()), 6),
                "top1_agreement": round(float(np.mean(got.argmax(1) == reference.argmax(1))), 4),
                "max_abs_prob_diff": round(float(np.abs(got - reference).max()), 4)}

    def switch(on) -> None:
        for name, module, is_act in quantizers:
            (module.enable_fake_quant if on(name, is_act) else module.disable_fake_quant)()

    try:
        switch(lambda name, is_act: True)
        rows = [row("all")]
        switch(lambda name, is_act: not is_act)
        rows.append(row("weights only"))
        for point in [name for name, _, is_act in quantizers if is_act]:
            switch(lambda name, is_act, point=point: name == point)
            rows.append(row(point))
    finally:
        switch(lambda name, is_act: True)
    return rows


def to_tflite(prepared, quantizer, size: int) -> bytes:
    """The static int8 TFLite flatbuffer (int8 input, float32 probabilities out) of a prepared graph."""
    _quiet()
    import tempfile
    from pathlib import Path

    import litert_torch
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    from export.convert.tflite_compact import compact_tflite

    converted = convert_pt2e(prepared, fold_quantize=False)
    edge_model = litert_torch.convert(converted, (torch.zeros(1, 1, size, size),),
                                      quant_config=QuantConfig(pt2e_quantizer=quantizer))
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "model.tflite"
        edge_model.export(str(raw))
        return compact_tflite(raw.read_bytes())
