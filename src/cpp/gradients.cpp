#include "gradients.h"

#include <vector>

#include "aligned_buffer.h"
#include "kernels.h"
#include "packing.h"
#include "threading.h"

namespace rnnext {

template <class T>
void sum_of_outer_products(const T* const* dy_rows, const T* const* x_rows, index_t count, index_t n_out,
                           index_t n_in, T* dW) {
  // dW = dY^T X: the kernel computes a M^T with a = rows of dY^T (n_out rows of
  // `count`) and M = X^T packed (n_in outputs, k = count).
  AlignedBuffer<T> dy_t(checked_mul(n_out, count), AlignedBuffer<T>::uninitialized);
  const double flops = 2.0 * double(count) * double(n_out) * double(n_in);
  run_parallel(threads_for(n_out, double(count) * double(n_out)), [&](int index, int threads) {
    index_t begin, end;
    split_range(n_out, index, threads, &begin, &end);
    // Transposed in 32 x 32 tiles: both sides stay within a few cache lines.
    constexpr index_t tile = 32;
    for (index_t r0 = 0; r0 < count; r0 += tile)
      for (index_t j0 = begin; j0 < end; j0 += tile)
        for (index_t j = j0; j < j0 + tile && j < end; ++j)  // writes along a row of dy_t
          for (index_t r = r0; r < r0 + tile && r < count; ++r) dy_t.data()[j * count + r] = dy_rows[r][j];
  });
  const PackedMatrix<T> x_t = PackedMatrix<T>::transpose_of_rows(x_rows, count, n_in);
  // The reduction over rows (often B*T, thousands) runs in blocks that keep a
  // block of every panel in cache; later blocks accumulate into dW.
  constexpr index_t block = 256;
  run_parallel(threads_for(n_out, flops), [&](int index, int threads) {
    index_t begin, end;
    split_range(n_out, index, threads, &begin, &end);
    if (begin == end) return;
    for (index_t k0 = 0; k0 == 0 || k0 < count; k0 += block) {
      const index_t size = count - k0 < block ? count - k0 : block;
      DenseArgs<T> args{dy_t.data() + begin * count + k0, count, end - begin, x_t.view().block(k0, size),
                        nullptr, dW + begin * n_in, n_in, n_in, k0 > 0};
      dense(args);
    }
  });
}

template <class T>
void sum_of_rows(const T* const* rows, index_t count, index_t n, T* db) {
  for (index_t j = 0; j < n; ++j) db[j] = T(0);
  for (index_t r = 0; r < count; ++r)
    for (index_t j = 0; j < n; ++j) db[j] += rows[r][j];
}

template void sum_of_outer_products(const float* const*, const float* const*, index_t, index_t, index_t, float*);
template void sum_of_outer_products(const double* const*, const double* const*, index_t, index_t, index_t, double*);
template void sum_of_rows(const float* const*, index_t, index_t, float*);
template void sum_of_rows(const double* const*, index_t, index_t, double*);

}  // namespace rnnext
