"""The plumbing between ONNX recurrent nodes, followed symbolically for
``from_onnx`` (``_onnx_import.py``).

``from_onnx`` never runs a graph: it evaluates the nodes between the graph's
inputs, its ``RNN``/``LSTM``/``GRU`` nodes and its outputs on abstract values,
so that it can tell what a tensor *is* (the input sequence, layer 1's hidden
states, the initial states, a mask of the valid steps) and how its axes are
laid out, however an exporter arranged the Transposes, Reshapes and shape
arithmetic. The values:

``Const``
    A constant (initializer, ``Constant`` node, or an op on constants).
``Vec``
    Integers computed from shapes (``Shape``, ``Gather``, ``Concat``, ``Mul``
    ...): each entry has a symbolic size and, when it measures one, the axis
    it measures, so ``Reshape`` can follow torch's computed target shapes.
``Zeros``
    An all-zero tensor of any shape (``ConstantOfShape``, ``Expand`` of 0):
    what exporters feed as initial states.
``Tensor``
    Everything else: a graph input, a layer's ``Y`` or ``Y_h``, the time
    steps, a mask. Its ``axes`` are tuples of *atoms* (the input's axes
    ``(name, i)``, ``"D"``, ``"H"``, ``"O"``, a layer's state rows
    ``("rows", k, "h")``, ``"1"``), so a merged axis (``D*H`` after a Reshape)
    keeps its parts in order.

Sizes are symbolic monomials (``Dim``): a graph's dynamic batch and time
axes have no value, yet ``B * T`` must still equal ``T * B``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Hashable, List, Optional, Sequence, Tuple, Union, cast

import numpy as np

Atom = Hashable
Dim = Tuple[int, Tuple[str, ...]]  # coefficient, sorted symbols: (2, ("x.0",)) is 2*B
ONE: Dim = (1, ())
#: Bounds on what a graph may make this code hold or loop over.
MAX_RANK, MAX_VEC, MAX_CONST = 16, 64, 1 << 26


class Refused(ValueError):
    """What a node does that from_onnx cannot follow (the caller names the node)."""


def all_zero(array: np.ndarray) -> bool:
    """Whether a constant is all zeros (NaN is not), quietly for any dtype."""
    with np.errstate(all="ignore"):
        try:
            return not np.any(array)
        except (TypeError, ValueError):
            return False


def dim(n: int) -> Dim:
    return (int(n), ())


def dim_mul(a: Dim, b: Dim) -> Dim:
    return (a[0] * b[0], tuple(sorted(a[1] + b[1])))


@dataclasses.dataclass(frozen=True)
class Const:
    value: np.ndarray


@dataclasses.dataclass(frozen=True)
class Entry:
    size: Dim
    atoms: Optional[Tuple[Atom, ...]] = None  # the axis whose size this is


@dataclasses.dataclass(frozen=True)
class Vec:
    entries: Tuple[Entry, ...]
    scalar: bool = False


@dataclasses.dataclass(frozen=True)
class Zeros:
    pass


@dataclasses.dataclass(frozen=True)
class Tensor:
    kind: str  # "input", "seq" (a layer's Y), "state" (Y_h / Y_c), "steps", "mask"
    axes: Tuple[Tuple[Atom, ...], ...]
    name: str = ""  # input: the graph input; mask: the lengths input
    layer: int = -1  # seq: the layer; state: the rows' layer
    integer: bool = False  # int (lengths, steps) or bool (mask) rather than float
    head: bool = False  # seq: the head's output
    bias: bool = False  # seq: the head's bias added
    masked: bool = False  # seq: zeroed past the lengths


Value = Union[Const, Vec, Zeros, Tensor]


class Plumbing:
    """The atoms' sizes and aliases, and the plumbing ops on abstract values."""

    def __init__(self) -> None:
        self.sizes: Dict[Atom, Dim] = {"1": ONE}
        self.alias: Dict[Atom, Atom] = {}

    # ------------------------------------------------------------ atoms

    def canon(self, atom: Atom) -> Atom:
        seen = 0
        while atom in self.alias and seen < 64:
            atom, seen = self.alias[atom], seen + 1
        return atom

    def unite(self, atom: Atom, same: Atom) -> None:
        """Records that two inputs' axes are one (lengths' axis 0 is x's batch)."""
        a, b = self.canon(atom), self.canon(same)
        if a != b:
            self.alias[a] = b

    def size(self, atoms: Sequence[Atom]) -> Dim:
        total = ONE
        for atom in atoms:
            total = dim_mul(total, self.sizes.get(atom, (1, (repr(atom),))))
        return total

    def droppable(self, atom: Atom) -> bool:
        """An axis part of size 1 that means nothing (one direction, an Unsqueeze)."""
        return atom in ("D", "1") and self.sizes.get(atom) == ONE

    def meaning(self, axis: Sequence[Atom]) -> Tuple[Atom, ...]:
        return tuple(self.canon(a) for a in axis if not self.droppable(a))

    # ------------------------------------------------------------ conversions

    def vec(self, value: Value) -> Vec:
        if isinstance(value, Vec):
            return value
        if isinstance(value, Const) and value.value.dtype.kind in "iu" and value.value.ndim <= 1 \
                and value.value.size <= MAX_VEC:
            return Vec(tuple(Entry(dim(v)) for v in value.value.reshape(-1).tolist()), value.value.ndim == 0)
        raise Refused(f"expected integers from constants or shapes, got {describe(value)}")

    def ints(self, value: Value, what: str) -> List[int]:
        """A constant list of ints (axes, starts, perm...)."""
        vec = self.vec(value)
        if any(e.size[1] for e in vec.entries):
            raise Refused(f"{what} must be constant, got sizes computed from the graph's dynamic axes")
        return [e.size[0] for e in vec.entries]

    # ------------------------------------------------------------ ops

    def transpose(self, t: Tensor, perm: Optional[List[int]]) -> Tensor:
        rank = len(t.axes)
        perm = list(range(rank))[::-1] if perm is None else perm
        if sorted(perm) != list(range(rank)):
            raise Refused(f"perm {perm} is not a permutation of {rank} axes")
        return dataclasses.replace(t, axes=tuple(t.axes[p] for p in perm))

    def squeeze(self, value: Value, axes: Optional[List[int]]) -> Value:
        if isinstance(value, Vec):
            if len(value.entries) != 1 or value.scalar:
                raise Refused("Squeeze of a shape vector that is not one long")
            return Vec(value.entries, True)
        t = self._tensor(value)
        rank = len(t.axes)
        units = [i for i, axis in enumerate(t.axes) if self.size(axis) == ONE]
        chosen = units if axes is None else sorted({self._axis(a, rank) for a in axes})
        if any(i not in units for i in chosen):
            raise Refused(f"Squeeze of axes {axes}, not all of size 1 ({self.show(t)})")
        return dataclasses.replace(t, axes=tuple(axis for i, axis in enumerate(t.axes) if i not in chosen))

    def unsqueeze(self, value: Value, axes: List[int]) -> Value:
        if isinstance(value, Vec):
            if not value.scalar or axes not in ([0], [-1]):
                raise Refused("Unsqueeze of a shape vector other than a scalar to one entry")
            return Vec(value.entries, False)
        t = self._tensor(value)
        rank = len(t.axes) + len(axes)
        chosen = sorted({self._axis(a, rank) for a in axes})
        if len(chosen) != len(axes):
            raise Refused(f"Unsqueeze axes {axes} repeat")
        it = iter(t.axes)
        return dataclasses.replace(t, axes=tuple(("1",) if i in chosen else next(it) for i in range(rank)))

    def reshape(self, value: Value, target: Vec, allowzero: int) -> Value:
        if isinstance(value, Vec):
            shape = [e.size for e in target.entries]
            if shape in ([], [ONE]) and len(value.entries) == 1:
                return Vec(value.entries, not shape)
            if shape in ([dim(-1)], [dim(len(value.entries))]):
                return Vec(value.entries, False)
            raise Refused("Reshape of a shape vector other than to a scalar or a list")
        t = self._tensor(value)
        entries = list(target.entries)
        if len(entries) > MAX_RANK:
            raise Refused(f"Reshape to {len(entries)} axes")
        if allowzero and any(e.size == dim(0) for e in entries):
            raise Refused("Reshape to an empty axis (allowzero=1)")
        flat = [a for axis in t.axes for a in axis]
        minus = [i for i, e in enumerate(entries) if e.size == dim(-1)]
        if len(minus) > 1:
            raise Refused("Reshape with more than one -1")
        split = minus[0] if minus else len(entries)
        front, p = self._groups(t, entries[:split], range(split), flat)
        back, q = self._groups(t, entries[split + 1:][::-1], range(len(entries) - 1, split, -1),
                               flat[::-1], reverse=True)
        if q > len(flat) - p:
            raise Refused(f"Reshape to {self.show_vec(target)} does not fit {self.show(t)}")
        middle = flat[p:len(flat) - q]
        if minus:
            groups = front + [tuple(middle) or ("1",)] + back[::-1]
        elif all(self.droppable(a) or self.size((a,)) == ONE for a in middle):
            groups = front + back[::-1]
        else:
            raise Refused(f"Reshape to {self.show_vec(target)} drops axes of {self.show(t)}")
        return dataclasses.replace(t, axes=tuple(groups))

    def _groups(self, t: Tensor, entries: List[Entry], indices: Any, flat: List[Atom], reverse: bool = False
                ) -> Tuple[List[Tuple[Atom, ...]], int]:
        """Consumes ``flat`` (reversed for the entries after a -1) entry by
        entry: a 0 copies the input's axis, an entry measuring an axis takes
        that axis's atoms, any other size takes atoms until the sizes match."""
        groups, p = [], 0
        for entry, index in zip(entries, indices):
            wanted = entry.atoms
            if entry.size == dim(0):
                if index >= len(t.axes):
                    raise Refused(f"Reshape copies axis {index} of {self.show(t)}")
                wanted = t.axes[index]
            group, end = None, p
            if wanted is not None:
                group, end = self._take(flat, p, self.meaning(wanted[::-1] if reverse else wanted))
            if group is None:
                # a copied axis (size 0) has its atoms: wanted is set then
                size = self.size(cast(Tuple[Atom, ...], wanted)) if entry.size == dim(0) else entry.size
                group, end = self._take_size(flat, p, size)
            if group is None and not entry.size[1] and any(self.size((a,))[1] for a in flat[p:]):
                raise Refused(f"Reshape to a fixed size {entry.size[0]} where {self.show(t)} has dynamic axes: "
                              "the graph works for one size only (torch's dynamo exporter bakes the example's "
                              "time steps into time-major graphs; torch.onnx.export(..., dynamo=False) does not)")
            if group is None:
                raise Refused(f"Reshape to a size {show_dim(entry.size)} that no axes of {self.show(t)} make up")
            groups.append(group[::-1] if reverse else group)
            p = end
        return groups, p

    def _take(self, flat: List[Atom], p: int, wanted: Tuple[Atom, ...]) -> Tuple[Optional[Tuple[Atom, ...]], int]:
        if not wanted:  # an axis of size 1
            return ((flat[p],), p + 1) if p < len(flat) and self.droppable(flat[p]) else (("1",), p)
        out, k = [], 0
        while k < len(wanted):
            if p >= len(flat):
                return None, p
            atom = flat[p]
            p += 1
            out.append(atom)
            if self.canon(atom) == wanted[k]:
                k += 1
            elif not self.droppable(atom):
                return None, p
        return tuple(out), p

    def _take_size(self, flat: List[Atom], p: int, size: Dim) -> Tuple[Optional[Tuple[Atom, ...]], int]:
        if size == ONE:
            return ((flat[p],), p + 1) if p < len(flat) and self.size((flat[p],)) == ONE else (("1",), p)
        out: List[Atom] = []
        total = ONE
        while total != size and p < len(flat) and len(out) < MAX_RANK:
            out.append(flat[p])
            total = dim_mul(total, self.size((flat[p],)))
            p += 1
        return (tuple(out), p) if total == size else (None, p)

    def concat(self, values: List[Value], axis: int) -> Value:
        if all(isinstance(v, Zeros) for v in values):
            return Zeros()
        if any(isinstance(v, Vec) for v in values):
            entries = tuple(e for v in values for e in self.vec(v).entries)
            if len(entries) > MAX_VEC or any(self.vec(v).scalar for v in values):
                raise Refused("Concat of shape vectors that are scalars or too long")
            return Vec(entries)
        tensors = [self._tensor(v) for v in values]
        first = tensors[0]
        rank = len(first.axes)
        axis = self._axis(axis, rank)
        if not all(t.kind == "state" and len(t.axes) == rank for t in tensors):
            raise Refused("Concat of anything but states (Y_h, Y_c) and shapes")
        for t in tensors[1:]:
            if any(self.meaning(a) != self.meaning(b) for i, (a, b) in enumerate(zip(t.axes, first.axes))
                   if i != axis):
                raise Refused(f"Concat of states laid out differently: {self.show(first)}, {self.show(t)}")
        joined = tuple(a for t in tensors for a in t.axes[axis])
        return dataclasses.replace(first, axes=first.axes[:axis] + (joined,) + first.axes[axis + 1:])

    def shape(self, value: Value, start: int, end: Optional[int]) -> Value:
        if isinstance(value, Const):
            return Const(np.array(value.value.shape[start:end], np.int64))
        t = self._tensor(value)
        return Vec(tuple(Entry(self.size(axis), axis) for axis in t.axes[start:end]))

    def gather(self, value: Value, indices: Value) -> Vec:
        vec = self.vec(value)
        index = self.ints(indices, "Gather's indices")
        n = len(vec.entries)
        if vec.scalar or any(not -n <= i < n for i in index):
            raise Refused(f"Gather of entries {index} of a shape of {n}")
        return Vec(tuple(vec.entries[i] for i in index), isinstance(indices, Const) and indices.value.ndim == 0)

    def slice(self, value: Value, starts: List[int], ends: List[int], axes: List[int], steps: List[int]) -> Value:
        if isinstance(value, Zeros):
            return value
        if isinstance(value, Vec):
            if value.scalar or axes not in ([0], [-1]) or steps == [0]:
                raise Refused("Slice of a shape vector other than along its one axis")
            return Vec(value.entries[slice(starts[0], ends[0], steps[0])])
        t = self._tensor(value)
        if t.kind != "input" or t.integer:
            raise Refused(f"Slice of {describe(t)}: only initial states are sliced (per layer)")
        axes_out = list(t.axes)
        for start, end, axis, step in zip(starts, ends, axes, steps):
            axis = self._axis(axis, len(t.axes))
            atom = ("slice", t.axes[axis], start, end, step)  # the rows of h0 one layer reads
            size = self.size(t.axes[axis])
            if not size[1] and step == 1:
                self.sizes[atom] = dim(len(range(size[0])[start:end]))
            axes_out[axis] = (atom,)
        return dataclasses.replace(t, axes=tuple(axes_out))

    def multiply(self, a: Value, b: Value, op: str) -> Value:
        """Mul/Add/Sub/Div of shape integers (symbolic for Mul only)."""
        va, vb = self.vec(a), self.vec(b)
        if len(va.entries) != len(vb.entries) and 1 not in (len(va.entries), len(vb.entries)):
            raise Refused(f"{op} of shape vectors of lengths {len(va.entries)} and {len(vb.entries)}")
        n = max(len(va.entries), len(vb.entries))
        out = []
        for i in range(n):
            x, y = va.entries[i % len(va.entries)], vb.entries[i % len(vb.entries)]
            if op == "Mul":
                atoms = x.atoms + y.atoms if x.atoms is not None and y.atoms is not None else None
                out.append(Entry(dim_mul(x.size, y.size), atoms))
            elif x.size[1] or y.size[1] or (op == "Div" and y.size[0] == 0):
                raise Refused(f"{op} of sizes computed from the graph's dynamic axes")
            else:
                p, q = x.size[0], y.size[0]
                out.append(Entry(dim({"Add": p + q, "Sub": p - q, "Div": int(np.trunc(p / q)) if q else 0}[op])))
        return Vec(tuple(out), va.scalar and vb.scalar)

    # ------------------------------------------------------------ helpers

    def _tensor(self, value: Value) -> Tensor:
        if not isinstance(value, Tensor):
            raise Refused(f"expected a tensor of the graph, got {describe(value)}")
        if len(value.axes) > MAX_RANK:
            raise Refused(f"a tensor of {len(value.axes)} axes")
        return value

    @staticmethod
    def _axis(axis: int, rank: int) -> int:
        if not -rank <= axis < rank:
            raise Refused(f"axis {axis} of a tensor of {rank} axes")
        return axis % rank

    def show(self, t: Tensor) -> str:
        return "(" + ", ".join("*".join(map(str, axis)) for axis in t.axes) + ")"

    def show_vec(self, v: Vec) -> str:
        return "[" + ", ".join(show_dim(e.size) for e in v.entries) + "]"


def show_dim(d: Dim) -> str:
    return "*".join([str(d[0])] * (d[0] != 1 or not d[1]) + list(d[1]))


def describe(value: Any) -> str:
    if isinstance(value, Tensor):
        if value.kind == "seq":
            return f"layer {value.layer}'s " + ("head output" if value.head else "output sequence Y")
        if value.kind == "state":
            return f"layer {value.layer}'s final states"
        return {"input": f"graph input {value.name!r}", "steps": "the time steps", "mask": "a mask"}[value.kind]
    return {Const: "a constant", Vec: "integers computed from shapes", Zeros: "zeros"}.get(type(value), "a value")
