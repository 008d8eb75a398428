# Development entry points; `make test` is what CI runs (with `make test-jazzy`, see .ci/run).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

VENV := $(CURDIR)/.venv
VENV_JAZZY := $(CURDIR)/.venv-jazzy
PY := $(VENV)/bin/python
PY_JAZZY := $(VENV_JAZZY)/bin/python
PYTEST_ARGS ?=

# DDS stays on the loopback interface in every process started from here (tests, demo, scripts).
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export ROS_LOCALHOST_ONLY := 1
export ROS_STATIC_PEERS := 127.0.0.1
# Nothing from a sourced ROS installation or another venv may leak into the venvs.
unexport PYTHONPATH PYTHONHOME LD_LIBRARY_PATH _ROS_WHEELS_BOOTSTRAP_COMPLETE
unexport AMENT_PREFIX_PATH CMAKE_PREFIX_PATH COLCON_PREFIX_PATH VIRTUAL_ENV RSEE_ENGINE_CACHE

.PHONY: setup setup-jazzy test test-jazzy demo lint colcon-check clean clean-venv

setup:
	RSEE_ROS_DISTRO=kilted VENV=$(VENV) scripts/setup_env.sh

setup-jazzy:
	RSEE_ROS_DISTRO=jazzy VENV=$(VENV_JAZZY) scripts/setup_env.sh

test: setup
	$(VENV)/bin/ruff check .
	AMENT_PREFIX_PATH=$(VENV) RSEE_ENGINE_CACHE=$(VENV)/share/rsee_ros/engines \
		$(PY) -m pytest -q $(PYTEST_ARGS)

# The ROS-facing tests against the ROS 2 Jazzy wheels (Kilted is what `make test` uses).
test-jazzy: setup-jazzy
	AMENT_PREFIX_PATH=$(VENV_JAZZY) RSEE_ENGINE_CACHE=$(VENV_JAZZY)/share/rsee_ros/engines \
		$(PY_JAZZY) -m pytest -q -m ros $(PYTEST_ARGS)

demo: setup
	AMENT_PREFIX_PATH=$(VENV) RSEE_ENGINE_CACHE=$(VENV)/share/rsee_ros/engines $(PY) -m rsee_ros.demo

lint: setup
	$(VENV)/bin/ruff check .

# colcon build and colcon build --symlink-install in temporary workspaces (also a slow test).
colcon-check: setup
	VENV=$(VENV) scripts/colcon_check.sh

# Build outputs and caches; the venvs stay (they take minutes to rebuild: `make clean-venv`).
clean:
	rm -rf build install log .pytest_cache .ruff_cache *.egg-info
	find . -path ./.venv -prune -o -path ./.venv-jazzy -prune -o -name __pycache__ -type d \
		-prune -exec rm -rf {} +

clean-venv:
	rm -rf $(VENV) $(VENV_JAZZY)
