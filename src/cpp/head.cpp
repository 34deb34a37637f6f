#include "head.h"

#include <cstring>

namespace rnnext {

template <class T>
void forward_with_head(const Layer<T>& layer, const DenseWeights<T>* head, const LayerInput<T>& in, T* out,
                       T* h_n, T* c_n) {
  if (head == nullptr) {
    layer.forward(in, {out, h_n, c_n}, nullptr);
    return;
  }
  const index_t rows = checked_mul(in.shape.batch, in.shape.steps);
  // Every element is written by the forward (padding is zeroed there).
  AlignedBuffer<T> h_seq(checked_mul(rows, layer.state_size()), AlignedBuffer<T>::uninitialized);
  layer.forward(in, {h_seq.data(), h_n, c_n}, nullptr);
  head->forward(h_seq.data(), rows, out);
  // The head's bias would otherwise reach the padding.
  zero_padding(out, head->out_features(), in.lengths, in.shape);
}

template <class T>
void stream_step(const Layer<T>& layer, const DenseWeights<T>* head, const T* x, const T* h, const T* c,
                 index_t batch, T* y, T* h_next, T* c_next) {
  // One step: h_seq and h_n are the same rows.
  const LayerInput<T> in{x, h, c, nullptr, SequenceShape{batch, 1, true}, false};
  layer.forward(in, {h_next, h_next, c_next}, nullptr);
  if (head) head->forward(h_next, batch, y);
  else std::memcpy(y, h_next, sizeof(T) * std::size_t(checked_mul(batch, layer.state_size())));
}

#define RNNEXT_INSTANTIATE(T)                                                                                   \
  template void forward_with_head(const Layer<T>&, const DenseWeights<T>*, const LayerInput<T>&, T*, T*, T*);  \
  template void stream_step(const Layer<T>&, const DenseWeights<T>*, const T*, const T*, const T*, index_t, T*, \
                            T*, T*);
RNNEXT_INSTANTIATE(float)
RNNEXT_INSTANTIATE(double)
#undef RNNEXT_INSTANTIATE

}  // namespace rnnext
