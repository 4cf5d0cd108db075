"""Fine-tune or train mini-Xception on a FER2013-layout CSV.

Augmentation (on the fly, per sample): rotation, scale, shift, flip, brightness and
contrast (`export.data.faces.jitter`); preprocessing is `edge.features.face`'s, the
same as on the device. Early stopping and checkpoint selection use the validation split
(PublicTest) only; the test split (PrivateTest) is evaluated once, at the end.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F

from edge.errors import EdgeError
from edge.features.face import preprocess_faces
from export.data.faces import jitter
from export.data.fer2013 import load_fer2013_csv
from export.models.mini_xception import MiniXception


@dataclasses.dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    input_size: int = 64
    patience: int = 5
    seed: int = 0


def _batches(images: np.ndarray, labels: np.ndarray, config: TrainConfig, rng, augment: bool):
    order = rng.permutation(len(images)) if augment else np.arange(len(images))
    for start in range(0, len(order), config.batch_size):
        idx = order[start:start + config.batch_size]
        crops = [jitter(images[i], rng) if augment else images[i] for i in idx]
        yield torch.from_numpy(preprocess_faces(crops, config.input_size)), torch.from_numpy(labels[idx])


def evaluate(model: MiniXception, images: np.ndarray, labels: np.ndarray, config: TrainConfig) -> Dict:
    model.eval()
    correct, loss_sum = 0, 0.0
    with torch.no_grad():
        for x, y in _batches(images, labels, config, None, augment=False):
            logits = model.logits(x)
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
    n = max(len(images), 1)
    return {"accuracy": correct / n, "loss": loss_sum / n, "n": int(len(images))}


def train_fer(csv_path: Path, config: TrainConfig, init: Optional[MiniXception] = None,
              out: Optional[Path] = None) -> Dict:
    """Train; returns the history and final metrics. Writes the best checkpoint to `out`."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    data = load_fer2013_csv(csv_path)
    train_x, train_y = data["train"]
    val_x, val_y = data["validation"]
    if len(train_x) == 0 or len(val_x) == 0:
        raise EdgeError(f"{csv_path}: need Training and PublicTest rows (got {len(train_x)} and {len(val_x)})")
    model = MiniXception(config.input_size)
    if init is not None:
        model.load_state_dict(init.state_dict())
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(config.epochs, 1))
    best = {"accuracy": -1.0}
    best_state, history, stale = None, [], 0
    for epoch in range(config.epochs):
        model.train()
        losses = []
        for x, y in _batches(train_x, train_y, config, rng, augment=True):
            loss = F.cross_entropy(model.logits(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        scheduler.step()
        val = evaluate(model, val_x, val_y, config)
        history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)),
                        **{f"val_{k}": v for k, v in val.items()}})
        if val["accuracy"] > best["accuracy"]:
            best, best_state, stale = val, {k: v.clone() for k, v in model.state_dict().items()}, 0
        else:
            stale += 1
            if stale >= config.patience:
                break
    model.load_state_dict(best_state)
    result = {"history": history, "best_validation": best}
    test_x, test_y = data["test"]
    if len(test_x):
        result["test"] = evaluate(model, test_x, test_y, config)
    if out is not None:
        trained_on = f"FER2013-layout CSV {csv_path.name} ({'fine-tuned from fer weights' if init else 'from scratch'})"
        torch.save({"state_dict": model.state_dict(), "input_size": config.input_size,
                    "trained_on": trained_on, "metrics": result}, out)
    return result
