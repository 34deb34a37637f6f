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
    # None open. The thirteen the fuzzers found (load-unhashable-metadata,
    # load-declared-size-memoryerror, load-allocates-declared-model,
    # load-dtype-syntaxerror,
    # crash-failed-conversion-huge-view, crash-failed-conversion-warning-error,
    # warning-cast-overflow, warning-inf-gradient-sum, hang-rnn-zero-hidden,
    # hang-huge-num-layers, predict-0d-lengths, predict-huge-loops,
    # generate-scans-huge-prompt) are fixed;
    # their regression tests are in tests/test_fuzz_regressions.py. A new one
    # is added as KnownBug(name, test, summary, exception=..., warning=...).
]}


#: Outcomes that are neither a pass nor a finding (counted in the summary).
INCONCLUSIVE: Dict[str, int] = {}


def known(name: str) -> bool:
    """Counts a hit of a known bug; False (report it) in strict mode."""
    if STRICT or name not in KNOWN_BUGS:
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
