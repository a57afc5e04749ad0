"""The decision log: one record per routed request (and per feedback), written off the hot path.

``DecisionLog("decisions.jsonl")`` appends JSON lines; a ``.parquet`` path writes
Parquet (needs ``pyarrow``), one row group per flush (an existing Parquet file,
which cannot be appended to, is rotated first). A request only puts its record on
a bounded queue (never blocks: when the queue is full the record is dropped and
counted); one writer thread serialises and writes, up to 256 records at a
time. When a write takes the file past ``max_bytes`` it is rotated: ``log.jsonl`` becomes ``log.jsonl.1`` (older ones
shift up to ``backups``, the oldest is deleted) and a new file starts.

Decision records: ``{"kind": "decision", "id", "time", "model", "version",
"modality", "reason", "score", "propensity", "candidates", "features",
"latency_s", "outcome"}`` with ``features`` the row the policy read, in
:data:`fastroute.FEATURE_NAMES` order (null = missing), followed, when the policy reads
user features, by those, every column then named in ``"feature_names"``; ``outcome``
"ok" or the error class. Feedback
records: ``{"kind": "feedback", "id", "time", "reward", ...outcome}``, joined to
their decision by id when the log is read (:func:`read_log`).
"""

from __future__ import annotations

import json
import math
import os
import queue
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InvalidInput

__all__ = ["DecisionLog", "LoggedDecisions", "read_log", "rotated_path"]

_FLUSH_EVERY = 256  # records per write batch (and per Parquet row group)
_STOP = object()


class DecisionLog:
    """A bounded, non-blocking, size-rotated sink of decision and feedback records.

    ``record`` is thread-safe and never blocks; ``close`` writes what is queued
    and stops the writer. ``written`` and ``dropped`` count records.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = 64 << 20,
        backups: int = 3,
        capacity: int = 10_000,
    ) -> None:
        for name, value, low in (("max_bytes", max_bytes, 1), ("backups", backups, 0), ("capacity", capacity, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"decision log {name} must be an int >= {low}, got {value!r}")
        self.path = Path(path)
        self.max_bytes, self.backups = max_bytes, backups
        if self.path.suffix == ".parquet":
            self._writer: _JsonLinesWriter | _ParquetWriter = _ParquetWriter(self.path)
            if self.path.exists():
                self._rotate()
        else:
            self._writer = _JsonLinesWriter(self.path)
        self._queue: queue.Queue[Any] = queue.Queue(capacity)
        self.written = 0  # written by the writer thread only
        self.dropped = 0  # guarded by _dropped_lock
        self._dropped_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="fastroute-decision-log", daemon=True)
        self._thread.start()

    def record(self, record: Mapping[str, Any]) -> bool:
        """Queue ``record`` for writing; False (and counted as dropped) when the queue is full."""
        try:
            self._queue.put_nowait(record)
            return True
        except queue.Full:
            with self._dropped_lock:
                self.dropped += 1
            return False

    def close(self, timeout: float | None = 30.0) -> None:
        """Write every queued record, close the file and stop the writer thread. Idempotent."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            while len(batch) < _FLUSH_EVERY:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stopping = any(record is _STOP for record in batch)
            records = [record for record in batch if record is not _STOP]
            if records:
                self._writer.write(records)
                self.written += len(records)
                if self._writer.size() >= self.max_bytes:
                    self._rotate()
        self._writer.close()

    def _rotate(self) -> None:
        """log.jsonl -> log.1.jsonl -> log.2.jsonl ...; the oldest beyond ``backups`` is replaced."""
        self._writer.close()
        for index in range(self.backups, 0, -1):
            newer = self.path if index == 1 else rotated_path(self.path, index - 1)
            if newer.exists():
                newer.replace(rotated_path(self.path, index))
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        self._writer.reopen()


def rotated_path(path: Path, index: int) -> Path:
    """The ``index``-th older file of a rotated log: ``decisions.2.jsonl`` for ``decisions.jsonl``."""
    return path.with_name(f"{path.stem}.{index}{path.suffix}")


class _JsonLinesWriter:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - held open, closed in close()

    def write(self, records: list[Mapping[str, Any]]) -> None:
        self._file.write("".join(json.dumps(record, default=_plain, allow_nan=False) + "\n" for record in records))
        self._file.flush()

    def size(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        self._file.close()

    def reopen(self) -> None:
        self._file = open(self._path, "a", encoding="utf-8")  # noqa: SIM115


class _ParquetWriter:
    """Parquet with one column per record field (features as a list of doubles), a row group
    per batch; fields outside the schema (feedback outcomes) go to the JSON column ``extra``."""

    def __init__(self, path: Path) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._pa, self._pq, self._path = pa, pq, path
        self._schema = pa.schema([(name, _PARQUET_TYPES[kind](pa)) for name, kind in _PARQUET_COLUMNS])
        self._writer: Any = None

    def write(self, records: list[Mapping[str, Any]]) -> None:
        columns = [name for name, _ in _PARQUET_COLUMNS if name != "extra"]
        rows = []
        for record in records:
            row = {name: _plain_value(record.get(name)) for name in columns}
            extra = {k: v for k, v in record.items() if k not in row}
            row["extra"] = json.dumps(extra, default=_plain, allow_nan=False) if extra else None
            rows.append(row)
        if self._writer is None:
            self._writer = self._pq.ParquetWriter(self._path, self._schema)
        self._writer.write_table(self._pa.Table.from_pylist(rows, schema=self._schema))

    def size(self) -> int:
        return self._path.stat().st_size if self._path.exists() else 0

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def reopen(self) -> None:
        self._writer = None


_PARQUET_COLUMNS = (
    ("kind", "str"), ("id", "str"), ("time", "f64"), ("model", "str"), ("version", "str"), ("modality", "str"),
    ("reason", "str"), ("score", "f64"), ("propensity", "f64"), ("latency_s", "f64"), ("outcome", "str"),
    ("candidates", "strs"), ("features", "f64s"), ("reward", "f64"), ("extra", "str"),
)
_PARQUET_TYPES = {
    "str": lambda pa: pa.string(),
    "f64": lambda pa: pa.float64(),
    "strs": lambda pa: pa.list_(pa.string()),
    "f64s": lambda pa: pa.list_(pa.float64()),
}


def _plain_value(value: Any) -> Any:
    return _plain(value) if hasattr(value, "tolist") else value


def _plain(value: Any) -> Any:
    """JSON for numpy scalars and arrays in records (NaN/inf become null)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
        return [None if isinstance(v, float) and not math.isfinite(v) else v for v in value] if isinstance(value, list) else value
    raise TypeError(f"cannot log a {type(value).__name__}")


# -- reading -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoggedDecisions:
    """Decisions read from a log, with the feedback joined to them by id."""

    decisions: list[dict[str, Any]]  # each with "feedback": the joined feedback record or None
    feedback_unmatched: int  # feedback records whose decision is not in the log


def read_log(paths: list[Path], progress: Any = None) -> LoggedDecisions:
    """Read JSON-lines or Parquet decision logs and join feedback to decisions by id.

    ``progress``, when given, is called with each file's record count as read.
    Raises InvalidInput naming the file and line of a record that is not JSON.
    """
    decisions: dict[str, dict[str, Any]] = {}
    feedback: dict[str, dict[str, Any]] = {}
    for path in paths:
        for record in _records(path):
            if progress is not None:
                progress(1)
            kind = record.get("kind")
            if kind == "decision" and isinstance(record.get("id"), str):
                decisions[record["id"]] = {**record, "feedback": None}
            elif kind == "feedback" and isinstance(record.get("id"), str):
                feedback[record["id"]] = record
    unmatched = 0
    for decision_id, joined in feedback.items():
        if decision_id in decisions:
            decisions[decision_id]["feedback"] = joined
        else:
            unmatched += 1
    return LoggedDecisions(list(decisions.values()), unmatched)


def _records(path: Path) -> Iterator[dict[str, Any]]:
    if path.suffix == ".parquet":
        yield from _parquet_records(path)
        return
    try:
        with open(path, encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except ValueError as error:
                        raise InvalidInput(f"{path}:{number}: not a JSON record: {error}") from None
    except OSError as error:
        raise InvalidInput(f"cannot read decision log {path}: {error.strerror}") from None


def _parquet_records(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of a Parquet log, one row group at a time, decoded on this thread: with its default
    ``use_threads``/``pre_buffer``, pyarrow would start its process-wide CPU and I/O thread
    pools, whose threads then stay for the rest of the caller's process."""
    import pyarrow.parquet as pq

    with pq.ParquetFile(path, pre_buffer=False) as parquet:
        for batch in parquet.iter_batches(use_threads=False):
            for row in batch.to_pylist():
                extra = row.pop("extra")
                yield {**{k: v for k, v in row.items() if v is not None}, **(json.loads(extra) if extra else {})}
