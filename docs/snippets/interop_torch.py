import numpy as np
import torch
import rnnext as rx

x = np.random.default_rng(0).standard_normal((2, 7, 10), dtype=np.float32)

# torch -> rnnext: the module (and an optional Linear head), weights copied exactly.
module, head = torch.nn.GRU(10, 20, num_layers=2, batch_first=True), torch.nn.Linear(20, 3)
model = rx.from_torch(module, head)
with torch.no_grad():
    expected = head(module(torch.from_numpy(x))[0]).numpy()
assert np.allclose(model(x)[0], expected, atol=1e-5)

# rnnext -> torch: the modules in the order they apply.
lstm, linear = rx.LSTM(10, 20, 3, seed=0).to_torch()      # torch.nn.LSTM, torch.nn.Linear
embedding, lstm = rx.LSTM(10, 20, vocab_size=50, seed=0).to_torch()   # torch.nn.Embedding first
print(type(lstm).__name__, lstm.batch_first, type(embedding).__name__)
