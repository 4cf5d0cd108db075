"""From consented kiosk visits to a trained severity model: labelled pairs stored the way
the kiosk stores them (edge.store: the session row, the questionnaire with the research
opt-in, the tick features), written by `edge sessions export --labels`, trained by
`python -m export train-moe --data sessions`, with the evaluation report on the held-out
split. The synthetic visitors' features carry a known relation to their answers
(export.data.synthetic): the trainer must recover it."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from kiosk_support import ROOT

from edge.features.tick import write_session_features
from edge.store import ResultStore
from export.data.synthetic import synthetic_sessions
from export.train.evaluation import concordance, evaluation_report

VISITS = 120


def _answers(score: int):
    out = [0] * 8
    for i in range(score):
        out[i % 8] += 1
    return out


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """A database of VISITS consented, complete visits, plus visits that must not become labels."""
    tmp = tmp_path_factory.mktemp("visits")
    db = tmp / "out" / "sessions.sqlite"
    store = ResultStore(str(db))
    features_dir = tmp / "out" / "labelled"
    features_dir.mkdir()
    visitors = synthetic_sessions(VISITS + 3, steps=60, seed=5)
    for i, visitor in enumerate(visitors):
        session_id = f"20261201T1000{i:02d}Z-{i:06x}"
        store.save_session({"session_id": session_id, "started_utc": f"2026-12-01T10:{i // 60:02d}:{i % 60:02d}Z",
                            "duration_s": 6.0, "complete": True, "screening": {}})
        score = int(round(visitor.score))
        answers = _answers(score)
        consent, features = True, features_dir / f"{session_id}.npz"
        if i == VISITS:  # no research opt-in: never a label
            consent, features = False, None
        if i == VISITS + 1:  # opted in but stopped half way: no score, no label
            answers = answers[:4] + [None] * 4
        if features is not None:
            write_session_features(features, visitor.features, visitor.context)
        complete = all(a is not None for a in answers)
        store.save_questionnaire({"session_id": session_id, "source": "kiosk", "instrument": "phq8",
                                  "given_utc": "2026-12-01T10:00:00Z", "answers": answers,
                                  "items_answered": sum(a is not None for a in answers),
                                  "score": score if complete else None, "band": None, "research_consent": consent,
                                  "features_file": str(features) if features is not None and complete else None,
                                  "shown": {"result": complete}})
    store.close()
    out = tmp / "labels"
    proc = subprocess.run([sys.executable, "-m", "edge.apps.sessions", "export", "--db", str(db), "--labels",
                           str(out)], cwd=str(ROOT), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"{VISITS + 1} labelled visit(s) written" in proc.stdout  # the last synthetic visitor too
    return tmp, out, visitors


def test_only_consented_complete_visits_become_labelled_pairs(labelled):
    tmp, out, visitors = labelled
    with open(out / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == VISITS + 1
    ids = {r["session"] for r in rows}
    assert not any(f"-{i:06x}" in "".join(ids) for i in (VISITS, VISITS + 1))
    first = rows[0]
    assert int(first["phq8"]) == int(round(visitors[0].score))
    with np.load(out / f"{first['session']}.npz") as data:
        assert np.array_equal(data["features"], visitors[0].features)


@pytest.mark.slow  # training: `make test` runs it
def test_train_moe_recovers_the_relation_and_reports_it(labelled, capsys):
    import torch

    from export.__main__ import main

    torch.set_num_threads(2)
    tmp, out, _ = labelled
    weights = tmp / "w.npz"
    code = main(["train-moe", "--data", "sessions", "--dir", str(out), "--out", str(weights), "--epochs", "8",
                 "--batches", "10", "--min-visits", "100"])
    assert code == 0
    report = json.loads((tmp / "w.report.json").read_text())
    held = report["held_out"]
    total = VISITS + 1
    assert report["visits"]["total"] == total and held["n"] == report["visits"]["test"] == round(0.15 * total)
    # The relation is recovered: clearly better than predicting the mean, and concordant.
    assert held["mae"] < 0.8 * report["predict_the_mean"]["mae"], report
    assert held["ccc"] > 0.3, report
    assert 0.0 <= held["interval_coverage"] <= 1.0
    confusion = np.array(held["band_confusion"]["rows_true_columns_predicted"])
    assert confusion.shape == (5, 5) and confusion.sum() == held["n"]
    assert report["demo_weights"] is False and report["note"] is None
    printed = capsys.readouterr().out
    assert "CCC" in printed and "demo weights" not in printed
    # Under the minimum of visits, every output line keeps the demo-weights note.
    code = main(["train-moe", "--data", "sessions", "--dir", str(out), "--out", str(tmp / "w2.npz"), "--epochs",
                 "1", "--batches", "2"])
    assert code == 0
    report = json.loads((tmp / "w2.report.json").read_text())
    assert report["demo_weights"] is True and "fewer than the minimum of 200" in report["note"]
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith(("epoch", "edge config"))]
    report_lines = lines[lines.index(next(x for x in lines if x.startswith("visits:"))):]
    assert all("demo weights" in line for line in report_lines if not line.startswith("  ")), report_lines


def test_the_report_figures_by_hand():
    from export.data.sequences import LabelledSequence

    test = [LabelledSequence(str(i), np.zeros((1, 1), np.float32), 0.0, s) for i, s in enumerate([0, 6, 12, 22])]
    predicted = np.array([[1.0, 1.0], [6.0, 0.1], [20.0, 1.0], [22.0, 2.0]])
    report = evaluation_report(predicted, test, {"train": 1, "val": 1, "test": 4}, min_visits=5)
    held = report["held_out"]
    assert held["mae"] == pytest.approx((1 + 0 + 8 + 0) / 4)
    assert held["interval_coverage"] == pytest.approx(3 / 4)  # 12 is outside 20 +/- 1.96
    assert held["band_confusion"]["rows_true_columns_predicted"][2] == [0, 0, 0, 0, 1]  # moderate read as severe
    assert report["demo_weights"] is False and report["visits"]["total"] == 6
    assert concordance(np.array([1.0, 2, 3]), np.array([1.0, 2, 3])) == pytest.approx(1.0)
    assert concordance(np.array([2.0, 2, 2]), np.array([1.0, 2, 3])) == pytest.approx(0.0)
