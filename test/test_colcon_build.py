"""`colcon build` and `colcon build --symlink-install` of the repository (scripts/colcon_check.sh).

Takes about a minute on two cores; deselect with ``-m "not slow"``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_colcon_build_both_modes() -> None:
    venv = Path(sys.prefix)
    if not (venv / "bin" / "colcon").exists() or shutil.which("cmake") is None:
        pytest.skip("needs the development venv (make setup) and cmake")
    result = subprocess.run(
        [str(REPO / "scripts" / "colcon_check.sh"), "plain", "symlink"],
        env={**os.environ, "VENV": str(venv)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": OK (") == 2, result.stdout
