"""A seeded mutation fuzzer for the pack's readers of untrusted files.

Every input starts from a real file (written by the pack, or by a reference writer such as
libultrahdr through OpenImageIO) and gets one to three of these mutations, drawn from a
``random.Random(seed)``: bit flips, bytes set to boundary values, a truncation, a splice
of another seed's bytes, a deleted or repeated range, a dictionary token inserted, or a
length/offset field of the format set to a boundary value (``fields``: where the seed's
length fields are). The same seed always gives the same inputs.

A reader passes when every input is either accepted or refused with a *clear error*: a
``ValueError`` (not one of Python's own subclasses such as ``UnicodeDecodeError``) raised
by a ``raise`` statement of the pack (the innermost traceback frame is such a line of the
pack, not a builtin like ``int()`` failing inside it), whose message names the input when
the reader was given a name. Two more failures are caught per input:

- a hang: an input running longer than ``per_input_s`` is stopped by ``SIGALRM``;
- an allocation over ``headroom_bytes``: the process's data segment (``RLIMIT_DATA``,
  which counts every heap and anonymous mapping, reserved or touched) is limited to what
  it held before the run plus the headroom, so a larger allocation fails at once.

Each distinct failure (exception type and the line that raised it) is kept with its
input, shrunk by removing byte ranges while the same failure reproduces.
"""

from __future__ import annotations

import dataclasses
import linecache
import random
import re
import resource
import signal
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import comfyui_hdr

PACK_FOLDERS = tuple({str(Path(comfyui_hdr.__file__).parent) + "/",
                      str(Path(comfyui_hdr.__file__).resolve().parent) + "/"})
"""Where the pack's code runs from (as imported, and with links resolved)."""
BOUNDARY_BYTES = (0x00, 0x01, 0x02, 0x7F, 0x80, 0xFE, 0xFF)
TEXT_VALUES = (b"", b"0", b"-1", b"1", b"nan", b"inf", b"-inf", b"1e309", b"-1e309", b"1e-320",
               b"4294967296", b"-2147483649", b"0x10", b"1,2", b" 2.5 ", b"True", b"\xc3\x28",
               b"9" * 400, b"1" * 5000)
"""Replacements for a text field (a number or a word in a text header or XML value)."""
SHRINK_TRIES = 3000
REPORTS: list = []
"""Every report of this session, for the summary at the end (``conftest.py``)."""


class Hang(BaseException):
    """Raised by SIGALRM inside an input that ran past its time limit (a BaseException,
    so no ``except Exception`` in the reader can swallow it)."""


@dataclasses.dataclass(frozen=True)
class Field:
    """A field of a seed: byte offset, size in bytes and byte order ('big', 'little'), or
    'text' for a number or word written as text (replaced by one of TEXT_VALUES)."""

    offset: int
    size: int
    order: str = "big"


@dataclasses.dataclass(frozen=True)
class Seed:
    data: bytes
    fields: tuple[Field, ...] = ()


@dataclasses.dataclass
class Failure:
    signature: str
    message: str
    data: bytes


@dataclasses.dataclass
class Report:
    target: str
    inputs: int
    seconds: float
    cpu_seconds: float
    slowest_s: float
    accepted: int
    refusals: Counter
    failures: dict[str, Failure]

    def summary(self) -> str:
        return (f"\nfuzz {self.target}: {self.inputs} inputs in {self.seconds:.1f} s "
                f"({self.cpu_seconds:.1f} s of CPU, "
                f"{1e6 * self.seconds / max(self.inputs, 1):.0f} us each, slowest "
                f"{1e3 * self.slowest_s:.1f} ms), {self.accepted} accepted, "
                f"{sum(self.refusals.values())} refused ({len(self.refusals)} kinds), "
                f"{len(self.failures)} failures")

    def refusal_text(self, kinds: int = 5) -> str:
        """The most frequent refusals (their first words) with their counts."""
        return "\n".join(f"    {count:7d} x {text}" for text, count in
                         self.refusals.most_common(kinds))

    def failure_text(self) -> str:
        return "\n".join(f"{item.signature}: {item.message}\n  input ({len(item.data)} bytes): "
                         f"{item.data.hex()}" for item in self.failures.values())


def _boundary_values(size: int, length: int) -> list[int]:
    top = 2 ** (8 * size) - 1
    return [0, 1, 2, 3, top, top - 1, top // 2, top // 2 + 1, length, length + 1,
            max(length - 1, 0), 8, 16, 255, 256, 65535 & top]


def text_fields(data: bytes, pattern: bytes) -> tuple[Field, ...]:
    """A text field for each match of ``pattern``'s first group in ``data``."""
    return tuple(Field(match.start(1), len(match[1]), "text")
                 for match in re.finditer(pattern, data))


def mutate(rng: random.Random, seed: Seed, seeds: Sequence[Seed],
           tokens: Sequence[bytes] = ()) -> bytes:
    """One to three mutations of ``seed`` (see the module docstring)."""
    data = bytearray(seed.data)
    for _ in range(rng.choice((1, 1, 2, 3))):
        kind = rng.randrange(9 if seed.fields else 8)
        size = len(data)
        if size == 0:
            data = bytearray(rng.randbytes(rng.randrange(1, 64)))
            continue
        at = rng.randrange(size)
        if kind == 0:  # bit flips
            for _ in range(rng.randint(1, 8)):
                spot = rng.randrange(size)
                data[spot] ^= 1 << rng.randrange(8)
        elif kind == 1:  # boundary bytes
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(size)] = rng.choice(BOUNDARY_BYTES)
        elif kind == 2:  # truncation
            del data[at:]
        elif kind == 3:  # splice another seed's bytes over a range
            other = rng.choice(seeds).data
            start = rng.randrange(len(other) or 1)
            piece = other[start:start + rng.randint(1, 256)]
            data[at:at + rng.randint(0, 256)] = piece
        elif kind == 4:  # delete a range
            del data[at:at + rng.randint(1, 64)]
        elif kind == 5:  # repeat a range
            piece = data[at:at + rng.randint(1, 64)]
            data[at:at] = piece * rng.randint(1, 8)
        elif kind == 6:  # random bytes
            data[at:at + rng.randint(1, 16)] = rng.randbytes(rng.randint(1, 16))
        elif kind == 7:  # a dictionary token
            token = rng.choice(tokens) if tokens else rng.randbytes(4)
            if rng.random() < 0.5:
                data[at:at] = token
            else:
                data[at:at + len(token)] = token
        else:  # a length or offset field set to a boundary value
            field = rng.choice(seed.fields)
            if field.order == "text":
                data[field.offset:field.offset + field.size] = rng.choice(TEXT_VALUES)
            elif field.offset + field.size <= size:
                value = rng.choice(_boundary_values(field.size, size)) % 2 ** (8 * field.size)
                data[field.offset:field.offset + field.size] = value.to_bytes(
                    field.size, field.order)
    return bytes(data)


def _data_segment() -> int:
    """Bytes of the process's data segment (VmData): what RLIMIT_DATA limits."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmData:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/self/status has no VmData line; the fuzz needs Linux")


def _on_alarm(signum, frame):
    raise Hang


def _raised_at(error: BaseException) -> tuple[str, int]:
    """File and line of the innermost traceback frame: where the exception was raised."""
    frame = error.__traceback__
    if frame is None:
        return "?", 0
    while frame.tb_next is not None:
        frame = frame.tb_next
    return frame.tb_frame.f_code.co_filename, frame.tb_lineno


def _signature(error: BaseException) -> str:
    filename, line = _raised_at(error)
    return f"{type(error).__name__} at {Path(filename).name}:{line}"


def _is_clear(error: BaseException, name: str | None) -> bool:
    """A ValueError (or one of the pack's own ValueError subclasses, such as
    hdr.exr.UnreadableExrError) from a ``raise`` statement of the pack (not from a builtin
    such as ``int()`` called by it) with a message that names the input."""
    filename, line = _raised_at(error)
    own_type = type(error) is ValueError or (
        isinstance(error, ValueError) and type(error).__module__.startswith("comfyui_hdr."))
    if not own_type or not filename.startswith(PACK_FOLDERS) or \
            not linecache.getline(filename, line).lstrip().startswith("raise "):
        return False
    message = str(error)
    return bool(message.strip()) and (name is None or name in message)


class _Limits:
    """SIGALRM per input and RLIMIT_DATA for the run; both undone on exit."""

    def __init__(self, per_input_s: float, headroom_bytes: int):
        self.per_input_s, self.headroom = per_input_s, headroom_bytes

    def __enter__(self):
        self.previous_handler = signal.signal(signal.SIGALRM, _on_alarm)
        self.previous_limit = resource.getrlimit(resource.RLIMIT_DATA)
        limit = _data_segment() + self.headroom
        hard = self.previous_limit[1]
        resource.setrlimit(resource.RLIMIT_DATA,
                           (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
        self.warnings = warnings.catch_warnings()
        self.warnings.__enter__()
        warnings.simplefilter("ignore")
        return self

    def __exit__(self, *exc):
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.previous_handler)
        resource.setrlimit(resource.RLIMIT_DATA, self.previous_limit)
        self.warnings.__exit__(*exc)


def _attempt(target: Callable[[bytes], object], data: bytes, per_input_s: float,
             name: str | None) -> tuple[str | None, BaseException | None]:
    """``(None, None)`` when ``target`` accepts ``data``, ``(refusal, None)`` when it refuses
    it clearly (the refusal's first words), ``(None, exception)`` for a failure."""
    signal.setitimer(signal.ITIMER_REAL, per_input_s)
    try:
        target(data)
    except Hang as error:
        return None, error
    except Exception as error:  # the point: anything but a clear error is a failure
        if _is_clear(error, name):
            return " ".join(str(error).split()[:6]), None
        return None, error
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return None, None


def shrink(target: Callable[[bytes], object], data: bytes, signature: str, per_input_s: float,
           name: str | None) -> bytes:
    """Remove byte ranges (halving their size) while the failure keeps its signature."""
    tries = 0
    chunk = max(len(data) // 2, 1)
    while chunk >= 1 and tries < SHRINK_TRIES:
        start, changed = 0, False
        while start < len(data) and tries < SHRINK_TRIES:
            candidate = data[:start] + data[start + chunk:]
            tries += 1
            error = _attempt(target, candidate, per_input_s, name)[1]
            if error is not None and _signature(error) == signature:
                data, changed = candidate, True
            else:
                start += chunk
        if not changed:
            chunk //= 2
    return data


def fuzz(target_name: str, target: Callable[[bytes], object], seeds: Sequence[Seed],
         count: int, *, seed: int, headroom_bytes: int, tokens: Sequence[bytes] = (),
         per_input_s: float = 2.0, name: str | None = None) -> Report:
    """Run ``target`` on ``count`` mutated inputs drawn with ``seed``; ``name`` is what its
    errors must name, ``headroom_bytes`` the allocation bound and ``per_input_s`` the time
    limit of one input."""
    rng = random.Random(seed)
    failures: dict[str, Failure] = {}
    refusals: Counter = Counter()
    accepted, slowest = 0, 0.0
    start, cpu_start = time.perf_counter(), time.process_time()
    with _Limits(per_input_s, headroom_bytes):
        for _ in range(count):
            data = mutate(rng, rng.choice(seeds), seeds, tokens)
            began = time.perf_counter()
            refusal, error = _attempt(target, data, per_input_s, name)
            slowest = max(slowest, time.perf_counter() - began)
            if refusal is not None:
                refusals[refusal] += 1
            elif error is None:
                accepted += 1
            elif _signature(error) not in failures:
                failures[_signature(error)] = Failure(
                    _signature(error), f"{type(error).__name__}: {error}", data)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        for failure in failures.values():
            failure.data = shrink(target, failure.data, failure.signature, per_input_s, name)
    report = Report(target_name, count, seconds, cpu_seconds, slowest, accepted, refusals,
                    failures)
    REPORTS.append(report)
    return report
