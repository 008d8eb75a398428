"""Opening a rosbag2's storage files for :mod:`rsee_ros.data.bag`, with one-line reasons.

:func:`open_reader` opens a bag folder, its ``metadata.yaml`` or a ``.mcap``/``.db3`` file with
rosbags' AnyReader, after checking what rosbags would report in several lines or in its own
words: a path that is no bag (a text file, an empty folder, a folder of other files, a folder
without ``metadata.yaml`` beside its storage file), a ``metadata.yaml`` that is not YAML or not
rosbag2 metadata, storage files it lists that are missing. Every :class:`BagError` message is one
line naming the file and what is wrong with it.

Interrupted recordings: an MCAP file cut short (no footer) can be read up to its last complete
record (MCAP is written record by record; rosbags scans such a file as it does one without a
summary), and is when asked (``partial``), with a line saying how many messages could be read of
how many. An sqlite3 file cut short cannot be read at all (sqlite refuses a database whose pages
are missing, even its schema: the index rosbags writes last lies at its end); its message says
it is truncated and by how much.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePath
from typing import Any

import yaml

__all__ = ["BAG_SUFFIXES", "BagError", "one_line", "open_reader"]

BAG_SUFFIXES = frozenset({".mcap", ".db3"})
# The keys of metadata.yaml's rosbag2_bagfile_information that rosbags cannot do without.
_METADATA_KEYS = ("version", "storage_identifier", "relative_file_paths", "duration",
                  "starting_time", "message_count", "topics_with_message_count")
_MCAP_MAGIC = b"\x89MCAP0\r\n"
_MCAP_DATA_END, _MCAP_FOOTER = 0x0F, 0x02  # record opcodes
_MCAP_MIN_SIZE = 8 + 9 + 20 + 8  # magic, footer record, magic


class BagError(ValueError):
    """A bag that cannot be opened or read, or a topic it does not have (the message says why
    and, for topics, names the bag's image topics)."""


def open_reader(path: Path, *, partial: bool = False) -> tuple[Any, str | None]:
    """``(reader, unreadable)``: an open AnyReader (or, for a cut MCAP file with ``partial``,
    an object with the same members :class:`~rsee_ros.data.bag.Bag` uses) and None, or the line
    saying what could not be read. :class:`BagError` when the bag cannot be opened."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    where = f"cannot open rosbag {str(path)!r}"
    try:
        source, files, expected = _storage_files(path)
        cut = next((f for f in files if _mcap_truncated(f)), None)
        if cut is not None:
            return _open_truncated(cut, expected if len(files) == 1 else None, len(files),
                                   partial)
    except BagError as exc:
        raise BagError(f"{where}: {exc}") from None
    except OSError as exc:
        raise BagError(f"{where}: {exc.strerror or exc}") from None
    try:
        reader = AnyReader([source], default_typestore=get_typestore(Stores.LATEST))
        reader.open()
    except Exception as exc:  # noqa: BLE001 - rosbags raises several unrelated error types
        raise BagError(f"{where}: {_open_problem(source, files, exc)}") from None
    return reader, None


def _open_truncated(path: Path, expected: int | None, files: int,
                    partial: bool) -> tuple[_TruncatedMcap, str]:
    """What can be read of a cut MCAP file, and the line saying what cannot (``partial``);
    BagError otherwise."""
    what = f"{path} is truncated (no MCAP footer: an interrupted recording?)"
    if not partial or files > 1:
        hint = "; give that file itself to read what it holds" if files > 1 else ""
        raise BagError(what + hint)
    reader = _TruncatedMcap(path)
    if reader.message_count == 0:
        reader.close()
        raise BagError(f"{what}: no message is complete")
    read = reader.message_count
    lost = f"the last {reader.lost_bytes} of its {reader.size} bytes"
    if expected is not None and expected > read:
        return reader, (f"{what}: {read} of the {expected} messages of its metadata.yaml could "
                        f"be read, the other {expected - read} ({lost}) could not")
    return reader, f"{what}: {read} messages could be read, {lost} could not"


def one_line(text: object) -> str:
    """``text`` on one line (rosbags and YAML errors span several)."""
    return " ".join(str(text).split())


def _storage_files(path: Path) -> tuple[Path, list[Path], int | None]:
    """``(what to open, its storage files, message count of its metadata.yaml or None)`` of a
    bag given as its folder, its metadata.yaml or a storage file; :class:`BagError` saying what
    is wrong with a path that is not a bag."""
    if not path.exists():
        raise BagError("no such file or folder")
    if path.is_file():
        if path.name != "metadata.yaml" and path.suffix not in BAG_SUFFIXES:
            raise BagError("not a rosbag2 recording: a file that is neither .mcap nor .db3 (give "
                           "the bag folder or its storage file)")
        if path.name != "metadata.yaml" and not (path.parent / "metadata.yaml").is_file():
            return path, [path], None
        path = path.parent
    meta = path / "metadata.yaml"
    if not meta.is_file():
        entries = sorted(p.name for p in path.iterdir())
        storage = [name for name in entries if Path(name).suffix in BAG_SUFFIXES]
        if storage:
            raise BagError(f"no metadata.yaml beside {', '.join(storage)} (an interrupted "
                           "recording? give the storage file itself, or run `ros2 bag reindex`)")
        what = f"none of its {len(entries)} entries" if entries else "an empty folder"
        raise BagError(f"not a rosbag2 recording: {what} (no metadata.yaml, .mcap or .db3 file)")
    info = _read_metadata(meta)
    files = [path / PurePath(name).name for name in info["relative_file_paths"]]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise BagError(f"{meta} lists storage files that are not there: {', '.join(missing)}")
    count = info["message_count"]
    return path, files, count if isinstance(count, int) else None


def _read_metadata(meta: Path) -> dict[str, Any]:
    """The ``rosbag2_bagfile_information`` of a metadata.yaml, checked for the keys rosbags
    needs (:class:`BagError` naming the file otherwise; rosbags checks the rest)."""
    try:
        doc = yaml.safe_load(meta.read_text())
    except OSError as exc:
        raise BagError(f"cannot read {meta}: {exc.strerror or exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc
        raise BagError(f"{meta} is not valid YAML{at}: {one_line(problem)}") from None
    info = doc.get("rosbag2_bagfile_information") if isinstance(doc, dict) else None
    if not isinstance(info, dict):
        raise BagError(f"{meta} is not rosbag2 metadata: no rosbag2_bagfile_information mapping")
    lacking = [key for key in _METADATA_KEYS if key not in info]
    if lacking:
        raise BagError(f"{meta} is not rosbag2 metadata: it lacks {', '.join(lacking)}")
    files = info["relative_file_paths"]
    if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
        raise BagError(f"{meta}: relative_file_paths must be a list of file names, got {files!r}")
    return info


def _sqlite_truncation(path: Path) -> str | None:
    """``"N of its M bytes"`` when an sqlite3 file is shorter than its header says, else None."""
    if path.suffix != ".db3":
        return None
    with path.open("rb") as fh:
        head = fh.read(100)
    if len(head) < 100 or not head.startswith(b"SQLite format 3\x00") or head[24:28] != head[92:96]:
        return None  # not sqlite, or a header whose page count is not maintained
    page_size = int.from_bytes(head[16:18], "big")
    expected = (65536 if page_size == 1 else page_size) * int.from_bytes(head[28:32], "big")
    size = path.stat().st_size
    return f"{size} of its {expected} bytes" if size < expected else None


def _open_problem(source: Path, files: list[Path], exc: Exception) -> str:
    """What is wrong, in one line, with a bag rosbags refused to open."""
    text = one_line(str(exc)) or type(exc).__name__
    for f in files:
        cut = _sqlite_truncation(f)
        if cut:
            return f"{f} is truncated ({cut}: an interrupted recording?): sqlite3 reads none of it"
        if f.suffix == ".mcap" and f.stat().st_size and not _starts_with(f, _MCAP_MAGIC):
            return f"{f} is not an MCAP file (it does not start with the MCAP magic bytes)"
    if source.is_dir() and "metadata" in text.lower():
        return f"{source / 'metadata.yaml'}: {text}"
    return f"{files[0]}: {text}" if len(files) == 1 and str(files[0]) not in text else text


def _starts_with(path: Path, magic: bytes) -> bool:
    with path.open("rb") as fh:
        return fh.read(len(magic)) == magic


def _mcap_truncated(path: Path) -> bool:
    """An MCAP file without its closing magic bytes (cut short: an interrupted recording)."""
    if path.suffix != ".mcap" or not _starts_with(path, _MCAP_MAGIC):
        return False  # not MCAP: rosbags says so
    size = path.stat().st_size
    with path.open("rb") as fh:
        fh.seek(max(0, size - 8))
        return size < _MCAP_MIN_SIZE or fh.read(8) != _MCAP_MAGIC


class _TruncatedMcap:
    """The complete records of an MCAP file cut short, behind the members of rosbags' AnyReader
    that :class:`~rsee_ros.data.bag.Bag` uses.

    rosbags reads an MCAP file without a summary by scanning its records (``meta_scan``,
    ``messages_scan``); here the scan ends at the last complete record before the cut. Messages
    are deserialised with the latest ROS 2 type store (the image types have not changed).
    """

    def __init__(self, path: Path) -> None:
        from rosbags.rosbag2.storage_mcap import McapReader
        from rosbags.typesys import Stores, get_typestore

        self.size = path.stat().st_size
        self._mcap = McapReader(path)
        self._mcap.bio = path.open("rb")
        try:
            self._mcap.data_start, self._mcap.data_end = _mcap_complete_records(self._mcap.bio)
            self._mcap.meta_scan()
        except Exception as exc:  # noqa: BLE001 - rosbags raises several types on damage
            self._mcap.bio.close()
            raise BagError(f"{path} is truncated and damaged: {one_line(str(exc))}") from None
        stats = self._mcap.statistics
        counts = stats.channel_message_counts
        self.connections = [c._replace(msgcount=counts.get(c.id, 0))
                            for c in self._mcap.connections]
        self.message_count: int = stats.message_count
        self.start_time = stats.start_time if self.message_count else 0
        self.duration = stats.end_time - stats.start_time + 1 if self.message_count else 0
        self.lost_bytes = self.size - self._mcap.data_end
        self._store = get_typestore(Stores.LATEST)

    def messages(self, connections: Sequence[Any], start: int | None = None,
                 stop: int | None = None) -> Iterator[tuple[Any, int, bytes]]:
        return self._mcap.messages_scan(connections, start, stop)

    def deserialize(self, raw: bytes, msgtype: str) -> Any:
        return self._store.deserialize_cdr(raw, msgtype)

    def close(self) -> None:
        self._mcap.close()


def _mcap_complete_records(fh: Any) -> tuple[int, int]:
    """``(end of the header record, end of the last complete data record)`` of an MCAP file
    (records: opcode byte, uint64 length, content; the data section ends at DataEnd)."""
    size = fh.seek(0, 2)
    pos, start = 8, None
    while pos + 9 <= size:
        fh.seek(pos)
        opcode, length = struct.unpack("<BQ", fh.read(9))
        if opcode in (_MCAP_DATA_END, _MCAP_FOOTER) or pos + 9 + length > size:
            break
        pos += 9 + length
        start = pos if start is None else start
    if start is None:
        raise BagError("not even its header record is complete")
    return start, pos
