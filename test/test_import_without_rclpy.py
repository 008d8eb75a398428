"""The library half of rsee_ros works without ROS: every module of the model, data, engine,
pipeline, training and evaluation packages imports with rclpy blocked, and a model streams a
window through the node's pipeline and exports."""

from __future__ import annotations

import subprocess
import sys
import textwrap

LIBRARY_PACKAGES = (
    "rsee_ros.model",
    "rsee_ros.data",
    "rsee_ros.engine",
    "rsee_ros.pipeline",
    "rsee_ros.training",
    "rsee_ros.evaluation",
)
# `rsee bench-node`'s rclpy listener lives in evaluation/ (it is that command's own participant;
# the rest of node_bench, the phases, sweep and soak that drive it included, imports without it).
NEEDS_ROS = ("rsee_ros.evaluation.node_bench.listener",)
# Shared ROS scaffolding that must stay importable without rclpy.
ROS_FREE = ("rsee_ros.ros.processes", "rsee_ros.ros.params", "rsee_ros.ros.programs",
            "rsee_ros.ros.messages")

SCRIPT = textwrap.dedent(
    """
    import importlib
    import pkgutil
    import sys


    class BlockRclpy:
        # A meta path finder that makes every rclpy import fail, as on a machine without ROS.
        def find_spec(self, name, path=None, target=None):
            if name == "rclpy" or name.startswith("rclpy."):
                raise ImportError(f"{name} is blocked by test_import_without_rclpy")
            return None


    sys.meta_path.insert(0, BlockRclpy())
    packages, skip, extra = sys.argv[1].split(","), sys.argv[2].split(","), sys.argv[3].split(",")
    names = list(extra)
    for package in packages:
        module = importlib.import_module(package)
        names.append(package)
        names += [info.name for info in pkgutil.walk_packages(module.__path__, package + ".")]
    imported = [name for name in names if name not in skip]
    for name in imported:
        importlib.import_module(name)
    loaded = sorted(m for m in sys.modules if m == "rclpy" or m.startswith("rclpy."))
    assert not loaded, f"rclpy modules were loaded: {loaded}"

    import numpy as np
    import torch

    from rsee_ros.engine import engine_for_model
    from rsee_ros.model import RSEEConfig, build_rsee
    from rsee_ros.pipeline.runner import PipelineSettings, RecognitionPipeline

    torch.manual_seed(0)
    config = RSEEConfig(num_classes=3, resolutions=(64, 32), selector_hidden=16,
                        accumulator_hidden=16)
    model = build_rsee(config).eval()
    pipe = RecognitionPipeline(engine_for_model(model, ["a", "b", "c"], "torch-fused"),
                               settings=PipelineSettings(window_size=2, exit_threshold=1.0))
    frames = np.random.default_rng(0).integers(0, 256, (2, 48, 64, 3), dtype=np.uint8)
    results = pipe.push("cam", 0.0, frames[0]) + pipe.push("cam", 0.1, frames[1])
    assert len(results) == 1 and results[0].label in ("a", "b", "c"), results
    print("imported", len(imported), "modules; streamed", results[0].window_length, "frames")
    print("ok")
    """
)


def test_library_imports_and_runs_without_rclpy() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, ",".join(LIBRARY_PACKAGES), ",".join(NEEDS_ROS),
         ",".join(ROS_FREE)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd="/",  # independent of the working directory: the installed package is imported
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("ok"), result.stdout
    count = int(result.stdout.split("imported ")[1].split()[0])
    assert count > 60  # every module of the library packages, not only their __init__
