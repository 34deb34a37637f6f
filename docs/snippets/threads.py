import numpy as np
import rnnext as rx

print(rx.get_num_threads(), rx.build_info()["isa"], rx.build_info()["usable_cpus"])

model = rx.RNN(32, 64, seed=0)
x = np.random.default_rng(0).standard_normal((8, 100, 32), dtype=np.float32)

rx.set_num_threads(2)                          # process-wide
with rx.threads(1):                            # this Python thread only, inside the block
    one, _ = model(x)
    assert rx.get_num_threads() == 1
two, _ = model(x)
assert np.array_equal(one, two)                # forward results do not depend on the thread count

from threadpoolctl import threadpool_info, threadpool_limits
print([pool["user_api"] for pool in threadpool_info()])    # includes "rnnext"
with threadpool_limits(1, user_api="rnnext"):
    model(x)
