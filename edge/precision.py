"""Which model file to load: `precision: fp32 | int8 | auto` for one backend.

`auto` picks the fastest shipped file of the backend whose answers on this CPU agree with
the fp32 file of the same backend on the bundled check inputs (edge/models/<name>/check_*.npy):
top-1 for at least 99 % of the faces with every probability within 0.15, or PHQ-8
estimates within 0.25 points over two streamed sessions. It is measured once (about a
second) at first start and cached, keyed by the CPU fingerprint (edge.cpu), the runtime
package and version, the file's sha256 and the thread count, in
$XDG_CACHE_HOME/edge/precision.json (default ~/.cache/edge). Another CPU, runtime or file
measures again.

Guard (issue 11): a file whose arithmetic is int8 (int8 activations, as static
quantization makes them) is never chosen on a CPU with SME, and `precision: int8` refuses
one there: LiteRT/XNNPACK's SME int8 kernels gave garbage (7.6 % top-1) on an emulated
SME CPU, and SME2 int8 convolution faults are reported on real Apple M4 hardware. The
shipped int8 files are weight-only (float arithmetic), so the guard does not touch them.

    entry = resolve_file(manifest, "tflite", "auto", threads=1)
    choice = resolve(manifest, "tflite", "auto")   # .entry, .reason, .measured
    classifier = load_emotion("tflite", "auto")     # the wrapper (edge.models) of the chosen file

The wrappers in edge.models open the file they are given; `load_emotion` and
`load_severity` are the loaders that choose it: everything that builds a model from a
precision name goes through them.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence

import numpy as np

from edge import cpu
from edge.backends import BACKENDS
from edge.errors import EdgeError
from edge.manifest import ModelManifest, load_manifest
from edge.models.emotion import MODEL_NAME as EMOTION_MODEL
from edge.models.emotion import EmotionClassifier
from edge.models.severity import SeverityModel, SeverityStream
from edge.safe_load import load_json_file

TOP1_FLOOR = 0.99
MAX_PROB_DIFF = 0.15
MAX_MU_DIFF = 0.25  # PHQ-8 points
CACHE_NAME = "precision.json"
CACHE_VERSION = 1
TIMED_CALLS = 40
FACES_FILE = "check_faces.npy"  # uint8 [N, S, S] grey faces (preprocessed like camera crops)
TICKS_FILE = "check_ticks.npy"  # float32 [sessions, T, features] tick vectors


class Choice(NamedTuple):
    entry: dict
    reason: str
    measured: Optional[Dict[str, dict]]  # per file name, for `auto`; None otherwise


def arithmetic(entry: dict) -> str:
    """'float32' when the file computes in float (fp32, weight-only int8), else 'int8'."""
    declared = entry.get("arithmetic")
    if declared:
        return str(declared)
    return "float32" if entry.get("precision") == "fp32" else "int8"


def int8_arithmetic_refused(features: Optional[Dict[str, bool]] = None) -> Optional[str]:
    """Why files with int8 arithmetic are not used on this CPU (None when they may be)."""
    features = cpu.int8_features() if features is None else features
    if features.get("sme") or features.get("sme2"):
        return "this CPU has SME, whose int8 kernels gave wrong answers (issue 11)"
    return None


def cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "edge" / CACHE_NAME


def _runtime(backend_kind: str) -> str:
    versions = cpu.package_versions()
    if backend_kind == "onnx":
        return "onnxruntime " + versions.get("onnxruntime", versions.get("onnxruntime-gpu", "?"))
    for name in ("ai-edge-litert", "tflite-runtime"):
        if name in versions:
            return f"{name} {versions[name]}"
    return "tflite ?"


def _cache_key(entry: dict, backend_kind: str, threads: int, fingerprint: str) -> str:
    return f"{fingerprint}|{_runtime(backend_kind)}|{entry['sha256']}|t{threads}"


def _trusted(path: Path) -> bool:
    """A cache another local user could have written is not trusted (it decides which file
    `auto` loads): it must be ours and writable by us alone, and so must its folder."""
    try:
        for item in (path.parent, path):
            st = os.stat(str(item))
            if st.st_uid != os.getuid() or st.st_mode & 0o022:
                return False
    except OSError:
        return False
    return True


def _load_cache(path: Path) -> Dict[str, dict]:
    if not _trusted(path):
        return {}
    try:
        doc = load_json_file(str(path), "precision cache", 1 << 20)
    except EdgeError:
        return {}
    if not isinstance(doc, dict) or doc.get("version") != CACHE_VERSION:
        return {}
    return dict(doc.get("results", {}))


def _save_cache(path: Path, results: Dict[str, dict]) -> None:
    # Owner-only (0700 folder, 0600 file) whatever the umask: under umask 000 they were 0777
    # and 0666, and another local user could change which file `precision: auto` picks.
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if os.stat(str(path.parent)).st_uid == os.getuid():
            os.chmod(str(path.parent), 0o700)  # mkdir's mode passes through the umask
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as f:
                fd = -1
                f.write(json.dumps({"version": CACHE_VERSION, "results": results}, indent=1, sort_keys=True))
        finally:
            if fd >= 0:
                os.close(fd)
        os.replace(str(tmp), str(path))
    except OSError:
        pass  # a read-only home: measure again next time, never fail the start


# ---------------------------------------------------------------- measuring
def check_faces(manifest) -> np.ndarray:
    """The bundled check faces as model inputs, float32 [N, 1, S, S], scaled exactly as
    edge.features.face.preprocess_faces scales a crop."""
    from edge.features.face import PIXEL_OFFSET, PIXEL_SCALE

    out = np.load(str(manifest.folder / FACES_FILE)).astype(np.float32)[:, None]
    out *= PIXEL_SCALE
    out += PIXEL_OFFSET
    return out


def _face_outputs(backend, faces: np.ndarray) -> np.ndarray:
    shape = backend.inputs[0].shape
    return np.concatenate([backend.run(face.reshape(shape))[0].reshape(1, -1) for face in faces])


def _tick_outputs(manifest, backend, sessions: np.ndarray) -> np.ndarray:
    state = manifest.data["state"]["shape"]
    model = SeverityModel(backend, sessions.shape[2], tuple(state))
    out = []
    for features in sessions:
        h, c = model.initial_state()
        for row in features:
            mu, _, h, c = model.run(row[None], h, c)
            out.append(float(np.asarray(mu).reshape(-1)[-1]))
    return np.asarray(out)


def _timed(fn) -> float:
    fn()
    times = []
    for _ in range(TIMED_CALLS):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000.0)


def _face_call_ms(backend, face: np.ndarray) -> float:
    x = face.reshape(backend.inputs[0].shape)
    return _timed(lambda: backend.run(x))


def _tick_call_ms(manifest, backend, sessions: np.ndarray) -> float:
    model = SeverityModel(backend, sessions.shape[2], tuple(manifest.data["state"]["shape"]))
    h, c = model.initial_state()
    return _timed(lambda: model.run(sessions[0][:1], h, c))


def measure(manifest, backend_kind: str, threads: int = 1) -> Dict[str, dict]:
    """Agreement with the backend's fp32 file and median latency (ms per call) of every
    file of `backend_kind`, on the bundled check inputs, on this CPU."""
    entries = [e for e in manifest.files if e["format"] == backend_kind]
    reference = next((e for e in entries if e["precision"] == "fp32"), None)
    if reference is None:
        raise EdgeError(f"model {manifest.name} has no {backend_kind}/fp32 file to check the others against")
    faces_path = manifest.folder / FACES_FILE
    ticks_path = manifest.folder / TICKS_FILE
    if faces_path.is_file():
        inputs = check_faces(manifest)
        run_all = _face_outputs
        one_call = inputs[:1]
    elif ticks_path.is_file():
        inputs = np.load(str(ticks_path)).astype(np.float32)
        run_all = lambda backend, x: _tick_outputs(manifest, backend, x)  # noqa: E731
        one_call = None
    else:
        raise EdgeError(f"model {manifest.name} ships no check inputs ({FACES_FILE} or {TICKS_FILE}) "
                        "for precision: auto; choose fp32 or int8 in the profile")
    outputs, results = {}, {}
    for entry in [reference] + [e for e in entries if e is not reference]:
        try:
            backend = manifest.open(entry, threads=threads)
        except EdgeError as exc:
            if entry is reference:
                raise
            # A damaged or unreadable candidate is left out, and the reason says so.
            results[entry["file"]] = {"meets_floor": False, "skipped": str(exc)[:200], "ms": None,
                                      "precision": entry["precision"], "arithmetic": arithmetic(entry)}
            continue
        outputs[entry["file"]] = run_all(backend, inputs)
        ms = _face_call_ms(backend, one_call[0]) if one_call is not None else _tick_call_ms(manifest, backend, inputs)
        got, want = outputs[entry["file"]], outputs[reference["file"]]
        if one_call is not None:
            quality = {"top1_agreement": float(np.mean(got.argmax(1) == want.argmax(1))),
                       "max_abs_prob_diff": float(np.max(np.abs(got - want)))}
            ok = quality["top1_agreement"] >= TOP1_FLOOR and quality["max_abs_prob_diff"] < MAX_PROB_DIFF
        else:
            quality = {"max_abs_mu_diff": float(np.max(np.abs(got - want)))}
            ok = quality["max_abs_mu_diff"] <= MAX_MU_DIFF
        results[entry["file"]] = dict(quality, ms=round(ms, 4), meets_floor=bool(ok), n_inputs=int(len(inputs)),
                                      precision=entry["precision"], arithmetic=arithmetic(entry))
    return results


# ---------------------------------------------------------------- choosing
def resolve(manifest, backend: str, precision: str, threads: int = 1,
            features: Optional[Dict[str, bool]] = None, use_cache: bool = True) -> Choice:
    """The file entry to load for (backend, precision), with a short reason.

    precision 'fp32' / 'int8': that file (an int8-arithmetic file is refused with one line on
    an SME CPU). 'auto': the fastest file of `backend` meeting the floor on this CPU
    (measured once, cached). EdgeError (one line) when nothing fits.
    """
    features = cpu.int8_features() if features is None else features
    refused = int8_arithmetic_refused(features)
    if precision != "auto":
        entry = manifest.find_file(backend, precision)
        if refused and arithmetic(entry) == "int8":
            raise EdgeError(f"{entry['file']} computes in int8 and {refused}: use precision fp32 or auto")
        return Choice(entry, f"{precision} as configured", None)
    fingerprint = cpu.fingerprint(features)
    entries = [e for e in manifest.files if e["format"] == backend]
    if not entries:
        raise EdgeError(f"model {manifest.name} has no {backend} file")
    path = cache_path()
    cache = _load_cache(path) if use_cache else {}
    keys = {e["file"]: _cache_key(e, backend, threads, fingerprint) for e in entries}
    if all(k in cache for k in keys.values()):
        measured = {name: cache[key] for name, key in keys.items()}
        source = "cached"
    else:
        measured = measure(manifest, backend, threads)
        source = "measured"
        if use_cache:
            cache = _load_cache(path)
            cache.update({keys[name]: result for name, result in measured.items()
                          if name in keys and "skipped" not in result})  # a repaired file is measured again
            _save_cache(path, cache)
    usable: List[dict] = []
    for entry in entries:
        result = measured.get(entry["file"])
        if result is None or not result["meets_floor"]:
            continue
        if refused and arithmetic(entry) == "int8":
            continue
        usable.append(entry)
    skipped = {name: r["skipped"] for name, r in measured.items() if r.get("skipped")}
    best = None
    for entry in sorted(usable, key=lambda e: measured[e["file"]]["ms"]):
        try:
            if source == "cached":  # measured on an earlier start: the file may have changed since
                manifest.verified_path(entry)
        except EdgeError as exc:
            skipped[entry["file"]] = str(exc)[:200]
            continue
        best = entry
        break
    if best is None:
        why = "; ".join(f"skipped {name}: {reason}" for name, reason in sorted(skipped.items()))
        raise EdgeError(f"no {backend} file of {manifest.name} agrees with its fp32 file on this CPU"
                        + (f" ({why})" if why else "; this should not happen: report it with `edge doctor --json`"))
    result = measured[best["file"]]
    quality = (f"top-1 {result['top1_agreement']:.1%}" if "top1_agreement" in result
               else f"max PHQ-8 diff {result['max_abs_mu_diff']:.3f}")
    others = ", ".join(f"{name} {r['ms']:.3f} ms" for name, r in sorted(measured.items())
                       if name != best["file"] and name not in skipped and r.get("ms") is not None)
    reason = (f"auto: {best['precision']} {result['ms']:.3f} ms, {quality} vs fp32 on this CPU "
              f"({source}, cpu {fingerprint}{'; ' + others if others else ''})"
              + "".join(f"; skipped {name}: {why}" for name, why in sorted(skipped.items())))
    return Choice(best, reason, measured)


def resolve_file(manifest, backend: str, precision: str, threads: int = 1) -> dict:
    """The manifest file entry to load (see `resolve`, which also gives the reason)."""
    return resolve(manifest, backend, precision, threads).entry


# ---------------------------------------------------------------- loading
def load_emotion(backend: str = "tflite", precision: str = "int8", models_dir: Optional[str] = None,
                 threads: int = 1, name: str = EMOTION_MODEL,
                 providers: Optional[Sequence[str]] = None) -> EmotionClassifier:
    """The emotion classifier of model folder `name` for a backend and precision (fp32, int8 or
    auto, see `resolve`); `providers`: onnxruntime execution providers in order of preference."""
    if backend not in BACKENDS:
        raise EdgeError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    manifest = load_manifest(name, models_dir)
    choice = resolve(manifest, backend, precision, threads)
    classifier = EmotionClassifier(manifest, choice.entry, threads, providers=providers)
    classifier.precision_reason = choice.reason
    return classifier


def load_severity(manifest: ModelManifest, backend: str = "onnx", precision: str = "fp32", threads: int = 1,
                  context: Optional[float] = None, providers: Optional[Sequence[str]] = None) -> SeverityStream:
    """The severity stream of `manifest` (load_manifest(edge.models.severity.MODEL_NAME) for the
    shipped LSTM-MoE) for a backend and precision (fp32, int8 or auto, see `resolve`)."""
    choice = resolve(manifest, backend, precision, threads)
    stream = SeverityStream.from_file(manifest, choice.entry, threads, context, providers=providers)
    stream.precision_reason = choice.reason
    return stream
