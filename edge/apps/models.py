"""`edge models`: the shipped models and their manifest figures."""
from __future__ import annotations

import json

from edge import DEMO_WEIGHTS_NOTICE
from edge.errors import shown
from edge.manifest import list_manifests, models_dir

_PARITY_KEYS = {"top1_agreement": "top-1", "max_abs_prob_diff": "max|dp|"}


def _parity_summary(entry: dict) -> str:
    """The headline parity figures of a file entry, whatever the nesting of its sets."""
    parts = []

    def walk(prefix: str, node) -> None:
        if not isinstance(node, dict):
            return
        shown = [f"{label} {node[key]:.4g}" for key, label in _PARITY_KEYS.items()
                 if isinstance(node.get(key), (int, float))]
        shown += [f"{key} {value:.3g}" for key, value in sorted(node.items())
                  if key.startswith("max_abs") and key not in _PARITY_KEYS and isinstance(value, (int, float))]
        if shown:
            parts.append(f"{prefix}: " + ", ".join(shown) if prefix else ", ".join(shown))
        for key, value in sorted(node.items()):
            walk(f"{prefix}.{key}" if prefix else key, value)

    walk("", entry.get("parity_vs_pytorch", entry.get("parity")))
    return "; ".join(parts)


def _count(value) -> str:
    """A manifest figure as `1,234`; anything that is not a number as it is (shortened): a
    hand-edited manifest is listed, never a traceback."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:,}"
    return shown(value, 40)


def run(args) -> int:
    manifests = list_manifests(args.models_dir)
    if args.json:
        print(json.dumps({name: m.data for name, m in manifests.items()}, indent=2))
        return 0
    print(f"models in {models_dir(args.models_dir)}")
    for name, manifest in manifests.items():
        data = manifest.data
        params = data.get("parameters", {})
        flops = data.get("flops") if isinstance(data.get("flops"), dict) else {}
        print(f"\n{name}: {data.get('task', '?')}, trained on {data.get('trained_on', '?')}")
        if manifest.demo_weights:
            print(f"  {DEMO_WEIGHTS_NOTICE}")
        if data.get("labels"):
            print(f"  labels: {', '.join(data['labels'])}")
        if isinstance(params, dict) and params:
            print("  parameters: " + ", ".join(f"{k} {_count(v)}" for k, v in params.items()))
        elif params:
            print(f"  parameters: {_count(params)}")
        if flops.get("flops"):
            print(f"  FLOPs: {_count(flops['flops'])} per {flops.get('input', 'input')} "
                  f"({flops.get('convention', '')})")
        for entry in manifest.files:
            print(f"  {entry['file']:<28} {entry['format']:<6} {entry['precision']:<5} "
                  f"{_count(entry.get('bytes', '?')):>9} B  {_parity_summary(entry)}")
    return 0
