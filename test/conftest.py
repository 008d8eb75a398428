"""Session-wide test setup: DDS on loopback, a private ROS domain, isolated rclpy contexts.

The environment variables are set at import time, before any test module imports rclpy, and are
inherited by every subprocess a test starts.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

# Tests use tiny models on a shared 2-core machine: one intra-op thread per process avoids
# OpenMP threads spinning against each other (measured 20x slower under load otherwise).
# Set before torch is imported; subprocesses (nodes) inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# DDS discovery and traffic stay on the loopback interface (a rule on the shared machines).
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_LOCALHOST_ONLY"] = "1"
os.environ.setdefault("ROS_STATIC_PEERS", "127.0.0.1")  # discovery in well under a second


def _session_domain_id() -> int:
    """A ROS_DOMAIN_ID private to this test session (concurrent runs must not see each other)."""
    override = os.environ.get("RSEE_TEST_DOMAIN_ID")
    if override:
        return int(override)
    return 1 + os.getpid() % 100  # 1..100; 0 (the default) is left to manual experiments


ROS_DOMAIN_ID = _session_domain_id()
os.environ["ROS_DOMAIN_ID"] = str(ROS_DOMAIN_ID)
# ament_index_python (get_package_share_directory) finds the venv's packages through this.
os.environ.setdefault("AMENT_PREFIX_PATH", sys.prefix)

# Exports of checkpoints for onnxruntime go to a cache of this session, which sees the exports
# already made in the cache it was given (make test: the venv's, holding the packaged model's).
_ENGINE_CACHE = Path(tempfile.mkdtemp(prefix="rsee_engines_"))
_SHARED_CACHE = os.environ.get("RSEE_ENGINE_CACHE")
if _SHARED_CACHE and Path(_SHARED_CACHE).is_dir():
    for _entry in Path(_SHARED_CACHE).iterdir():
        (_ENGINE_CACHE / _entry.name).symlink_to(_entry)
os.environ["RSEE_ENGINE_CACHE"] = str(_ENGINE_CACHE)
atexit.register(shutil.rmtree, _ENGINE_CACHE, ignore_errors=True)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def ros_domain_id() -> int:
    """The ROS_DOMAIN_ID of this test session (also in os.environ for subprocesses)."""
    return ROS_DOMAIN_ID


@pytest.fixture
def ros_context(ros_domain_id: int):
    """An rclpy Context of its own, initialised on the session's domain and shut down afterwards.

    rclpy's SIGINT/SIGTERM handlers are not installed, so Ctrl-C still stops pytest.
    """
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    context = rclpy.Context()
    rclpy.init(
        context=context,
        domain_id=ros_domain_id,
        signal_handler_options=SignalHandlerOptions.NO,
    )
    try:
        yield context
    finally:
        context.try_shutdown()


@pytest.fixture
def bench_node_quick(tmp_path: Path):
    """``run(*args, timeout=600)``: ``rsee bench-node --quick *args`` in a subprocess on a small
    untrained checkpoint (12 classes, 112-42 px; written here), DDS on loopback; asserts exit 0
    and returns (the process, its JSON report). Skips without rclpy or the built messages."""
    pytest.importorskip("rclpy")
    pytest.importorskip("rsee_ros.msg", reason="rsee_ros messages not built (make setup)")
    import json
    import subprocess

    import torch

    from rsee_ros.model import RSEEConfig, build_rsee, save_checkpoint

    torch.manual_seed(0)
    config = RSEEConfig(num_classes=12, resolutions=(112, 84, 56, 42), selector_hidden=16,
                        accumulator_hidden=16)
    checkpoint = save_checkpoint(tmp_path / "tiny.pt", build_rsee(config, pretrained=False),
                                 [f"class_{i}" for i in range(12)])
    out = tmp_path / "bench_node.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def run(*args: str, timeout: float = 600) -> tuple[subprocess.CompletedProcess, dict]:
        proc = subprocess.run(
            [sys.executable, "-m", "rsee_ros.cli", "bench-node", "--quick", "--checkpoint",
             str(checkpoint), *args, "--json", str(out)],
            cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True,
            timeout=timeout,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        print(proc.stdout)
        return proc, json.loads(out.read_text())

    return run
