import io

import numpy as np
import rnnext as rx

model = rx.LSTM(8, 16, output_size=4, num_layers=2, seed=0)
x = np.random.default_rng(0).standard_normal((2, 5, 8), dtype=np.float32)

model.save("lstm.safetensors")                 # a path or a binary file object
same = rx.load("lstm.safetensors")             # an LSTM again, bit-exact
assert np.array_equal(same(x)[0], model(x)[0])

blob = model.to_bytes()                        # the same file as bytes
same = rx.from_bytes(blob)

buffer = io.BytesIO()
model.save(buffer)
same = rx.load(io.BytesIO(buffer.getvalue()))

try:                                           # a damaged file is a ValueError, never a crash
    rx.from_bytes(blob[:100])
except ValueError as error:
    print(error)

# The file is plain safetensors: any safetensors reader sees the tensors and the configuration.
from safetensors.numpy import load as read_tensors
print(sorted(read_tensors(blob))[:3])
