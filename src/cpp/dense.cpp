#include "dense.h"

#include <cstring>
#include <vector>

#include "gradients.h"
#include "kernels.h"
#include "threading.h"

namespace rnnext {

template <class T>
DenseWeights<T>::DenseWeights(const T* W, const T* b, index_t out_features, index_t in_features)
    : w_(W, out_features, in_features, in_features),
      W_(checked_mul(out_features, in_features)),
      bias_(pad_bias<T>(b, nullptr, out_features)) {
  if (W_.size()) std::memcpy(W_.data(), W, sizeof(T) * std::size_t(W_.size()));
}

template <class T>
void DenseWeights<T>::forward(const T* x, index_t rows, T* y) const {
  const index_t in = in_features(), out = out_features();
  const double flops = 2.0 * double(rows) * double(in) * double(out);
  run_parallel(threads_for(rows, flops), [&](int index, int count) {
    index_t begin, end;
    split_range(rows, index, count, &begin, &end);
    if (begin == end) return;
    DenseArgs<T> args{x + begin * in, in, end - begin, w_.view(), bias_.data(), y + begin * out, out, out};
    dense(args);
  });
}

template <class T>
void DenseWeights<T>::backward(const T* x, const T* dy, index_t rows, T* dW, T* db, T* dx) const {
  const index_t in = in_features(), out = out_features();
  std::vector<const T*> x_rows(rows), w_rows(out);
  for (index_t r = 0; r < rows; ++r) x_rows[r] = x + r * in;
  sum_of_outer_products(dy, out, x_rows.data(), rows, out, in, dW);
  sum_of_rows(dy, out, rows, out, db);
  // dx = dy W: the kernel's a M^T with M = W^T.
  for (index_t j = 0; j < out; ++j) w_rows[j] = W_.data() + j * in;
  const PackedMatrix<T> w_t = PackedMatrix<T>::transpose_of_rows(w_rows.data(), out, in);
  const double flops = 2.0 * double(rows) * double(in) * double(out);
  run_parallel(threads_for(rows, flops), [&](int index, int count) {
    index_t begin, end;
    split_range(rows, index, count, &begin, &end);
    if (begin == end) return;
    DenseArgs<T> args{dy + begin * out, out, end - begin, w_t.view(), nullptr, dx + begin * in, in, in};
    dense(args);
  });
}

template <class T>
void dense_reference(const T* x, index_t rows, const T* W, const T* b, index_t out_features,
                     index_t in_features, T* y) {
  for (index_t r = 0; r < rows; ++r)
    for (index_t j = 0; j < out_features; ++j) {
      T acc = T(0);
      for (index_t k = 0; k < in_features; ++k) acc += x[r * in_features + k] * W[j * in_features + k];
      y[r * out_features + j] = acc + (b ? b[j] : T(0));
    }
}

template class DenseWeights<float>;
template class DenseWeights<double>;
template void dense_reference(const float*, index_t, const float*, const float*, index_t, index_t, float*);
template void dense_reference(const double*, index_t, const double*, const double*, index_t, index_t, double*);

}  // namespace rnnext
