"""The multimodal LSTM mixture-of-experts that estimates a PHQ-8 score with a sigma.

After Zhang et al. 2025 (papers/README.md, section 1), built to run as a stream:

    x_v, x_a      visual and audio parts of the step's features, z-scored in the graph
    f_v, f_a      tanh(Linear(x_v)), tanh(Linear(x_a))               (fused_size each)
    a_v, a_a      sigmoid(Linear(x_v)), sigmoid(Linear(x_a))          per-modality gates
    f             a_v * f_v + a_a * f_a
    y, (h, c)     LSTM(f, (h0, c0))                                   (layers x hidden)
    expert i      Linear-ReLU-Linear(dropout(y)) -> mu_i, sigma_i     (two experts)
    g             softmax(W_g [y, z] + b_g)                           z: context flag
    mu, sigma     sum_i g_i mu_i, sum_i g_i sigma_i                   (PHQ-8 points)

The state (h, c) is an explicit input and output, so a device can advance the model a
tick (or a chunk of ticks) at a time; mu and sigma come out for every step.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from edge.features import tick

# Experts predict around the middle of the scale; this keeps initial outputs in range.
MU_CENTRE = 12.0
MU_SCALE = 6.0
SIGMA_MIN = 0.05  # PHQ-8 points; keeps the Gaussian NLL finite


@dataclass(frozen=True)
class MoEConfig:
    """Sizes of one LSTM-MoE variant."""

    name: str
    visual_size: int
    audio_size: int
    fused_size: int = 64
    hidden_size: int = 88
    layers: int = 2
    expert_hidden: int = 36
    experts: int = 2
    dropout: float = 0.5

    @property
    def feature_size(self) -> int:
        return self.visual_size + self.audio_size

    def to_dict(self) -> dict:
        return asdict(self)


# `edge`: the device's tick vector (edge.features.tick). `paper`: 17 OpenFace AU
# intensities + the 23 eGeMAPS low-level descriptors of E-DAIC's OpenSMILE file (the
# paper's 4096-wide VGG vector alone would need more weights than its whole model).
CONFIGS: Dict[str, MoEConfig] = {
    "edge": MoEConfig("edge", visual_size=tick.VISUAL_SIZE, audio_size=tick.AUDIO_SIZE),
    "paper": MoEConfig("paper", visual_size=17, audio_size=23),
}


class ModalityGate(nn.Module):
    """tanh features of one modality and their sigmoid gate (both fused_size wide)."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.project = nn.Linear(n_in, n_out)
        self.gate = nn.Linear(n_in, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.gate(x)) * torch.tanh(self.project(x))


class Expert(nn.Module):
    """A small head giving a mean and a sigma (PHQ-8 points) per step."""

    def __init__(self, n_in: int, n_hidden: int):
        super().__init__()
        self.hidden = nn.Linear(n_in, n_hidden)
        self.out = nn.Linear(n_hidden, 2)

    def forward(self, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        raw = self.out(torch.relu(self.hidden(y)))
        mu = MU_CENTRE + MU_SCALE * raw[..., 0]
        sigma = SIGMA_MIN + MU_SCALE * F.softplus(raw[..., 1])
        return mu, sigma


class LstmMoE(nn.Module):
    """forward(features [B,T,D], context [B,1], h0 [L,B,H], c0 [L,B,H])
    -> mu [B,T], sigma [B,T], h [L,B,H], c [L,B,H]."""

    def __init__(self, config: MoEConfig):
        super().__init__()
        self.config = config
        # Normalisation statistics of the training features (buffers, not parameters):
        # the device feeds features in their natural units.
        self.register_buffer("feature_mean", torch.zeros(config.feature_size))
        self.register_buffer("feature_std", torch.ones(config.feature_size))
        self.visual = ModalityGate(config.visual_size, config.fused_size)
        self.audio = ModalityGate(config.audio_size, config.fused_size)
        self.lstm = nn.LSTM(config.fused_size, config.hidden_size, num_layers=config.layers,
                            batch_first=True)
        self.dropout = nn.Dropout(config.dropout)
        self.experts = nn.ModuleList(Expert(config.hidden_size, config.expert_hidden)
                                     for _ in range(config.experts))
        self.gate = nn.Linear(config.hidden_size + 1, config.experts)

    def set_normalisation(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store per-feature mean and std (std floored so constant features stay finite)."""
        self.feature_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.feature_std.copy_(torch.clamp(torch.as_tensor(std, dtype=torch.float32), min=1e-3))

    def initial_state(self, batch: int = 1) -> Tuple[torch.Tensor, torch.Tensor]:
        shape = (self.config.layers, batch, self.config.hidden_size)
        return torch.zeros(shape), torch.zeros(shape)

    def forward(self, features: torch.Tensor, context: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor):
        x = (features - self.feature_mean) / self.feature_std
        v = self.config.visual_size
        fused = self.visual(x[..., :v]) + self.audio(x[..., v:])
        y, (h, c) = self.lstm(fused, (h0, c0))
        y = self.dropout(y)
        z = context.unsqueeze(1).expand(-1, y.shape[1], -1)
        weights = torch.softmax(self.gate(torch.cat([y, z], dim=-1)), dim=-1)
        outputs = [expert(y) for expert in self.experts]
        mus = torch.stack([m for m, _ in outputs], dim=-1)
        sigmas = torch.stack([s for _, s in outputs], dim=-1)
        mu = (weights * mus).sum(-1)
        sigma = (weights * sigmas).sum(-1)
        return mu, sigma, h, c


def build_model(config_name: str = "edge", seed: int = 0) -> LstmMoE:
    """A freshly initialised LSTM-MoE of a named config ('edge' or 'paper')."""
    if config_name not in CONFIGS:
        raise ValueError(f"unknown LSTM-MoE config {config_name!r}; choose one of {sorted(CONFIGS)}")
    torch.manual_seed(seed)
    return LstmMoE(CONFIGS[config_name])


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (the normalisation buffers are not counted)."""
    return sum(p.numel() for p in model.parameters())
