"""The evaluation report of a trained LSTM-MoE on a held-out split (what `train-moe` writes).

    report = evaluation_report(predicted, test_set, visits={"train": 80, "val": 20, "test": 20})

Figures on the held-out visits (never seen in training or model selection), in PHQ-8 points:
MAE, RMSE, Lin's concordance correlation coefficient (CCC: agreement, not only correlation),
the coverage of the interval the device shows (mu +/- INTERVAL_Z sigma, clipped to the scale:
the share of true scores inside it; 0.95 when calibrated), the confusion of the five bands
(rows: the true band, columns: the predicted one) and the number of visits. A model trained
on fewer than `min_visits` visits keeps the demo-weights note on every output: too few people
to say anything about the next visitor.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

from edge import DEMO_WEIGHTS_NOTICE
from edge.rules.phq8 import BAND_NAMES, PHQ8_MAX, phq8_band_index, phq8_interval
from export.data.sequences import LabelledSequence

DEFAULT_MIN_VISITS = 200


def concordance(predicted: np.ndarray, target: np.ndarray) -> float:
    """Lin's CCC: 2 cov / (var_p + var_t + (mean_p - mean_t)^2); 0 when both are constant."""
    p, t = np.asarray(predicted, np.float64), np.asarray(target, np.float64)
    denominator = p.var() + t.var() + (p.mean() - t.mean()) ** 2
    if denominator <= 0:
        return 0.0
    return float(2.0 * np.mean((p - p.mean()) * (t - t.mean())) / denominator)


def evaluation_report(predicted: np.ndarray, test_set: Sequence[LabelledSequence], visits: Dict[str, int],
                      min_visits: int = DEFAULT_MIN_VISITS, data: str = "sessions",
                      baseline: Optional[Dict[str, float]] = None) -> Dict:
    """The report (a JSON-ready dict); predicted: [N, 2] (mu, sigma) per held-out visit."""
    if len(test_set) == 0:
        raise ValueError("the evaluation needs at least one held-out visit")
    target = np.array([s.score for s in test_set], dtype=np.float64)
    mu = np.clip(np.asarray(predicted[:, 0], np.float64), 0.0, PHQ8_MAX)
    sigma = np.asarray(predicted[:, 1], np.float64)
    intervals = [phq8_interval(m, s) for m, s in zip(mu, sigma)]
    inside = [low <= t <= high for (low, high), t in zip(intervals, target)]
    confusion = np.zeros((len(BAND_NAMES), len(BAND_NAMES)), dtype=int)
    for m, t in zip(mu, target):
        confusion[phq8_band_index(t), phq8_band_index(m)] += 1
    total = int(sum(visits.values()))
    demo = total < int(min_visits)
    report = {
        "data": data,
        "visits": dict(visits, total=total),
        "min_visits": int(min_visits),
        "demo_weights": demo,
        "note": (f"{DEMO_WEIGHTS_NOTICE}: trained on {total} visits, fewer than the minimum of {min_visits}"
                 if demo else None),
        "held_out": {
            "n": int(len(target)),
            "mae": float(np.mean(np.abs(mu - target))),
            "rmse": float(np.sqrt(np.mean((mu - target) ** 2))),
            "ccc": concordance(mu, target),
            "interval_coverage": float(np.mean(inside)),
            "mean_interval_width": float(np.mean([high - low for low, high in intervals])),
            "band_accuracy": float(np.trace(confusion) / len(target)),
            "band_confusion": {"bands": list(BAND_NAMES), "rows_true_columns_predicted": confusion.tolist()},
        },
    }
    if baseline is not None:
        report["predict_the_mean"] = baseline
    return report


def report_text(report: Dict) -> str:
    """A few lines for people; every line carries the demo note when the model has one."""
    held = report["held_out"]
    note = f"  [{report['note']}]" if report["demo_weights"] else ""
    lines = [f"visits: {report['visits']}{note}",
             f"held-out {held['n']}: MAE {held['mae']:.2f}  RMSE {held['rmse']:.2f}  CCC {held['ccc']:.3f}  "
             f"interval coverage {held['interval_coverage']:.2f}  band accuracy {held['band_accuracy']:.2f}{note}"]
    if "predict_the_mean" in report:
        base = report["predict_the_mean"]
        lines.append(f"predict-the-mean: MAE {base['mae']:.2f}  RMSE {base['rmse']:.2f}{note}")
    bands = report["held_out"]["band_confusion"]
    lines.append("band confusion (rows true, columns predicted: " + ", ".join(bands["bands"]) + ")" + note)
    lines.extend("  " + " ".join(f"{n:3d}" for n in row) for row in bands["rows_true_columns_predicted"])
    return "\n".join(lines)
