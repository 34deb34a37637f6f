import dask.array as da
import numpy as np
import rnnext as rx
import rnnext.dask as rd

model = rx.LSTM(8, 16, output_size=2, seed=0)
x = np.random.default_rng(0).standard_normal((1000, 20, 8), dtype=np.float32)
X = da.from_array(x, chunks=(250, 20, 8))      # chunked along the batch axis only

scores = rd.predict(model, X, return_sequences=False)   # lazy: nothing runs yet
result = scores.compute()                      # Dask's local threads here; a Client if one is active
assert np.array_equal(result, model(x, return_sequences=False)[0])   # bit for bit

y = (x[:, :, 0].sum(axis=1) > 0).astype(np.int64)
history = rd.fit(model, X, y, loss="cross_entropy", epochs=2, batch_size=100, seed=0, progress=False)
print(history["loss"])
