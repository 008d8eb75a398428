"""Inference engines: the model run so that a streaming step's cost follows its FLOPs.

=================  ==========================================================================
``torch``          the model itself, eager (the reference; what training uses)
``torch-fused``    per resolution BatchNorm folded, channels-last, TorchScript-frozen graphs
``onnxruntime``    an export (``rsee export``) run by ONNX Runtime: CPU provider, or with
                   ``device`` cuda its CUDA provider
``tensorrt``       the same export on ONNX Runtime's TensorRT provider (a GPU or a Jetson)
``auto``           ``onnxruntime`` when it is installed, else ``torch``
=================  ==========================================================================

:func:`load_engine` takes a checkpoint file or an export directory. A checkpoint asked to run on
ONNX Runtime is exported once into a cache folder (by its SHA-256) and loaded from there on later
starts. Every engine runs the same batch-1 streaming step (:class:`EngineSession`), so they make
the same decisions; the batched API (:meth:`RSEEModel.infer_batch`) stays the torch model's.
This package imports no ROS.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rsee_ros.engine.base import Engine

__all__ = ["ENGINES", "cached_export", "default_cache_dir", "engine_for_model", "is_export",
           "load_engine", "resolve_engine_name"]

ENGINES = ("auto", "torch", "torch-fused", "onnxruntime", "tensorrt")
log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """Where exports of checkpoints (and TensorRT engines) are cached: ``$RSEE_ENGINE_CACHE``,
    else ``~/.cache/rsee_ros/engines``."""
    return Path(os.environ.get("RSEE_ENGINE_CACHE", Path.home() / ".cache" / "rsee_ros" /
                               "engines")).expanduser()


def is_export(path: str | Path) -> bool:
    """True for an export directory (``rsee export``)."""
    from rsee_ros.engine.export import MANIFEST

    return Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


def resolve_engine_name(engine: str) -> str:
    """The engine ``engine`` stands for (``auto``: onnxruntime when installed, else torch)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine != "auto":
        return engine
    from rsee_ros.engine.onnxruntime_engine import onnxruntime_available

    return "onnxruntime" if onnxruntime_available() else "torch"


def engine_for_model(model: Any, class_names: list[str], engine: str = "torch",
                     metadata: dict[str, Any] | None = None) -> Engine:
    """A torch engine (``torch`` or ``torch-fused``) for a model in memory."""
    from rsee_ros.engine.torch_engine import FusedTorchEngine, TorchEngine

    if engine == "torch":
        return TorchEngine(model, class_names, metadata)
    if engine == "torch-fused":
        return FusedTorchEngine(model, class_names, metadata)
    raise ValueError(f"a model in memory runs on torch or torch-fused, not {engine!r} (export "
                     "it with rsee export for onnxruntime)")


def load_engine(
    source: str | Path,
    engine: str = "auto",
    *,
    device: str = "cpu",
    threads: int = 1,
    cache_dir: str | Path | None = None,
) -> Engine:
    """The engine for a checkpoint file or an export directory; see the module docstring.

    ``device`` (cpu, cuda, auto) places torch engines and picks ONNX Runtime's provider;
    ``threads`` is ONNX Runtime's intra-op thread count. Errors: ``CheckpointError`` for a bad
    checkpoint, ``ExportError`` for a bad export or provider, ``ValueError`` for bad options.
    """
    from rsee_ros.model import load_checkpoint, resolve_device

    source = Path(source)
    name = resolve_engine_name(engine)
    wanted_ort = name in ("onnxruntime", "tensorrt")
    if engine == "auto":
        log.info("engine auto: %s", name)
    if is_export(source):
        if not wanted_ort:
            if engine == "auto":
                raise ValueError(f"{source} is an export: install onnxruntime to run it")
            raise ValueError(f"{source} is an export, which runs on onnxruntime or tensorrt, "
                             f"not {name}")
        return _onnxruntime(source, name, device, threads, cache_dir)
    torch_device = resolve_device(device)
    checkpoint = load_checkpoint(source, device=torch_device if not wanted_ort else "cpu")
    if not wanted_ort:
        return engine_for_model(checkpoint.model, checkpoint.class_names, name,
                                checkpoint.metadata)
    return _onnxruntime(cached_export(source, cache_dir, checkpoint=checkpoint), name,
                        str(torch_device.type), threads, cache_dir)


def _onnxruntime(directory: Path, name: str, device: str, threads: int,
                 cache_dir: str | Path | None) -> Engine:
    from rsee_ros.engine.onnxruntime_engine import OnnxRuntimeEngine

    if name == "tensorrt":
        trt_cache = Path(cache_dir or default_cache_dir()) / "tensorrt" / directory.name
        return OnnxRuntimeEngine(directory, provider="tensorrt", threads=threads,
                                 trt_cache=trt_cache)
    provider = "cuda" if device.startswith("cuda") else "cpu"
    return OnnxRuntimeEngine(directory, provider=provider, threads=threads)


def cached_export(path: str | Path, cache_dir: str | Path | None = None, *,
                  checkpoint: Any = None) -> Path:
    """The export of the checkpoint file ``path`` in the cache (``cache_dir``, default
    :func:`default_cache_dir`), made now when it is not there yet; ``checkpoint``: the file
    already loaded."""
    from rsee_ros.engine.export import FORMAT_VERSION, export_checkpoint, file_sha256
    from rsee_ros.model import load_checkpoint

    path = Path(path)
    checkpoint = checkpoint if checkpoint is not None else load_checkpoint(path)
    # keyed by the checkpoint's bytes and the export format: a new format exports again
    key = f"{file_sha256(path)[:16]}-v{FORMAT_VERSION}"
    target = Path(cache_dir or default_cache_dir()) / key
    if not is_export(target):
        log.info("exporting %s for onnxruntime into %s (once; takes about a minute)", path,
                 target)
        export_checkpoint(checkpoint, target, source=path)
    return target
