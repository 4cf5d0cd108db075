"""LSTM-MoE: size, streaming equivalence, training learns, loaders, bad input."""
import csv

import numpy as np
import pytest
import torch

from edge.features import tick
from edge.models.severity import SeverityModel
from edge.rules.phq8 import phq8_band
from export.data.edaic import load_edaic
from export.data.sequences import split
from export.data.sessions import load_sessions
from export.data.synthetic import PAPER_AUS, synthetic_sessions
from export.models.lstm_moe import build_model, count_parameters
from export.train.lstm_moe import TrainConfig, mean_baseline, metrics, predict, train


def test_edge_config_size_is_that_of_the_paper():
    n = count_parameters(build_model("edge"))
    print(f"edge LSTM-MoE parameters: {n:,} ({4 * n:,} bytes fp32)")
    assert 127_000 <= n <= 131_000
    assert 127_000 <= count_parameters(build_model("paper")) <= 131_000


@pytest.mark.parametrize("chunk", [1, 3, 7, 50])
def test_pytorch_chunked_equals_one_shot(chunk):
    model = build_model("edge").eval()
    x = torch.from_numpy(synthetic_sessions(1, steps=50, seed=3)[0].features[None])
    z = torch.ones(1, 1)
    with torch.no_grad():
        mu_all, sigma_all, h_all, c_all = model(x, z, *model.initial_state(1))
        h, c = model.initial_state(1)
        mus = []
        for start in range(0, 50, chunk):
            mu, _, h, c = model(x[:, start:start + chunk], z, h, c)
            mus.append(mu)
    assert torch.allclose(torch.cat(mus, 1), mu_all, atol=1e-5)
    assert torch.allclose(h, h_all, atol=1e-6) and torch.allclose(c, c_all, atol=1e-6)


@pytest.mark.slow  # training: `make test` runs it; `pytest -m 'not slow'` skips it
def test_synthetic_training_learns():
    torch.set_num_threads(2)
    data = synthetic_sessions(160, steps=60, seed=11)
    train_set, val_set, test_set = split(data, (0.15, 0.2), seed=0)
    model = build_model("edge", seed=0)
    config = TrainConfig(max_epochs=8, batches_per_epoch=10, batch_size=16, chunk_steps=60, patience=8)
    train(model, train_set, val_set, config, log=lambda _: None)
    got = metrics(predict(model, test_set), test_set)
    baseline = mean_baseline(train_set, test_set)
    assert got["mae"] < 0.75 * baseline["mae"], (got, baseline)
    assert 0.0 <= got["within_1_sigma"] <= 1.0 and np.isfinite(got["rmse"])


def _write_csv(path, header, rows, delimiter=","):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)


def test_edaic_layout_loader(tmp_path):
    rng = np.random.default_rng(0)
    for split_name, ids in (("train", [300, 301]), ("dev", [302]), ("test", [600])):
        _write_csv(tmp_path / f"{split_name}_split.csv",
                   ["Participant_ID", "Gender", "PHQ_Binary", "PHQ_Score", "PCL-C (PTSD)", "PTSD Severity"],
                   [[i, "male", 0, 3 + i % 10, 0, 20] for i in ids])
        for i in ids:
            folder = tmp_path / f"{i}_P" / "features"
            folder.mkdir(parents=True)
            header = ["frame", " timestamp", " confidence", " success"] + [" " + a for a in PAPER_AUS]
            rows = [[f + 1, f / 30.0, 0.98, 1] + list(rng.uniform(0, 5, 17)) for f in range(30)]
            _write_csv(folder / f"{i}_OpenFace2.1.0_Pose_gaze_AUs.csv", header, rows)
            header = ["name", "frameTime"] + [f"lld{k}" for k in range(23)]
            rows = [["'unknown'", k / 100.0] + list(rng.normal(size=23)) for k in range(100)]
            _write_csv(folder / f"{i}_OpenSMILE2.3.0_egemaps.csv", header, rows, delimiter=";")
    loaded = load_edaic(tmp_path)
    assert [len(loaded[s]) for s in ("train", "dev", "test")] == [2, 1, 1]
    first = loaded["train"][0]
    assert first.features.shape == (10, 40) and first.score == 3.0 and first.context == 0.0
    assert loaded["test"][0].context == 1.0
    assert first.features.shape[1] == build_model("paper").config.feature_size


def test_session_feature_loader(tmp_path):
    sessions = synthetic_sessions(3, steps=20, seed=2)
    for s in sessions:
        tick.write_session_features(tmp_path / f"{s.key}.npz", s.features, context=s.context)
    _write_csv(tmp_path / "labels.csv", ["session", "phq8"], [[s.key, s.score] for s in sessions])
    loaded = load_sessions(tmp_path)
    assert [s.key for s in loaded] == [s.key for s in sessions]
    assert np.array_equal(loaded[1].features, sessions[1].features) and loaded[1].score == sessions[1].score


def test_phq8_bands():
    assert [phq8_band(s) for s in (0, 4, 5, 9.4, 10, 14, 15, 19, 20, 24, 30, -3)] == [
        "none", "none", "mild", "mild", "moderate", "moderate", "moderately severe",
        "moderately severe", "severe", "severe", "severe", "none"]


class _Echo:
    """A stand-in backend: returns zeros of the right shapes (for input checks only)."""

    def __init__(self):
        from edge.backends.base import TensorSpec

        self.inputs = [TensorSpec("features", (1, -1, 43), "float32"),
                       TensorSpec("context", (1, 1), "float32"),
                       TensorSpec("h0", (2, 1, 88), "float32"), TensorSpec("c0", (2, 1, 88), "float32")]
        self.outputs = [TensorSpec(n, (), "float32") for n in ("mu", "sigma", "h", "c")]

    def run(self, x, z, h, c):
        return [np.zeros(x.shape[:2], np.float32), np.ones(x.shape[:2], np.float32), h, c]


@pytest.mark.parametrize("features, state_shape, message", [
    (np.zeros((5, 40)), (2, 1, 88), r"features must have shape \[T, 43\]"),
    (np.zeros((0, 43)), (2, 1, 88), "empty sequence"),
    (np.full((3, 43), np.nan), (2, 1, 88), "NaN or inf"),
    (np.array([[np.inf] * 43]), (2, 1, 88), "NaN or inf"),
    (np.zeros((3, 43)), (1, 1, 88), r"state h must have shape \[2, 1, 88\]"),
])
def test_bad_input_is_named(features, state_shape, message):
    runner = SeverityModel(_Echo(), 43, (2, 1, 88))
    with pytest.raises(ValueError, match=message):
        runner.run(features, np.zeros(state_shape, np.float32), np.zeros((2, 1, 88), np.float32))
