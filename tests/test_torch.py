"""Agreement with torch.nn.RNN, and rnnext.from_torch. Skipped without torch."""

import numpy as np
import pytest
from conftest import assert_close

import rnnext as rx
from rnnext import functional as F

torch = pytest.importorskip("torch")

TORCH_DTYPE = {np.float32: torch.float32, np.float64: torch.float64}


def torch_rnn(I, H, activation, dtype, bias=True, batch_first=True, seed=0):
    torch.manual_seed(seed)
    return torch.nn.RNN(I, H, nonlinearity=activation, bias=bias, batch_first=batch_first,
                        dtype=TORCH_DTYPE[dtype])


def weights_of(module):
    w = {"W_x": module.weight_ih_l0, "W_h": module.weight_hh_l0}
    if module.bias:
        w.update(b_x=module.bias_ih_l0, b_h=module.bias_hh_l0)
    return {k: v.detach().numpy() for k, v in w.items()}


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (1, 100, 64, 64), (4, 100, 33, 70), (3, 7, 130, 257)],
                         ids=lambda s: "B%dT%dI%dH%d" % s)
def test_functional_matches_torch(rng, activation, dtype, shape):
    B, T, I, H = shape
    module = torch_rnn(I, H, activation, dtype)
    x = rng.standard_normal((B, T, I)).astype(dtype)
    h0 = rng.standard_normal((B, H)).astype(dtype)
    with torch.no_grad():
        expected, expected_n = module(torch.from_numpy(x), torch.from_numpy(h0)[None])
    h_seq, h_n = F.rnn(x, h0=h0, activation=activation, **weights_of(module))
    assert_close(h_seq, expected.numpy(), dtype, "h_seq")
    assert_close(h_n, expected_n[0].numpy(), dtype, "h_n")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_lengths_match_packed_sequences(rng, dtype):
    B, T, I, H = 6, 20, 9, 31
    module = torch_rnn(I, H, "tanh", dtype)
    x = rng.standard_normal((B, T, I)).astype(dtype)
    lengths = np.array([20, 3, 1, 17, 20, 8])
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.from_numpy(x), torch.from_numpy(lengths),
                                                     batch_first=True, enforce_sorted=False)
    with torch.no_grad():
        out, h_n = module(packed)
    expected, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
    got_seq, got_n = F.rnn(x, lengths=lengths, **weights_of(module))
    assert_close(got_seq, expected.numpy(), dtype, "h_seq")
    assert_close(got_n, h_n[0].numpy(), dtype, "h_n")


@pytest.mark.parametrize("activation", ["tanh", "relu"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_from_torch(rng, activation, bias, batch_first, dtype):
    module = torch_rnn(5, 12, activation, dtype, bias=bias, batch_first=batch_first)
    head = torch.nn.Linear(12, 3, dtype=TORCH_DTYPE[dtype])
    model = rx.from_torch(module, head)
    assert model.config == dict(input_size=5, hidden_size=12, output_size=3, num_layers=1, bidirectional=False,
                                activation=activation, bias=bias, dropout=0.0, batch_first=batch_first,
                                dtype=np.dtype(dtype).name)
    x = rng.standard_normal((4, 7, 5) if batch_first else (7, 4, 5)).astype(dtype)
    with torch.no_grad():
        h_seq, h_n = module(torch.from_numpy(x))
        y = head(h_seq)
    out, got_n = model(x)
    assert_close(out, y.numpy(), dtype, "out")
    assert_close(got_n, h_n.numpy(), dtype, "h_n")
    plain = rx.from_torch(module)
    assert plain.output_size is None
    assert_close(plain(x)[0], h_seq.numpy(), dtype, "h_seq")
    # The model owns copies: changing the torch module later changes nothing.
    with torch.no_grad():
        module.weight_hh_l0.zero_()
    assert model.W_h.any()


def test_from_torch_errors():
    with pytest.raises(TypeError, match="module: expected a torch.nn.RNN, torch.nn.LSTM or torch.nn.GRU, got Linear"):
        rx.from_torch(torch.nn.Linear(3, 4))
    with pytest.raises(TypeError, match="got RNNCell"):
        rx.from_torch(torch.nn.RNNCell(3, 4))
    with pytest.raises(ValueError, match="proj_size=2"):
        rx.from_torch(torch.nn.LSTM(3, 4, proj_size=2))
    with pytest.raises(ValueError, match="float32 or float64"):
        rx.from_torch(torch.nn.RNN(3, 4, dtype=torch.float16))
    with pytest.raises(TypeError, match="head: expected a torch.nn.Linear"):
        rx.from_torch(torch.nn.RNN(3, 4), torch.nn.ReLU())
    with pytest.raises(ValueError, match="in_features = hidden_size \\* num_directions = 4, got 5"):
        rx.from_torch(torch.nn.RNN(3, 4), torch.nn.Linear(5, 2))
    with pytest.raises(ValueError, match="in_features = hidden_size \\* num_directions = 8, got 4"):
        rx.from_torch(torch.nn.GRU(3, 4, bidirectional=True), torch.nn.Linear(4, 2))
    with pytest.raises(ValueError, match="head: expected the module's dtype"):
        rx.from_torch(torch.nn.RNN(3, 4), torch.nn.Linear(4, 2, dtype=torch.float64))


def test_head_without_bias(rng):
    module = torch.nn.RNN(3, 4)
    head = torch.nn.Linear(4, 2, bias=False)
    model = rx.from_torch(module, head)
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    with torch.no_grad():
        expected = head(module(torch.from_numpy(x).transpose(0, 1))[0]).transpose(0, 1)
    # torch.nn.RNN defaults to time-major; from_torch keeps that.
    assert not model.batch_first
    assert_close(model(x.transpose(1, 0, 2))[0].transpose(1, 0, 2), expected.numpy(), np.float32)
