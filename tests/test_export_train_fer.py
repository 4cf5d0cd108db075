"""The FER2013-layout trainer, end to end on a small generated CSV."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from edge.errors import EdgeError
from export.data.fer2013 import load_fer2013_csv
from export.train.fer import TrainConfig, train_fer


def _write_csv(path, per_class_train=24, per_class_other=6, seed=0):
    """Face stand-ins whose class is learnable and survives the augmentation (flips,
    small shifts): class k = a bright horizontal band at height k of 7."""
    rng = np.random.default_rng(seed)
    rows = []
    for usage, n in (("Training", per_class_train), ("PublicTest", per_class_other), ("PrivateTest", per_class_other)):
        for label in range(7):
            for _ in range(n):
                img = rng.normal(90, 20, (48, 48))
                img[label * 7:label * 7 + 6, 4:44] += 120
                pixels = " ".join(str(int(v)) for v in np.clip(img, 0, 255).ravel())
                rows.append({"emotion": label, "pixels": pixels, "Usage": usage})
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["emotion", "pixels", "Usage"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_loader_splits_by_usage(tmp_path):
    data = load_fer2013_csv(_write_csv(tmp_path / "fer.csv", 2, 1))
    assert data["train"][0].shape == (14, 48, 48) and data["validation"][0].shape == (7, 48, 48)
    assert data["test"][1].tolist() == list(range(7))


@pytest.mark.parametrize("content,message", [
    ("emotion,pixels\n0,1 2 3\n", "missing column"),
    ("emotion,pixels,Usage\n9," + " ".join(["0"] * 2304) + ",Training\n", "emotion 0-6"),
    ("emotion,pixels,Usage\n0,1 2 3,Training\n", "2304 pixels"),
    ("emotion,pixels,Usage\n0," + " ".join(["0"] * 2304) + ",Holdout\n", "Usage"),
    ("emotion,pixels,Usage\nx,1,Training\n", "not numeric"),
])
def test_broken_csv_gives_one_line_error(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(EdgeError, match=message):
        load_fer2013_csv(path)


@pytest.mark.slow  # training: `make test` runs it; `pytest -m 'not slow'` skips it
def test_training_learns_and_writes_a_checkpoint(tmp_path):
    csv_path = _write_csv(tmp_path / "fer.csv")
    out = tmp_path / "ckpt.pt"
    result = train_fer(csv_path, TrainConfig(epochs=10, batch_size=32, lr=3e-3, input_size=48, patience=10), out=out)
    assert result["best_validation"]["accuracy"] > 0.5  # chance is 1/7
    assert "test" in result and len(result["history"]) >= 1
    ckpt = torch.load(out)
    assert ckpt["input_size"] == 48 and "from scratch" in ckpt["trained_on"]


@pytest.mark.slow  # training: `make test` runs it; `pytest -m 'not slow'` skips it
def test_fine_tune_starts_from_the_pretrained_weights(tmp_path, pretrained):
    csv_path = _write_csv(tmp_path / "fer.csv", 3, 2)
    result = train_fer(csv_path, TrainConfig(epochs=1, batch_size=16), init=pretrained, out=tmp_path / "ft.pt")
    ckpt = torch.load(tmp_path / "ft.pt")
    assert "fine-tuned" in ckpt["trained_on"]
    assert json.dumps(result)  # the report is plain JSON


@pytest.mark.slow  # training: `make test` runs it; `pytest -m 'not slow'` skips it
def test_private_test_split_never_steers_training(tmp_path):
    """Model selection reads PublicTest only: scrambling the PrivateTest labels changes the
    final test figure and nothing else."""
    clean = _write_csv(tmp_path / "clean.csv", 6, 3)
    rows = clean.read_text().splitlines()
    scrambled_rows = [rows[0]]
    for row in rows[1:]:
        label, rest = row.split(",", 1)
        if row.endswith(",PrivateTest"):
            label = str((int(label) + 3) % 7)
        scrambled_rows.append(f"{label},{rest}")
    scrambled = tmp_path / "scrambled.csv"
    scrambled.write_text("\n".join(scrambled_rows) + "\n")
    config = TrainConfig(epochs=2, batch_size=16, input_size=48)
    a = train_fer(clean, config, out=tmp_path / "a.pt")
    b = train_fer(scrambled, config, out=tmp_path / "b.pt")
    assert a["history"] == b["history"] and a["best_validation"] == b["best_validation"]
    assert a["test"]["loss"] != b["test"]["loss"]  # the test split was read, once, at the end
    for key, value in torch.load(tmp_path / "a.pt")["state_dict"].items():
        assert torch.equal(value, torch.load(tmp_path / "b.pt")["state_dict"][key])
