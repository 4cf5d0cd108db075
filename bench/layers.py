"""Where a TFLite model's time goes: per-operator time and achieved GMAC/s (issue 23).

    python bench/latency.py --model mini_xception --layers
    python bench/latency.py --layers-file /tmp/candidate.tflite [--layers-file B.tflite]

The TFLite Python interpreter has no per-operator profiler, so every operator of the file
is cut out into a model of its own: the same tensors, buffers and operator tables, with a
new subgraph whose only operators are this one (and the constant-only operators that make
its weights, e.g. the DEQUANTIZE of a weight-only int8 file), whose inputs are the
operator's non-constant inputs and whose outputs are its outputs. Each such model is
timed with the same interpreter at the same thread count (`invoke()` only, inputs set
once), interleaved over rounds; the fixed cost of one call (an interpreter with one
8-float ADD, the same delegate) is subtracted. The sum of the operators' times is printed
beside the whole file's time measured the same way: where they differ, it is the cost of
running operators separately (caches, one delegate call per operator) or fusion.
Each single-operator model is fed the whole model's intermediate tensors
(experimental_preserve_all_tensors) and its output is compared with the whole model's
(`max_abs_diff`); and the single-operator models chained from the model's input must give
the whole model's outputs (`replay_max_abs_diff`).

"Peak" is measured, not looked up: the best GMAC/s this runtime reaches on this CPU, at
the same thread count, on large well-shaped convolutions (3x3, 128 channels and 1x1,
256 channels, 32x32 input) built and timed the same way, in fp32 and in int8 (per-channel
weights). The CPU's SIMD/int8 features (edge.cpu) are printed beside it so readers can
set it against the datasheet figure.

The model files are rewritten with a small flatbuffer reader and writer of our own: only
the tables the rewrite touches are read, the rest of the file is carried over unchanged
(appended after the new root, every old object is still reached through forward offsets).
So no schema package is needed, and ai-edge-litert and tflite-runtime both work.
"""
from __future__ import annotations

import hashlib
import struct
import time
import warnings
from collections import deque
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from bench import stats

IDENTIFIER = b"TFL3"
SCHEMA_VERSION = 3
TAIL_ALIGN = 64  # the old bytes keep their alignment modulo this (buffers want 16)

# BuiltinOperator codes used here or named without an interpreter; others are named by it.
ADD, CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED = 0, 3, 4, 9
TRANSPOSE_CONV, BATCH_MATMUL = 67, 126
CONV_2D_OPTIONS = 1  # BuiltinOptions union index of Conv2DOptions
FLOAT32, INT32, INT8 = 0, 2, 9  # TensorType


# ---- reading: just the tables the rewrite needs ---------------------------------------

class _Table:
    """A flatbuffer table at `pos` of `buf`: fields by slot number (the schema's order)."""

    def __init__(self, buf: bytes, pos: int):
        self.buf, self.pos = buf, pos
        self.vtable = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vtable_bytes = struct.unpack_from("<H", buf, self.vtable)[0]

    def _offset(self, slot: int) -> int:
        at = 4 + 2 * slot
        return struct.unpack_from("<H", self.buf, self.vtable + at)[0] if at < self.vtable_bytes else 0

    def scalar(self, slot: int, fmt: str, default=0):
        off = self._offset(slot)
        return struct.unpack_from("<" + fmt, self.buf, self.pos + off)[0] if off else default

    def ref(self, slot: int) -> Optional[int]:
        """Absolute position of the object a table/vector/string field points to."""
        off = self._offset(slot)
        if not off:
            return None
        at = self.pos + off
        return at + struct.unpack_from("<I", self.buf, at)[0]

    def vector(self, slot: int) -> Tuple[int, int]:
        """(position of the first element, length); (0, 0) when absent."""
        at = self.ref(slot)
        return (0, 0) if at is None else (at + 4, struct.unpack_from("<I", self.buf, at)[0])

    def ints(self, slot: int, fmt: str = "i") -> List[int]:
        start, length = self.vector(slot)
        return list(struct.unpack_from(f"<{length}{fmt}", self.buf, start)) if length else []

    def table_positions(self, slot: int) -> List[int]:
        start, length = self.vector(slot)
        return [start + 4 * i + struct.unpack_from("<I", self.buf, start + 4 * i)[0] for i in range(length)]

    def tables(self, slot: int) -> List[_Table]:
        return [_Table(self.buf, p) for p in self.table_positions(slot)]


class Graph:
    """The parts of a .tflite file the per-operator models are made from (subgraph 0)."""

    def __init__(self, data: bytes):
        if len(data) < 8 or data[4:8] != IDENTIFIER:
            raise ValueError("not a TFLite flatbuffer (no TFL3 identifier)")
        self.data = data
        model = _Table(data, struct.unpack_from("<I", data, 0)[0])
        self.model = model
        buffers = model.tables(4)
        if any(b.scalar(1, "Q") > 1 for b in buffers):
            raise ValueError("buffers stored outside the flatbuffer (files over 2 GB) are not supported")
        self.buffer_bytes = [b.vector(0)[1] for b in buffers]
        codes = model.tables(1)
        self.op_codes = [max(c.scalar(0, "b"), c.scalar(3, "i")) for c in codes]
        self.subgraph_positions = model.table_positions(2)
        sub = _Table(data, self.subgraph_positions[0])
        self.subgraph = sub
        self.tensor_buffer = [t.scalar(2, "I") for t in sub.tables(0)]
        self.inputs, self.outputs = sub.ints(1), sub.ints(2)
        self.op_positions = sub.table_positions(3)
        ops = sub.tables(3)
        self.op_code = [self.op_codes[op.scalar(0, "I")] for op in ops]
        self.op_inputs = [op.ints(1) for op in ops]
        self.op_outputs = [op.ints(2) for op in ops]
        self.constant = {t for t, b in enumerate(self.tensor_buffer) if 0 < b < len(self.buffer_bytes)
                         and self.buffer_bytes[b] > 0}
        # Operators whose inputs are all constant (a weight's DEQUANTIZE): their outputs too.
        self.constant_ops = set()
        for i, (ins, outs) in enumerate(zip(self.op_inputs, self.op_outputs)):
            if all(t < 0 or t in self.constant for t in ins):
                self.constant_ops.add(i)
                self.constant.update(outs)
        self.producer = {t: i for i, outs in enumerate(self.op_outputs) for t in outs}

    def activations(self, index: int) -> List[int]:
        return [t for t in self.op_inputs[index] if t >= 0 and t not in self.constant]

    def weight_chain(self, index: int) -> List[int]:
        """The constant-only operators that make operator `index`'s constant inputs."""
        needed, todo = set(), [t for t in self.op_inputs[index] if t >= 0]
        while todo:
            op = self.producer.get(todo.pop())
            if op is not None and op in self.constant_ops and op not in needed:
                needed.add(op)
                todo.extend(t for t in self.op_inputs[op] if t >= 0)
        return sorted(needed)


# ---- writing: a new root in front of the old bytes ------------------------------------

class _Old:
    """An object of the old file, at `pos` of the old bytes (they follow the new part)."""

    def __init__(self, pos: int):
        self.pos = pos


class _Vec:
    """A vector of scalars (`fmt`, values) or of objects (fmt None)."""

    def __init__(self, values: Sequence, fmt: Optional[str] = None, align: int = 4):
        self.values, self.fmt, self.align = list(values), fmt, align


class _Tab:
    """A table: {slot: (struct format, value)} or {slot: (None, object)} for references."""

    def __init__(self, fields: Dict[int, tuple]):
        self.fields = fields


def _pad(out: bytearray, align: int, ahead: int = 0) -> None:
    while (len(out) + ahead) % align:
        out.append(0)


def serialize(root: _Tab, tail: bytes = b"") -> bytes:
    """A TFLite flatbuffer whose root is `root`; `tail` (old file bytes, if any) follows.

    Objects are laid out parents first (breadth first), so every offset points forward,
    into the new part or into the tail. Each new object must be referenced only once."""
    out = bytearray(8)
    out[4:8] = IDENTIFIER
    where: Dict[int, int] = {}
    patches: List[Tuple[int, object]] = [(0, root)]
    queue = deque([root])
    while queue:
        obj = queue.popleft()
        children: List[object] = []
        if isinstance(obj, _Tab):
            refs = sorted((s for s, (f, _) in obj.fields.items() if f is None))
            scalars = sorted(((struct.calcsize(f), s) for s, (f, _) in obj.fields.items() if f),
                             reverse=True)
            layout, size = {}, 4
            for width, slot in scalars:
                size += (-size) % width
                layout[slot] = size
                size += width
            for slot in refs:
                size += (-size) % 4
                layout[slot] = size
                size += 4
            top = max(obj.fields) + 1 if obj.fields else 0
            vtable = struct.pack(f"<{2 + top}H", 4 + 2 * top, size, *[layout.get(s, 0) for s in range(top)])
            _pad(out, 2)
            _pad(out, 8, len(vtable))  # the table right after its vtable, 8-aligned
            vt_at = len(out)
            out += vtable
            table_at = len(out)
            where[id(obj)] = table_at
            body = bytearray(size)
            struct.pack_into("<i", body, 0, table_at - vt_at)
            for slot, (fmt, value) in obj.fields.items():
                if fmt:
                    struct.pack_into("<" + fmt, body, layout[slot], value)
                else:
                    patches.append((table_at + layout[slot], value))
                    children.append(value)
            out += body
        elif isinstance(obj, _Vec):
            _pad(out, max(obj.align, 4), 4)
            where[id(obj)] = len(out)
            out += struct.pack("<I", len(obj.values))
            if obj.fmt:
                out += struct.pack(f"<{len(obj.values)}{obj.fmt}", *obj.values)
            else:
                for value in obj.values:
                    patches.append((len(out), value))
                    children.append(value)
                    out += b"\0\0\0\0"
        elif isinstance(obj, bytes):  # a string
            _pad(out, 4)
            where[id(obj)] = len(out)
            out += struct.pack("<I", len(obj)) + obj + b"\0"
        queue.extend(c for c in children if not isinstance(c, _Old))
    _pad(out, TAIL_ALIGN)
    base = len(out)
    for at, target in patches:
        goal = base + target.pos if isinstance(target, _Old) else where[id(target)]
        struct.pack_into("<I", out, at, goal - at)
    return bytes(out) + tail


def sub_model(graph: Graph, ops: Sequence[int], inputs: Sequence[int], outputs: Sequence[int]) -> bytes:
    """The file with subgraph 0 cut down to `ops` (in order), `inputs` and `outputs`; the
    tensors, buffers, operator codes and other subgraphs are the old ones."""
    sub = graph.subgraph
    fields = {0: (None, _Old(sub.ref(0))),
              1: (None, _Vec(inputs, "i")), 2: (None, _Vec(outputs, "i")),
              3: (None, _Vec([_Old(graph.op_positions[i]) for i in ops]))}
    subgraphs = [_Tab(fields)] + [_Old(p) for p in graph.subgraph_positions[1:]]
    root = _Tab({0: ("I", SCHEMA_VERSION), 1: (None, _Old(graph.model.ref(1))),
                 2: (None, _Vec(subgraphs)), 4: (None, _Old(graph.model.ref(4)))})
    return serialize(root, graph.data)


def _tensor(shape, dtype: int, buffer: int, name: bytes, quant: Optional[_Tab] = None) -> _Tab:
    fields = {0: (None, _Vec(shape, "i")), 1: ("b", dtype), 2: ("I", buffer), 3: (None, name)}
    if quant is not None:
        fields[4] = (None, quant)
    return _Tab(fields)


def _quant(scales: Sequence[float], axis: int = 0) -> _Tab:
    return _Tab({2: (None, _Vec(scales, "f")), 3: (None, _Vec([0] * len(scales), "q", 8)),
                 6: ("i", axis)})


def _model(code: int, version: int, tensors: List[_Tab], inputs, outputs, op_inputs, op_outputs,
           buffers: List[bytes], options: Optional[Tuple[int, _Tab]] = None) -> bytes:
    op = {0: ("I", 0), 1: (None, _Vec(op_inputs, "i")), 2: (None, _Vec(op_outputs, "i"))}
    if options is not None:
        op[3] = ("B", options[0])
        op[4] = (None, options[1])
    sub = _Tab({0: (None, _Vec(tensors)), 1: (None, _Vec(inputs, "i")), 2: (None, _Vec(outputs, "i")),
                3: (None, _Vec([_Tab(op)]))})
    opcode = _Tab({0: ("b", min(code, 127)), 2: ("i", version), 3: ("i", code)})
    bufs = [_Tab({}) if not b else _Tab({0: (None, _Vec(list(b), "B", 16))}) for b in [b""] + buffers]
    root = _Tab({0: ("I", SCHEMA_VERSION), 1: (None, _Vec([opcode])), 2: (None, _Vec([sub])),
                 4: (None, _Vec(bufs))})
    return serialize(root)


def overhead_model() -> bytes:
    """One ADD of 8 floats: what one call costs with (almost) no work in it."""
    tensors = [_tensor([1, 8], FLOAT32, 0, b"x"), _tensor([1, 8], FLOAT32, 0, b"y")]
    return _model(ADD, 1, tensors, [0], [1], [0, 0], [1], [])


def conv_model(arithmetic: str, size: int, channels: int, kernel: int) -> Tuple[bytes, int]:
    """A CONV_2D [1, size, size, channels] -> same, kernel x kernel, SAME padding, in
    fp32 or int8 (per-channel weights, int32 bias); (file bytes, MACs per call)."""
    rng = np.random.default_rng(0)
    w_shape = [channels, kernel, kernel, channels]
    act = [1, size, size, channels]
    if arithmetic == "fp32":
        weights = (rng.standard_normal(w_shape) * 0.05).astype("<f4").tobytes()
        bias = np.zeros(channels, "<f4").tobytes()
        tensors = [_tensor(act, FLOAT32, 0, b"in"), _tensor(w_shape, FLOAT32, 1, b"w"),
                   _tensor([channels], FLOAT32, 2, b"b"), _tensor(act, FLOAT32, 0, b"out")]
        version = 1
    else:
        weights = rng.integers(-127, 128, w_shape, dtype=np.int8).tobytes()
        bias = np.zeros(channels, "<i4").tobytes()
        in_scale, w_scale = 0.02, 0.01
        tensors = [_tensor(act, INT8, 0, b"in", _quant([in_scale])),
                   _tensor(w_shape, INT8, 1, b"w", _quant([w_scale] * channels)),
                   _tensor([channels], INT32, 2, b"b", _quant([in_scale * w_scale] * channels)),
                   _tensor(act, INT8, 0, b"out", _quant([0.5]))]
        version = 3
    options = _Tab({0: ("b", 0), 1: ("i", 1), 2: ("i", 1)})  # SAME, stride 1
    data = _model(CONV_2D, version, tensors, [0], [3], [0, 1, 2], [3], [weights, bias],
                  (CONV_2D_OPTIONS, options))
    return data, size * size * channels * kernel * kernel * channels


# ---- MACs ---------------------------------------------------------------------------

def op_macs(code: int, in_shapes: List[Optional[tuple]], out_shapes: List[tuple]) -> int:
    """Multiply-accumulates of one call of an operator (0 for ops without a matrix product)."""
    out = int(np.prod(out_shapes[0])) if out_shapes else 0
    w = in_shapes[1] if len(in_shapes) > 1 else None
    if code == CONV_2D and w is not None:
        return out * int(np.prod(w[1:]))
    if code == DEPTHWISE_CONV_2D and w is not None:
        return out * int(w[1] * w[2])
    if code == FULLY_CONNECTED and w is not None:
        return out * int(w[-1])
    if code == TRANSPOSE_CONV and len(in_shapes) > 2 and in_shapes[1] is not None:
        weights, x = in_shapes[1], in_shapes[2]
        return int(np.prod(x)) * int(weights[0] * weights[1] * weights[2])
    if code == BATCH_MATMUL and in_shapes and in_shapes[0] is not None:
        return out * int(in_shapes[0][-1])
    return 0


# ---- timing -------------------------------------------------------------------------

class _Timed:
    """One interpreter, its inputs set once; `block()` times `inner` invokes per sample."""

    def __init__(self, interpreter_cls, data: bytes, threads: int, feeds: Dict[int, np.ndarray]):
        from edge.native_output import native_stderr_silenced

        with native_stderr_silenced():
            self.it = interpreter_cls(model_content=data, num_threads=threads)
            self.it.allocate_tensors()
        for detail in self.it.get_input_details():
            value = feeds.get(detail["index"])
            if value is None:
                value = _random_input(detail)
            self.it.set_tensor(detail["index"], value.astype(detail["dtype"]).reshape(detail["shape"]))
        self.it.invoke()
        start = time.perf_counter()
        self.it.invoke()
        once = max(time.perf_counter() - start, 1e-7)
        self.inner = max(1, int(0.002 / once))  # about 2 ms a sample
        self.round_medians: List[float] = []

    def outputs(self) -> Dict[int, np.ndarray]:
        return {d["index"]: self.it.get_tensor(d["index"]) for d in self.it.get_output_details()}

    def measure_round(self, seconds: float) -> None:
        invoke, inner = self.it.invoke, self.inner
        samples: List[float] = []
        spent = 0.0
        while len(samples) < 3 or spent < seconds:
            start = time.perf_counter()
            for _ in range(inner):
                invoke()
            elapsed = time.perf_counter() - start
            spent += elapsed
            samples.append(elapsed / inner)
        self.round_medians.append(float(np.median(samples)))

    @property
    def seconds(self) -> float:
        return float(np.median(self.round_medians))

    @property
    def noise_pct(self) -> Optional[float]:
        return stats.round_noise_pct(self.round_medians)


def _random_input(detail: dict) -> np.ndarray:
    rng = np.random.default_rng(0)
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return rng.uniform(-1.0, 1.0, detail["shape"]).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -128), min(info.max, 127) + 1, detail["shape"]).astype(dtype)


def _run_rounds(timed: Sequence[_Timed], rounds: int, seconds_each: float) -> None:
    """Interleaved rounds (round 1 of every model, then round 2, ...), as bench/measure.py."""
    for _ in range(rounds):
        for t in timed:
            t.measure_round(seconds_each / rounds)


def measure_peak(interpreter_cls, threads: int, rounds: int, seconds_each: float) -> dict:
    """The best GMAC/s of large convolutions in fp32 and int8 with this runtime and CPU."""
    from edge import cpu

    shapes = ((32, 128, 3), (32, 256, 1))
    timed, labels = [], []
    for arithmetic in ("fp32", "int8"):
        for size, channels, kernel in shapes:
            data, macs = conv_model(arithmetic, size, channels, kernel)
            timed.append(_Timed(interpreter_cls, data, threads, {}))
            labels.append((arithmetic, f"conv {kernel}x{kernel} {channels}->{channels} on {size}x{size}", macs))
    _run_rounds(timed, rounds, seconds_each)
    out: Dict[str, object] = {
        "how": "best GMAC/s measured with this runtime on this CPU (same thread count) over "
               "these convolutions, built and timed like the per-operator models",
        "threads": threads,
        "isa": cpu.int8_summary(),
        "cpu_model": cpu.cpu_model(),
    }
    for arithmetic in ("fp32", "int8"):
        tried = [{"layer": label, "macs": macs, "time_us": t.seconds * 1e6,
                  "gmac_per_s": macs / t.seconds / 1e9, "noise_pct": t.noise_pct}
                 for t, (a, label, macs) in zip(timed, labels) if a == arithmetic]
        best = max(tried, key=lambda r: r["gmac_per_s"])
        out[arithmetic] = {"gmac_per_s": best["gmac_per_s"], "layer": best["layer"], "tried": tried}
    return out


# ---- one file ------------------------------------------------------------------------

def _arithmetic(dtype: np.dtype) -> str:
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return "fp32" if dtype.itemsize == 4 else dtype.name
    return "int8" if dtype.itemsize == 1 else dtype.name


def _op_names(interpreter) -> Dict[int, str]:
    try:
        details = interpreter._get_ops_details()  # both ai-edge-litert and tflite-runtime have it
    except AttributeError:
        return {}
    return {d["index"]: d["op_name"] for d in details if d["op_name"] != "DELEGATE"}


def analyze_file(path: Path, threads: int = 1, rounds: int = 5, seconds_each: float = 0.2,
                 peak: Optional[dict] = None, label: Optional[Dict[str, object]] = None) -> dict:
    """Per-operator rows and whole-file figures of one .tflite file (see the module doc)."""
    from edge.backends.tflite import import_interpreter
    from edge.native_output import native_stderr_silenced

    interpreter_cls, package = import_interpreter()
    data = Path(path).read_bytes()
    graph = Graph(data)
    with native_stderr_silenced(), warnings.catch_warnings():
        # ai-edge-litert warns that keeping every tensor is for debugging: it is, here.
        warnings.simplefilter("ignore", UserWarning)
        full = interpreter_cls(model_content=data, num_threads=threads,
                               experimental_preserve_all_tensors=True)
        full.allocate_tensors()
    details = {d["index"]: d for d in full.get_tensor_details()}
    names = _op_names(full)
    feeds = {d["index"]: _random_input(d) for d in full.get_input_details()}
    for index, value in feeds.items():
        full.set_tensor(index, value)
    full.invoke()
    intermediate = {}
    for index in details:
        try:
            intermediate[index] = np.array(full.get_tensor(index))
        except ValueError:  # a tensor with no data (unused, or freed)
            continue

    def shape(t: int) -> Optional[tuple]:
        return tuple(int(s) for s in details[t]["shape"]) if t >= 0 else None

    overhead = _Timed(interpreter_cls, overhead_model(), threads, {})
    whole = _Timed(interpreter_cls, data, threads, feeds)
    per_op: List[_Timed] = []
    timers: List[Optional[_Timed]] = []
    rows: List[dict] = []
    for i, code in enumerate(graph.op_code):
        acts = graph.activations(i)
        ops = graph.weight_chain(i) + [i]
        diffs: List[float] = []
        timed = None
        if i not in graph.constant_ops:
            # A constant-only operator (a weight's DEQUANTIZE) is computed once at load, and
            # alone it would be a model without inputs (XNNPACK refuses those): it is timed
            # inside the single-operator model of the operator that uses it.
            model = sub_model(graph, ops, acts, graph.op_outputs[i])
            timed = _Timed(interpreter_cls, model, threads,
                           {t: intermediate[t] for t in acts if t in intermediate})
            diffs = [float(np.max(np.abs(v.astype(np.float64) - intermediate[t].astype(np.float64))))
                     for t, v in timed.outputs().items() if t in intermediate and v.size]
            per_op.append(timed)
        timers.append(timed)
        in_shapes = [shape(t) for t in graph.op_inputs[i]]
        out_shapes = [shape(t) for t in graph.op_outputs[i]]
        macs = op_macs(code, in_shapes, out_shapes)
        # What the operator computes in: its first activation's type (a weight-only int8
        # file's convolutions compute in float on dequantized weights).
        first = acts[0] if acts else graph.op_inputs[i][0]
        weights = [t for t in graph.op_inputs[i] if t >= 0 and t in graph.constant]
        rows.append({
            "index": i, "op": names.get(i, f"builtin_{code}"),
            "inputs": [list(shape(t)) for t in acts],
            "weights": list(shape(weights[0])) if weights and (macs or not acts) else None,
            "outputs": [list(s) for s in out_shapes],
            "arithmetic": _arithmetic(details[first]["dtype"]),
            "constant": i in graph.constant_ops,
            "weight_ops": len(ops) - 1,
            "macs": macs,
            "max_abs_diff": max(diffs) if diffs else None,
        })
    replay_diff = _replay(graph, timers, feeds, whole.outputs())
    _run_rounds([overhead, whole] + per_op, rounds, seconds_each)

    call_s = overhead.seconds
    whole_s = max(whole.seconds - call_s, 0.0)
    total_macs = sum(r["macs"] for r in rows)
    for row, timed in zip(rows, timers):
        if timed is None:
            row.update({"time_us": None, "noise_pct": None, "share": None, "gmac_per_s": None,
                        "peak_fraction": None})
            continue
        op_s = max(timed.seconds - call_s, 0.0)
        row.update({"time_us": op_s * 1e6, "noise_pct": timed.noise_pct,
                    "share": op_s / whole_s if whole_s > 0 else None})
        _rate(row, row["macs"], op_s, peak, row["arithmetic"])
    sum_s = sum(r["time_us"] for r in rows if r["time_us"] is not None) / 1e6
    mac_rows = [r for r in rows if r["macs"]]
    arithmetic = mac_rows[0]["arithmetic"] if mac_rows else "fp32"
    out = dict(label or {})
    out.update({
        "file": Path(path).name, "path": str(path), "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(), "runtime": package, "threads": threads,
        "kind": _kind(graph, rows), "arithmetic": arithmetic,
        "call_overhead_us": call_s * 1e6, "whole_us": whole_s * 1e6, "whole_noise_pct": whole.noise_pct,
        "sum_of_ops_us": sum_s * 1e6, "sum_over_whole": sum_s / whole_s if whole_s > 0 else None,
        "macs": total_macs, "replay_max_abs_diff": replay_diff, "ops": rows,
    })
    _rate(out, total_macs, whole_s, peak, arithmetic)
    return out


def _replay(graph: Graph, timers: Sequence[Optional[_Timed]], feeds: Dict[int, np.ndarray],
            expected: Dict[int, np.ndarray]) -> Optional[float]:
    """Chain the single-operator models from the whole model's input and compare the
    final outputs with the whole model's: a check that needs no intermediate tensors
    (tflite-runtime 2.14 runs without XNNPACK when asked to keep them, and its in-place
    kernels can overwrite an intermediate after it was read)."""
    values = dict(feeds)
    for i, timed in enumerate(timers):
        if timed is None:
            continue
        for t in graph.activations(i):
            if t not in values:
                return None
            timed.it.set_tensor(t, values[t])
        timed.it.invoke()
        for t in graph.op_outputs[i]:
            values[t] = np.array(timed.it.get_tensor(t))
    diffs = [float(np.max(np.abs(values[t].astype(np.float64) - v.astype(np.float64))))
             for t, v in expected.items() if t in values and v.size]
    return max(diffs) if diffs else None


def _rate(target: dict, macs: int, seconds: float, peak: Optional[dict], arithmetic: str) -> None:
    rate = macs / seconds / 1e9 if macs and seconds > 0 else None
    best = ((peak or {}).get(arithmetic) or {}).get("gmac_per_s")
    target["gmac_per_s"] = rate
    target["peak_fraction"] = rate / best if rate is not None and best else None


def _kind(graph: Graph, rows: List[dict]) -> str:
    if any(r["macs"] and r["arithmetic"] == "int8" for r in rows):
        return "static int8"
    stored = sorted({r["arithmetic"] for r in rows if r["constant"] and r["op"] == "DEQUANTIZE"})
    if stored:  # a constant's DEQUANTIZE: its arithmetic is the stored weights' type
        return "weight-only " + "/".join(stored)
    return "float"


# ---- which files, and the whole run ---------------------------------------------------

def model_files(models_dir: Optional[str], models: Sequence[str] = (),
                precisions: Sequence[str] = ()) -> List[Tuple[Path, Dict[str, object]]]:
    """(path, label) of every .tflite file of the chosen models: the manifest's entries
    (filtered by precision) and any other .tflite file in the model's folder (a static
    int8 candidate, say)."""
    from bench.targets import FACE_MODEL, model_flops
    from edge.manifest import list_manifests

    out = []
    for name, manifest in list_manifests(models_dir).items():
        if models and name not in models:
            continue
        flops = manifest.data.get("flops") or {}
        macs = flops.get("macs_fvcore_conv") if name == FACE_MODEL else None
        source = "manifest flops.macs_fvcore_conv (fvcore, convolutions)"
        if macs is None and model_flops(manifest):
            macs, source = model_flops(manifest) // 2, "manifest FLOPs / 2 (one call)"
        listed = {}
        for entry in manifest.files:
            if entry["format"] == "tflite" and (not precisions or entry["precision"] in precisions):
                listed[entry["file"]] = entry["precision"]
        extra = [] if precisions else sorted(p.name for p in manifest.folder.glob("*.tflite")
                                             if p.name not in listed and p.is_file())
        for file_name in list(listed) + extra:
            out.append((manifest.folder / file_name,
                        {"model": name, "precision": listed.get(file_name), "in_manifest": file_name in listed,
                         "macs_manifest": macs, "macs_manifest_source": source if macs else None}))
    return out


def run(files: Sequence[Tuple[Path, Dict[str, object]]], threads: int = 1, rounds: int = 5,
        seconds_each: float = 0.2, progress=None) -> dict:
    """The `layers` section of a result: the measured peak, then every file."""
    from edge.backends.tflite import import_interpreter

    interpreter_cls, _ = import_interpreter()
    peak = measure_peak(interpreter_cls, threads, rounds, seconds_each)
    if progress:
        progress("peak")
    analyzed = []
    for path, label in files:
        analyzed.append(analyze_file(path, threads, rounds, seconds_each, peak, label))
        if progress:
            progress(Path(path).name)
    return {"threads": threads, "rounds": rounds, "seconds_per_model": seconds_each,
            "method": "each operator cut out into a model of its own (with the constant-only "
                      "operators that make its weights) and timed alone, invoke() only; the "
                      "fixed cost of one call (one 8-float ADD) subtracted",
            "peak": peak, "files": analyzed}


# ---- the report ----------------------------------------------------------------------

def _shape_text(shapes: List[list]) -> str:
    return " ".join("x".join(str(d) for d in s) for s in shapes) or "-"


def text_lines(layers: dict) -> List[str]:
    """The per-operator tables of a run's `layers` section."""
    peak = layers.get("peak") or {}
    out = ["", f"per-operator time ({layers['threads']} thread(s); each operator alone, the fixed cost "
               "of one call subtracted; share = of the whole file's time):"]
    if peak:
        out.append(f"  peak (best measured by this runtime on this CPU): fp32 "
                   f"{peak['fp32']['gmac_per_s']:.1f} GMAC/s ({peak['fp32']['layer']}), int8 "
                   f"{peak['int8']['gmac_per_s']:.1f} GMAC/s ({peak['int8']['layer']}); CPU: "
                   f"{peak['cpu_model']}; features: {peak['isa'] or '-'}")
    for f in layers["files"]:
        out.append("")
        out.append(f"  {f['file']} ({f['kind']}, {f['runtime']}): whole {f['whole_us']:.1f} us, sum of ops "
                   f"{f['sum_of_ops_us']:.1f} us (x{_num(f['sum_over_whole'], '.2f')}), call overhead "
                   f"{f['call_overhead_us']:.1f} us subtracted; ops chained = whole within "
                   f"{_num(f['replay_max_abs_diff'], '.1e')}; {f['macs']:,} MACs"
                   + (f" (manifest: {f['macs_manifest']:,})" if f.get("macs_manifest") else "")
                   + f", {_num(f['gmac_per_s'], '.2f')} GMAC/s = {_pct(f['peak_fraction'])} of "
                   f"{f['arithmetic']} peak")
        header = ["#", "op", "arith", "input", "weights", "output", "MACs", "us", "noise%", "share",
                  "GMAC/s", "of peak", "diff"]
        cells = [[str(r["index"]), r["op"] + (" (const)" if r["constant"] else ""), r["arithmetic"],
                  _shape_text(r["inputs"]), _shape_text([r["weights"]] if r["weights"] else []),
                  _shape_text(r["outputs"]), f"{r['macs']:,}" if r["macs"] else "-", _num(r["time_us"], ".2f"),
                  _num(r["noise_pct"], ".0f"), _pct(r["share"]), _num(r["gmac_per_s"], ".2f"),
                  _pct(r["peak_fraction"]), _num(r["max_abs_diff"], ".1e")] for r in f["ops"]]
        widths = [max(len(c[i]) for c in cells + [header]) for i in range(len(header))]
        for line in [header, ["-" * w for w in widths]] + cells:
            out.append("  " + "  ".join(c.ljust(w) if i in (1, 2, 3, 4, 5) else c.rjust(w)
                                        for i, (c, w) in enumerate(zip(line, widths))).rstrip())
    return out


def _num(value: Optional[float], spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _pct(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"
