"""Shared fixtures: seeding, tiny offline models, the real SmolLM2 zoo model and real data."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# Our own checkout keeps the real data beside it (../shared/data); users set LENS_EMOTION_DATA
# or place files with `lens-emotion data add`. Subprocesses of tests inherit this.
os.environ.setdefault("LENS_EMOTION_DATA", str(REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _seed_everything():
    """Seed every random generator before each test."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    from lens_emotion.testing import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama", arch="llama")


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory) -> Path:
    from lens_emotion.testing import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("models") / "tiny-gpt2", arch="gpt2")


@pytest.fixture(scope="session")
def tiny_llama(tiny_llama_dir):
    from lens_emotion.models import load_model

    return load_model(tiny_llama_dir, device="cpu")


@pytest.fixture(scope="session")
def tiny_gpt2(tiny_gpt2_dir):
    from lens_emotion.models import load_model

    return load_model(tiny_gpt2_dir, device="cpu")


@pytest.fixture(scope="session")
def smollm2():
    """The real SmolLM2-135M-Instruct zoo model (pulled from PyPI and converted on first use)."""
    from lens_emotion.models import load_model

    return load_model("smollm2-135m-instruct", device="cpu")


def _data_root() -> Path:
    env = os.environ.get("LENS_EMOTION_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def crowd_envent_path() -> Path:
    path = _data_root() / "crowd-envent" / "enVent_gen_Data.csv"
    if not path.is_file():
        pytest.skip(f"real crowd-enVENT CSV not found at {path} (set LENS_EMOTION_DATA)")
    return path


@pytest.fixture(scope="session")
def sev_path() -> Path:
    path = _data_root() / "sev" / "sev.jsonl"
    if not path.is_file():
        pytest.skip(f"real SEV file not found at {path} (set LENS_EMOTION_DATA)")
    return path


@pytest.fixture(scope="session")
def crowd_envent(crowd_envent_path):
    from lens_emotion.data import load_crowd_envent

    return load_crowd_envent(crowd_envent_path)


@pytest.fixture(scope="session")
def sample_dataset():
    from lens_emotion.data import load_sample

    return load_sample()


# --- headless Chromium (Debian's /usr/bin/chromium via Playwright; never Playwright's own) ---

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install playwright)"
    )
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as pw:
        try:
            instance = pw.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        except Exception as err:  # noqa: BLE001 - any launch failure means: cannot test here
            pytest.skip(f"Chromium at {CHROMIUM} does not start under Playwright: {err}")
        yield instance
        instance.close()


class _OfflinePage:
    """A browser page that aborts (and records) every request that is not a local file."""

    def __init__(self, browser):
        self.page = browser.new_page(viewport={"width": 1300, "height": 1100})
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page.on(
            "console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None
        )
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.route("**/*", self._route)

    def _route(self, route):
        url = route.request.url
        if url.startswith(("file:", "data:", "blob:")):
            route.continue_()
        else:
            self.requests.append(url)
            route.abort()

    def close(self):
        self.page.close()


@pytest.fixture
def offline_page(browser):
    page = _OfflinePage(browser)
    yield page
    page.close()
