"""The binding's signatures against python/rnnext/_core.pyi's.

    python .ci/stub_signatures.py PATH/TO/_core.pyi

mypy.stubtest checks that the stub and the built module have the same names
and kinds (functions, classes, methods, properties), but it cannot read a
pybind11 function's parameters: they have no __text_signature__. pybind11
writes each signature as the first line of its docstring, so this compares
those with the stub's: every variant (an @overload or the def) must have the
binding's parameter names in the binding's order; a parameter with a default
in the binding has one in some variant, and one without has none in any.
Prints each difference and exits 1 if there is one.
"""

import ast
import inspect
import sys
from typing import Dict, List, Optional, Tuple

import rnnext._core as core

Params = Optional[List[Tuple[str, bool]]]  # (name, has a default), in order; None: a property


def split_top_level(text: str) -> List[str]:
    """``text`` split at the commas outside brackets and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def binding_params(obj: object, name: str) -> Params:
    """The parameters pybind11's docstring gives ``name(...) -> ...``."""
    line = ((inspect.getdoc(obj) or "").splitlines() or [""])[0]
    if not line.startswith(name + "(") or ") -> " not in line:
        raise SystemExit(f"stub_signatures: {name} has no pybind11 signature line: {line!r}")
    inside = line[len(name) + 1:line.rindex(") -> ")]
    return [(part.split(":")[0].split("=")[0].strip(), "=" in part) for part in split_top_level(inside)]


def runtime_names() -> Dict[str, Params]:
    """``name`` or ``Class.method`` -> parameters; ``Class.prop`` -> None for properties."""
    found: Dict[str, Params] = {}
    for name, obj in vars(core).items():
        if name.startswith("_"):
            continue
        if isinstance(obj, type):
            for attr, member in vars(obj).items():
                if attr.startswith("_"):
                    continue
                key = f"{name}.{attr}"
                found[key] = None if isinstance(member, property) else binding_params(member, attr)
        elif callable(obj):
            found[name] = binding_params(obj, name)
    return found


def stub_variants(path: str) -> Dict[str, List[Params]]:
    """The same keys from the stub, each with every variant's parameters."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    found: Dict[str, List[Params]] = {}

    def params(fn: ast.FunctionDef) -> Params:
        a = fn.args
        positional = a.posonlyargs + a.args
        defaults = [False] * (len(positional) - len(a.defaults)) + [True] * len(a.defaults)
        out = list(zip([p.arg for p in positional], defaults))
        out += [(p.arg, d is not None) for p, d in zip(a.kwonlyargs, a.kw_defaults)]
        return out

    def is_property(fn: ast.FunctionDef) -> bool:
        return any(isinstance(d, ast.Name) and d.id == "property" for d in fn.decorator_list)

    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            found.setdefault(node.name, []).append(params(node))
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for member in node.body:
                if isinstance(member, ast.FunctionDef) and not member.name.startswith("_"):
                    key = f"{node.name}.{member.name}"
                    found.setdefault(key, []).append(None if is_property(member) else params(member))
    return found


def differences(runtime: Dict[str, Params], stub: Dict[str, List[Params]]) -> List[str]:
    out = [f"{k}: in the binding, not in the stub" for k in sorted(set(runtime) - set(stub))]
    out += [f"{k}: in the stub, not in the binding" for k in sorted(set(stub) - set(runtime))]
    for key in sorted(set(runtime) & set(stub)):
        want, variants = runtime[key], stub[key]
        if want is None or None in variants:
            if want is not None or variants != [None]:
                out.append(f"{key}: a property in one and not in the other")
            continue
        names = [n for n, _ in want]
        for variant in variants:
            if [n for n, _ in variant] != names:
                out.append(f"{key}: the stub has ({', '.join(n for n, _ in variant)}), "
                           f"the binding ({', '.join(names)})")
        if any([n for n, _ in v] != names for v in variants):
            continue
        for i, (name, default) in enumerate(want):
            given = [v[i][1] for v in variants]
            if default and not any(given):
                out.append(f"{key}: {name} has a default in the binding, none in the stub")
            if not default and any(given):
                out.append(f"{key}: {name} has no default in the binding, one in the stub")
    return out


def main(argv: List[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    found = differences(runtime_names(), stub_variants(argv[1]))
    for line in found:
        print(f"stub_signatures: {line}")
    if not found:
        print(f"stub_signatures: {argv[1]} matches the binding's signatures")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
