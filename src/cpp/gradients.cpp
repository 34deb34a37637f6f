#include "gradients.h"

#include "aligned_buffer.h"
#include "kernels.h"
#include "packing.h"
#include "threading.h"

namespace rnnext {

// out (rows x size, row-major) = the columns [col0, col0 + rows) of the
// `size` rows of dy, dy_step apart: in 32 x 32 tiles, so that both the
// reads and the writes stay in a few cache lines at a time.
template <class T>
void transpose_block(const T* dy, index_t dy_step, index_t size, index_t col0, index_t rows, T* out) {
  constexpr index_t tile = 32;
  for (index_t k0 = 0; k0 < size; k0 += tile)
    for (index_t r0 = 0; r0 < rows; r0 += tile) {
      const index_t k1 = k0 + tile < size ? k0 + tile : size, r1 = r0 + tile < rows ? r0 + tile : rows;
      for (index_t k = k0; k < k1; ++k) {
        const T* src = dy + k * dy_step + col0;
        for (index_t r = r0; r < r1; ++r) out[r * size + k] = src[r];
      }
    }
}

template <class T>
void sum_of_outer_products(const T* dy, index_t dy_step, const T* const* x_rows, index_t count, index_t n_out,
                           index_t n_in, T* dW) {
  const RowBlock<T> block{x_rows, n_in};
  sum_of_outer_products(dy, dy_step, &block, 1, count, n_out, dW);
}

template <class T>
void sum_of_outer_products(const T* dy, index_t dy_step, const RowBlock<T>* blocks, int count_of_blocks,
                           index_t count, index_t n_out, T* dW) {
  // dW = dY^T X: the kernel computes a M^T with the rows of a = the columns of
  // dY and M = X^T packed (n_in outputs, k = count).
  const PackedMatrix<T> x_t = PackedMatrix<T>::transpose_of_rows(blocks, count_of_blocks, count);
  const index_t n_in = x_t.n();
  const double flops = 2.0 * double(count) * double(n_out) * double(n_in);
  // The reduction over rows (often B*T, thousands) runs in blocks that keep a
  // block of every panel in cache; later blocks accumulate into dW. Each
  // block's columns of dY are first copied into rows: read in place, a
  // column's consecutive elements are dy_step apart, for gate rows a multiple
  // of 4 KB, so every one of them falls in the same L1 set (measured: the
  // LSTM's weight gradients at ~100 GFLOP/s against ~150 for the forward).
  constexpr index_t block = 256;
  run_parallel(threads_for(n_out, flops), [&](int index, int threads) {
    index_t begin, end;
    split_range(n_out, index, threads, &begin, &end);
    if (begin == end) return;
    const index_t rows = end - begin;
    AlignedBuffer<T> columns(checked_mul(rows, count < block ? (count > 0 ? count : 1) : block),
                             AlignedBuffer<T>::uninitialized);
    for (index_t k0 = 0; k0 == 0 || k0 < count; k0 += block) {
      const index_t size = count - k0 < block ? count - k0 : block;
      transpose_block(dy + k0 * dy_step, dy_step, size, begin, rows, columns.data());
      DenseArgs<T> args{columns.data(), size, rows, x_t.view().block(k0, size), nullptr,
                        dW + begin * n_in, n_in, n_in, k0 > 0, 1};
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
template void sum_of_outer_products(const float*, index_t, const RowBlock<float>*, int, index_t, index_t, float*);
template void sum_of_outer_products(const double*, index_t, const RowBlock<double>*, int, index_t, index_t, double*);
template void sum_of_rows(const float*, index_t, index_t, index_t, float*);
template void sum_of_rows(const double*, index_t, index_t, index_t, double*);

}  // namespace rnnext
