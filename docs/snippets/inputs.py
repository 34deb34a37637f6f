import torch

import rnnext as rx

model = rx.LSTM(8, 16, output_size=2, seed=0)
x = torch.randn(4, 10, 8, requires_grad=True)      # a tensor in the middle of a torch graph
out, (h_n, c_n) = model(x)                          # read in place: no copy, the graph untouched
half = x.detach().to(torch.bfloat16)                # bfloat16 (or float16) data
out16, _ = model(half, lengths=torch.tensor([10, 7, 3, 1]))   # widened to the model's float32
model.params["W_o"] = torch.zeros(2, 16)            # parameters too
try:
    model(torch.empty(4, 10, 8, device="meta"))
except TypeError as error:
    print(error)                                    # x: a torch tensor on device 'meta'; ... (pass x.cpu())
