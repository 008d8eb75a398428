"""The library half of rsee_ros (model, data, pipeline, training, evaluation) works without ROS."""

from __future__ import annotations

import subprocess
import sys
import textwrap

LIBRARY_PACKAGES = (
    "rsee_ros.model",
    "rsee_ros.data",
    "rsee_ros.pipeline",
    "rsee_ros.training",
    "rsee_ros.evaluation",
)

SCRIPT = textwrap.dedent(
    """
    import dataclasses
    import importlib
    import sys


    class BlockRclpy:
        # A meta path finder that makes every rclpy import fail, as on a machine without ROS.
        def find_spec(self, name, path=None, target=None):
            if name == "rclpy" or name.startswith("rclpy."):
                raise ImportError(f"{name} is blocked by test_import_without_rclpy")
            return None


    sys.meta_path.insert(0, BlockRclpy())
    for name in sys.argv[1:]:
        importlib.import_module(name)
    loaded = sorted(m for m in sys.modules if m == "rclpy" or m.startswith("rclpy."))
    assert not loaded, f"rclpy modules were loaded: {loaded}"

    import rsee_ros.model as model

    if hasattr(model, "build_rsee") and hasattr(model, "RSEEConfig"):
        import torch

        wanted = dict(num_classes=3, resolutions=(64, 32), selector_hidden=16,
                      accumulator_hidden=16)
        known = {f.name for f in dataclasses.fields(model.RSEEConfig)}
        config = model.RSEEConfig(**{k: v for k, v in wanted.items() if k in known})
        net = model.build_rsee(config).eval()
        if hasattr(net, "infer_batch"):
            size = max(config.resolutions)
            with torch.no_grad():
                out = net.infer_batch(torch.zeros(1, 2, 3, size, size))
            assert tuple(out.probabilities.shape) == (1, 3), out.probabilities.shape
        print("built", type(net).__name__)
    print("ok")
    """
)


def test_library_imports_without_rclpy() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, *LIBRARY_PACKAGES],
        capture_output=True,
        text=True,
        timeout=300,
        cwd="/",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("ok")
