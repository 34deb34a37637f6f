// What runs around a layer's time loop in one call from Python: the output
// head over every valid step (padding kept zero), and the streaming step of
// a one-layer model, with the rule for when such a step is worth releasing
// the GIL for.
#pragma once

#include "common.h"
#include "dense.h"
#include "layer.h"

namespace rnnext {

// out = h_seq (B, T, H), or the head's output (B, T, O) at every valid step
// and zero past each length; h_n, c_n as Layer::forward. head may be null.
template <class T>
void forward_with_head(const Layer<T>& layer, const DenseWeights<T>* head, const LayerInput<T>& in, T* out,
                       T* h_n, T* c_n);

// One time step of every sequence: x (B, I), h and c (B, H) or null (zeros;
// c for LSTM only) -> y (B, O) (the head's output, or h_next without a head),
// h_next, c_next (B, H).
template <class T>
void stream_step(const Layer<T>& layer, const DenseWeights<T>* head, const T* x, const T* h, const T* c,
                 index_t batch, T* y, T* h_next, T* c_next);

// Whether releasing the GIL pays for a streaming step: below about 2**18
// multiply-adds the step takes less time than giving up and re-taking the
// GIL (measured: about 1 us each way on the 2-core VM).
inline bool step_releases_gil(index_t batch, index_t input, index_t hidden, index_t gates, index_t out_features) {
  const double work = double(batch) * double(hidden) * double(gates) * double(input + hidden) +
                      double(batch) * double(hidden) * double(out_features);
  return work > double(1 << 18);
}

}  // namespace rnnext
