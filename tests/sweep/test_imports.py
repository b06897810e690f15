from __future__ import annotations

import subprocess
import sys


def test_importing_lens_emotion_never_imports_ray():
    code = (
        "import sys, lens_emotion, lens_emotion.sweep, lens_emotion.sweep.ray_runner, "
        "lens_emotion.cli.main; from lens_emotion.cli.main import build_parser; build_parser(); "
        "print('ray' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
