import numpy as np
import rnnext as rx

# Many-to-many with different lengths: reverse a sequence of digits 2..9 (ids 0 and 1 are bos, eos).
rng = np.random.default_rng(0)
src = rng.integers(2, 10, (512, 5))                        # (B, Ts) token ids
tgt = np.concatenate([src[:, ::-1], np.ones((512, 1), np.int64)], axis=1)  # reversed, then eos

s2s = rx.Seq2Seq(rx.LSTM(8, 64, vocab_size=10, seed=0),   # the encoder reads ids through a table
                 rx.LSTM(8, 64, 10, vocab_size=10, seed=1))  # the decoder: 10 logits, ids fed back
s2s.fit(src, tgt, bos=0, epochs=40, lr=1e-2, seed=0, progress=False)  # teacher forcing
out = s2s.translate(src[:4], 8, bos=0, eos=1)              # greedy, stops at eos
print(src[:4], out, sep="\n")
