"""Training of the LSTM-MoE: Gaussian NLL on the score + focal loss over the PHQ-8 bands.

The band probabilities come from the predicted Gaussian itself (the mass of
N(mu, sigma) between band edges 4.5, 9.5, 14.5, 19.5), so the focal term needs no extra
head and pushes mu into the right band, the rarer severe bands weighted up by
(1 - p)^gamma. The loss is taken over the last `tail` share of each chunk's steps:
the estimate needs some evidence before it is judged.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from edge.rules.phq8 import BAND_CUTOFFS, PHQ8_MAX
from export.data.sequences import LabelledSequence, band_of, feature_stats
from export.models.lstm_moe import LstmMoE

# The device's band cut-offs (5, 10, 15, 20 on the continuous score), so that the focal
# term trains exactly the bands the device reports.
_BAND_EDGES = torch.tensor([float(c) for c in BAND_CUTOFFS])


@dataclass
class TrainConfig:
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 16
    accumulate: int = 2  # gradient accumulation: optimiser step every `accumulate` batches
    chunk_steps: int = 100  # steps cut from each sequence per batch
    tail: float = 0.25
    focal_gamma: float = 2.0
    focal_weight: float = 1.0
    max_epochs: int = 40
    batches_per_epoch: int = 20
    patience: int = 6  # epochs without a better validation MAE before stopping
    seed: int = 0


def band_probabilities(mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """P(band k) under N(mu, sigma): [..., 5]."""
    edges = _BAND_EDGES.to(mu.dtype)
    cdf = 0.5 * (1.0 + torch.erf((edges - mu.unsqueeze(-1)) / (sigma.unsqueeze(-1) * math.sqrt(2.0))))
    lower = torch.cat([torch.zeros_like(cdf[..., :1]), cdf], dim=-1)
    upper = torch.cat([cdf, torch.ones_like(cdf[..., :1])], dim=-1)
    return (upper - lower).clamp_min(1e-6)


def moe_loss(mu: torch.Tensor, sigma: torch.Tensor, score: torch.Tensor, band: torch.Tensor,
             gamma: float = 2.0, focal_weight: float = 1.0) -> torch.Tensor:
    """Gaussian NLL (PHQ-8 points) + focal_weight x focal loss (gamma) over the bands."""
    nll = torch.nn.functional.gaussian_nll_loss(mu, score, sigma ** 2, full=True)
    p_true = band_probabilities(mu, sigma).gather(-1, band.unsqueeze(-1)).squeeze(-1)
    focal = (-(1.0 - p_true) ** gamma * torch.log(p_true)).mean()
    return nll + focal_weight * focal


def _batch(sequences: Sequence[LabelledSequence], steps: int, rng: np.random.Generator):
    length = min(steps, min(len(s.features) for s in sequences))
    rows = []
    for s in sequences:
        start = int(rng.integers(0, len(s.features) - length + 1))
        rows.append(s.features[start:start + length])
    features = torch.from_numpy(np.stack(rows).astype(np.float32))
    context = torch.tensor([[s.context] for s in sequences], dtype=torch.float32)
    score = torch.tensor([s.score for s in sequences], dtype=torch.float32)
    return features, context, score


def predict(model: LstmMoE, sequences: Sequence[LabelledSequence], steps: int = 0) -> np.ndarray:
    """(mu, sigma) at the last step of each whole sequence (or of its first `steps`): [N, 2]."""
    model.eval()
    out = np.zeros((len(sequences), 2), dtype=np.float64)
    by_length: Dict[int, List[int]] = {}
    for i, s in enumerate(sequences):
        by_length.setdefault(min(len(s.features), steps) if steps else len(s.features), []).append(i)
    with torch.no_grad():
        # Sequences of equal length run as one batch (same result as one by one).
        for length, members in by_length.items():
            x = torch.from_numpy(np.stack([sequences[i].features[:length] for i in members]))
            context = torch.tensor([[sequences[i].context] for i in members], dtype=torch.float32)
            h, c = model.initial_state(len(members))
            mu, sigma, _, _ = model(x, context, h, c)
            out[members, 0] = mu[:, -1].double().numpy()
            out[members, 1] = sigma[:, -1].double().numpy()
    return out


def metrics(predicted: np.ndarray, sequences: Sequence[LabelledSequence]) -> Dict[str, float]:
    """MAE, RMSE (PHQ-8 points), band accuracy, and the share of scores inside mu +/- sigma."""
    target = np.array([s.score for s in sequences], dtype=np.float64)
    mu = np.clip(predicted[:, 0], 0.0, PHQ8_MAX)
    sigma = predicted[:, 1]
    bands_hit = [band_of(m) == band_of(t) for m, t in zip(mu, target)]
    return {
        "n": int(len(target)),
        "mae": float(np.mean(np.abs(mu - target))),
        "rmse": float(np.sqrt(np.mean((mu - target) ** 2))),
        "band_accuracy": float(np.mean(bands_hit)),
        "within_1_sigma": float(np.mean(np.abs(mu - target) <= sigma)),
        "mean_sigma": float(np.mean(sigma)),
    }


def mean_baseline(train: Sequence[LabelledSequence], test: Sequence[LabelledSequence]) -> Dict[str, float]:
    """MAE and RMSE of always predicting the training mean score."""
    mean = float(np.mean([s.score for s in train]))
    target = np.array([s.score for s in test])
    return {"predict": mean, "mae": float(np.mean(np.abs(target - mean))),
            "rmse": float(np.sqrt(np.mean((target - mean) ** 2)))}


def train(model: LstmMoE, train_set: List[LabelledSequence], val_set: List[LabelledSequence],
          config: Optional[TrainConfig] = None, log=print) -> Dict[str, object]:
    """Train in place (best validation-MAE weights kept); returns the history and config."""
    config = config or TrainConfig()
    if not train_set or not val_set:
        raise ValueError("training needs at least one training and one validation sequence")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    mean, std = feature_stats(train_set)
    model.set_normalisation(torch.from_numpy(mean), torch.from_numpy(std))
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.999),
                                 weight_decay=config.weight_decay)
    best_mae, best_state, stale, history = float("inf"), None, 0, []
    for epoch in range(config.max_epochs):
        model.train()
        optimiser.zero_grad()
        losses = []
        for step in range(config.batches_per_epoch):
            picked = [train_set[i] for i in rng.integers(0, len(train_set), size=config.batch_size)]
            features, context, score = _batch(picked, config.chunk_steps, rng)
            h, c = model.initial_state(len(picked))
            mu, sigma, _, _ = model(features, context, h, c)
            first = int(mu.shape[1] * (1.0 - config.tail))
            mu, sigma = mu[:, first:], sigma[:, first:]
            target = score[:, None].expand_as(mu)
            band = torch.tensor([band_of(s) for s in score.tolist()])[:, None].expand_as(mu)
            loss = moe_loss(mu, sigma, target, band, config.focal_gamma, config.focal_weight)
            (loss / config.accumulate).backward()
            losses.append(loss.item())
            if (step + 1) % config.accumulate == 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
                optimiser.step()
                optimiser.zero_grad()
        val = metrics(predict(model, val_set), val_set)
        epoch_loss = float(np.mean(losses))
        history.append({"epoch": epoch, "loss": epoch_loss, "val_mae": val["mae"]})
        log(f"epoch {epoch:3d}  loss {epoch_loss:7.3f}  val MAE {val['mae']:.3f}")
        if val["mae"] < best_mae - 1e-4:
            best_mae, best_state, stale = val["mae"], copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale >= config.patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    return {"history": history, "best_val_mae": best_mae, "epochs_run": len(history),
            "train_config": asdict(config)}
