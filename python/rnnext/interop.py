"""PyTorch interop. torch is imported only inside these functions."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .models import RNN

__all__ = ["from_torch"]


def _numpy(tensor: Any) -> np.ndarray:
    return tensor.detach().cpu().numpy().copy()


def from_torch(module: Any, head: Optional[Any] = None) -> RNN:
    """An ``rnnext.RNN`` with the weights, dtype, ``batch_first`` and ``bias``
    of a one-layer, one-direction ``torch.nn.RNN`` (and, optionally, a
    ``torch.nn.Linear`` head reading its hidden state).

    Raises ``TypeError`` for other module types and ``ValueError`` for what
    rnnext cannot represent yet (several layers, two directions, a dtype other
    than float32/float64, a head of the wrong size).
    """
    import torch

    if not isinstance(module, torch.nn.RNN):
        raise TypeError(f"module: expected a torch.nn.RNN, got {type(module).__name__}")
    if module.num_layers != 1 or module.bidirectional:
        raise ValueError(
            "module: rnnext.RNN supports one layer and one direction for now, got "
            f"num_layers={module.num_layers}, bidirectional={module.bidirectional}"
        )
    dtype = module.weight_ih_l0.dtype
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"module: expected float32 or float64 weights, got {dtype}")
    if head is not None:
        if not isinstance(head, torch.nn.Linear):
            raise TypeError(f"head: expected a torch.nn.Linear, got {type(head).__name__}")
        if head.in_features != module.hidden_size:
            raise ValueError(
                f"head: expected in_features = hidden_size = {module.hidden_size}, got {head.in_features}"
            )
    model = RNN(
        module.input_size,
        module.hidden_size,
        None if head is None else head.out_features,
        activation=module.nonlinearity,
        bias=module.bias,
        batch_first=module.batch_first,
        dtype="float64" if dtype == torch.float64 else "float32",
    )
    state = {"W_x": _numpy(module.weight_ih_l0), "W_h": _numpy(module.weight_hh_l0)}
    if module.bias:
        state.update(b_x=_numpy(module.bias_ih_l0), b_h=_numpy(module.bias_hh_l0))
    if head is not None:
        state["W_o"] = _numpy(head.weight)
        state["b_o"] = _numpy(head.bias) if head.bias is not None else np.zeros(head.out_features)
    model.load_state_dict(state)
    return model
