"""Screenshots of `edge nightly` reports for the docs: a drifting and a stable person.

    python bench/nightly_screens.py [--out docs/nightly]

A month (2026-11-01 .. 2026-11-30) of espeak-ng check-ins (espeak-ng and sox from Debian)
goes through the real job (`edge nightly --night 2026-11-30`, the gateway profile's models,
one thread), then each person's PNG is copied to OUT/drifting.png and OUT/stable.png with
their HTML pages. p01 speaks in steady voices, misses two days, and from day 17 on speaks
faster, higher and with longer gaps between words (the drift); p02 enrols on day 5, misses
every fifth day and stays steady. Both answered PHQ-8 questionnaires on some days (sidecars).
The demo weights' PHQ-8 figures say nothing clinical: the images say so themselves.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEXT = ("I slept quite badly last night and I did not feel like going out today. "
        "I talked to my sister on the phone for a while, and then I watched some television.")
STEADY = (("en-us", 130, 45, 0), ("en-us", 140, 40, 0), ("en-us", 150, 35, 0), ("en+m3", 140, 40, 0))
DRIFT = ("en+f3", 170, 70, 30)  # voice, words/min, pitch, extra gap between words (10 ms units)
FIRST, NIGHT = date(2026, 11, 1), date(2026, 11, 30)
ANSWERS = {6: [1, 1, 0, 1, 0, 1, 0, 0], 20: [1, 0, 1, 1, 0, 1, 0, 0], 27: [2, 2, 1, 2, 1, 2, 1, 1]}


def speak(out: Path, voice) -> Path:
    name, rate, pitch, gap = voice
    raw = out.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", name, "-s", str(rate), "-p", str(pitch), "-g", str(gap), "-w", str(raw),
                    TEXT], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(out)], check=True)
    raw.unlink()
    return out


def drop(inbox: Path, person: str, day: date, wav: Path, answers=None) -> None:
    folder = inbox / person
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{day.strftime('%Y%m%d')}T080000"
    shutil.copyfile(str(wav), str(folder / f"{stem}.wav"))
    if answers is not None:
        (folder / f"{stem}.json").write_text(json.dumps({"phq8": {"answers": answers, "date": day.isoformat()}}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "nightly"))
    args = parser.parse_args()
    for program in ("espeak-ng", "sox"):
        if shutil.which(program) is None:
            print(f"{program} is not installed (apt-get install {program})", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        steady = [speak(tmp / f"steady{k}.wav", v) for k, v in enumerate(STEADY)]
        drift = speak(tmp / "drift.wav", DRIFT)
        inbox = tmp / "inbox"
        for k in range((NIGHT - FIRST).days + 1):
            day = FIRST + timedelta(days=k)
            if k not in (9, 10):
                drop(inbox, "p01", day, drift if k >= 16 else steady[k % 4], ANSWERS.get(k))
            if k >= 4 and k % 5 != 3:
                drop(inbox, "p02", day, steady[(k + 1) % 4], ANSWERS.get(k) and [0, 1, 0, 1, 0, 0, 0, 1])
        with open(ROOT / "firmware_configs" / "wearable_gateway.yaml") as f:
            profile = yaml.safe_load(f)
        profile["output"] = {"dir": str(tmp / "out"), "database": str(tmp / "trends.sqlite")}
        profile["nightly"].update(inbox=str(inbox), quarantine=str(tmp / "quarantine"), reports=str(tmp / "reports"),
                                  stable_seconds=0)
        profile["mqtt"]["enabled"] = False
        (tmp / "profile.yaml").write_text(yaml.safe_dump(profile))
        subprocess.run([sys.executable, "-m", "edge", "nightly", "--config", str(tmp / "profile.yaml"), "--night",
                        NIGHT.isoformat()], check=True, cwd=ROOT)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for person, name in (("p01", "drifting"), ("p02", "stable")):
            for suffix in (".png", ".html"):
                source = tmp / "reports" / person / f"{NIGHT.isoformat()}{suffix}"
                text = source.read_bytes()
                if suffix == ".html":
                    text = text.replace(f"{NIGHT.isoformat()}.png".encode(), f"{name}.png".encode())
                (out / f"{name}{suffix}").write_bytes(text)
        print(f"wrote {out}/drifting.png, stable.png (+ .html)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
