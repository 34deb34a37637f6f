#include "gradients.h"

#include "aligned_buffer.h"
#include "kernels.h"
#include "packing.h"
#include "threading.h"

namespace rnnext {

template <class T>
void sum_of_outer_products(const T* dy, index_t dy_step, const T* const* x_rows, index_t count, index_t n_out,
                           index_t n_in, T* dW) {
  // dW = dY^T X: the kernel computes a M^T with the rows of a = the columns of
  // dY, read in place (a_step = dy_step, no transpose), and M = X^T packed
  // (n_in outputs, k = count).
  const PackedMatrix<T> x_t = PackedMatrix<T>::transpose_of_rows(x_rows, count, n_in);
  const double flops = 2.0 * double(count) * double(n_out) * double(n_in);
  // The reduction over rows (often B*T, thousands) runs in blocks that keep a
  // block of every panel in cache; later blocks accumulate into dW.
  constexpr index_t block = 256;
  run_parallel(threads_for(n_out, flops), [&](int index, int threads) {
    index_t begin, end;
    split_range(n_out, index, threads, &begin, &end);
    if (begin == end) return;
    for (index_t k0 = 0; k0 == 0 || k0 < count; k0 += block) {
      const index_t size = count - k0 < block ? count - k0 : block;
      DenseArgs<T> args{dy + k0 * dy_step + begin, 1, end - begin, x_t.view().block(k0, size), nullptr,
                        dW + begin * n_in, n_in, n_in, k0 > 0, dy_step};
      dense(args);
    }
  });
}

template <class T>
void sum_of_rows(const T* dy, index_t dy_step, index_t count, index_t n, T* db) {
  for (index_t j = 0; j < n; ++j) db[j] = T(0);
  for (index_t r = 0; r < count; ++r)
    for (index_t j = 0; j < n; ++j) db[j] += dy[r * dy_step + j];
}

template void sum_of_outer_products(const float*, index_t, const float* const*, index_t, index_t, index_t, float*);
template void sum_of_outer_products(const double*, index_t, const double* const*, index_t, index_t, index_t,
                                    double*);
template void sum_of_rows(const float*, index_t, index_t, index_t, float*);
template void sum_of_rows(const double*, index_t, index_t, index_t, double*);

}  // namespace rnnext
