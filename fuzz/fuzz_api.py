#!/usr/bin/env python3
"""Fuzz target: every public entry point with arbitrary arguments.

``atheris.FuzzedDataProvider`` turns the input into one scenario:

- ``functional``: ``rnnext.functional.rnn/lstm/gru`` with arrays of any
  shape (0, small, or huge through ``np.broadcast_to`` views that allocate
  nothing), dtype (float16/32/64, longdouble, ints, bool, complex, object,
  strings, bytes, datetime, structured), layout (C, Fortran, negative
  strides, strided, read-only, big-endian, unaligned, broadcast, nested
  lists, objects with only ``__array__`` or only ``__dlpack__``, ml_dtypes
  bfloat16), values (NaN, Inf, beyond float32's range), ``lengths`` of any
  dtype/shape/value, options that are not bools or not known strings, None;
  then, with ``return_cache=True``, the matching ``*_backward`` with gradients
  of any shape/dtype, or another cell's cache, or no cache at all;
- ``model``: ``rnnext.RNN/LSTM/GRU(...)`` with arbitrary sizes and options,
  then a few of: ``model(x, h0, lengths=..., return_sequences=...)``,
  ``step``, ``loss_and_grads``, ``load_state_dict``, parameter assignment
  (attribute and ``params[key]``), ``predict``, ``initial_state``,
  ``generate``, ``to_bytes``/``from_bytes``, ``copy.deepcopy``, ``pickle``.

The API's contract (API.md, "Errors"): a call succeeds or raises ValueError,
TypeError or MemoryError (sizes past memory, raised before allocating);
anything else (IndexError, KeyError, AttributeError, SystemError, an
assertion below, a warning, a segfault, an abort, a hang) is reported.
Documented exceptions: AttributeError for the single-layer attributes on a
deep/bidirectional model (or W_o/b_o without a head), KeyError for
``params[unknown] = ...`` (a Mapping).

When a call succeeds, cheap invariants are checked: output shapes as API.md
says, dtype equal to the weights'/model's dtype, outputs exactly zero past
``lengths``, inputs unmodified, outputs not aliasing inputs, gradients keyed
and shaped like what they differentiate.

Real allocation is capped: an argument larger than ``REAL_LIMIT`` elements is
either a broadcast view (when it is far beyond memory) or shrunk, and a call
whose work or outputs would be large but possible is skipped. The process's
address space is limited (fuzzlib.limit_process), so "cannot allocate" is
quick. Calls with arguments far beyond memory, or with values a float32 cast
overflows under the "error" warnings filter, run in a forked child (outside
strict mode), so that a known crash there is counted instead of ending the
run; a crash there that is not known is reported (as an exception).

    python fuzz/fuzz_api.py -atheris_runs=100000
"""

from __future__ import annotations

import copy
import faulthandler
import os
import pickle
import signal
import sys
import time
import traceback
import warnings

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fuzzlib  # noqa: E402

import numpy as np  # noqa: E402
import rnnext as rx  # noqa: E402
from rnnext import functional as F  # noqa: E402

try:
    import ml_dtypes  # bfloat16 arrays as arguments
except ImportError:  # pragma: no cover - in the test extra
    ml_dtypes = None

# ---------------------------------------------------------------- limits

REAL_LIMIT = 2048  # elements of an argument that is really allocated
ASTRO_BYTES = 2**44  # a view this large cannot be copied (past the address space limit and RAM)
WORK_LIMIT = 200_000  # multiply-adds (and time steps) of one call
PARAM_BYTES_LIMIT = 2**22  # parameters a model may really allocate
PHYSICAL_MEMORY = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")  # what rnnext's checks compare with
CHILD_TIMEOUT = 30.0  # seconds, for a call run in a forked child
VERBOSE = os.environ.get("RNNEXT_FUZZ_VERBOSE", "0") not in ("", "0")  # print each call (replaying a crash)
STATS = os.environ.get("RNNEXT_FUZZ_STATS", "0") not in ("", "0")  # outcome counts per call, at exit
_stats: dict = {}
F32_MAX = float(np.finfo(np.float32).max)

HUGE_DIMS = [2**31 - 1, 2**31, 2**32 + 3, 2**40, 2**45, 2**62]
FLOAT_DTYPES = [np.dtype(np.float32), np.dtype(np.float64)]
ODD_DTYPES = [np.dtype(t) for t in (np.float16, np.longdouble, np.int8, np.int32, np.int64, np.uint8, np.uint64,
                                     np.bool_, np.complex64, np.complex128, object, "U3", "S3", "M8[s]", "m8[s]")]
ODD_DTYPES.append(np.dtype([("a", np.float32)]))
INT_DTYPES = [np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint32, np.uint64,
                                     np.intp)]


class Skip(Exception):
    """The input asks for a call too large to run for real; nothing to check."""


def _prod(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def describe(v) -> str:
    """A short description of an argument, for RNNEXT_FUZZ_VERBOSE."""
    if isinstance(v, np.ndarray):
        flags = ("C" if v.flags.c_contiguous else "") + ("F" if v.flags.f_contiguous else "") + \
                ("" if v.flags.writeable else " ro") + ("" if v.flags.aligned else " unaligned")
        return f"ndarray{v.shape} {v.dtype.str} strides={v.strides} {flags}"
    if isinstance(v, (list, tuple)) and len(v) <= 3:
        inner = ", ".join(describe(e) for e in v)
        return f"{type(v).__name__}[{inner}]"
    if isinstance(v, list):
        return f"list(shape {np.shape(v) if v else 0})"
    return repr(v)[:80]


def note(name: str, **arguments) -> None:
    _stats["current"] = name.split("(")[0].split(".")[-1] if name.startswith("F.") else \
        (name.split(").")[-1].split("(")[0].split(" ")[0] if ")." in name else "constructor")
    if VERBOSE:
        print(f"-- {name}(" + ", ".join(f"{k}={describe(v)}" for k, v in arguments.items()) + ")",
              file=sys.stderr, flush=True)


class ArrayOnly:
    """An argument from another library that only has ``__array__``."""

    def __init__(self, a) -> None:
        self._a = a

    def __array__(self, dtype=None, copy=None):
        return self._a if dtype is None else self._a.astype(dtype)


class DLPackOnly:
    """An argument from another library that only speaks DLPack (on the host)."""

    def __init__(self, a) -> None:
        self._a = a

    def __dlpack__(self, **kwargs):
        return self._a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return (1, 0)


# id(argument) -> (argument, the NumPy array it stands for), for the checks'
# own reading of arguments handed over by another library (cleared per input).
_HOST: dict = {}


def host(v):
    """The NumPy array an argument stands for (itself for NumPy's and lists)."""
    entry = _HOST.get(id(v))
    return v if entry is None or entry[0] is not v else entry[1]


def _bool(value, default=True):
    """What a bool-ish option means when the call accepts it (pybind11/Python truth)."""
    try:
        return bool(value)
    except Exception:
        return default


class Ctx:
    """One input's choices and what the checks need to know about them."""

    def __init__(self, data: bytes) -> None:
        self.fdp = atheris.FuzzedDataProvider(data)
        self.snapshots = []  # (array, bytes before the call)
        self.arrays = []  # every ndarray argument (for aliasing checks)
        self.risk = set()  # why this call runs in a child (outside strict mode)
        self.f32_overflow = False  # a float argument holds finite values beyond float32
        _HOST.clear()

    # -- choices
    def int(self, lo: int, hi: int) -> int:
        return self.fdp.ConsumeIntInRange(lo, hi)

    def pick(self, values):
        return values[self.fdp.ConsumeIntInRange(0, len(values) - 1)]

    def chance(self, percent: int) -> bool:
        return self.fdp.ConsumeIntInRange(0, 99) < percent

    def dim(self, lo: int = 0) -> int:
        r = self.int(0, 99)
        if r < 80:
            return self.int(lo, 4)
        if r < 92:
            return self.int(5, 12)
        return self.pick(HUGE_DIMS)

    def odd_bool(self):
        return self.pick([None, 0, 1, 2, -1, 1.5, "yes", "", np.bool_(True), np.bool_(False), np.array(True),
                          np.array([True, False]), np.int64(0), [], [1], object()])

    def maybe_bool(self, percent_odd: int = 5):
        return self.odd_bool() if self.chance(percent_odd) else self.fdp.ConsumeBool()

    # -- arrays
    def values(self, shape, dtype: np.dtype) -> np.ndarray:
        """A real array of shape and dtype with fuzzed values (NaN, Inf, extremes)."""
        n = _prod(shape)
        rng = np.random.default_rng(self.int(0, 255))
        scale = self.pick([1.0, 1.0, 1.0, 0.0, 1e-3, 1e3, 1e30])
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            base = rng.standard_normal(n) * scale
            if n and self.chance(30):
                special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e300, -1e300, 5e-324, 3.5e38, 1e-40])
                k = self.int(1, min(n, 4))
                base[rng.integers(0, n, k)] = special[rng.integers(0, len(special), k)]
            kind = dtype.kind
            if kind == "f":
                a = base.astype(dtype)
                if dtype.itemsize > 4:
                    finite = a[np.isfinite(a)]
                    if finite.size and float(np.max(np.abs(finite))) > F32_MAX:
                        self.f32_overflow = True
            elif kind in "iu":
                info = np.iinfo(dtype)
                lo, hi = self.pick([(0, 3), (-3, 3), (int(info.min), int(info.max))])
                a = rng.integers(max(lo, int(info.min)), min(hi, int(info.max)), n, dtype=dtype, endpoint=True)
            elif kind == "b":
                a = base > 0
            elif kind == "c":
                a = (base + 1j * base[::-1]).astype(dtype)
            elif kind == "O":
                a = np.array([float(v) for v in base] + [None], dtype=object)[:n]
            elif kind in "US":
                a = np.array(["1.5", "x", "nan"] * (n // 3 + 1))[:n].astype(dtype)
            elif kind in "Mm":
                a = rng.integers(0, 1000, n).astype(dtype)
            else:
                a = np.zeros(n, dtype)
        return a.reshape(shape)

    def array(self, shape, dtype: np.dtype):
        """An argument of this shape and dtype, in a fuzzed layout."""
        try:
            return self._array(shape, dtype)
        except (MemoryError, ValueError, OverflowError):  # NumPy cannot make it: not the API's business
            raise Skip() from None

    def _array(self, shape, dtype: np.dtype):
        shape = tuple(int(d) for d in shape)
        n = _prod(shape)
        if n > REAL_LIMIT:
            nbytes = n * max(dtype.itemsize, 1)
            if nbytes >= ASTRO_BYTES:
                try:
                    view = np.broadcast_to(self.values((), dtype), shape)
                except ValueError:  # past what NumPy can describe
                    view = None
                if view is not None:
                    self.risk.add("huge-view")
                    self.arrays.append(view)
                    return view
            shape = tuple(min(d, 3) for d in shape)  # large but possible: shrink it
        elif n == 0 and _prod(d for d in shape if d) * max(dtype.itemsize, 1) >= 2**62:
            shape = tuple(min(d, 3) for d in shape)  # empty, but past what NumPy can describe
        a = self.values(shape, dtype)
        layout = self.int(0, 15)
        numeric = dtype.kind in "fiubc"
        if layout == 1:
            a = np.asfortranarray(a)
        elif layout == 2 and a.ndim:
            a = np.ascontiguousarray(np.flip(a, axis=self.int(0, a.ndim - 1)))
            a = np.flip(a, axis=0) if a.ndim else a  # negative strides (values permuted: fine)
        elif layout == 3 and a.ndim:
            big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype)
            big[..., ::2] = a
            a = big[..., ::2]
        elif layout == 4:
            a.setflags(write=False)
        elif layout == 5 and numeric and dtype.itemsize > 1:
            a = a.astype(dtype.newbyteorder(">"))
        elif layout == 6 and numeric:
            buf = np.zeros(a.nbytes + 1, np.uint8)
            u = np.ndarray(a.shape, dtype, buffer=buf, offset=1)
            u[...] = a
            a = u
        elif layout == 7 and a.ndim and a.shape[0] > 1:
            a = np.broadcast_to(a[:1], a.shape)
        elif layout == 8 and n <= 64 and max(shape, default=0) <= 64 and dtype.kind in "fiub":
            self.snapshots.append((a, a.tobytes()))
            self.arrays.append(a)
            return a.tolist()
        self.snapshots.append((a, a.tobytes()))
        self.arrays.append(a)
        return self.produced(a, layout)

    def produced(self, a: np.ndarray, layout: int):
        """``a``, or (layouts 13-15) the same data handed over by another
        library: only ``__array__``, only ``__dlpack__``, or as bfloat16."""
        if layout == 13:
            wrapped = ArrayOnly(a)
        elif layout == 14 and a.dtype.kind in "fiub" and a.dtype.isnative and a.flags.writeable:
            wrapped = DLPackOnly(a)
        elif layout == 15 and ml_dtypes is not None and a.dtype.kind == "f":
            with np.errstate(all="ignore"):
                wrapped = a.astype(ml_dtypes.bfloat16)
            a = wrapped.astype(np.float32)
        else:
            return a
        _HOST[id(wrapped)] = (wrapped, a)
        return wrapped

    def perturbed(self, shape):
        """shape, or (sometimes) a wrong one."""
        shape = tuple(shape)
        r = self.int(0, 99)
        if r < 85:
            return shape
        if r < 91 and shape:
            i = self.int(0, len(shape) - 1)
            return shape[:i] + (self.dim(),) + shape[i + 1:]
        if r < 92:
            return shape[:-1] if shape else (self.dim(),)
        if r < 96:
            return shape + (self.dim(),)
        return tuple(self.dim() for _ in range(self.int(0, 4)))

    def weird(self):
        return self.pick(["tanh", b"\x00\x01", object(), {"a": 1}, [[1.0, 2.0], [3.0]], 1j, Ellipsis, (1, 2),
                          np.float32(1), 2**70, -1, float("nan"), True, [], np.array([]), np.ma.masked_array([1.0]),
                          np.zeros((2, 0, 3)), np.float64(2.5), set(), "1.0"])

    def arg(self, shape, dtype, none_ok: bool = False):
        """A fuzzed argument meant to be an array of this shape and dtype."""
        r = self.int(0, 99)
        if none_ok and r < 30:
            return None
        if r < 95:
            return self.array(self.perturbed(shape), dtype if self.chance(96) else self.pick(ODD_DTYPES))
        if r < 97:
            return self.array(self.perturbed(shape), self.pick(FLOAT_DTYPES + ODD_DTYPES + INT_DTYPES))
        return self.weird()

    def lengths(self, batch: int, steps: int, unbatched: bool):
        r = self.int(0, 99)
        if r < 40:
            return None
        shape = () if unbatched and self.fdp.ConsumeBool() else ((1,) if unbatched else (batch,))
        if batch > REAL_LIMIT:  # a view of that many lengths: checking them is linear in it, not a hang
            return None
        dtype = self.pick(INT_DTYPES)
        if r < 75 and _prod(shape) <= REAL_LIMIT and steps >= 1:
            rng = np.random.default_rng(self.int(0, 255))
            hi = min(steps, int(np.iinfo(dtype).max))
            a = rng.integers(1, hi, _prod(shape), endpoint=True).astype(dtype).reshape(shape)
            if r >= 70 and a.size:  # one out of range (wrapped to the dtype)
                bad = np.array(self.pick([0, -1, steps + 1, int(np.iinfo(dtype).max)]))
                with warnings.catch_warnings(), np.errstate(all="ignore"):
                    warnings.simplefilter("ignore")
                    a.flat[self.int(0, a.size - 1)] = bad.astype(dtype)
            self.snapshots.append((a, a.tobytes()))
            self.arrays.append(a)
            return a.tolist() if self.chance(10) else a
        if r < 95:
            return self.array(self.perturbed(shape), self.pick(INT_DTYPES + INT_DTYPES + FLOAT_DTYPES + ODD_DTYPES))
        return self.weird()


# ---------------------------------------------------------------- checks


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


def check_inputs_unchanged(ctx: Ctx) -> None:
    for a, before in ctx.snapshots:
        expect(a.tobytes() == before, f"an input was modified: {a.dtype} {a.shape}")


def check_fresh(ctx: Ctx, *outputs) -> None:
    """Outputs are new arrays: writable, not sharing memory with any input."""
    for out in outputs:
        if not isinstance(out, np.ndarray):
            continue
        for a in ctx.arrays:
            if isinstance(a, np.ndarray) and a.size and out.size:
                expect(not np.may_share_memory(out, a), f"an output {out.shape} aliases an input {a.shape}")


def check_array(name: str, a, shape, dtype) -> None:
    expect(isinstance(a, np.ndarray), f"{name}: expected an ndarray, got {type(a).__name__}")
    expect(a.shape == tuple(shape), f"{name}: expected shape {tuple(shape)}, got {a.shape}")
    expect(a.dtype == dtype, f"{name}: expected dtype {dtype}, got {a.dtype}")


def check_zero_past(name: str, seq: np.ndarray, lengths, batch_first: bool, unbatched: bool) -> None:
    """Outputs past each sequence's length are exactly zero (API.md)."""
    if lengths is None:
        return
    L = np.asarray(host(lengths)).reshape(-1).astype(np.int64)
    s = seq[None] if unbatched else (seq if batch_first else np.swapaxes(seq, 0, 1))
    for b in range(min(s.shape[0], 64)):
        tail = s[b, int(L[b]):]
        expect(tail.size == 0 or not np.any(tail != 0) and not np.any(np.isnan(tail)),
               f"{name}: nonzero output past lengths[{b}] = {L[b]}")


# ---------------------------------------------------------------- running a call

_ALLOWED = fuzzlib.ALLOWED_API_ERRORS


def _classify(e: BaseException, extra_allowed=()) -> str:
    """'ok' (an allowed error), 'known:<name>' or 'bug'."""
    if isinstance(e, _ALLOWED) or isinstance(e, extra_allowed):
        return "ok"
    name = fuzzlib.known_bug_of(e)
    return "bug" if name is None else "known:" + name


def _innermost_frame(dump: str) -> str:
    """The innermost 'File ...' line of a faulthandler dump (most recent call first)."""
    for line in dump.splitlines():
        if line.strip().startswith("File "):
            return line.strip()
    return ""


def _run_in_child(ctx: Ctx, body) -> None:
    """Runs body() in a forked child; a crash or hang there is reported
    (as an exception in this process) unless it is a known bug."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: default signal dispositions, so a crash is a plain signal death
        try:
            os.close(r)
            for sig in (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT, signal.SIGFPE, signal.SIGILL):
                signal.signal(sig, signal.SIG_DFL)
            # A hang: the stacks go to the parent, then the child exits.
            faulthandler.dump_traceback_later(CHILD_TIMEOUT, exit=True, file=w)
            try:
                body()
                message = "ok"
            except Skip:
                message = "ok"
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                verdict = _classify(e)
                message = verdict if verdict != "bug" else "bug:" + "".join(traceback.format_exception(e))
            faulthandler.cancel_dump_traceback_later()
            os.write(w, message.encode("utf-8", "replace")[:60000])
        finally:
            os._exit(0)
    os.close(w)
    os.set_blocking(r, False)
    deadline = time.monotonic() + CHILD_TIMEOUT + 30
    status, chunks = None, []

    def drain():
        while True:
            try:
                chunk = os.read(r, 65536)
            except BlockingIOError:
                return
            if not chunk:
                return
            chunks.append(chunk)

    while status is None:
        drain()
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
        elif time.monotonic() > deadline:  # not even faulthandler got out
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(r)
            raise AssertionError(f"a call ran for more than {CHILD_TIMEOUT} s (risk: {sorted(ctx.risk)})")
        else:
            time.sleep(0.0005)
    drain()
    os.close(r)
    message = b"".join(chunks).decode("utf-8", "replace")
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        raise AssertionError(f"the call killed the process with signal {signal.Signals(sig).name} "
                             f"(risk: {sorted(ctx.risk)}); rerun with RNNEXT_FUZZ_STRICT=1 for the stack")
    if message.startswith("Timeout"):
        # NumPy scanning an argument that is a huge view (lengths.min(), ...) is work linear in
        # the input, not a hang of the API: inconclusive. Anything else is a hang.
        if "huge-view" in ctx.risk and "/numpy/" in _innermost_frame(message):
            fuzzlib.INCONCLUSIVE["numpy scanning a huge view"] = fuzzlib.INCONCLUSIVE.get(
                "numpy scanning a huge view", 0) + 1
            return
        raise AssertionError(f"a call ran for more than {CHILD_TIMEOUT} s (risk: {sorted(ctx.risk)}):\n"
                             + message[:20000])
    if message.startswith("known:"):
        fuzzlib.known(message[6:])
    elif message.startswith("bug:"):
        raise AssertionError("in the forked child:\n" + message[4:])
    elif message != "ok":
        raise AssertionError(f"the forked child exited without a verdict ({message!r}, status {status})")


def _count(outcome: str) -> None:
    if STATS:
        key = (_stats.get("current", "?"), outcome)
        _stats[key] = _stats.get(key, 0) + 1


def _print_stats() -> None:
    rows = sorted((k, v) for k, v in _stats.items() if isinstance(k, tuple))
    for (call, outcome), n in rows:
        print(f"  {call:18s} {outcome:16s} {n}", file=sys.stderr)


def run(ctx: Ctx, body, extra_allowed=()) -> None:
    """Runs body() under the warnings mode the input chose: "record" (any
    warning is a finding) or "error" (warnings raise, as under pytest's
    filterwarnings=error). Allowed errors end the scenario quietly."""
    error_mode = ctx.chance(30)
    if error_mode and ctx.f32_overflow:
        ctx.risk.add("cast-overflow-error")

    def guarded():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("error" if error_mode else "always")
            # The warnings rnnext gives on purpose, as torch does (API.md section 8):
            # a documented answer to the input, not a finding.
            warnings.filterwarnings("ignore", message="dropout option adds dropout", category=UserWarning)
            warnings.filterwarnings("ignore", message=".*cross_entropy.*head", category=UserWarning)
            try:
                body()
                _count("ok")
            except Skip:
                pass
            except BaseException as e:
                _count(type(e).__name__ + (": " + str(e)[:60] if STATS and VERBOSE else ""))
                verdict = _classify(e, extra_allowed)
                if verdict == "ok":
                    pass
                elif verdict.startswith("known:") and fuzzlib.known(verdict[6:]):
                    pass
                else:
                    raise
        for w in caught:
            name = fuzzlib.known_warning_of(str(w.message), w.filename)
            if name is not None and fuzzlib.known(name):
                continue
            raise AssertionError(f"the call emitted a warning: {w.category.__name__}: {w.message} "
                                 f"({w.filename}:{w.lineno})")

    if ctx.risk and not fuzzlib.STRICT:
        _run_in_child(ctx, guarded)
    else:
        guarded()


def budget(ctx: Ctx, work: int, outputs: int, itemsize: int = 8) -> None:
    """Skips a call that would really compute or allocate a lot; lets through
    small calls and calls that must fail (outputs far past memory)."""
    if work <= WORK_LIMIT and outputs * itemsize <= 2**24:
        return
    if outputs * itemsize >= ASTRO_BYTES:
        ctx.risk.add("huge-view")
        return
    if "huge-view" in ctx.risk:
        return
    raise Skip()


def _shape_of(a):
    a = host(a)
    if isinstance(a, np.ndarray):
        return a.shape
    try:
        return np.shape(a) if isinstance(a, list) else ()
    except ValueError:  # ragged
        return ()


# ---------------------------------------------------------------- functional


def fuzz_functional(ctx: Ctx) -> None:
    cell = ctx.pick(["rnn", "lstm", "gru"])
    G = {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    wdtype = ctx.pick(FLOAT_DTYPES) if ctx.chance(95) else ctx.pick(ODD_DTYPES + [np.dtype(">f4")])
    B, T, I, H = ctx.dim(), ctx.dim(), ctx.dim(), ctx.dim()
    unbatched = ctx.chance(20)
    batch_first = ctx.maybe_bool()
    reverse = ctx.maybe_bool()
    bf = _bool(batch_first)
    x_shape = (T, I) if unbatched else ((B, T, I) if bf else (T, B, I))
    xdtype = ctx.pick([wdtype, wdtype, np.dtype(np.float64), np.dtype(np.float32), np.dtype(np.float16),
                       np.dtype(np.int32), np.dtype(np.bool_)])
    x = ctx.arg(x_shape, xdtype)
    W_x = ctx.arg((G * H, I), wdtype)
    W_h = ctx.arg((G * H, H), wdtype)
    b_dtype = wdtype if ctx.chance(97) else ctx.pick(FLOAT_DTYPES)  # mixed precision: TypeError
    b_x = ctx.arg((G * H,), b_dtype, none_ok=True)
    b_h = ctx.arg((G * H,), wdtype, none_ok=True)
    state_shape = (H,) if unbatched else (B, H)
    h0 = ctx.arg(state_shape, ctx.pick(FLOAT_DTYPES + [wdtype, np.dtype(np.int64)]), none_ok=True)
    c0 = ctx.arg(state_shape, ctx.pick(FLOAT_DTYPES), none_ok=True) if cell == "lstm" else None
    lengths = ctx.lengths(B, T, unbatched)
    return_cache = ctx.fdp.ConsumeBool()
    options = {}
    if cell == "rnn":
        options["activation"] = (ctx.pick(["tanh", "sigmoid", "relu"]) if ctx.chance(90)
                                 else ctx.pick(["TANH", "", "softmax", None, 1, b"tanh", "tanh\x00", ["relu"]]))
    if cell == "gru":
        options["linear_before_reset"] = ctx.maybe_bool()
    backward_plan = ctx.int(0, 99)
    threads = ctx.pick([1, 1, 2])
    # The gradients, shaped like the outputs the arguments imply (sometimes not).
    xs, whs = _shape_of(x), _shape_of(W_h)
    hidden_guess = whs[-1] if whs else H
    seq_shape = tuple(xs[:-1]) + (hidden_guess,) if xs else x_shape[:-1] + (H,)
    final_shape = (hidden_guess,) if len(xs) == 2 else ((xs[0] if bf else xs[1], hidden_guess) if len(xs) == 3
                                                        else state_shape)
    grad_dtype = wdtype if wdtype in FLOAT_DTYPES else np.dtype(np.float64)
    grad_args = [ctx.arg(seq_shape, grad_dtype, none_ok=True), ctx.arg(final_shape, grad_dtype, none_ok=True)]
    if cell == "lstm":
        grad_args.append(ctx.arg(final_shape, grad_dtype, none_ok=True))
    bogus = ctx.pick([None, 1, "cache", {"x": 1}, np.zeros(3), object()])

    # What the call would cost, from the shapes actually passed.
    rows = _prod(xs[:-1]) if len(xs) >= 1 else 1
    xin = xs[-1] if xs else 1
    gh = whs[0] if len(whs) >= 1 else 1
    hid = whs[-1] if len(whs) >= 1 else 1
    batch = (xs[0] if bf else xs[1]) if len(xs) == 3 else 1
    steps = (xs[1] if bf else xs[0]) if len(xs) == 3 else (xs[0] if len(xs) == 2 else 1)
    outputs = rows * max(gh, hid) * 3 + batch * hid
    loops = max(rows, batch, steps)
    budget(ctx, rows * max(gh, 1) * (xin + hid + 1) + loops + _prod(_shape_of(W_x)) + _prod(whs), outputs)

    function = {"rnn": F.rnn, "lstm": F.lstm, "gru": F.gru}[cell]
    backward = {"rnn": F.rnn_backward, "lstm": F.lstm_backward, "gru": F.gru_backward}[cell]
    args = (x, W_x, W_h, b_x, b_h, h0) + ((c0,) if cell == "lstm" else ())

    note(f"F.{cell}", x=x, W_x=W_x, W_h=W_h, b_x=b_x, b_h=b_h, h0=h0, c0=c0, lengths=lengths,
         batch_first=batch_first, reverse=reverse, return_cache=return_cache, threads=threads, **options)

    def body():
        rx.set_num_threads(threads)
        result = function(*args, lengths=lengths, batch_first=batch_first, reverse=reverse,
                          return_cache=return_cache, **options)
        check_inputs_unchanged(ctx)
        # Success: the arguments were valid, so their shapes say what comes out.
        dtype = np.asarray(host(W_h)).dtype
        expect(dtype.kind == "f" and dtype.itemsize in (4, 8), f"accepted weights of dtype {dtype}")
        dtype = np.dtype(np.float32) if dtype.itemsize == 4 else np.dtype(np.float64)
        xa = np.asarray(host(x))
        hidden = np.asarray(host(W_h)).shape[1]
        expect(np.asarray(host(W_h)).shape[0] == G * hidden, f"accepted W_h of shape {np.asarray(host(W_h)).shape}")
        expect(xa.ndim in (2, 3), f"accepted x of shape {xa.shape}")
        unb = xa.ndim == 2
        batch = 1 if unb else (xa.shape[0] if _bool(batch_first) else xa.shape[1])
        h_seq = result[0]
        check_array("h_seq", h_seq, xa.shape[:-1] + (hidden,), dtype)
        finals = result[1] if cell == "lstm" else (result[1],)
        expect(isinstance(finals, tuple) and len(finals) == (2 if cell == "lstm" else 1), "final states structure")
        for name, final in zip(("h_n", "c_n"), finals):
            check_array(name, final, (hidden,) if unb else (batch, hidden), dtype)
        check_fresh(ctx, h_seq, *finals)
        check_zero_past("h_seq", h_seq, lengths, _bool(batch_first), unb)
        if not return_cache:
            expect(len(result) == 2, f"return_cache=False returned {len(result)} items")
            return
        expect(len(result) == 3, f"return_cache=True returned {len(result)} items")
        cache = result[2]
        if backward_plan < 85:
            grads = backward(cache, *grad_args)
        elif backward_plan < 92:  # another cell's backward, or not a cache: TypeError
            other = {"rnn": F.gru_backward, "lstm": F.rnn_backward, "gru": F.lstm_backward}[cell]
            grads = other(cache, *grad_args[:2])
            raise AssertionError(f"{other.__name__} accepted a {cell} cache")
        else:
            grads = backward(bogus, *grad_args)
            raise AssertionError(f"{backward.__name__} accepted {type(bogus).__name__} as its cache")
        check_inputs_unchanged(ctx)
        expected = {"x": xa.shape, "W_x": np.asarray(host(W_x)).shape, "W_h": np.asarray(host(W_h)).shape,
                    "b_x": (G * hidden,), "b_h": (G * hidden,), "h0": finals[0].shape}
        if cell == "lstm":
            expected["c0"] = finals[0].shape
        expect(isinstance(grads, dict) and set(grads) == set(expected),
               f"backward returned {sorted(grads) if isinstance(grads, dict) else type(grads)}")
        for name, shape in expected.items():
            check_array("d" + name, grads[name], shape, dtype)
        check_fresh(ctx, *grads.values())
        check_zero_past("dx", grads["x"], lengths, _bool(batch_first), unb)
        # A second backward from the same cache gives the same gradients.
        again = backward(cache, *grad_args)
        for name in expected:
            expect(again[name].tobytes() == grads[name].tobytes(), f"a second backward changed d{name}")

    run(ctx, body)


# ---------------------------------------------------------------- models


def _model_arguments(ctx: Ctx):
    cls = ctx.pick([rx.RNN, rx.LSTM, rx.GRU])

    def size(lo=1):
        if ctx.chance(4):
            return ctx.pick([0, -1, 2.0, True, "3", None, np.int64(2), np.uint8(3), 2**70])
        return ctx.int(lo, 4) if ctx.chance(85) else ctx.dim(lo)

    I, H = size(), size()
    kwargs = {}
    if ctx.chance(50):
        kwargs["output_size"] = None if ctx.chance(20) else size()
    if ctx.chance(40):
        kwargs["num_layers"] = ctx.int(1, 3) if ctx.chance(85) else size()
    if ctx.chance(30):
        kwargs["bidirectional"] = ctx.maybe_bool()
    if ctx.chance(20):
        kwargs["bias"] = ctx.maybe_bool()
    if ctx.chance(20):
        kwargs["batch_first"] = ctx.maybe_bool()
    if ctx.chance(15):
        kwargs["dropout"] = ctx.pick([0.0, 0.5, 1, 0, -0.1, 1.5, float("nan"), float("inf"), "0.5", None,
                                      np.float32(0.25), True])
    if ctx.chance(30):
        kwargs["dtype"] = ctx.pick(["float32", "float64", np.float32, np.float64, "f8", "<f4", ">f8", float,
                                    "float16", "int32", None, "complex64", np.dtype("float64"), 3, "", "()f4"])
    if ctx.chance(10):
        kwargs["seed"] = ctx.pick([0, 1, -1, 2**64, 1.5, "1", None, np.int64(3), [1, 2], True])
    if cls is rx.RNN and ctx.chance(30):
        kwargs["activation"] = ctx.pick(["tanh", "sigmoid", "relu", "RELU", "", None, 1, "gelu"])
    if cls is rx.GRU and ctx.chance(30):
        kwargs["linear_before_reset"] = ctx.maybe_bool(30)
    if cls is rx.LSTM and ctx.chance(25):
        kwargs["proj_size"] = ctx.pick([1, 1, 2, 3, 0, -1, 2.0, "1", None, True, np.int64(1), 2**70])
    if ctx.chance(3):  # an option another class has, or none has
        kwargs[ctx.pick(["activation", "linear_before_reset", "proj_size"])] = ctx.pick([True, "tanh", 0])
    return cls, I, H, kwargs


def _as_int(v):
    return int(v) if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else None


def expected_param_shapes(cls, config) -> dict:
    """API.md's table, written out independently of the implementation."""
    G = {rx.RNN: 1, rx.LSTM: 4, rx.GRU: 3}[cls]
    I, H, L = config["input_size"], config["hidden_size"], config["num_layers"]
    D = 2 if config["bidirectional"] else 1
    P = config.get("proj_size", 0)
    S = P or H  # the width of h
    shapes = {}
    for k in range(L):
        for d in range(D):
            suffix = f"_l{k}" + ("_reverse" if d else "")
            shapes["W_x" + suffix] = (G * H, I if k == 0 else D * S)
            shapes["W_h" + suffix] = (G * H, S)
            if config["bias"]:
                shapes["b_x" + suffix] = (G * H,)
                shapes["b_h" + suffix] = (G * H,)
            if P:
                shapes["W_hr" + suffix] = (P, H)
    if config["output_size"] is not None:
        shapes["W_o"] = (config["output_size"], D * S)
        shapes["b_o"] = (config["output_size"],)
    return shapes


def check_model(model, cls) -> None:
    expect(type(model) is cls, f"constructed {type(model)}")
    config = model.config
    dtype = model.dtype
    expect(dtype in (np.float32, np.float64), f"model dtype {dtype}")
    shapes = expected_param_shapes(cls, config)
    expect(list(model.params) == list(shapes), f"params {list(model.params)}, API.md says {list(shapes)}")
    for name, shape in shapes.items():
        p = model.params[name]
        check_array(name, p, shape, dtype)
        expect(not p.flags.writeable, f"{name} is writable")


def _state(ctx: Ctx, model, batch, allow_odd=True):
    """A state argument for the model (h0 / state), usually well formed."""
    shape, cell_shape = _state_shapes(model, batch)
    r = ctx.int(0, 99)
    if r < 40:
        return None
    dtype = ctx.pick(FLOAT_DTYPES + [model.dtype, model.dtype, np.dtype(np.int32)])
    if isinstance(model, rx.LSTM):
        if allow_odd and r > 95:
            return ctx.pick([ctx.arg(shape, dtype), [ctx.arg(shape, dtype)] * 3, (None, None),
                             [ctx.arg(shape, dtype), ctx.arg(shape, dtype)]])
        return (ctx.arg(shape, dtype, none_ok=True), ctx.arg(cell_shape, dtype, none_ok=True))
    if allow_odd and r > 96:
        return (ctx.arg(shape, dtype), ctx.arg(shape, dtype))
    return ctx.arg(shape, dtype)


def _width(model):
    """The width of h: P for an LSTM with projections, else H."""
    return model.config.get("proj_size", 0) or model.hidden_size


def _state_shapes(model, batch):
    """The shapes of h and (LSTM) c: h is P wide with projections."""
    LD = model.num_layers * model.num_directions
    widths = (_width(model), model.hidden_size)
    return tuple((LD, w) if batch is None else (LD, batch, w) for w in widths)


def _check_state(name, state, model, batch) -> None:
    shape, cell_shape = _state_shapes(model, batch)
    if isinstance(model, rx.LSTM):
        expect(isinstance(state, tuple) and len(state) == 2, f"{name}: expected an (h, c) pair")
        for part, part_shape in zip(state, (shape, cell_shape)):
            check_array(name, part, part_shape, model.dtype)
    else:
        check_array(name, state, shape, model.dtype)


def _x_for(ctx: Ctx, model, B, T, unbatched):
    I = model.input_size
    shape = (T, I) if unbatched else ((B, T, I) if model.batch_first else (T, B, I))
    dtype = ctx.pick([model.dtype, model.dtype, np.dtype(np.float64), np.dtype(np.float32), np.dtype(np.int8),
                      np.dtype(np.float16), np.dtype(np.bool_)])
    return ctx.arg(shape, dtype)


def _geometry(ctx, x, model):
    """(unbatched, B, T) of an x that the model accepted."""
    xa = np.asarray(host(x))
    unbatched = xa.ndim == 2
    if unbatched:
        return True, None, xa.shape[0]
    B, T = (xa.shape[0], xa.shape[1]) if model.batch_first else (xa.shape[1], xa.shape[0])
    return False, B, T


def _model_work(model, x) -> int:
    xs = _shape_of(x)
    rows = _prod(xs[:-1]) if len(xs) >= 1 else 1
    G = {rx.RNN: 1, rx.LSTM: 4, rx.GRU: 3}[type(model)]
    H, D, L = model.hidden_size, model.num_directions, model.num_layers
    width = max(model.input_size, D * H) + H + 1
    return rows * L * D * G * H * width + rows * L + sum(p.size for p in model.params.values())


def op_call(ctx: Ctx, model) -> None:
    B, T, unbatched = ctx.dim(), ctx.dim(), ctx.chance(20)
    x = _x_for(ctx, model, B, T, unbatched)
    h0 = _state(ctx, model, None if unbatched else B)
    lengths = ctx.lengths(B, T, unbatched)
    rs = ctx.fdp.ConsumeBool() if ctx.chance(95) else ctx.odd_bool()
    rows = _prod(_shape_of(x)[:-1])
    budget(ctx, _model_work(model, x), rows * model.num_layers * model.num_directions * model.hidden_size * 5)

    note(f"{model!r}", x=x, h0=h0, lengths=lengths, return_sequences=rs)

    def body():
        out, h_n = model(x, h0, lengths=lengths, return_sequences=rs)
        check_inputs_unchanged(ctx)
        unb, b, t = _geometry(ctx, x, model)
        O = model.output_size or model.num_directions * _width(model)
        if rs:
            shape = (t, O) if unb else ((b, t, O) if model.batch_first else (t, b, O))
        else:
            shape = (O,) if unb else (b, O)
        check_array("out", out, shape, model.dtype)
        _check_state("h_n", h_n, model, b)
        check_fresh(ctx, out, *(h_n if isinstance(h_n, tuple) else (h_n,)))
        if rs:
            check_zero_past("out", out, lengths, model.batch_first, unb)

    run(ctx, body)


def op_step(ctx: Ctx, model) -> None:
    unbatched = ctx.chance(30)
    B = ctx.dim()
    shape = (model.input_size,) if unbatched else (B, model.input_size)
    x_t = ctx.arg(shape, ctx.pick([model.dtype, model.dtype, np.dtype(np.float64), np.dtype(np.int64)]))
    state = _state(ctx, model, None if unbatched else B)
    rows = _prod(_shape_of(x_t)[:-1])
    budget(ctx, rows * _model_work(model, np.empty((1, 1))), rows * model.num_layers * model.hidden_size * 5)

    note(f"{model!r}.step", x_t=x_t, state=state)

    def body():
        y, new_state = model.step(x_t, state)
        expect(not model.bidirectional, f"step accepted a bidirectional model {model!r}")
        check_inputs_unchanged(ctx)
        xa = np.asarray(host(x_t))
        b = None if xa.ndim == 1 else xa.shape[0]
        O = model.output_size or _width(model)
        check_array("y_t", y, (O,) if b is None else (b, O), model.dtype)
        _check_state("state", new_state, model, b)
        parts = new_state if isinstance(new_state, tuple) else (new_state,)
        for p in parts:
            expect(p.flags.writeable, "step returned a read-only state")
        check_fresh(ctx, y, *parts)

    run(ctx, body)


def op_loss(ctx: Ctx, model) -> None:
    B, T, unbatched = ctx.dim(), ctx.dim(), ctx.chance(20)
    x = _x_for(ctx, model, B, T, unbatched)
    loss = ctx.pick(["mse", "mse", "cross_entropy", "cross_entropy", "MSE", "", None, 1])
    O = model.output_size or model.num_directions * _width(model)
    per_step = ctx.fdp.ConsumeBool()
    if per_step:
        lead = (T,) if unbatched else ((B, T) if model.batch_first else (T, B))
    else:
        lead = () if unbatched else (B,)
    if loss == "cross_entropy":
        shape, dtype = lead, ctx.pick(INT_DTYPES + [np.dtype(np.float32)])
    else:
        shape, dtype = lead + (O,), ctx.pick(FLOAT_DTYPES + [np.dtype(np.int32), np.dtype(np.bool_)])
    target = ctx.arg(shape, dtype)
    if loss == "cross_entropy" and isinstance(target, np.ndarray) and target.dtype.kind in "iu" \
            and target.size <= REAL_LIMIT and ctx.chance(80):
        target = np.asarray(target % max(O, 1), target.dtype)  # valid class ids
        ctx.snapshots.append((target, target.tobytes()))
        ctx.arrays.append(target)
    h0 = _state(ctx, model, None if unbatched else B)
    lengths = ctx.lengths(B, T, unbatched)
    rs = ctx.pick([None, None, True, False]) if ctx.chance(95) else ctx.odd_bool()
    rows = _prod(_shape_of(x)[:-1])
    budget(ctx, 3 * _model_work(model, x), rows * model.num_layers * model.num_directions * model.hidden_size * 12)

    note(f"{model!r}.loss_and_grads", x=x, target=target, loss=loss, h0=h0, lengths=lengths,
         return_sequences=rs)

    def body():
        value, grads = model.loss_and_grads(x, target, loss=loss, h0=h0, lengths=lengths, return_sequences=rs)
        check_inputs_unchanged(ctx)
        expect(isinstance(value, float), f"loss is a {type(value).__name__}, not a float")
        expect(isinstance(grads, dict) and list(grads) == list(model.params),
               f"grads keys {list(grads) if isinstance(grads, dict) else type(grads)}")
        for name, g in grads.items():
            check_array("grad " + name, g, model.params[name].shape, model.dtype)
        check_fresh(ctx, *grads.values())

    run(ctx, body)


def _legacy_ok(model) -> bool:
    return model.num_layers == 1 and not model.bidirectional


def op_load_state_dict(ctx: Ctx, model) -> None:
    state = model.state_dict()
    keys = list(state)
    r = ctx.int(0, 99)
    if r < 20 and keys:
        del state[ctx.pick(keys)]
    elif r < 30:
        state[ctx.pick(["W_x", "W_o", "b_o", "W_x_l9", "", "W_x_l0_reverse", "extra"])] = np.zeros(1)
    elif r < 70 and keys:
        key = ctx.pick(keys)
        state[key] = ctx.arg(state[key].shape, ctx.pick(FLOAT_DTYPES + [np.dtype(np.int16)]))
    elif r < 80 and _legacy_ok(model):
        for new, old in (("W_x_l0", "W_x"), ("W_h_l0", "W_h"), ("b_x_l0", "b_x"), ("b_h_l0", "b_h")):
            if new in state and ctx.fdp.ConsumeBool():
                state[old] = state.pop(new)
    elif r < 85:
        state = ctx.pick([None, [], "W_x", list(state.items()), 3])
    strict = ctx.fdp.ConsumeBool() if ctx.chance(95) else ctx.odd_bool()
    before = {k: v.tobytes() for k, v in model.params.items()}
    given = dict(state) if isinstance(state, dict) else None

    note(f"{model!r}.load_state_dict", state=state, strict=strict)

    def body():
        try:
            model.load_state_dict(state, strict=strict)
        except (ValueError, TypeError):
            for k, v in model.params.items():  # "nothing is changed unless every value is valid"
                expect(v.tobytes() == before[k], f"a failed load_state_dict changed {k}")
            raise
        check_model(model, type(model))
        legacy = {"W_x": "W_x_l0", "W_h": "W_h_l0", "b_x": "b_x_l0", "b_h": "b_h_l0"}
        for k, v in given.items():
            key = k if k in model.params else legacy.get(k) if _legacy_ok(model) else None
            if key in model.params and not (k in legacy and legacy[k] in given):
                with np.errstate(all="ignore"):
                    want = np.asarray(host(v)).astype(model.dtype)
                expect(model.params[key].tobytes() == want.tobytes(), f"load_state_dict did not set {key}")

    run(ctx, body)


def op_assign(ctx: Ctx, model) -> None:
    keys = list(model.params)
    attr = ctx.chance(40)
    if attr:
        name = ctx.pick(["W_x", "W_h", "b_x", "b_h", "W_o", "b_o"])
        key = {"W_x": "W_x_l0", "W_h": "W_h_l0", "b_x": "b_x_l0", "b_h": "b_h_l0"}.get(name, name)
    else:
        key = name = ctx.pick(keys) if ctx.chance(95) else ctx.pick(["nope", "W_x", "W_o", "W_x_l5"])
    shape = model.params[key].shape if key in model.params else (2, 2)
    value = ctx.arg(shape, ctx.pick(FLOAT_DTYPES + [np.dtype(np.int64), np.dtype(np.bool_)]))
    deep = not _legacy_ok(model)
    # Documented: AttributeError for the attributes of a deep/bidirectional model (or a missing
    # head's W_o/b_o); KeyError for an unknown key of the params mapping.
    allowed = ((AttributeError,) if attr and (deep or key not in model.params) else
               (KeyError,) if not attr and key not in model.params else ())

    note(f"{model!r}.{name} = " if attr else f"{model!r}.params[{key!r}] = ", value=value)

    def body():
        if attr:
            setattr(model, name, value)
        else:
            model.params[key] = value
        check_inputs_unchanged(ctx)
        expect(key in model.params, f"assigned unknown parameter {key!r}")
        with np.errstate(all="ignore"):
            want = np.asarray(host(value)).astype(model.dtype)
        expect(model.params[key].tobytes() == want.tobytes(), f"assignment did not set {key}")
        check_fresh(ctx, model.params[key])
        check_model(model, type(model))

    run(ctx, body, extra_allowed=allowed)


def op_predict(ctx: Ctx, model) -> None:
    B, T = ctx.dim(), ctx.dim()
    x = _x_for(ctx, model, B, T, ctx.chance(10))
    lengths = ctx.lengths(B, T, False)
    batch_size = ctx.pick([None, 1, 2, 3, 0, -1, 2.5, True])
    xs = _shape_of(x)
    if len(xs) == 3 and type(batch_size) is int and batch_size > 0:
        batches = -(-xs[0 if model.batch_first else 1] // batch_size)
        features = model.output_size or model.num_directions * _width(model)
        if batches > 1000 and 2 * _prod(xs[:-1]) * features * model.dtype.itemsize <= PHYSICAL_MEMORY:
            raise Skip()  # many batches of an output that can exist: slow, not wrong
    budget(ctx, _model_work(model, x), _prod(xs[:-1]) * model.num_directions * model.hidden_size * 5)

    note(f"{model!r}.predict", x=x, lengths=lengths, batch_size=batch_size)

    def body():
        out = model.predict(x, lengths=lengths, batch_size=batch_size)
        ref, _ = model(x, lengths=lengths)
        check_array("predict", out, ref.shape, model.dtype)

    run(ctx, body)


def op_initial_state(ctx: Ctx, model) -> None:
    batch = ctx.pick([None, 0, 1, 3, -1, 2.0, True, np.int64(2), 2**62])

    note(f"{model!r}.initial_state", batch_size=batch)

    def body():
        state = model.initial_state(batch)
        _check_state("initial_state", state, model, batch)

    if isinstance(batch, int) and not isinstance(batch, bool) and batch > REAL_LIMIT:
        if batch * model.hidden_size * 8 < ASTRO_BYTES:
            return  # large but possible: not for real
        ctx.risk.add("huge-view")
    run(ctx, body)


def op_generate(ctx: Ctx, model) -> None:
    mode = ctx.pick(["continuous", "greedy", "sample", "beam", None])
    steps = ctx.pick([0, 1, 2, 3, -1, 2.0, True, "2"])
    temperature = ctx.pick([1.0, 0.5, 0, -1, float("nan"), float("inf"), "1", None, 1e-300])
    seed = ctx.pick([None, 0, 7, -1])
    B, T = ctx.dim(), ctx.dim(1)
    unbatched = ctx.chance(20)
    if mode in ("greedy", "sample") and ctx.chance(50):
        shape = (T,) if unbatched else ((B, T) if model.batch_first else (T, B))
        x0 = ctx.arg(shape, ctx.pick(INT_DTYPES))
    else:
        x0 = _x_for(ctx, model, B, T, unbatched)
    budget(ctx, 4 * _model_work(model, x0), _prod(_shape_of(x0)) * model.hidden_size * 8)

    note(f"{model!r}.generate", x0=x0, steps=steps, mode=mode, temperature=temperature, seed=seed)

    def body():
        out = model.generate(x0, steps, mode=mode, temperature=temperature, seed=seed)
        expect(isinstance(out, np.ndarray), "generate returned no array")
        expect(out.dtype == (model.dtype if mode == "continuous" else np.int64), f"generate dtype {out.dtype}")

    run(ctx, body)


def op_persist(ctx: Ctx, model) -> None:
    how = ctx.int(0, 2)

    def body():
        if how == 0:
            again = rx.from_bytes(model.to_bytes())
        elif how == 1:
            again = copy.deepcopy(model)
        else:
            again = pickle.loads(pickle.dumps(model))
        expect(type(again) is type(model) and again.config == model.config, "round trip changed the model")
        for k, v in model.params.items():
            expect(again.params[k].tobytes() == v.tobytes(), f"round trip changed {k}")

    run(ctx, body)


OPS = [op_call, op_call, op_step, op_loss, op_load_state_dict, op_assign, op_predict, op_initial_state,
       op_generate, op_persist]


def fuzz_model(ctx: Ctx) -> None:
    cls, I, H, kwargs = _model_arguments(ctx)
    # What the constructor would allocate.
    config = {"input_size": _as_int(I), "hidden_size": _as_int(H),
              "num_layers": _as_int(kwargs.get("num_layers", 1)),
              "bidirectional": kwargs.get("bidirectional", False),
              "output_size": _as_int(kwargs.get("output_size")) if kwargs.get("output_size") is not None else None,
              "bias": kwargs.get("bias", True)}
    cost = None if None in (config["input_size"], config["hidden_size"], config["num_layers"]) else \
        fuzzlib.declared_cost(cls.__name__, config)
    if cost is not None and cost * 8 > PARAM_BYTES_LIMIT:
        if cost * 8 < 2**40:  # possible but large: not for real
            return
        ctx.risk.add("huge-model")  # past memory: the constructor must refuse before allocating
    n_ops = ctx.int(1, 3)
    ops = [ctx.pick(OPS) for _ in range(n_ops)]
    holder = {}

    note(cls.__name__, input_size=I, hidden_size=H, **kwargs)

    def construct():
        holder["model"] = cls(I, H, **kwargs)
        check_model(holder["model"], cls)
        expect("huge-model" not in ctx.risk, f"constructed a model of {cost} parameters")

    run(ctx, construct)
    model = holder.get("model")
    if model is None:
        return
    for op in ops:
        ctx.snapshots, ctx.arrays, ctx.risk, ctx.f32_overflow = [], [], set(), False
        try:
            op(ctx, model)
        except Skip:
            pass


def TestOneInput(data: bytes) -> None:
    ctx = Ctx(data)
    try:
        if ctx.chance(45):
            fuzz_functional(ctx)
        else:
            fuzz_model(ctx)
    except Skip:
        pass


def main() -> None:
    fuzzlib.instrument("rnnext", "__main__")
    fuzzlib.limit_process()
    fuzzlib.print_summary_at_exit()
    if STATS:
        import atexit
        atexit.register(_print_stats)
    rx.set_num_threads(1)
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
