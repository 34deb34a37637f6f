// A dense layer y = x W^T + b (the model's output head W_o, b_o).
#pragma once

#include "aligned_buffer.h"
#include "common.h"
#include "packing.h"

namespace rnnext {

template <class T>
class DenseWeights {
 public:
  // W (out, in) row-major contiguous; b (out,) or null.
  DenseWeights(const T* W, const T* b, index_t out_features, index_t in_features);

  index_t in_features() const { return w_.k(); }
  index_t out_features() const { return w_.n(); }

  // x (rows, in) -> y (rows, out), both contiguous.
  void forward(const T* x, index_t rows, T* y) const;

  // From x (rows, in) and dy (rows, out): dW (out, in), db (out,) and
  // dx (rows, in), each a single product over all rows.
  void backward(const T* x, const T* dy, index_t rows, T* dW, T* db, T* dx) const;

 private:
  PackedMatrix<T> w_;
  AlignedBuffer<T> W_;  // unpacked copy, for the transpose backward packs
  AlignedBuffer<T> bias_;
};

// The naive kernel, kept as the reference the packed kernels are tested
// against: y[r, j] = b[j] + sum_k x[r, k] W[j, k], in plain k order.
template <class T>
void dense_reference(const T* x, index_t rows, const T* W, const T* b, index_t out_features,
                     index_t in_features, T* y);

}  // namespace rnnext
