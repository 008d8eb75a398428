"""pip packaging of rsee_ros (the Python library, CLI and nodes; not the ROS messages).

colcon builds this repository as an ament_cmake package (CMakeLists.txt, which also generates
``rsee_ros.msg``) and ignores this file. ``scripts/setup_env.sh`` installs it in editable mode
into the development venv and builds the messages separately.
"""

from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "rsee_ros"
HERE = Path(__file__).resolve().parent


def _files(pattern: str) -> list[str]:
    return sorted(p for p in glob(pattern, root_dir=HERE, recursive=True) if (HERE / p).is_file())


def _data_files() -> list[tuple[str, list[str]]]:
    share = f"share/{PACKAGE}"
    entries = [
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (share, ["package.xml"]),
        # Runnable by `ros2 run rsee_ros <exe>` (data_files keep the exec bit).
        (f"lib/{PACKAGE}", _files("scripts/launchers/*")),
    ]
    for top in ("launch", "config"):
        by_dir: dict[str, list[str]] = {}
        for path in _files(f"{top}/**/*"):
            if "__pycache__" in path:
                continue
            by_dir.setdefault(str(Path(share) / Path(path).parent), []).append(path)
        entries.extend(sorted(by_dir.items()))
    return [(dest, files) for dest, files in entries if files]


setup(
    name=PACKAGE,
    version="0.1.0",
    description="Adaptive-resolution, early-exit action recognition (RSEE) for ROS 2 camera topics",
    long_description=(HERE / "README.md").read_text(encoding="utf-8")
    if (HERE / "README.md").exists()
    else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    # the default model and the demo clip travel inside the Python package
    package_data={PACKAGE: ["resources/*.pt", "resources/*.xml", "resources/demo/*"]},
    python_requires=">=3.10",
    install_requires=[
        "numpy>=1.22",
        "torch>=2.1",
        "torchvision>=0.16",
        "opencv-python-headless>=4.5",
        "av>=10",
        "rosbags>=0.10",
        "matplotlib>=3.5",
        "tqdm>=4.60",
        "pyyaml>=5.4",
        "safetensors>=0.4",
    ],
    extras_require={"test": ["pytest>=7,<9", "ruff"]},
    entry_points={
        "console_scripts": [
            "rsee=rsee_ros.cli:main",
            "rsee_node=rsee_ros.ros.programs:rsee_node",
            "video_source=rsee_ros.ros.programs:video_source",
        ],
    },
    data_files=_data_files(),
    zip_safe=False,
)
