"""Typed training events and their JSON form.

The trainer emits small frozen dataclasses; core/run/event_log.py stamps each with a sequence number
and a time (a `Record`) and keeps, writes and fans them out. Payloads are JSON-safe by construction:
non-finite floats become null (browsers' JSON.parse rejects NaN), paths become strings.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Optional, Union


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
    """Preview images for `step`; paths are relative to the run folder (served by the routes).
    `prompts[i]` is the text `images[i]` was rendered from (the gallery's captions)."""

    kind: ClassVar[str] = "preview"
    step: int
    images: tuple = ()
    prompts: tuple = ()


@dataclass(frozen=True)
class EvalLoss:
    """The evaluation loss at `step` (0 = the base model, before step 1): core/train/evaluation.py."""

    kind: ClassVar[str] = "eval_loss"
    step: int
    loss: float


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


Event = Union[Started, Step, Checkpoint, Preview, EvalLoss, Paused, Resumed, Finished, Failed, DatasetReport, Info]
EVENT_TYPES: dict[str, type] = {
    cls.kind: cls
    for cls in (Started, Step, Checkpoint, Preview, EvalLoss, Paused, Resumed, Finished, Failed, DatasetReport, Info)
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
    if cls is Preview:
        for name in ("images", "prompts"):
            if name in kwargs:
                kwargs[name] = tuple(kwargs[name])
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
