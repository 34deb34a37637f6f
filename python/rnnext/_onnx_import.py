"""``rx.from_onnx``: the rnnext model an ONNX graph of ``RNN``/``LSTM``/``GRU``
nodes computes (API.md section 6).

The graph is traced, not matched against one exporter's output: the nodes
that compute its outputs are evaluated in order on abstract values
(``_onnx_plumbing.py``), the recurrent nodes become layers (their ``X`` must
be the previous layer's ``Y`` arranged as (T, B, D*H), or the graph's input
for the first), a MatMul or Gemm (+ Add) on the last layer's features is the
head, a ``Where`` or ``Mul`` by a mask of the steps before ``lengths`` is the
zeroing rnnext does anyway, and the layout of the graph's input at the first
node says ``batch_first``. Anything else on the way is refused with a
``ValueError`` naming the node: the model returned computes what the graph
computes, or there is no model. Metadata written by ``to_onnx`` restores only
``dropout``, which no graph shows, and only when the graph agrees with it.

The work is bounded by the graph's size (no loop runs longer than the node
list, no tensor is materialised beyond its stored bytes), so a hostile file
is refused as quickly as a valid one is read.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Set, Tuple, Union

import numpy as np

from . import _onnx_layers
from ._onnx_layers import RECURRENT
from ._onnx_plumbing import (MAX_CONST, MAX_RANK, Const, Plumbing, Refused, Tensor, Value, Vec, Zeros, all_zero,
                             describe, dim)

if TYPE_CHECKING:  # pragma: no cover
    from .models import RecurrentModel

MAX_NODES = 100_000
#: The inputs each op takes (at least, at most; optional ones left out at the end).
ARITY = {"Identity": (1, 1), "Dropout": (1, 3), "Cast": (1, 1), "Transpose": (1, 1), "Squeeze": (1, 2),
         "Unsqueeze": (1, 2), "Reshape": (2, 2), "Concat": (1, 64), "Shape": (1, 1), "Gather": (2, 2),
         "Slice": (1, 5), "Add": (2, 2), "Mul": (2, 2), "Sub": (2, 2), "Div": (2, 2), "ConstantOfShape": (1, 1),
         "Expand": (2, 2), "Constant": (0, 0), "Range": (3, 3), "Less": (2, 2), "Greater": (2, 2), "Where": (3, 3),
         "MatMul": (2, 2), "Gemm": (2, 3), "RNN": (3, 6), "GRU": (3, 6), "LSTM": (3, 8)}
MAX_VEC_FOLD = 1 << 16  # elements of a constant folded by Mul/Add/Sub/Div (shape arithmetic)
DYNAMO_HINT = ("torch.onnx.export's default (dynamo) exporter writes nn.RNN as unrolled MatMul/Tanh ops: "
               "export it with torch.onnx.export(..., dynamo=False), which writes RNN/LSTM/GRU nodes")


def _load(model: Any) -> Any:
    import onnx
    from google.protobuf.message import DecodeError

    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (str, os.PathLike)):
        with open(model, "rb") as f:
            data = f.read()
    elif isinstance(model, (bytes, bytearray, memoryview)):
        data = bytes(model)
    elif hasattr(model, "read"):
        data = model.read()
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"model: expected a binary file object, its read() gave {type(data).__name__}")
    else:
        raise TypeError(f"model: expected a path, bytes, a binary file object or an onnx.ModelProto, "
                        f"got {type(model).__name__}")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(bytes(data))
    except (DecodeError, RuntimeError, ValueError, RecursionError) as e:
        raise ValueError(f"from_onnx: not an ONNX model ({type(e).__name__}: {e})") from None
    if isinstance(model, (str, os.PathLike)) and _has_external_data(proto):
        from onnx.external_data_helper import load_external_data_for_model

        try:
            load_external_data_for_model(proto, os.path.dirname(os.path.abspath(model)))
        except Exception as e:  # missing or unreadable files, paths outside the model's folder
            raise ValueError(f"from_onnx: cannot read the model's external data ({e})") from None
    return proto


def _has_external_data(proto: Any) -> bool:
    from onnx import TensorProto

    return any(t.data_location == TensorProto.EXTERNAL for t in proto.graph.initializer)


def _array(tensor: Any, what: str) -> np.ndarray:
    """A TensorProto's values, checked against its declared shape before
    anything the shape's size is allocated (Refused: the caller names the node)."""
    from onnx import TensorProto, helper, numpy_helper

    if tensor.data_location == TensorProto.EXTERNAL:
        raise Refused(f"{what} keeps its data in an external file; pass the model's path")
    dims = list(tensor.dims)
    if len(dims) > MAX_RANK or any(d < 0 for d in dims):
        raise Refused(f"{what} has shape {dims}")
    count = int(np.prod(dims, dtype=object)) if dims else 1
    if count > MAX_CONST:
        raise Refused(f"{what} declares {count} elements")
    if tensor.data_type in (TensorProto.STRING, TensorProto.UNDEFINED):
        raise Refused(f"{what} is a tensor of {TensorProto.DataType.Name(tensor.data_type)}")
    try:
        dtype = helper.tensor_dtype_to_np_dtype(tensor.data_type)
        field = helper.tensor_dtype_to_field(tensor.data_type)
    except Exception:
        raise Refused(f"{what} has an unknown data type {tensor.data_type}") from None
    stored = len(tensor.raw_data) if tensor.HasField("raw_data") else len(getattr(tensor, field))
    expected = count * dtype.itemsize if tensor.HasField("raw_data") else count
    if dtype.itemsize and stored != expected and not (np.dtype(dtype).kind == "c" and stored == 2 * count):
        raise Refused(f"{what} declares shape {dims} but stores {stored} "
                         f"{'bytes' if tensor.HasField('raw_data') else 'values'}")
    try:
        return np.asarray(numpy_helper.to_array(tensor))
    except Exception as e:
        raise Refused(f"cannot read {what} ({e})") from None


class _Opaque:
    """An output from_onnx does not follow (Dropout's mask): refused when read."""

    def __init__(self, why: str) -> None:
        self.why = why


class _Trace(Plumbing):
    """The graph's values, evaluated in order, and what they made: layers, head, masks."""

    def __init__(self, proto: Any) -> None:
        super().__init__()
        self.graph = proto.graph
        self.layers: List[Dict[str, Any]] = []
        self.head: Optional[Tuple[np.ndarray, Optional[np.ndarray]]] = None
        self.masks: List[str] = []
        self.x: Optional[Tuple[str, Any, Any]] = None  # (input name, time atom, batch atom)
        self.values: Dict[str, Union[Value, _Opaque]] = {}

    # ------------------------------------------------------------ the walk

    def run(self) -> None:
        from onnx import TensorProto

        graph = self.graph
        if len(graph.node) > MAX_NODES:
            raise ValueError(f"from_onnx: {len(graph.node)} nodes; this reader follows at most {MAX_NODES}")
        if not any(node.op_type in RECURRENT and node.domain in ("", "ai.onnx") for node in graph.node):
            ops = sorted({node.op_type for node in graph.node})
            raise ValueError(f"from_onnx: the graph has no RNN, LSTM or GRU node (its ops: {', '.join(ops[:20])}"
                             f"{', ...' if len(ops) > 20 else ''}); {DYNAMO_HINT}")
        self.initializers = {t.name: t for t in graph.initializer}
        for value in graph.input:
            if value.name not in self.initializers:  # an initializer listed as an input is its default
                self.values[value.name] = self._input(value, TensorProto)
        producers: Dict[str, int] = {}
        for i, node in enumerate(graph.node):
            for name in node.output:
                if name and (name in producers or name in self.values or name in self.initializers):
                    raise ValueError(f"from_onnx: {self.where(i)} defines {name!r}, which is already defined")
                if name:
                    producers[name] = i
        for i in self._order(producers):
            self._evaluate(i)

    def _order(self, producers: Dict[str, int]) -> List[int]:
        """The nodes the graph's outputs need, dependencies first (Kahn's
        algorithm, so a cycle is found, not followed)."""
        nodes = self.graph.node
        needed: Set[int] = set()
        stack: List[Tuple[str, Optional[int]]] = [(o.name, None) for o in self.graph.output]
        while stack:
            name, reader = stack.pop()
            i = producers.get(name)
            if i is None:
                if name not in self.values and name not in self.initializers and name:
                    by = "the graph's outputs" if reader is None else self.where(reader)
                    raise ValueError(f"from_onnx: {by} reads {name!r}, which nothing defines")
                continue
            if i not in needed:
                needed.add(i)
                stack.extend((n, i) for n in nodes[i].input)
        waiting = {i: {producers[n] for n in nodes[i].input if n in producers} for i in needed}
        users: Dict[int, List[int]] = {}
        for i, deps in waiting.items():
            for d in deps:
                users.setdefault(d, []).append(i)
        ready = sorted(i for i, deps in waiting.items() if not deps)
        order: List[int] = []
        while ready:
            i = ready.pop()
            order.append(i)
            for user in users.get(i, ()):
                waiting[user].discard(i)
                if not waiting[user]:
                    ready.append(user)
        if len(order) != len(needed):
            stuck = min(set(needed) - set(order))
            raise ValueError(f"from_onnx: the graph has a cycle through {self.where(stuck)}")
        return order

    def where(self, i: int) -> str:
        node = self.graph.node[i]
        return f"node {node.name or '#' + str(i)!r} ({node.op_type})"

    def _input(self, value: Any, TensorProto: Any) -> Tensor:
        kind = value.type.WhichOneof("value")
        shape = value.type.tensor_type.shape.dim if kind == "tensor_type" else []
        if kind != "tensor_type" or len(shape) > MAX_RANK:
            return Tensor("input", (), value.name)
        for i, d in enumerate(shape):
            self.sizes[(value.name, i)] = dim(d.dim_value) if d.HasField("dim_value") and d.dim_value > 0 else \
                (1, (f"{value.name}.{i}",))
        elem = value.type.tensor_type.elem_type
        return Tensor("input", tuple(((value.name, i),) for i in range(len(shape))), value.name,
                      integer=elem not in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16))

    def value(self, name: str) -> Optional[Value]:
        if not name:
            return None
        if name not in self.values:
            self.values[name] = Const(_array(self.initializers[name], f"initializer {name!r}"))
        value = self.values[name]
        if isinstance(value, _Opaque):
            raise Refused(value.why)
        return value

    def _evaluate(self, i: int) -> None:
        import onnx

        node = self.graph.node[i]
        try:
            if node.domain not in ("", "ai.onnx"):
                raise Refused(f"an op of domain {node.domain!r}, which from_onnx does not follow")
            args = [self.value(name) for name in node.input]
            while args and args[-1] is None:  # optional inputs left out at the end
                args.pop()
            low, high = ARITY.get(node.op_type, (0, 8))
            if not low <= len(args) <= high:
                raise Refused(f"{len(args)} inputs; {node.op_type} takes {low} to {high}")
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            if node.op_type in RECURRENT:
                results = self._recurrent(node, args, attrs)
            else:
                handler = getattr(self, "op_" + node.op_type, None)
                if handler is None:
                    raise Refused(f"{node.op_type} is not an op from_onnx follows between recurrent nodes")
                results = handler(args, attrs)
                results = results if isinstance(results, list) else [results]
        except Refused as e:
            raise ValueError(f"from_onnx: {self.where(i)}: {e}") from None
        except (ValueError, TypeError, IndexError, KeyError, OverflowError, ZeroDivisionError) as e:
            # numpy refusing a constant's fold, an attribute missing: the graph is malformed
            raise ValueError(f"from_onnx: {self.where(i)}: cannot evaluate it ({type(e).__name__}: {e})") from None
        for k, name in enumerate(node.output):
            if name:
                self.values[name] = results[k] if k < len(results) else _Opaque(
                    f"output {k} of {self.where(i)} is not something from_onnx follows")

    # ------------------------------------------------------------ plumbing ops

    def op_Identity(self, args: List[Value], attrs: Dict[str, Any]) -> Union[Value, List[Value]]:
        return args[0]

    op_Dropout = op_Identity  # inference: the identity (its mask output is opaque)

    def op_Cast(self, args: List[Any], attrs: Dict[str, Any]) -> Union[Value, List[Value]]:
        from onnx import TensorProto

        value, to = args[0], attrs.get("to")
        floating = to in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16)
        if isinstance(value, Const):
            return Const(self._fold_cast(value.value, to))
        if isinstance(value, Vec) and not floating or isinstance(value, Zeros):
            return value
        if isinstance(value, Tensor) and (floating != value.integer or value.kind == "mask"):
            return dataclasses.replace(value, integer=not floating)
        raise Refused(f"Cast of {describe(value)} to type {to}")

    def op_Transpose(self, args: List[Any], attrs: Dict[str, Any]) -> Union[Value, List[Value]]:
        value, perm = args[0], attrs.get("perm")
        if isinstance(value, Const):
            return Const(np.transpose(value.value, perm))
        return value if isinstance(value, Zeros) else self.transpose(self._tensor(value), perm)

    def _axes_arg(self, args: List[Any], attrs: Dict[str, Any], what: str) -> Any:
        if len(args) > 1 and args[1] is not None:
            return self.ints(args[1], what)
        return list(attrs["axes"]) if "axes" in attrs else None

    def op_Squeeze(self, args: List[Any], attrs: Dict[str, Any]) -> Union[Value, List[Value]]:
        value, axes = args[0], self._axes_arg(args, attrs, "Squeeze's axes")
        if isinstance(value, Const):
            return Const(np.squeeze(value.value, tuple(axes) if axes is not None else None))
        return value if isinstance(value, Zeros) else self.squeeze(value, axes)

    def op_Unsqueeze(self, args: List[Any], attrs: Dict[str, Any]) -> Union[Value, List[Value]]:
        value, axes = args[0], self._axes_arg(args, attrs, "Unsqueeze's axes")
        if axes is None:
            raise Refused("Unsqueeze without axes")
        if isinstance(value, Const):
            return Const(np.expand_dims(value.value, tuple(axes)))
        return value if isinstance(value, Zeros) else self.unsqueeze(value, axes)

    def op_Reshape(self, args: List[Any], attrs: Dict[str, Any]) -> Union[Value, List[Value]]:
        value, target, allowzero = args[0], self.vec(args[1]), attrs.get("allowzero", 0)
        if isinstance(value, Const):
            shape = [e.size[0] if e.size[0] or allowzero else value.value.shape[i] for i, e in
                     enumerate(target.entries)] if not any(e.size[1] for e in target.entries) else None
            if shape is None or len(shape) > MAX_RANK:
                raise Refused("Reshape of a constant to a shape that is not constant")
            return Const(np.reshape(value.value, shape))
        return value if isinstance(value, Zeros) else self.reshape(value, target, allowzero)

    def op_Concat(self, args: List[Any], attrs: Dict[str, Any]) -> Union[Value, List[Value]]:
        if all(isinstance(v, Const) for v in args):
            return Const(np.concatenate([v.value for v in args], axis=attrs.get("axis", 0)))
        return self.concat(args, attrs.get("axis", 0))

    def op_Shape(self, args: List[Any], attrs: Dict[str, Any]) -> Union[Value, List[Value]]:
        return self.shape(args[0], attrs.get("start", 0), attrs.get("end"))

    def op_Gather(self, args: List[Any], attrs: Dict[str, Any]) -> Union[Value, List[Value]]:
        if isinstance(args[0], Const) and isinstance(args[1], Const) and args[0].value.ndim > 1:
            return Const(np.take(args[0].value, args[1].value, axis=attrs.get("axis", 0)))
        if attrs.get("axis", 0) != 0:
            raise Refused("Gather along an axis other than 0 of a shape vector")
        return self.gather(args[0], args[1])

    def op_Slice(self, args: List[Any], attrs: Dict[str, Any]) -> Union[Value, List[Value]]:
        if len(args) > 1:
            starts, ends = self.ints(args[1], "starts"), self.ints(args[2], "ends")
            axes = self.ints(args[3], "axes") if len(args) > 3 and args[3] is not None else None
            steps = self.ints(args[4], "steps") if len(args) > 4 and args[4] is not None else None
        else:
            starts, ends, axes, steps = list(attrs["starts"]), list(attrs["ends"]), attrs.get("axes"), None
        axes = list(axes) if axes is not None else list(range(len(starts)))
        steps = steps or [1] * len(starts)
        if not len(starts) == len(ends) == len(axes) == len(steps) or 0 in steps:
            raise Refused("Slice with starts, ends, axes and steps of different lengths")
        if isinstance(args[0], Const):
            index = [slice(None)] * args[0].value.ndim
            for s, e, a, st in zip(starts, ends, axes, steps):
                index[self._axis(a, args[0].value.ndim)] = slice(s, e, st)
            return Const(args[0].value[tuple(index)])
        return self.slice(args[0], starts, ends, axes, steps)

    def _arith(self, op: str, args: List[Any]) -> Value:
        if all(isinstance(v, Const) for v in args) and all(v.value.size <= MAX_VEC_FOLD for v in args):
            a, b = (v.value for v in args)
            with np.errstate(all="ignore"):
                return Const({"Mul": np.multiply, "Add": np.add, "Sub": np.subtract}[op](a, b)) if op != "Div" \
                    else Const(np.floor_divide(a, b) if a.dtype.kind in "iu" else np.divide(a, b))
        return self.multiply(args[0], args[1], op)

    def op_Add(self, args: List[Any], attrs: Dict[str, Any]) -> Union[Value, List[Value]]:
        if any(isinstance(v, Tensor) and v.kind == "seq" for v in args):
            return _onnx_layers.head_bias(self, args)
        return self._arith("Add", args)

    def op_Mul(self, args: List[Any], attrs: Dict[str, Any]) -> Union[Value, List[Value]]:
        a, b = args
        if isinstance(a, Tensor) and a.kind == "seq":
            return _onnx_layers.masked(self, a, b)
        if isinstance(b, Tensor) and b.kind == "seq":
            return _onnx_layers.masked(self, b, a)
        return self._arith("Mul", args)

    def op_Sub(self, args: List[Any], attrs: Dict[str, Any]) -> Union[Value, List[Value]]:
        return self._arith("Sub", args)

    def op_Div(self, args: List[Any], attrs: Dict[str, Any]) -> Union[Value, List[Value]]:
        return self._arith("Div", args)

    def op_ConstantOfShape(self, args: List[Any], attrs: Dict[str, Any]) -> Union[Value, List[Value]]:
        value = attrs.get("value")
        if value is not None and not all_zero(_array(value, "ConstantOfShape's value")):
            raise Refused("ConstantOfShape of a value other than 0 (rnnext's initial states are zeros or h0)")
        return Zeros()

    def op_Expand(self, args: List[Any], attrs: Dict[str, Any]) -> Union[Value, List[Value]]:
        if isinstance(args[0], Zeros) or isinstance(args[0], Const) and all_zero(args[0].value):
            return Zeros()
        raise Refused(f"Expand of {describe(args[0])}: only zeros are expanded (as initial states)")

    def op_Constant(self, args: List[Any], attrs: Dict[str, Any]) -> Union[Value, List[Value]]:
        if "value" in attrs:
            return Const(_array(attrs["value"], "a Constant's value"))
        for key, dtype in (("value_float", np.float32), ("value_floats", np.float32), ("value_int", np.int64),
                           ("value_ints", np.int64)):
            if key in attrs:
                if np.size(attrs[key]) > MAX_CONST:
                    raise Refused(f"a Constant of {np.size(attrs[key])} values")
                return Const(np.array(attrs[key], dtype))
        raise Refused(f"a Constant with {sorted(attrs)}, which from_onnx does not read")

    def _fold_cast(self, value: np.ndarray, to: Any) -> np.ndarray:
        from onnx import helper

        try:
            with np.errstate(all="ignore"):
                return value.astype(helper.tensor_dtype_to_np_dtype(to))
        except Exception:
            raise Refused(f"Cast to type {to}") from None

    # ------------------------------------------------------------ what the graph means (_onnx_layers)

    def op_Range(self, args: List[Any], attrs: Dict[str, Any]) -> Union[Value, List[Value]]:
        return _onnx_layers.steps(self, *args)

    def op_Less(self, args: List[Any], attrs: Dict[str, Any]) -> Union[Value, List[Value]]:
        return _onnx_layers.valid_steps(self, args[0], args[1])

    def op_Greater(self, args: List[Any], attrs: Dict[str, Any]) -> Union[Value, List[Value]]:
        return _onnx_layers.valid_steps(self, args[1], args[0])

    def op_Where(self, args: List[Any], attrs: Dict[str, Any]) -> Union[Value, List[Value]]:
        condition, data, other = args
        if not (isinstance(other, Zeros) or isinstance(other, Const) and all_zero(other.value)):
            raise Refused("Where other than the mask of valid steps, zero elsewhere")
        return _onnx_layers.masked(self, data, condition)

    def op_MatMul(self, args: List[Any], attrs: Dict[str, Any]) -> Union[Value, List[Value]]:
        return _onnx_layers.head(self, args[0], args[1], None, "MatMul")

    def op_Gemm(self, args: List[Any], attrs: Dict[str, Any]) -> Union[Value, List[Value]]:
        if attrs.get("transA", 0):
            raise Refused("transA=1: the head reads the features as they are")
        weight, bias = args[1], args[2] if len(args) > 2 else None
        def scaled(v: Const, key: str) -> Const:
            with np.errstate(all="ignore"):
                return Const(v.value * np.asarray(attrs.get(key, 1.0)).astype(v.value.dtype))

        if isinstance(weight, Const):
            weight = scaled(Const(weight.value.T) if attrs.get("transB", 0) else weight, "alpha")
        if isinstance(bias, Const):
            bias = scaled(bias, "beta")
        return _onnx_layers.head(self, args[0], weight, bias, "Gemm")

    def _recurrent(self, node: Any, args: List[Any], attrs: Dict[str, Any]) -> List[Any]:
        return _onnx_layers.layer(self, node, args, attrs)


def from_onnx(model: Any) -> "RecurrentModel":
    """``rx.from_onnx``; see ``interop.from_onnx``."""
    proto = _load(model)
    trace = _Trace(proto)
    trace.run()
    return _onnx_layers.model(trace, proto)
