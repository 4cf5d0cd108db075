import torch

from export.convert.lstm_build import count_flops
from export.flops import LSTM_HANDLES, fvcore_macs


def test_lstm_handle_counts_the_expected_macs():
    lstm = torch.nn.LSTM(8, 16, num_layers=2, batch_first=True)
    x = torch.zeros(1, 5, 8)
    macs = fvcore_macs(lstm, (x,), LSTM_HANDLES)["macs"]
    per_step = 4 * 16 * (8 + 16) + 3 * 16 + 4 * 16 * (16 + 16) + 3 * 16
    assert macs == 5 * per_step


def test_fvcore_and_onnx_agree_for_both_configs():
    for config in ("edge", "paper"):
        counts = count_flops(config, 10)
        assert counts["fvcore_vs_onnx_rel_diff"] < 0.05
        assert counts["flops_fvcore"] == 2 * counts["macs_fvcore"]
        assert 100_000 < counts["macs_fvcore"] / 10 < 140_000
