"""Answers of the shipped model files on other CPUs, through user-mode QEMU (issue 11).

    python -m bench.cpus                       # every CPU model that can run here, all faces
    python -m bench.cpus --cpu haswell --faces 40
    python -m bench.cpus setup-arm             # build the aarch64 root + wheels (about 1 GB, once)
    python -m bench.cpus --file candidate.tflite   # also a face-model file not shipped yet

Int8 answers depend on the CPU's kernels (onnxruntime's U8S8 path on AVX2 without VNNI,
LiteRT's SME kernels), so a file that is right on the build machine can be wrong on the
device. QEMU emulates another CPU for one process: numpy, onnxruntime and LiteRT pick
their kernels from the emulated CPU's features. Timings under emulation mean nothing;
the answers were bit-identical to real hardware where both were run (TOOLCHAIN.md).

The faces are preprocessed here (natively) and handed over as an .npz; inside the
emulated CPU only `python -m bench.cpus answers` runs (numpy + edge.backends).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("EDGE_CPUS_CACHE", str(ROOT / ".cache" / "cpus")))
MIRROR = os.environ.get("EDGE_DEBIAN_MIRROR", "http://deb.debian.org/debian")
ARM_WHEELS = ("numpy<2", "opencv-python-headless<5", "onnxruntime", "ai-edge-litert", "PyYAML")
ARM_PLATFORMS = ("manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_27_aarch64",
                 "manylinux_2_28_aarch64")

# name: (qemu binary, -cpu value, aarch64 /proc/cpuinfo part and features or None for x86)
CPU_MODELS = {
    "haswell": ("qemu-x86_64", "Haswell", None),  # AVX2, no AVX-512 / VNNI
    "sandybridge": ("qemu-x86_64", "SandyBridge", None),  # AVX
    "cortex-a57": ("qemu-aarch64", "cortex-a57", ("0xd07", "fp asimd evtstrm crc32 cpuid")),  # Jetson Nano
    "cortex-a72": ("qemu-aarch64", "cortex-a72", ("0xd08", "fp asimd evtstrm crc32 cpuid")),  # Pi 4
    "cortex-a76": ("qemu-aarch64", "cortex-a76", ("0xd0b", "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics "
                                                  "fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp")),  # Pi 5
    "max": ("qemu-aarch64", "max", ("0xd0b", "fp asimd evtstrm crc32 atomics fphp asimdhp cpuid asimdrdm "
                                    "lrcpc dcpop asimddp sve i8mm bf16 sme")),  # SVE + SME
    "max-sme-off": ("qemu-aarch64", "max,sme=off", ("0xd0b", "fp asimd evtstrm crc32 atomics fphp asimdhp "
                                                    "cpuid asimdrdm lrcpc dcpop asimddp sve i8mm bf16")),
}
SLOW_STARTUP_S = 600


# ---------------------------------------------------------------- inside the emulated CPU
def answers(inputs_npz: str, out_npz: str, files: Sequence[str]) -> None:
    """Outputs of every model file: a face model's probabilities on every face [N, classes];
    the LSTM-MoE's PHQ-8 estimate after every tick of every session, state carried [S, T]."""
    from edge.backends import open_backend

    data = np.load(inputs_npz)
    out = {}
    for path in files:
        backend = open_backend("onnx" if path.endswith(".onnx") else "tflite", Path(path))
        if len(backend.inputs) == 1:
            result = np.concatenate([backend.run(face[None])[0] for face in data["faces"]])
        else:
            result = _stream_mu(backend, data["ticks"])
        out[Path(path).name] = result
        out[Path(path).name + ":runtime"] = np.array(backend.description)
    np.savez(out_npz, **out)


def _stream_mu(backend, sessions: np.ndarray) -> np.ndarray:
    from edge.models.severity import SeverityModel, io_order

    state = backend.inputs[io_order(backend.inputs, range(len(backend.inputs)))[2]].shape
    model = SeverityModel(backend, sessions.shape[2], tuple(abs(int(s)) for s in state))
    rows = []
    for features in sessions:
        h, c = model.initial_state()
        mus = []
        for tick in features:
            mu, _, h, c = model.run(tick[None], h, c)
            mus.append(float(np.asarray(mu).reshape(-1)[-1]))
        rows.append(mus)
    return np.asarray(rows, dtype=np.float32)


# ---------------------------------------------------------------- on the host
def qemu_binary(name: str) -> Optional[str]:
    return shutil.which(name)


def arm_root() -> Path:
    return CACHE / "arm64"


def arm_ready() -> bool:
    root = arm_root()
    return (root / "rootfs" / "usr" / "bin" / "python3").exists() and (root / "site-packages" / "numpy").is_dir()


def missing(cpu: str) -> Optional[str]:
    """Why `cpu` cannot run here (None when it can)."""
    binary, _, arm = CPU_MODELS[cpu]
    if qemu_binary(binary) is None:
        return f"{binary} is not installed (apt-get install qemu-user)"
    if arm is not None and not arm_ready():
        return f"no aarch64 root in {arm_root()} (run `python -m bench.cpus setup-arm`)"
    return None


def _cpuinfo_root(cpu: str) -> Path:
    """A copy of the aarch64 root (hard links) whose /proc/cpuinfo names this CPU model:
    QEMU serves ROOT/proc/cpuinfo to the guest, and onnxruntime's cpuinfo crashes on the
    host's x86 file."""
    part, features = CPU_MODELS[cpu][2]
    target = arm_root() / f"rootfs-{cpu}"
    if not target.exists():
        target.mkdir(parents=True)
        subprocess.run(["cp", "-al", str(arm_root() / "rootfs") + "/.", str(target)], check=True)
    (target / "proc").mkdir(exist_ok=True)
    cpuinfo = target / "proc" / "cpuinfo"
    if cpuinfo.exists():
        cpuinfo.unlink()  # a hard link shared with the base root: replace, never write through
    blocks = [f"processor\t: {i}\nBogoMIPS\t: 50.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
              f"CPU architecture: 8\nCPU variant\t: 0x1\nCPU part\t: {part}\nCPU revision\t: 1\n" for i in range(2)]
    cpuinfo.write_text("\n".join(blocks) + "\n")
    return target


def command(cpu: str, args: Sequence[str], site_packages: Optional[Path] = None) -> Tuple[List[str], Dict[str, str]]:
    """(argv, extra environment) that runs `python -m bench.cpus ARGS` on the emulated `cpu`."""
    binary, model, arm = CPU_MODELS[cpu]
    env = {"PYTHONPATH": str(ROOT)}
    if arm is None:
        return [qemu_binary(binary), "-cpu", model, sys.executable, "-m", "bench.cpus"] + list(args), env
    root = _cpuinfo_root(cpu)
    env["PYTHONPATH"] = f"{site_packages or arm_root() / 'site-packages'}:{ROOT}"
    python = sorted((root / "usr" / "bin").glob("python3.*[0-9]"))[0]
    return [qemu_binary(binary), "-L", str(root), "-cpu", model, str(python), "-m", "bench.cpus"] + list(args), env


def run_answers(cpu: Optional[str], faces: np.ndarray, files: Sequence[Path], workdir: Path,
                timeout_s: float = SLOW_STARTUP_S, site_packages: Optional[Path] = None,
                ticks: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
    """Run `answers` natively (cpu None) or under QEMU; returns {file name: outputs}."""
    faces_npz, out_npz = workdir / "inputs.npz", workdir / f"answers-{cpu or 'native'}.npz"
    extra = {} if ticks is None else {"ticks": ticks.astype(np.float32)}
    np.savez(faces_npz, faces=faces.astype(np.float32), **extra)
    args = ["answers", str(faces_npz), str(out_npz)] + [str(f) for f in files]
    if cpu is None:
        argv, env = [sys.executable, "-m", "bench.cpus"] + args, {"PYTHONPATH": str(ROOT)}
    else:
        argv, env = command(cpu, args, site_packages)
    full_env = dict(os.environ, **env)
    full_env.pop("PYTHONHOME", None)
    done = subprocess.run(argv, env=full_env, cwd=str(ROOT), capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        tail = [line for line in done.stderr.splitlines() if "TCG doesn't support" not in line][-5:]
        raise RuntimeError(f"{cpu or 'native'}: exit {done.returncode}: " + " | ".join(tail))
    with np.load(out_npz) as data:
        return {k: data[k] for k in data.files}


def agreement(reference: np.ndarray, candidate: np.ndarray) -> Dict[str, float]:
    return {"top1_agreement": float(np.mean(reference.argmax(1) == candidate.argmax(1))),
            "max_abs_prob_diff": float(np.max(np.abs(reference - candidate))), "n_inputs": int(len(reference))}


def face_files(models_dir: Path) -> List[Path]:
    from edge.manifest import load_manifest

    manifest = load_manifest("mini_xception", str(models_dir))
    return [manifest.folder / e["file"] for e in manifest.files]


def parity_faces(count: Optional[int]) -> np.ndarray:
    """The real parity faces of the build (export.fer_build.parity_inputs), or the bench's
    fixed faces when export's dependencies are not installed."""
    try:
        from export.data.faces import face_set
    except ImportError:
        from bench import fixed_inputs

        faces = fixed_inputs.load_faces(64)
    else:
        faces = face_set("test", input_size=64)
    if count:
        # Spread over the set: every face photograph, not the first few's augmentations.
        faces = faces[np.linspace(0, len(faces) - 1, count).round().astype(int)]
    return faces.astype(np.float32)


def compare(cpus: Sequence[str], count: Optional[int], models_dir: Path, log=print,
            extra_files: Sequence[Path] = ()) -> Dict[str, Dict]:
    """Per CPU model and file: agreement with the native fp32 ONNX file on the same faces.
    `extra_files`: face-model files checked beside the shipped ones (a candidate before it ships)."""
    faces = parity_faces(count)
    files = face_files(models_dir)
    taken = {f.name for f in files}
    for extra in extra_files:
        if not Path(extra).is_file():
            raise SystemExit(f"--file {extra}: no such file")
        if Path(extra).name in taken:
            raise SystemExit(f"--file {extra}: a file of that name is already checked; rename the candidate")
        taken.add(Path(extra).name)
    files = files + [Path(f).resolve() for f in extra_files]
    reference_name = next(f.name for f in files if f.name.endswith("fp32.onnx"))
    with tempfile.TemporaryDirectory() as tmp:
        native = run_answers(None, faces, files, Path(tmp))
        reference = native[reference_name]
        table = {"native": {f.name: agreement(reference, native[f.name]) for f in files}}
        for cpu in cpus:
            why = missing(cpu)
            if why:
                log(f"{cpu}: skipped: {why}")
                continue
            got = run_answers(cpu, faces, files, Path(tmp))
            table[cpu] = {f.name: agreement(reference, got[f.name]) for f in files}
            table[cpu]["runtime"] = {f.name: str(got[f.name + ":runtime"]) for f in files}
            log(f"{cpu}: " + ", ".join(f"{f.name} {table[cpu][f.name]['top1_agreement']:.3f}/"
                                       f"{table[cpu][f.name]['max_abs_prob_diff']:.3f}" for f in files))
    return table


def _pinned(requirements: Sequence[str]) -> List[str]:
    """The host's onnxruntime and LiteRT versions for the emulated ARM too (same runtime code,
    other CPU), so a difference is the CPU's."""
    from edge.cpu import package_versions

    host = package_versions()
    return [f"{r}=={host[r]}" if r in ("onnxruntime", "ai-edge-litert") and r in host else r for r in requirements]


def setup_arm(python_version: str = "3.11", suite: str = "bookworm") -> Path:
    """Debian aarch64 root (debootstrap, unpacked without a chroot) + aarch64 wheels for
    `python_version`, unzipped into one site-packages folder. pip never runs emulated."""
    root = arm_root()
    rootfs, site = root / "rootfs", root / "site-packages"
    if not (rootfs / "usr" / "bin" / "python3").exists():
        for tool in ("debootstrap", "dpkg"):
            if shutil.which(tool) is None:
                raise SystemExit(f"{tool} is missing: apt-get install debootstrap")
        subprocess.run(["debootstrap", "--foreign", "--arch=arm64", "--variant=minbase", "--include=python3",
                        suite, str(rootfs), MIRROR], check=True, stdout=subprocess.DEVNULL)
        for deb in sorted((rootfs / "var" / "cache" / "apt" / "archives").glob("*.deb")):
            subprocess.run(["dpkg", "-x", str(deb), str(rootfs)], check=True)
    wheels = root / "wheels"
    abi = "cp" + python_version.replace(".", "")
    platforms = [arg for p in ARM_PLATFORMS for arg in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--python-version",
                    python_version, "--implementation", "cp", "--abi", abi, *platforms, "-d", str(wheels),
                    *_pinned(ARM_WHEELS)], check=True)
    site.mkdir(parents=True, exist_ok=True)
    import zipfile

    for wheel in sorted(wheels.glob("*.whl")):
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(site)
    return root


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["answers"]:
        answers(argv[1], argv[2], argv[3:])
        return 0
    if argv[:1] == ["setup-arm"]:
        print(f"aarch64 root ready in {setup_arm()}")
        return 0
    p = argparse.ArgumentParser(prog="python -m bench.cpus", description=__doc__.splitlines()[0])
    p.add_argument("--cpu", action="append", choices=sorted(CPU_MODELS), help="only this CPU model (repeatable)")
    p.add_argument("--faces", type=int, default=None, help="use this many of the 328 parity faces (default all)")
    p.add_argument("--models-dir", type=Path, default=ROOT / "edge" / "models")
    p.add_argument("--file", action="append", type=Path, default=[],
                   help="also check this face-model file (.onnx or .tflite) against the fp32 ONNX file (repeatable)")
    p.add_argument("--json", help="write the table to this file")
    args = p.parse_args(argv)
    table = compare(args.cpu or list(CPU_MODELS), args.faces, args.models_dir, extra_files=args.file)
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
