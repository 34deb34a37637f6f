import numpy as np
import rnnext as rx

# Sources of 2 to 6 digits (ids 2..9), targets their digits sorted; 0 is bos, 1 is eos.
rng = np.random.default_rng(0)
n, Ts = 600, 6
src_lengths = rng.integers(2, Ts + 1, n)
src = rng.integers(2, 10, (n, Ts))
tgt = np.ones((n, Ts + 1), np.int64)                       # eos everywhere past the digits
for b, k in enumerate(src_lengths):
    tgt[b, :k] = np.sort(src[b, :k])
tgt_lengths = src_lengths + 1                              # the digits and one eos

encoder = rx.GRU(10, 32, bidirectional=True, seed=0)      # ids without vocab_size: one-hot, I = 10
decoder = rx.GRU(10, 64, 10, seed=1)                       # hidden = 2 * 32: both directions
s2s = rx.Seq2Seq(encoder, decoder)
history = s2s.fit(src, tgt, bos=0, src_lengths=src_lengths, tgt_lengths=tgt_lengths,
                  epochs=40, batch_size=32, lr=1e-2, seed=0, progress=False)
out = s2s.translate(src[:3], Ts + 1, bos=0, eos=1, src_lengths=src_lengths[:3])
for b in range(3):
    print(src[b, :src_lengths[b]], "->", out[b])
