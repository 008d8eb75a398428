"""Consistency of the packaging files: package.xml, CMakeLists.txt, msg/, setup.py, launchers."""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

RUNTIME_KEYS = {
    "rclpy",
    "sensor_msgs",
    "std_msgs",
    "builtin_interfaces",
    "diagnostic_msgs",
    "rcl_interfaces",
    "launch",
    "launch_ros",
    "rosidl_default_runtime",
    "python3-numpy",
    "python3-opencv",
    "python3-yaml",
    "python3-tqdm",
    "python3-matplotlib",
    "python3-torch",
    "python3-torchvision",
}
BUILDTOOL_KEYS = {"ament_cmake", "ament_cmake_python", "rosidl_default_generators"}
ENTRY_POINTS = {
    "rsee": "rsee_ros.cli:main",
    "rsee_node": "rsee_ros.ros.programs:rsee_node",
    "video_source": "rsee_ros.ros.programs:video_source",
}


def _package_xml() -> ET.Element:
    return ET.parse(REPO / "package.xml").getroot()


def _deps(root: ET.Element, *tags: str) -> set[str]:
    return {(element.text or "").strip() for tag in tags for element in root.iter(tag)}


def _setup_call_keywords() -> dict[str, ast.expr]:
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup":
            return {kw.arg: kw.value for kw in node.keywords if kw.arg}
    raise AssertionError("setup.py has no setup(...) call")


def test_package_xml_declares_the_package() -> None:
    root = _package_xml()
    assert root.get("format") == "3"
    assert root.findtext("name") == "rsee_ros"
    assert root.findtext("version") == "0.1.0"
    assert root.findtext("license") == "Apache-2.0"
    assert root.findtext("export/build_type") == "ament_cmake"
    assert root.findtext("member_of_group") == "rosidl_interface_packages"


def test_package_xml_declares_the_dependencies() -> None:
    root = _package_xml()
    runtime = _deps(root, "depend", "exec_depend")
    assert RUNTIME_KEYS <= runtime, f"missing: {sorted(RUNTIME_KEYS - runtime)}"
    buildtool = _deps(root, "buildtool_depend")
    assert BUILDTOOL_KEYS <= buildtool, f"missing: {sorted(BUILDTOOL_KEYS - buildtool)}"
    assert "python3-pytest" in _deps(root, "test_depend")
    # Message dependencies are needed at build time too.
    assert {"std_msgs", "builtin_interfaces"} <= _deps(root, "depend", "build_depend")


def test_versions_agree() -> None:
    import rsee_ros

    setup_version = ast.literal_eval(_setup_call_keywords()["version"])
    assert setup_version == _package_xml().findtext("version") == rsee_ros.__version__


def test_every_msg_file_is_generated() -> None:
    cmake = (REPO / "CMakeLists.txt").read_text()
    msg_files = sorted((REPO / "msg").glob("*.msg"))
    assert {p.name for p in msg_files} >= {
        "ActionRecognition.msg",
        "ActionRecognitionArray.msg",
        "LabelInfo.msg",
        "RseeStatus.msg",
    }
    globbed = re.search(r"file\(GLOB[^)]*msg/\*\.msg", cmake) is not None
    for path in msg_files:
        assert globbed or f"msg/{path.name}" in cmake, f"{path.name} is not in CMakeLists.txt"
    assert "rosidl_generate_interfaces" in cmake


def _fields_without_comment(text: str) -> list[str]:
    """Field lines neither preceded (in their block of lines) nor followed by a comment."""
    missing, commented = [], False
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            commented = False
        elif stripped.startswith("#"):
            commented = True
        elif not commented and "#" not in stripped:
            missing.append(stripped)
    return missing


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "msg").glob("*.msg")))
def test_msg_file_parses_and_is_commented(name: str) -> None:
    parser = pytest.importorskip("rosidl_adapter.parser")
    text = (REPO / "msg" / name).read_text()
    spec = parser.parse_message_string("rsee_ros", name[: -len(".msg")], text)
    assert spec.fields
    assert not _fields_without_comment(text)


def test_entry_points_point_to_existing_functions() -> None:
    entry_points = ast.literal_eval(_setup_call_keywords()["entry_points"])
    scripts = dict(spec.split("=", 1) for spec in entry_points["console_scripts"])
    assert scripts == ENTRY_POINTS
    for name, target in scripts.items():
        module, function = target.split(":")
        path = REPO / (module.replace(".", "/") + ".py")
        assert path.is_file(), f"{name}: {path.relative_to(REPO)} does not exist"
        tree = ast.parse(path.read_text())
        functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert function in functions, f"{name}: {module} has no top-level {function}()"


def test_ros2_run_launchers_match_the_entry_points() -> None:
    cmake = (REPO / "CMakeLists.txt").read_text()
    for name, target in ENTRY_POINTS.items():
        launcher = REPO / "scripts" / "launchers" / name
        assert launcher.is_file() and launcher.stat().st_mode & 0o111, f"{launcher} not executable"
        module, function = target.split(":")
        assert f"from {module} import {function}" in launcher.read_text()
        assert f"scripts/launchers/{name}" in cmake


def test_weights_hash_is_the_same_in_script_and_manifest() -> None:
    from rsee_ros.model import weights_manifest

    script = (REPO / "scripts" / "setup_env.sh").read_text()
    match = re.search(r'^WEIGHTS_SHA256="([0-9a-f]{64})"$', script, re.MULTILINE)
    assert match, "WEIGHTS_SHA256 not found in scripts/setup_env.sh"
    assert match.group(1) == weights_manifest.MOBILENET_V2_IMAGENET_SHA256
    assert f'WEIGHTS_FILENAME="{weights_manifest.MOBILENET_V2_IMAGENET_FILENAME}"' in script


def test_weights_dir_lookup_order(monkeypatch, tmp_path: Path) -> None:
    import sys

    from rsee_ros.model import weights_manifest

    monkeypatch.setenv("RSEE_WEIGHTS_DIR", str(tmp_path / "explicit"))
    assert weights_manifest.default_weights_dir() == tmp_path / "explicit"
    monkeypatch.delenv("RSEE_WEIGHTS_DIR")
    candidates = weights_manifest.weights_dir_candidates()
    assert candidates[0] == Path(sys.prefix) / "share" / "rsee_ros" / "weights"
    assert candidates[1] == Path.home() / ".cache" / "rsee_ros" / "weights"


def test_makefile_keeps_dds_on_loopback() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST$", makefile, re.M)
    assert re.search(r"^export ROS_LOCALHOST_ONLY := 1$", makefile, re.M)
