"""Sequence to sequence: an encoder and a decoder (many-to-many, lengths differ).

The encoder reads the source; its final state starts the decoder, which is
trained with teacher forcing (it reads the target shifted by one step, a
start token first) and translates greedily, feeding each chosen token back
until it emits the end token. Gradients flow from the decoder's loss through
its initial state into the encoder.
"""

from __future__ import annotations

import typing
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from . import _fit_loop
from . import train as _train
from ._arrays import as_array, cast
from .generate import one_hot
from .layers import map_state
from .models import RecurrentModel

__all__ = ["Seq2Seq"]


def _token(name: str, value: Any, size: int, allow_none: bool = False) -> Optional[int]:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected a token id (int), got {type(value).__name__}")
    if not 0 <= value < size:
        raise ValueError(f"{name}: expected a token id in [0, {size}), got {value}")
    return int(value)


def _lengths(name: str, value: Any, batch: int, steps: int) -> Optional[np.ndarray]:
    if value is None:
        return None
    lengths = as_array(value, name)
    if lengths.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer array, got dtype {lengths.dtype}")
    if lengths.shape != (batch,):
        raise ValueError(f"{name}: expected shape ({batch},) (one length per sequence), got {lengths.shape}")
    bad = (lengths < 1) | (lengths > steps)
    if bad.any():
        raise ValueError(f"{name}[{int(np.argmax(bad))}] = {lengths[bad][0]} is outside [1, T] with T = {steps}")
    return lengths.astype(np.int64)


class Seq2Seq:
    """An encoder-decoder for varying input to varying output (translation).

    Parameters
    ----------
    encoder : RNN, LSTM or GRU
        Reads the source. It may be bidirectional; its head, if any, is unused.
    decoder : RNN, LSTM or GRU
        Unidirectional, with a head; the same cell family as the encoder (an
        LSTM passes (h, c)), the same ``num_layers``, ``dtype`` and
        ``batch_first``, and ``hidden_size`` = the encoder's ``hidden_size``
        times its number of directions: layer ``l`` of the decoder starts
        from layer ``l`` of the encoder, directions concatenated.

    Notes
    -----
    Sources are class ids ``(B, Ts)`` or features ``(B, Ts, I)``: an
    encoder with ``vocab_size`` reads the ids through its embedding, any
    other one-hot encoded to its ``input_size``. Targets are class ids
    ``(B, Tt)`` over the decoder's ``output_size``, trained with
    cross-entropy; the decoder reads the previous target token as an id
    when it has ``vocab_size`` (``output_size`` = ``vocab_size``, and
    ``bos`` is required), one-hot otherwise (``output_size`` =
    ``input_size``). With ``batch_first=False`` the time axis comes first.
    """

    def __init__(self, encoder: RecurrentModel, decoder: RecurrentModel) -> None:
        for name, model in (("encoder", encoder), ("decoder", decoder)):
            if not isinstance(model, RecurrentModel):
                raise TypeError(f"{name}: expected an rnnext RNN, LSTM or GRU, got {type(model).__name__}")
        if decoder.bidirectional:
            raise ValueError("decoder: must be unidirectional (it generates one step at a time)")
        if decoder.output_size is None:
            raise ValueError("decoder: needs a head (output_size) producing logits over the target tokens")
        vocab = decoder.config.get("vocab_size")
        if vocab is not None and decoder.output_size != vocab:
            raise ValueError(f"decoder: output_size ({decoder.output_size}) must equal vocab_size "
                             f"({vocab}): it reads its previous token's id")
        if vocab is None and decoder.output_size != decoder.input_size:
            raise ValueError(f"decoder: output_size ({decoder.output_size}) must equal input_size "
                             f"({decoder.input_size}): it reads its previous token one-hot "
                             "(or give it vocab_size to read ids)")
        if encoder.spec.cell.has_cell_state != decoder.spec.cell.has_cell_state:
            raise ValueError(f"encoder and decoder: states differ ({type(encoder).__name__} and "
                             f"{type(decoder).__name__}); use LSTM for both, or RNN/GRU for both")
        for name, model in (("encoder", encoder), ("decoder", decoder)):
            if model.config.get("proj_size", 0):
                raise ValueError(f"{name}: Seq2Seq passes whole states between LSTMs without projections; "
                                 f"got proj_size={model.config['proj_size']}")
        if encoder.num_layers != decoder.num_layers:
            raise ValueError(f"decoder: num_layers {decoder.num_layers} must equal the encoder's {encoder.num_layers}")
        width = encoder.hidden_size * encoder.num_directions
        if decoder.hidden_size != width:
            raise ValueError(f"decoder: hidden_size {decoder.hidden_size} must equal the encoder's hidden_size x "
                             f"directions = {width}")
        if encoder.dtype != decoder.dtype:
            raise ValueError(f"encoder and decoder: dtypes differ ({encoder.dtype} and {decoder.dtype})")
        if encoder.batch_first != decoder.batch_first:
            raise ValueError("encoder and decoder: batch_first differs")
        self.encoder, self.decoder = encoder, decoder

    def __repr__(self) -> str:
        return f"Seq2Seq(encoder={self.encoder!r}, decoder={self.decoder!r})"

    # ------------------------------------------------------------ states

    def _bridge(self, state: Any) -> Any:
        """Encoder h_n (L*D, B, H) -> decoder h0 (L, B, D*H), per array of the state."""
        L, D = self.encoder.num_layers, self.encoder.num_directions

        def one(h: np.ndarray) -> np.ndarray:
            if D == 1:
                return h
            h = h.reshape((L, D) + h.shape[1:])
            return np.concatenate([h[:, d] for d in range(D)], axis=-1)

        return map_state(one, state)

    def _bridge_back(self, grad: Any) -> Any:
        """The inverse of ``_bridge`` for the gradient of the decoder's h0."""
        L, D, H = self.encoder.num_layers, self.encoder.num_directions, self.encoder.hidden_size

        def one(g: np.ndarray) -> np.ndarray:
            if D == 1:
                return g
            parts = [g[..., d * H:(d + 1) * H] for d in range(D)]
            return np.stack(parts, axis=1).reshape((L * D,) + g.shape[1:-1] + (H,))

        return map_state(one, grad)

    # ------------------------------------------------------------ data

    def _time_axis(self) -> int:
        return 1 if self.encoder.batch_first else 0

    def _decoder_vocab(self) -> int:
        """The ids the decoder reads and emits: its ``vocab_size``, or its one-hot ``input_size``."""
        return self.decoder.config.get("vocab_size") or self.decoder.input_size

    def _source(self, src: Any) -> np.ndarray:
        src = as_array(src, "src", self.encoder.dtype)
        V = self.encoder.config.get("vocab_size")
        if V is not None:  # ids straight into the encoder's embedding
            if src.dtype.kind not in "iu" or src.ndim != 2:
                raise (TypeError if src.dtype.kind not in "iu" else ValueError)(
                    f"src: the encoder has vocab_size={V} and reads token ids (B, Ts), "
                    f"got dtype {src.dtype} and shape {src.shape}")
            _check_ids("src", src, V)
            ids: np.ndarray = src.astype(np.int64)
            return ids
        if src.dtype.kind in "iu":
            if src.ndim != 2:
                raise ValueError(f"src: class ids must be 2-D (B, Ts), got shape {src.shape}")
            _check_ids("src", src, self.encoder.input_size)
            return one_hot(src, self.encoder.input_size, self.encoder.dtype)
        if src.dtype.kind not in "fb" or src.ndim != 3:
            raise ValueError(f"src: expected class ids (B, Ts) or features (B, Ts, {self.encoder.input_size}), "
                             f"got dtype {src.dtype} and shape {src.shape}")
        if src.shape[-1] != self.encoder.input_size:
            raise ValueError(f"src: expected {self.encoder.input_size} features, got shape {src.shape}")
        return cast(src, self.encoder.dtype)

    def _decoder_inputs(self, tgt: np.ndarray, bos: Optional[int]) -> np.ndarray:
        """Teacher forcing: the decoder reads bos (zeros when None), then the
        target shifted by one step: ids for a decoder with ``vocab_size``, else one-hot."""
        V, axis = self.decoder.input_size, self._time_axis()
        if self.decoder.config.get("vocab_size") is not None:
            first = np.full_like(np.take(tgt, [0], axis=axis), bos, dtype=np.int64)
            shifted = np.take(tgt, np.arange(tgt.shape[axis] - 1), axis=axis).astype(np.int64)
            return np.concatenate([first, shifted], axis=axis)
        inputs = one_hot(tgt, V, self.decoder.dtype)
        first = np.zeros_like(np.take(inputs, [0], axis=axis))
        if bos is not None:
            first[..., bos] = 1
        return np.concatenate([first, np.take(inputs, np.arange(tgt.shape[axis] - 1), axis=axis)], axis=axis)

    # ------------------------------------------------------------ training

    def loss_and_grads(self, src: Any, tgt: Any, *, bos: Optional[int] = None, src_lengths: Any = None,
                       tgt_lengths: Any = None) -> Tuple[float, Dict[str, np.ndarray]]:
        """The teacher-forced cross-entropy (mean over valid target steps) and
        its gradient for every parameter, keyed ``"encoder.<name>"`` and
        ``"decoder.<name>"``."""
        value, grads, _ = self._loss_and_grads(*self._batch(src, tgt, bos, src_lengths, tgt_lengths), None)
        return value, grads

    def _batch(self, src: Any, tgt: Any, bos: Any, src_lengths: Any, tgt_lengths: Any) -> _Batch:
        x = self._source(src)
        tgt = as_array(tgt, "tgt")
        if tgt.dtype.kind not in "iu" or tgt.ndim != 2:
            raise ValueError(f"tgt: expected integer class ids (B, Tt), got dtype {tgt.dtype} and shape {tgt.shape}")
        _check_ids("tgt", tgt, typing.cast(int, self.decoder.output_size))  # __init__ checked the head
        axis = self._time_axis()
        B = x.shape[1 - axis]
        if tgt.shape[1 - axis] != B:
            raise ValueError(f"tgt: expected {B} sequences like src, got shape {tgt.shape}")
        bos = self._bos(bos)
        src_lengths = _lengths("src_lengths", src_lengths, B, x.shape[axis])
        tgt_lengths = _lengths("tgt_lengths", tgt_lengths, B, tgt.shape[axis])
        return x, tgt, bos, src_lengths, tgt_lengths

    def _bos(self, bos: Any) -> Optional[int]:
        if bos is None and self.decoder.config.get("vocab_size") is not None:
            raise ValueError("bos: the decoder has vocab_size and reads token ids, so it needs a start token id")
        return _token("bos", bos, self._decoder_vocab(), allow_none=True)

    def _loss_and_grads(self, x: np.ndarray, tgt: np.ndarray, bos: Optional[int], src_lengths: Optional[np.ndarray],
                        tgt_lengths: Optional[np.ndarray], dropout_rng: Optional[np.random.Generator]
                        ) -> Tuple[float, Dict[str, np.ndarray], int]:
        encoder, decoder = self.encoder, self.decoder
        _, enc_state, enc_cache = encoder.forward_cache(x, lengths=src_lengths, dropout_rng=dropout_rng)
        logits, _, dec_cache = decoder.forward_cache(self._decoder_inputs(tgt, bos), self._bridge(enc_state),
                                                     lengths=tgt_lengths, dropout_rng=dropout_rng)
        batch_major: Callable[[np.ndarray], np.ndarray] = (lambda a: a) if decoder.batch_first else (lambda a: np.swapaxes(a, 0, 1))
        mask = None
        if tgt_lengths is not None:
            mask = np.arange(tgt.shape[self._time_axis()])[None, :] < tgt_lengths[:, None]
        value, d_logits, count = _train.cross_entropy_loss(batch_major(logits), batch_major(tgt), mask)
        dec = decoder.backward_cache(dec_cache, batch_major(d_logits))
        enc = encoder.backward_cache(enc_cache, None, self._bridge_back(dec.h0))
        grads = {f"encoder.{k}": v for k, v in enc.params.items()}
        grads.update({f"decoder.{k}": v for k, v in dec.params.items()})
        return value, grads, count

    def fit(self, src: Any, tgt: Any, *, bos: Optional[int] = None, src_lengths: Any = None,
            tgt_lengths: Any = None, epochs: int = 1, batch_size: int = 32, optimizer: Any = "adam",
            lr: Any = None, clip_norm: Optional[float] = None, validation_data: Optional[Sequence[Any]] = None,
            shuffle: bool = True, callbacks: Optional[Iterable[Callable[[int, Dict[str, float]], Any]]] = None,
            seed: Optional[int] = None, progress: bool = True) -> Dict[str, List[float]]:
        """Trains encoder and decoder together, with teacher forcing.

        Parameters
        ----------
        src : array_like
            Class ids (B, Ts) (through the encoder's embedding when it has
            ``vocab_size``, else one-hot) or features (B, Ts, I).
        tgt : array_like of int, (B, Tt)
            The target tokens, usually ending with the end token; the decoder
            learns to emit ``tgt[t]`` after reading ``bos, tgt[0], ..., tgt[t-1]``.
        bos : int, optional
            The start token the decoder reads first (use the same in
            ``translate``); None: a zero vector (a decoder with
            ``vocab_size`` reads ids and needs it).
        src_lengths, tgt_lengths : array_like of int, (B,), optional
            Valid steps of each source and target (padding at the end).
        epochs, batch_size, optimizer, lr, clip_norm, shuffle, callbacks, seed, progress
            As in ``RNN.fit`` (optimiser objects and schedules included; the
            optimiser's state is keyed ``"encoder.<name>"``, ``"decoder.<name>"``);
            ``dropout`` of either model applies between its layers here only.
            ``EarlyStopping`` restores both models; ``ModelCheckpoint`` is
            for single models.
        validation_data : (src, tgt) or (src, tgt, src_lengths, tgt_lengths), optional

        Returns
        -------
        dict
            ``"loss"`` per epoch (mean over valid target steps) and, with
            validation data, ``"val_loss"``.
        """
        _, epochs, batch_size, opt, lr, clip_norm, _ = _fit_loop.check_fit_arguments(
            "cross_entropy", epochs, batch_size, optimizer, lr, clip_norm, None)
        callbacks = _fit_loop.check_callbacks(callbacks, lr)
        data = self._batch(src, tgt, bos, src_lengths, tgt_lengths)
        validation = None
        v = _train.check_validation_data(validation_data, (2, 4),
                                         "(src, tgt) or (src, tgt, src_lengths, tgt_lengths)")
        if v is not None:
            validation = self._batch(v[0], v[1], bos, v[2], v[3])
        rng = np.random.default_rng(seed)
        # numpy's stubs type seed_seq as ISeedSequence; default_rng's is a SeedSequence, which spawns
        dropout_rng = np.random.default_rng(rng.bit_generator.seed_seq.spawn(1)[0])  # type: ignore[attr-defined]
        axis = self._time_axis()
        joint = _Joint(self)

        def train_batch(idx: np.ndarray, epoch: int, number: int, running: Any) -> None:
            value, grads, n = self._loss_and_grads(*_take(data, idx, axis), dropout_rng)
            _fit_loop.update(joint, opt, value, grads, clip_norm, epoch, number)
            running.add(value, n)

        validate = None
        if validation is not None:
            validate = lambda: {"loss": self._loss_and_grads(*validation, None)[0]}  # noqa: E731
        return _fit_loop.run_epochs(joint, opt, lr, callbacks, epochs=epochs, rows=data[0].shape[1 - axis],
                                    batch_size=batch_size, rng=rng, shuffle=shuffle, progress=progress, metrics=(),
                                    train_batch=train_batch, validate=validate)

    # ------------------------------------------------------------ inference

    def translate(self, src: Any, max_len: int, *, bos: Optional[int], eos: int,
                  src_lengths: Any = None) -> np.ndarray:
        """Greedy decoding: encodes ``src``, then feeds the decoder its own most
        likely token (its id with ``vocab_size``, else one-hot), starting
        from ``bos``, until it emits ``eos`` or ``max_len`` tokens.

        Returns
        -------
        ndarray of int64, (B, L) (time first when not ``batch_first``)
            The tokens, each sequence's ending with its ``eos`` and padded with
            ``eos`` after it; L <= ``max_len`` is the longest translation.
        """
        max_len = _fit_loop.positive_int("max_len", max_len)
        bos = self._bos(bos)
        eos = typing.cast(int, _token("eos", eos, typing.cast(int, self.decoder.output_size)))
        x = self._source(src)
        axis = self._time_axis()
        B = x.shape[1 - axis]
        lengths = _lengths("src_lengths", src_lengths, B, x.shape[axis])
        _, state, = self.encoder(x, lengths=lengths)
        state = self._bridge(state)
        V, dtype = self.decoder.input_size, self.decoder.dtype
        ids_in = self.decoder.config.get("vocab_size") is not None
        if ids_in:
            token = np.full(B, bos, np.int64)
        else:
            token = np.zeros((B, V), dtype)
            if bos is not None:
                token[:, bos] = 1
        out = np.full((B, max_len), eos, np.int64)
        done = np.zeros(B, bool)
        steps = 0
        for t in range(max_len):
            logits, state = self.decoder.step(token, state)
            ids = np.where(done, eos, np.argmax(logits, axis=-1))
            out[:, t] = ids
            steps = t + 1
            done |= ids == eos
            if done.all():
                break
            token = ids if ids_in else one_hot(ids, V, dtype)
        out = out[:, :steps]
        return out if self.decoder.batch_first else out.T


class _Joint:
    """Encoder and decoder as one model for the optimiser and the callbacks:
    parameters (and state dicts) keyed ``"encoder.<name>"`` and
    ``"decoder.<name>"``."""

    def __init__(self, seq2seq: Seq2Seq) -> None:
        self.parts = (("encoder.", seq2seq.encoder), ("decoder.", seq2seq.decoder))

    @property
    def params(self) -> Dict[str, np.ndarray]:
        return {prefix + k: v for prefix, model in self.parts for k, v in model.params.items()}

    def set_params(self, params: Dict[str, np.ndarray]) -> None:
        for prefix, model in self.parts:
            model.set_params({k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)})

    def state_dict(self) -> Dict[str, np.ndarray]:
        return {prefix + k: v for prefix, model in self.parts for k, v in model.state_dict().items()}

    def load_state_dict(self, state: Dict[str, np.ndarray]) -> None:
        for prefix, model in self.parts:
            model.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})


def _check_ids(name: str, ids: np.ndarray, size: int) -> None:
    bad = (ids < 0) | (ids >= size)
    if bad.any():
        raise ValueError(f"{name}: class ids must be in [0, {size}), got {ids[bad].flat[0]}")


_Batch = Tuple[np.ndarray, np.ndarray, Optional[int], Optional[np.ndarray], Optional[np.ndarray]]
"""``(x, tgt, bos, src_lengths, tgt_lengths)``, checked by ``Seq2Seq._batch``."""


def _take(data: _Batch, idx: np.ndarray, axis: int) -> _Batch:
    x, tgt, bos, src_lengths, tgt_lengths = data
    return (np.take(x, idx, axis=1 - axis), np.take(tgt, idx, axis=1 - axis), bos,
            None if src_lengths is None else src_lengths[idx], None if tgt_lengths is None else tgt_lengths[idx])
