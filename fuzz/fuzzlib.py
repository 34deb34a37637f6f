"""What both fuzz targets share: the process limits, the outcomes the API
allows, and the list of known (reported, not yet fixed) bugs.

Known bugs
----------
Every bug the fuzzers found is a regression test in
``tests/test_fuzz_regressions.py`` (``xfail(strict=True)`` until it is
fixed). So that a smoke run or a long run can keep looking for *new* bugs
while those are open, each one is listed in ``KNOWN_BUGS`` below, with a
predicate that recognises it: an exception (type, message, raising file) or,
for inputs that kill the process, a check made before the call. A hit is
counted (``summary()``) and the input is treated as handled.

``RNNEXT_FUZZ_STRICT=1`` turns the list off: every known bug is then reported
like a new one (use it to check a fix; when a bug is fixed, its xfail test
starts passing, strict xfail turns that into a failure, and its entry here
should go).
"""

from __future__ import annotations

import atexit
import os
import types
import re
import resource
import sys
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

#: Report known bugs as findings (a fix is being checked).
STRICT = os.environ.get("RNNEXT_FUZZ_STRICT", "0") not in ("", "0")

#: Address space of the fuzzing process. A buffer the API cannot allocate
#: must raise MemoryError (or ValueError) before any compute; the limit makes
#: "cannot allocate" happen at a few GiB instead of swapping a shared machine.
ADDRESS_SPACE_LIMIT = int(float(os.environ.get("RNNEXT_FUZZ_AS_GIB", "8")) * 2**30)

#: Outcomes the API allows besides success (API.md, "Errors"). numpy's
#: _ArrayMemoryError is a MemoryError.
ALLOWED_API_ERRORS = (ValueError, TypeError, MemoryError)


def limit_process() -> None:
    """Caps the address space, makes warnings errors (API.md: NaN and Inf
    propagate "and emit no warnings"), and keeps the run on one thread by
    default (the targets pick 1 or 2 threads per input themselves)."""
    if ADDRESS_SPACE_LIMIT > 0:
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = ADDRESS_SPACE_LIMIT if hard == resource.RLIM_INFINITY else min(ADDRESS_SPACE_LIMIT, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    warnings.simplefilter("error")


@dataclass
class KnownBug:
    name: str
    test: str  # its regression test in tests/test_fuzz_regressions.py
    summary: str
    exception: Optional[Callable[[BaseException], bool]] = None
    warning: Optional[Callable[[str, str], bool]] = None  # (message, file that warned)
    hits: int = field(default=0)


def _raised_in(e: BaseException, filename: str) -> bool:
    """Whether the innermost frame of e's traceback is in a file ending with filename."""
    frames = traceback.extract_tb(e.__traceback__)
    return bool(frames) and frames[-1].filename.replace("\\", "/").endswith(filename)


def _passes_through(e: BaseException, filename: str, function: str) -> bool:
    return any(f.filename.replace("\\", "/").endswith(filename) and f.name == function
               for f in traceback.extract_tb(e.__traceback__))


KNOWN_BUGS: Dict[str, KnownBug] = {b.name: b for b in [
    KnownBug(
        "load-unhashable-metadata",
        "test_from_bytes_unhashable_class_or_dtype",
        "from_bytes: a JSON list or object as the metadata's 'class' or a tensor's 'dtype' "
        "raises TypeError (unhashable type) instead of ValueError",
        exception=lambda e: (isinstance(e, TypeError) and "unhashable" in str(e)
                             and _passes_through(e, "rnnext/io.py", "from_bytes")),
    ),
    KnownBug(
        "load-declared-size-memoryerror",
        "test_from_bytes_huge_declared_model",
        "from_bytes: a configuration declaring a model larger than memory raises MemoryError "
        "(from the constructor's memory check) instead of ValueError",
        exception=lambda e: (isinstance(e, MemoryError)
                             and _passes_through(e, "rnnext/io.py", "from_bytes")),
    ),
    KnownBug(
        "crash-failed-conversion-huge-view",
        "test_huge_view_argument_does_not_crash",
        "segfault: an array argument that must be copied (a broadcast view, a non-contiguous or "
        "other-dtype array) whose copy cannot be allocated: carray<T>::ensure returns a null array "
        "(the MemoryError cleared) and the binding dereferences it",
    ),
    KnownBug(
        "crash-failed-conversion-warning-error",
        "test_cast_overflow_under_warnings_error_does_not_crash",
        "segfault: a float64 argument with a value beyond float32's range given to a float32 "
        "kernel or model while warnings are errors (pytest's filterwarnings=error): the cast's "
        "RuntimeWarning becomes an exception, carray<T>::ensure returns a null array, the binding "
        "dereferences it",
    ),
    KnownBug(
        "warning-cast-overflow",
        "test_cast_overflow_emits_no_warning",
        "a float64 value beyond float32's range given to a float32 kernel or model emits "
        "'RuntimeWarning: overflow encountered in cast' (API.md: no warnings), and raises it "
        "under the 'error' filter from Python-level casts (loss targets, parameter assignment)",
        warning=lambda message, filename: "overflow encountered in cast" in message,
    ),
    KnownBug(
        "warning-inf-gradient-sum",
        "test_bidirectional_backward_with_inf_emits_no_warning",
        "loss_and_grads of a bidirectional model whose loss gradient holds Inf (an Inf target) emits "
        "'RuntimeWarning: invalid value encountered in add' where layers.py adds the two "
        "directions' input gradients (inf + -inf); API.md: NaN and Inf emit no warnings",
        warning=lambda message, filename: ("invalid value encountered" in message
                                           and filename.replace("\\", "/").endswith("rnnext/layers.py")),
    ),
    KnownBug(
        "hang-rnn-zero-hidden",
        "test_rnn_zero_hidden_size_does_not_loop_over_empty_steps",
        "functional.rnn with hidden size 0 (W_x (0, I), W_h (0, 0)) returns empty outputs but "
        "spends time on every step and every sequence: an x of shape (2**45, 0) or (0, 2**45, 0) "
        "(batch_first=False), which holds nothing, runs for days",
    ),
    KnownBug(
        "hang-huge-num-layers",
        "test_huge_num_layers_raises_memoryerror_promptly",
        "RNN/LSTM/GRU(num_layers=2**32): the memory check (_check_memory) first builds every "
        "parameter's shape, a dict of 4*num_layers*D entries, so instead of a prompt MemoryError "
        "the constructor runs for hours and exhausts memory",
    ),
    KnownBug(
        "predict-0d-lengths",
        "test_predict_scalar_lengths_raises_valueerror",
        "model.predict(x, lengths=3, batch_size=1) (a scalar or any 0-d lengths) raises IndexError: "
        "predict slices lengths per batch before anything checks it",
        exception=lambda e: isinstance(e, IndexError) and _passes_through(e, "rnnext/models.py", "predict"),
    ),
    KnownBug(
        "predict-huge-loops",
        "test_predict_output_past_memory_raises_before_computing",
        "model.predict(x, batch_size=1) with an output past memory (x a broadcast view of 2**40 "
        "sequences) computes batch after batch (for days) instead of raising MemoryError before "
        "any compute",
    ),
    KnownBug(
        "load-allocates-declared-model",
        "test_from_bytes_allocates_declared_model_first",
        "from_bytes builds (allocates and initialises) the model its configuration declares "
        "before checking that the file holds its tensors: a 300-byte file can make it "
        "allocate gigabytes and spend seconds to minutes (hidden_size 20000, or "
        "num_layers 10**6)",
    ),
]}


#: Outcomes that are neither a pass nor a finding (counted in the summary).
INCONCLUSIVE: Dict[str, int] = {}


def known(name: str) -> bool:
    """Counts a hit of a known bug; False (report it) in strict mode."""
    if STRICT:
        return False
    KNOWN_BUGS[name].hits += 1
    return True


def known_bug_of(e: BaseException) -> Optional[str]:
    """The name of the known bug e is (a warning raised as an error included), or None."""
    for bug in KNOWN_BUGS.values():
        if bug.exception is not None and bug.exception(e):
            return bug.name
    if isinstance(e, Warning):
        frames = traceback.extract_tb(e.__traceback__)
        return known_warning_of(str(e), frames[-1].filename if frames else "")
    return None


def known_warning_of(message: str, filename: str) -> Optional[str]:
    for bug in KNOWN_BUGS.values():
        if bug.warning is not None and bug.warning(message, filename):
            return bug.name
    return None


def known_exception(e: BaseException) -> bool:
    """Whether e is one of the known bugs (counted); False in strict mode."""
    name = known_bug_of(e)
    return name is not None and known(name)


def summary() -> str:
    hit = [f"  {b.name}: {b.hits} (tests/test_fuzz_regressions.py::{b.test})"
           for b in KNOWN_BUGS.values() if b.hits]
    mode = "strict: known bugs are findings" if STRICT else "known bugs tolerated"
    text = f"known-bug hits ({mode}):\n" + ("\n".join(hit) if hit else "  none")
    if INCONCLUSIVE:
        text += "\ninconclusive: " + ", ".join(f"{k}: {v}" for k, v in INCONCLUSIVE.items())
    return text


def print_summary_at_exit() -> None:
    atexit.register(lambda: print(summary(), file=sys.stderr, flush=True))


def declared_cost(cls_name: str, config: dict) -> Optional[int]:
    """What building the model a configuration declares costs, in parameters
    (plus a few hundred per layer-direction, for the Python work of each):
    None when it is not a valid-looking configuration."""
    gates = {"RNN": 1, "LSTM": 4, "GRU": 3}.get(cls_name)
    try:
        I, H = int(config["input_size"]), int(config["hidden_size"])
        L = int(config.get("num_layers", 1))
        bidirectional = config.get("bidirectional")
        D = 2 if type(bidirectional).__name__ in ("bool", "bool_") and bidirectional else 1
        O = config.get("output_size")
        O = 0 if O is None else int(O)
        bias = config.get("bias", True) is not False
    except (KeyError, TypeError, ValueError, OverflowError, AttributeError):
        return None
    if gates is None or min(I, H, L) < 1 or O < 0:
        return None
    G = gates
    per_direction_top = G * H * (D * H) + G * H * H + (2 * G * H if bias else 0)
    first = D * (G * H * I + G * H * H + (2 * G * H if bias else 0))
    return first + (L - 1) * D * per_direction_top + O * (D * H + 1) + 500 * L * D


def instrument(*prefixes: str) -> int:
    """Coverage instrumentation of every function, method and property of the
    loaded modules named prefix or prefix.*: atheris.instrument_imports does
    not see the modules of an editable install (scikit-build-core's loader),
    and instrument_all takes half a minute (it does all of NumPy)."""
    import atheris

    seen = set()

    def visit(obj, module: str) -> int:
        if id(obj) in seen:
            return 0
        seen.add(id(obj))
        if isinstance(obj, types.FunctionType):
            if obj.__module__ == module:
                atheris.instrument_func(obj)
                return 1
            return 0
        if isinstance(obj, (staticmethod, classmethod)):
            return visit(obj.__func__, module)
        if isinstance(obj, property):
            return sum(visit(f, module) for f in (obj.fget, obj.fset, obj.fdel) if f is not None)
        if isinstance(obj, type) and obj.__module__ == module:
            return sum(visit(v, module) for v in vars(obj).values())
        return 0

    count = 0
    for name, module in list(sys.modules.items()):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            count += sum(visit(v, name) for v in list(vars(module).values()))
    return count


def matches(pattern: str, e: BaseException) -> bool:
    return re.search(pattern, str(e)) is not None
