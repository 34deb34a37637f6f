import numpy as np
import rnnext as rx

model = rx.LSTM(64, 64, output_size=8, seed=0)
x = np.random.default_rng(0).standard_normal((16, 50, 64), dtype=np.float32)
reference, _ = model(x)

for precision in ("bfloat16", "int8"):
    q = model.quantize(precision)              # a new LSTM; model is unchanged
    out, (h_n, c_n) = q(x)                     # float32 in and out
    error = np.linalg.norm(out - reference) / np.linalg.norm(reference)
    print(q.precision, f"relative error {error:.1e}", q.dtype)

print(rx.build_info()["precisions"])           # the path of each: amx, avx512_vnni, ... or emulated
q.save("int8.safetensors")                     # files store the int8 weights and their scales
assert rx.load("int8.safetensors").precision == "int8"
