"""Optimisers: ``rx.optim.SGD``, ``Adam`` and ``AdamW`` (API.md section 8).

Each follows the update equations of the ``torch.optim`` class of the same
name, single-tensor path (``foreach=False``), operation for operation, so
that training matches torch step by step: the same order, the same
scalars (computed in Python floats, then applied in the parameters'
dtype) and, where torch's CPU kernels fuse a multiply and an add
(``add(alpha=)``, ``lerp``), the same single rounding (``_fma``).

An optimiser's state (momentum buffers, moment estimates, step counts) is
kept per parameter name, so handing the same object to a second ``fit``
continues training where the first stopped. ``epochs`` counts the epochs
``fit`` has run with it: a learning-rate schedule reads it, so a resumed
run sees the epochs it would have seen in one call.
"""

from __future__ import annotations

import math
import sys
import typing
from typing import Any, Dict, Mapping, Tuple

import numpy as np

from ._arrays import as_array, cast

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "clip_grad_norm", "global_norm"]


def _number(name: str, value: Any, minimum: float = 0.0, below: float = math.inf, strict: bool = False) -> float:
    """A finite float in [minimum, below) ((minimum, below) when ``strict``),
    else TypeError / ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    # numpy's stubs reject `float >= np.integer | np.floating` (object); every pair compares at run time
    ok = (value > minimum if strict else value >= minimum) and value < below and abs(value) <= sys.float_info.max  # type: ignore[operator]
    if not ok:  # NaN fails every comparison
        lower = "(" if strict else "["
        upper = f"{below})" if below != math.inf else "inf)"
        raise ValueError(f"{name}: expected a number in {lower}{minimum}, {upper}, got {value}")
    return float(value)


def _fma(a: np.ndarray, b: Any, c: np.ndarray) -> np.ndarray:
    """a * b + c rounded once, as torch's fused CPU kernels compute it (``b``
    a scalar or an array like ``a``). In float32 the product of two float32
    numbers is exact in float64, so one float64 sum and one rounding give the
    fused result (but in the rare double-rounding tie); float64 has no wider
    type here and rounds twice."""
    if a.dtype == np.float32:
        b = b.astype(np.float64) if isinstance(b, np.ndarray) else np.float64(np.float32(b))
        return typing.cast(np.ndarray, (a.astype(np.float64) * b + c).astype(np.float32))
    return typing.cast(np.ndarray, a * b + c)


class Optimizer:
    """What ``fit`` needs of an optimiser: ``lr`` (read and set by ``fit``, its
    schedules and ``ReduceLROnPlateau``), ``step(params, grads) -> params``,
    ``epochs`` and ``state_dict`` / ``load_state_dict``."""

    #: The hyper-parameters ``state_dict`` saves, beside ``lr``.
    _OPTIONS: Tuple[str, ...] = ()

    def __init__(self, lr: float) -> None:
        self.lr = lr
        #: Epochs ``fit`` has completed with this optimiser (schedules count from it).
        self.epochs = 0
        self.state: Dict[str, Dict[str, Any]] = {}

    @property
    def lr(self) -> float:
        """The learning rate of the next step (a positive finite float)."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = _number("lr", value, strict=True)

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={getattr(self, k)!r}" for k in ("lr",) + self._OPTIONS)
        return f"{type(self).__name__}({options})"

    def _param_state(self, name: str, param: np.ndarray) -> Dict[str, Any]:
        """The state of parameter ``name``, checked against it: one optimiser
        object serves one model (or models with the same parameters)."""
        state = self.state.setdefault(name, {})
        for key, value in state.items():
            if isinstance(value, np.ndarray) and (value.shape != param.shape or value.dtype != param.dtype):
                raise ValueError(f"optimizer: its state {key!r} of parameter {name!r} is {value.dtype} "
                                 f"{value.shape}, the parameter is {param.dtype} {param.shape}; this optimiser "
                                 "has been used on another model: use a fresh one")
        return state

    def step(self, params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """New parameters from ``params`` and their gradients (same keys); the
        arrays given are not modified."""
        with np.errstate(over="ignore", invalid="ignore"):  # huge gradients give Inf quietly, as in torch
            new = {}
            for k, p in params.items():
                p = as_array(p, f"params[{k!r}]")
                new[k] = self._update(k, p, cast(as_array(grads[k], f"grads[{k!r}]", p.dtype), p.dtype))
            return new

    def _update(self, name: str, param: np.ndarray, grad: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def state_dict(self) -> Dict[str, Any]:
        """Hyper-parameters, ``epochs`` and per-parameter state (copies): what
        ``load_state_dict`` needs to resume training."""
        return {"lr": self.lr, **{k: getattr(self, k) for k in self._OPTIONS}, "epochs": self.epochs,
                "state": {name: {k: np.array(v) if isinstance(v, np.ndarray) else v for k, v in s.items()}
                          for name, s in self.state.items()}}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restores what ``state_dict`` returned (of the same class)."""
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict: expected a dict, got {type(state_dict).__name__}")
        missing = [k for k in ("lr", "epochs", "state") + self._OPTIONS if k not in state_dict]
        if missing:
            raise ValueError(f"state_dict: missing {missing} (is it a {type(self).__name__}'s?)")
        fresh = type(self)(**{k: state_dict[k] for k in ("lr",) + self._OPTIONS})  # checks the values
        epochs = state_dict["epochs"]
        if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
            raise ValueError(f"state_dict: 'epochs' must be a non-negative int, got {epochs!r}")
        self.__dict__.update(fresh.__dict__)
        self.epochs = int(epochs)
        self.state = {str(name): {k: np.array(v) if isinstance(v, np.ndarray) else v for k, v in s.items()}
                      for name, s in dict(state_dict["state"]).items()}


class SGD(Optimizer):
    """Stochastic gradient descent, as ``torch.optim.SGD`` (dampening 0).

    Parameters
    ----------
    lr : float
        The learning rate (positive).
    momentum : float
        Momentum factor (>= 0); the buffer starts as the first gradient.
    nesterov : bool
        Nesterov momentum (needs ``momentum > 0``).
    weight_decay : float
        L2 penalty added to the gradient (coupled, as torch).

    Notes
    -----
    With ``g = grad + weight_decay * p``: ``buf = g`` at the first step,
    else ``buf = momentum * buf + g``; ``d = g + momentum * buf`` (Nesterov)
    or ``buf``; ``p -= lr * d``. Without momentum ``d = g``.
    """

    _OPTIONS = ("momentum", "nesterov", "weight_decay")

    def __init__(self, lr: float, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0) -> None:
        super().__init__(lr)
        self.momentum = _number("momentum", momentum)
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov: expected a bool, got {type(nesterov).__name__}")
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov: Nesterov momentum needs momentum > 0")
        self.nesterov = bool(nesterov)
        self.weight_decay = _number("weight_decay", weight_decay)

    def _update(self, name: str, param: np.ndarray, grad: np.ndarray) -> np.ndarray:
        if self.weight_decay != 0:
            grad = _fma(param, self.weight_decay, grad)
        if self.momentum != 0:
            state = self._param_state(name, param)
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = grad.copy()
            else:
                buf = buf * param.dtype.type(self.momentum) + grad
            state["momentum_buffer"] = buf
            grad = _fma(buf, self.momentum, grad) if self.nesterov else buf
        return _fma(grad, -self.lr, param)


class Adam(Optimizer):
    """Adam, as ``torch.optim.Adam`` (no amsgrad).

    Parameters
    ----------
    lr : float
        The learning rate (positive).
    betas : (float, float)
        Decay rates of the first and second moment estimates, in [0, 1).
    eps : float
        Added to the bias-corrected root of the second moment (>= 0).
    weight_decay : float
        L2 penalty added to the gradient (coupled; see ``AdamW``).

    Notes
    -----
    At step t: ``m = beta1 m + (1 - beta1) g``, ``v = beta2 v + (1 - beta2)
    g^2``, ``p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) +
    eps)``.
    """

    _OPTIONS = ("betas", "eps", "weight_decay")
    _DECOUPLED = False

    def __init__(self, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas: expected a pair of numbers, got {betas!r}")
        self.betas = (_number("betas[0]", betas[0], below=1.0), _number("betas[1]", betas[1], below=1.0))
        self.eps = _number("eps", eps)
        self.weight_decay = _number("weight_decay", weight_decay)

    def _update(self, name: str, param: np.ndarray, grad: np.ndarray) -> np.ndarray:
        beta1, beta2 = self.betas
        state = self._param_state(name, param)
        if not state:
            state.update(step=0, exp_avg=np.zeros_like(param), exp_avg_sq=np.zeros_like(param))
        # torch keeps the step count in a float32 tensor, exact up to 2**24.
        state["step"] += 1
        step = state["step"]
        real = param.dtype.type
        if self.weight_decay != 0:
            if self._DECOUPLED:
                param = param * real(1 - self.lr * self.weight_decay)
            else:
                grad = _fma(param, self.weight_decay, grad)
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        # torch's lerp(m, g, w): m + w (g - m) for w < 0.5, else g - (1 - w) (g - m), fused.
        weight = real(1 - beta1)
        if weight < 0.5:
            exp_avg = _fma(grad - exp_avg, weight, exp_avg)
        else:
            exp_avg = _fma(grad - exp_avg, weight - real(1), grad)
        # addcmul(v, g, g, value=1 - beta2): (value g) g + v, fused.
        exp_avg_sq = _fma(real(1 - beta2) * grad, grad, exp_avg_sq * real(beta2))
        state["exp_avg"], state["exp_avg_sq"] = exp_avg, exp_avg_sq
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = self.lr / bias_correction1
        denom = np.sqrt(exp_avg_sq) / real(bias_correction2**0.5) + real(self.eps)
        return typing.cast(np.ndarray, param + real(-step_size) * exp_avg / denom)


class AdamW(Adam):
    """Adam with decoupled weight decay, as ``torch.optim.AdamW``.

    Parameters
    ----------
    lr, betas, eps
        As in ``Adam``.
    weight_decay : float
        Each step first scales the parameters by ``1 - lr * weight_decay``
        (decoupled from the gradient), then takes Adam's step.
    """

    _DECOUPLED = True

    def __init__(self, lr: float = 1e-3, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2) -> None:
        super().__init__(lr, betas, eps, weight_decay)


def global_norm(grads: Mapping[str, np.ndarray]) -> float:
    """The 2-norm of all gradients together, in float64."""
    return math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads.values()))


def clip_grad_norm(grads: Mapping[str, np.ndarray], max_norm: float) -> Tuple[Dict[str, np.ndarray], float]:
    """Scales all gradients together so their global norm is at most max_norm
    (``torch.nn.utils.clip_grad_norm_``); returns them and the norm before clipping."""
    norm = global_norm(grads)
    scale = max_norm / (norm + 1e-6)
    if scale < 1:
        with np.errstate(invalid="ignore"):  # inf * 0 is NaN, quietly: fit reports non-finite losses
            return {k: (g * scale).astype(g.dtype, copy=False) for k, g in grads.items()}, norm
    return dict(grads), norm
