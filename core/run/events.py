"""Typed training events and the per-run event log.

The trainer emits small frozen dataclasses; the log stamps each with a sequence number and a wall-clock
time, keeps the full history in memory, appends it to `events.jsonl` in the run folder (so the run list
and its history survive a server restart), and fans it out to listeners. A listener or subscriber that
arrives late first gets everything from the start, so a panel opened mid-run still draws the whole
loss curve. Payloads are JSON-safe by construction: non-finite floats become null (browsers' JSON.parse
rejects NaN), paths become strings.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Optional, Union

log = logging.getLogger(__name__)

EVENTS_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Started:
    """A training session began (also after a resume: `start_step` > 0 then)."""

    kind: ClassVar[str] = "started"
    run_id: str
    total_steps: int
    start_step: int = 0
    config: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    """One optimizer step done. `its` is steps per second, `eta_s` seconds left, `memory` in MB."""

    kind: ClassVar[str] = "step"
    step: int
    total: int
    loss: float
    lr: float
    its: Optional[float] = None
    eta_s: Optional[float] = None
    memory: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint folder exists on disk (written atomically by RunDir)."""

    kind: ClassVar[str] = "checkpoint"
    step: int
    path: str


@dataclass(frozen=True)
class Preview:
    """Preview images for `step`; paths are relative to the run folder (served by the routes)."""

    kind: ClassVar[str] = "preview"
    step: int
    images: tuple = ()


@dataclass(frozen=True)
class Paused:
    kind: ClassVar[str] = "paused"
    step: int


@dataclass(frozen=True)
class Resumed:
    kind: ClassVar[str] = "resumed"
    step: int


@dataclass(frozen=True)
class Finished:
    """Training ended normally (`stopped_early` when a stop/cancel request ended it before the last step)."""

    kind: ClassVar[str] = "finished"
    step: int
    lora_path: Optional[str] = None
    stopped_early: bool = False


@dataclass(frozen=True)
class Failed:
    kind: ClassVar[str] = "failed"
    step: Optional[int]
    message: str


@dataclass(frozen=True)
class DatasetReport:
    """The dataset report shown before step 1 (images, buckets, captions, warnings)."""

    kind: ClassVar[str] = "dataset_report"
    report: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Info:
    """A phase or progress note outside the step loop, e.g. "caching latents 3/10"."""

    kind: ClassVar[str] = "info"
    message: str
    step: Optional[int] = None


Event = Union[Started, Step, Checkpoint, Preview, Paused, Resumed, Finished, Failed, DatasetReport, Info]
EVENT_TYPES: dict[str, type] = {
    cls.kind: cls
    for cls in (Started, Step, Checkpoint, Preview, Paused, Resumed, Finished, Failed, DatasetReport, Info)
}
TERMINAL_KINDS = frozenset({"finished", "failed"})


def json_safe(value: Any) -> Any:
    """Recursively convert to plain JSON types: non-finite floats -> None, paths -> str, tuples -> lists."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy / torch scalars and arrays
        return json_safe(value.tolist())
    return str(value)


def event_payload(event: Event) -> dict:
    """The event's fields as a JSON-safe dict, with its `kind`."""
    payload = {"kind": event.kind}
    for f in dataclasses.fields(event):
        payload[f.name] = json_safe(getattr(event, f.name))
    return payload


def event_from_payload(payload: Mapping[str, Any]) -> Event:
    """Rebuild a typed event from `event_payload` output (unknown fields are ignored for forward compat)."""
    cls = EVENT_TYPES.get(payload.get("kind"))
    if cls is None:
        raise ValueError(f"unknown event kind {payload.get('kind')!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in payload.items() if k in names}
    if cls is Preview and "images" in kwargs:
        kwargs["images"] = tuple(kwargs["images"])
    return cls(**kwargs)


@dataclass(frozen=True)
class Record:
    """An event as logged: its sequence number (0, 1, 2, ... per run folder) and wall-clock time."""

    seq: int
    time: float
    event: Event

    @property
    def kind(self) -> str:
        return self.event.kind

    def to_dict(self) -> dict:
        return {"seq": self.seq, "time": self.time, **event_payload(self.event)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Record":
        return cls(seq=int(data["seq"]), time=float(data["time"]), event=event_from_payload(data))


def read_events_file(path: Path) -> list[Record]:
    """Records from an `events.jsonl`; a torn last line (crash mid-append) and unknown kinds are skipped."""
    records: list[Record] = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return records
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(Record.from_dict(json.loads(line)))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("%s line %d skipped: %s", path, number, exc)
    return records


def _drop_torn_tail(path: Path) -> None:
    """Cut a partial last line (a crash mid-append) so the next append starts on a line of its own."""
    try:
        with open(path, "rb+") as fh:
            data = fh.read()
            if data and not data.endswith(b"\n"):
                fh.truncate(data.rfind(b"\n") + 1)
    except FileNotFoundError:
        return


Listener = Callable[[Record], None]


class EventLog:
    """Thread-safe, append-only event history of one run, mirrored to `path` (events.jsonl) when given.

    Opening a log on an existing file continues it (history and sequence numbers carry over), so a
    resumed run shows its earlier steps too. `close()` marks the run's stream as ended: subscribers
    finish, appends are refused.
    """

    def __init__(self, path: Optional[Path] = None, *, read_only: bool = False):
        self.path = Path(path) if path is not None else None
        self.read_only = read_only
        if self.path is not None and not read_only:
            _drop_torn_tail(self.path)
        self._records: list[Record] = read_events_file(self.path) if self.path is not None else []
        self._lock = threading.Lock()
        self._dispatch = threading.RLock()  # serializes append + listener calls so listeners see order
        self._listeners: list[Listener] = []
        self._closed = read_only

    # -- writing ---------------------------------------------------------------------------------
    def append(self, event: Event) -> Record:
        if not isinstance(event, tuple(EVENT_TYPES.values())):
            raise TypeError(f"EventLog.append expects an event from core.events, got {type(event).__name__}")
        with self._dispatch:
            with self._lock:
                if self._closed:
                    raise RuntimeError(f"event log {self.path or '(memory)'} is closed; {event.kind} not recorded")
                seq = self._records[-1].seq + 1 if self._records else 0
                record = Record(seq=seq, time=time.time(), event=event)
                self._write_line(record)
                self._records.append(record)
                listeners = list(self._listeners)
            for listener in listeners:
                self._call(listener, record)
        return record

    def _write_line(self, record: Record) -> None:
        if self.path is None:
            return
        line = json.dumps(record.to_dict(), allow_nan=False, separators=(",", ":")) + "\n"
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            if record.kind in TERMINAL_KINDS or record.kind == "checkpoint":
                os.fsync(fh.fileno())

    def close(self) -> None:
        with self._lock:
            self._closed = True

    @property
    def closed(self) -> bool:
        with self._lock:
            return self._closed

    # -- reading ---------------------------------------------------------------------------------
    def history(self, since_seq: int = -1) -> list[Record]:
        """Records with seq > since_seq (all of them by default)."""
        with self._lock:
            return [r for r in self._records if r.seq > since_seq]

    def last(self, kind: Optional[str] = None) -> Optional[Record]:
        with self._lock:
            for record in reversed(self._records):
                if kind is None or record.kind == kind:
                    return record
        return None

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def add_listener(self, listener: Listener, *, replay: bool = True) -> Callable[[], None]:
        """Call `listener(record)` for each new record (after the history when `replay`); returns remover.

        Listeners run on the appending (training) thread, in order; one that raises is logged, not
        removed, and never breaks training.
        """
        with self._dispatch:
            if replay:
                for record in self.history():
                    self._call(listener, record)
            with self._lock:
                self._listeners.append(listener)

        def remove() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    @staticmethod
    def _call(listener: Listener, record: Record) -> None:
        try:
            listener(record)
        except Exception:
            log.exception("event listener %r failed on %s #%d", listener, record.kind, record.seq)
