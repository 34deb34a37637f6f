import numpy as np
import onnxruntime as ort
import rnnext as rx

model = rx.GRU(10, 20, output_size=3, num_layers=2, seed=0)
x = np.random.default_rng(0).standard_normal((4, 7, 10), dtype=np.float32)
lengths = np.array([7, 5, 3, 1], dtype=np.int64)

graph = model.to_onnx(lengths=True)            # bytes (or pass a path); inputs x and lengths
session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
out, h_n = session.run(None, {"x": x, "lengths": lengths})
expected, _ = model(x, lengths=lengths)
assert np.allclose(out, expected, rtol=1e-5, atol=1e-6)

same = rx.from_onnx(graph)                     # back to rnnext, exactly
assert np.array_equal(same(x, lengths=lengths)[0], expected)
