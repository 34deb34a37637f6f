import os

os.environ.setdefault("KERAS_BACKEND", "torch")   # any Keras 3 backend works
import keras
import numpy as np
import rnnext as rx

layer, head = keras.layers.LSTM(20, return_sequences=True), keras.layers.Dense(3)
x = np.random.default_rng(0).standard_normal((2, 7, 10)).astype(np.float32)
expected = keras.ops.convert_to_numpy(head(layer(x)))      # calling them builds the weights

model = rx.from_keras(layer, head=head)        # a batch-first rx.LSTM with a head
assert np.allclose(model(x)[0], expected, atol=1e-5)
print(model)
