#!/usr/bin/env bash
# Builds this repository the way a robot does: `colcon build` and `colcon build --symlink-install`
# in temporary workspaces (src/rsee_ros = a copy of the working tree), with the venv's ROS 2 wheels
# as the underlay, then checks the installed result from `source install/setup.bash`.
#
#   scripts/colcon_check.sh [plain] [symlink]     (default: both)
#
# Environment: VENV (default .venv, made by scripts/setup_env.sh), KEEP=1 keeps the workspaces,
# RSEE_NICE (default 10).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
case "$VENV" in /*) ;; *) VENV="$ROOT/$VENV" ;; esac
MODES=("$@")
[[ ${#MODES[@]} -gt 0 ]] || MODES=(plain symlink)

[[ -x "$VENV/bin/colcon" ]] || { echo "colcon_check: $VENV/bin/colcon missing; run make setup" >&2; exit 2; }

# Only the venv's ROS: nothing from a sourced installation or another venv.
unset PYTHONPATH PYTHONHOME LD_LIBRARY_PATH _ROS_WHEELS_BOOTSTRAP_COMPLETE
unset COLCON_PREFIX_PATH AMENT_CURRENT_PREFIX
export VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH"
export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_LOCALHOST_ONLY=1 ROS_STATIC_PEERS=127.0.0.1
NICE=(nice -n "${RSEE_NICE:-10}")

WORK=$(mktemp -d /tmp/rsee_colcon.XXXXXX)
# shellcheck disable=SC2329  # called by the EXIT trap
cleanup() {
  if [[ ${KEEP:-0} == 1 ]]; then echo "colcon_check: workspaces kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

copy_sources() {  # the working tree without venvs, build outputs, VCS data and local data
  mkdir -p "$1"
  tar -C "$ROOT" --exclude=./.git --exclude='./.venv*' --exclude=./build --exclude=./install \
    --exclude=./log --exclude=./data --exclude=./out --exclude='__pycache__' \
    --exclude=.pytest_cache --exclude=.ruff_cache --exclude='*.egg-info' -cf - . |
    tar -C "$1" -xf -
}

check_install() {  # $1 workspace, $2 mode
  local ws=$1 mode=$2 pkg="$1/install/rsee_ros" exe launch
  for exe in rsee_node video_source rsee; do
    [[ -f "$pkg/lib/rsee_ros/$exe" && -x "$pkg/lib/rsee_ros/$exe" ]] ||
      { echo "colcon_check[$mode]: lib/rsee_ros/$exe missing or not executable" >&2; return 1; }
  done
  shopt -s nullglob
  local sources=("$ws/src/rsee_ros/launch/"*.launch.py)
  if [[ ${#sources[@]} -eq 0 ]]; then
    echo "colcon_check[$mode]: WARNING: the repository has no launch/*.launch.py yet"
  fi
  for launch in "${sources[@]}"; do
    [[ -f "$pkg/share/rsee_ros/launch/$(basename "$launch")" ]] ||
      { echo "colcon_check[$mode]: share/rsee_ros/launch/$(basename "$launch") missing" >&2; return 1; }
  done
  shopt -u nullglob
  (
    set +u  # colcon's setup scripts read unset variables
    # shellcheck disable=SC1091
    source "$ws/install/setup.bash"
    set -u
    cd /
    RSEE_PKG="$pkg" RSEE_MODE="$mode" python - <<'EOF'
import os
import sys

from ament_index_python.packages import get_package_share_directory

import rsee_ros
import rsee_ros.model  # noqa: F401
from rsee_ros.msg import ActionRecognition, ActionRecognitionArray, LabelInfo, RseeStatus  # noqa

pkg, mode = os.environ["RSEE_PKG"], os.environ["RSEE_MODE"]
for module in (rsee_ros, rsee_ros.model, sys.modules["rsee_ros.msg"]):
    assert os.path.abspath(module.__file__).startswith(pkg + os.sep), (
        f"{module.__name__} imported from {module.__file__}, not from {pkg}")
share = get_package_share_directory("rsee_ros")
assert os.path.samefile(share, os.path.join(pkg, "share", "rsee_ros")), share
ActionRecognition(label="x", resolutions=[224, 0])
if mode == "symlink":
    init = os.path.join(os.path.dirname(rsee_ros.model.__file__), "__init__.py")
    assert os.path.islink(init), f"{init} is not a symlink under --symlink-install"
print(f"  rsee_ros.msg and rsee_ros.model import from {pkg}")
EOF
    # The ros2-run launcher starts the package's code through the sourced environment.
    "$pkg/lib/rsee_ros/rsee" --help > /dev/null ||
      { echo "colcon_check[$mode]: lib/rsee_ros/rsee --help failed" >&2; exit 1; }
  )
}

status=0
for mode in "${MODES[@]}"; do
  case "$mode" in
    plain) extra=() ;;
    symlink) extra=(--symlink-install) ;;
    *) echo "colcon_check: unknown mode '$mode' (plain, symlink)" >&2; exit 2 ;;
  esac
  ws="$WORK/ws_$mode"
  copy_sources "$ws/src/rsee_ros"
  start=$(date +%s.%N)
  echo "colcon_check[$mode]: colcon build ${extra[*]} in $ws"
  if ! (cd "$ws" && "${NICE[@]}" colcon build "${extra[@]}" --base-paths src \
        --event-handlers console_direct- console_cohesion- \
        --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF \
        > "$WORK/build_$mode.log" 2>&1); then
    tail -n 60 "$WORK/build_$mode.log" >&2
    find "$ws/log" -name stderr.log -size +0 -exec tail -n 40 {} + >&2 2>/dev/null || true
    echo "colcon_check[$mode]: colcon build FAILED" >&2
    status=1
    continue
  fi
  echo "colcon_check[$mode]: built in $(elapsed "$start") s"
  if check_install "$ws" "$mode"; then
    echo "colcon_check[$mode]: OK ($(elapsed "$start") s in all)"
  else
    echo "colcon_check[$mode]: install check FAILED" >&2
    status=1
  fi
done
exit $status
