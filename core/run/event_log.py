"""The per-run event log: the history of one run's events, in memory and in `events.jsonl`.

The log stamps each event (core/run/events.py) with a sequence number and a wall-clock time, keeps the
full history in memory, appends it to `events.jsonl` in the run folder (so the run list and its
history survive a server restart), and fans it out to listeners. A listener that arrives late first
gets everything from the start, so a panel opened mid-run still draws the whole loss curve.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from .events import EVENT_TYPES, TERMINAL_KINDS, Event, Record

log = logging.getLogger(__name__)


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
            raise TypeError(f"EventLog.append expects an event from core.run.events, got {type(event).__name__}")
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
