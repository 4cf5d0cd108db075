"""edge.cpu: the int8 features that pick kernels, the fingerprint, one machine description.

Under user-mode QEMU the features must be the emulated CPU's, not the host's (the host's
/proc/cpuinfo still shows through there): checked with `qemu-x86_64 -cpu Haswell`, which
has AVX2 but no AVX-512 / VNNI / AMX, and on aarch64 `cortex-a57` vs `max` (SME).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from bench import cpus
from edge import cpu
from tests.conftest import ROOT

PROBE = "import json; from edge import cpu; print(json.dumps(cpu.int8_features()))"


def test_features_name_every_kernel_deciding_flag():
    features = cpu.int8_features()
    arch = cpu.architecture()
    if arch == "x86_64":
        assert set(features) == set(cpu.X86_FEATURES)
        # Every x86-64 CPU the runtimes support has SSE4.2; AVX-512 implies AVX2.
        assert features["sse4_2"] and (features["avx2"] or not features["avx512f"])
    elif arch == "aarch64":
        assert set(features) == set(cpu.ARM_FEATURES) and features["neon"]
    assert all(isinstance(v, bool) for v in features.values())


def test_fingerprint_is_stable_and_moves_with_the_features():
    features = cpu.int8_features()
    first = cpu.fingerprint(features)
    assert first == cpu.fingerprint() and len(first) == 16 and int(first, 16) >= 0
    flipped = dict(features, sme=not features.get("sme", False))
    assert cpu.fingerprint(flipped) != first
    assert cpu.fingerprint(features, model="another CPU") != first


def test_describe_machine_is_what_doctor_and_bench_show():
    from bench import fingerprint

    machine = cpu.describe_machine()
    for key in ("cpu_model", "machine", "cores", "usable_cores", "int8_features", "cpu_fingerprint",
                "memory_mb", "os", "python", "packages"):
        assert key in machine, key
    bench_fp = fingerprint.collect()
    assert {k: bench_fp[k] for k in ("cpu_model", "int8_features", "cpu_fingerprint")} == \
        {k: machine[k] for k in ("cpu_model", "int8_features", "cpu_fingerprint")}
    assert cpu.int8_summary(machine["int8_features"]).split()[0] in machine["int8_features"]


def _probe(argv, env=None):
    full_env = dict(os.environ, PYTHONPATH=str(ROOT))
    full_env.update(env or {})
    done = subprocess.run(argv + ["-c", PROBE], capture_output=True, text=True, timeout=600, env=full_env,
                          cwd=str(ROOT))
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(shutil.which("qemu-x86_64") is None or cpu.architecture() != "x86_64",
                    reason="qemu-x86_64 is not installed (apt-get install qemu-user) or this is not x86")
def test_features_are_the_emulated_cpus_not_the_hosts():
    haswell = _probe(["qemu-x86_64", "-cpu", "Haswell", sys.executable])
    assert haswell["avx2"] and haswell["fma"]
    assert not haswell["avx512f"] and not haswell["avx512_vnni"] and not haswell["amx_int8"]
    nehalem = _probe(["qemu-x86_64", "-cpu", "Nehalem", sys.executable])
    assert nehalem["sse4_2"] and not nehalem["avx"] and not nehalem["avx2"]


@pytest.mark.skipif(cpus.missing("max") is not None, reason=str(cpus.missing("max")))
def test_arm_features_from_the_kernel_hwcaps():
    def probe(name):
        argv, env = cpus.command(name, [])
        return _probe(argv[:-2], env)  # drop "-m bench.cpus"

    a57, sme = probe("cortex-a57"), probe("max")
    assert a57["neon"] and not a57["asimddp"] and not a57["sme"] and not a57["sve"]
    assert sme["sme"] and sme["sve"] and sme["i8mm"] and sme["asimddp"]
    assert not probe("max-sme-off")["sme"]
