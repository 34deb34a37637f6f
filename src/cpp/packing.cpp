#include "packing.h"

#include "threading.h"

namespace rnnext {

// Uninitialised: both packing functions write every element, padding included.
template <class T>
PackedMatrix<T>::PackedMatrix(index_t n, index_t k)
    : n_(n), k_(k), panels_((n + panel_width<T>() - 1) / panel_width<T>()),
      data_(checked_mul(checked_mul(panels_, panel_width<T>()), k), AlignedBuffer<T>::uninitialized) {}

template <class T>
PackedMatrix<T>::PackedMatrix(const T* w, index_t n, index_t k, index_t ld) : PackedMatrix(n, k) {
  constexpr index_t nr = panel_width<T>();
  constexpr index_t block = 32;  // 32 x 32 blocks: reads and writes stay within a few cache lines
  T* out = data_.data();
  for (index_t p = 0; p < panels_; ++p) {
    const index_t cols = (n - p * nr) < nr ? (n - p * nr) : nr;
    T* panel = out + p * nr * k;
    for (index_t k0 = 0; k0 < k; k0 += block) {
      const index_t k1 = k0 + block < k ? k0 + block : k;
      for (index_t kk = k0; kk < k1; ++kk) {
        for (index_t j = 0; j < cols; ++j) panel[kk * nr + j] = w[(p * nr + j) * ld + kk];
        for (index_t j = cols; j < nr; ++j) panel[kk * nr + j] = T(0);
      }
    }
  }
}

template <class T>
PackedMatrix<T> PackedMatrix<T>::transpose_of_rows(const T* const* rows, index_t count, index_t width) {
  const RowBlock<T> block{rows, width};
  return transpose_of_rows(&block, 1, count);
}

template <class T>
PackedMatrix<T> PackedMatrix<T>::transpose_of_rows(const RowBlock<T>* blocks, int count_of_blocks, index_t count) {
  constexpr index_t nr = panel_width<T>();
  index_t width = 0;
  for (int b = 0; b < count_of_blocks; ++b) width += blocks[b].width;
  PackedMatrix<T> m(width, count);
  // Large when it packs a batch's rows for a weight gradient: threads take panels.
  run_parallel(threads_for(m.panels_, double(count) * double(width)), [&](int index, int threads) {
    index_t begin, end;
    split_range(m.panels_, index, threads, &begin, &end);
    for (index_t p = begin; p < end; ++p) {
      T* panel = m.data_.data() + p * nr * count;
      // Column j of the panel: column p*nr + j of [R_0 | R_1 | ...], or zero past the last.
      index_t j = 0, first = 0;
      for (int b = 0; b < count_of_blocks && j < nr; first += blocks[b].width, ++b) {
        const index_t lo = p * nr + j - first;
        if (lo >= blocks[b].width) continue;
        const index_t cols = blocks[b].width - lo < nr - j ? blocks[b].width - lo : nr - j;
        for (index_t kk = 0; kk < count; ++kk) {
          const T* src = blocks[b].rows[kk] + lo;
          for (index_t c = 0; c < cols; ++c) panel[kk * nr + j + c] = src[c];
        }
        j += cols;
      }
      for (index_t kk = 0; kk < count && j < nr; ++kk)
        for (index_t c = j; c < nr; ++c) panel[kk * nr + c] = T(0);
    }
  });
  return m;
}

template <class T>
AlignedBuffer<T> pad_bias(const T* b1, const T* b2, index_t n) {
  AlignedBuffer<T> out(round_up(n, panel_width<T>()));
  for (index_t i = 0; i < n; ++i) {
    T v = T(0);
    if (b1) v += b1[i];
    if (b2) v += b2[i];
    out.data()[i] = v;
  }
  return out;
}

template class PackedMatrix<float>;
template class PackedMatrix<double>;
template AlignedBuffer<float> pad_bias(const float*, const float*, index_t);
template AlignedBuffer<double> pad_bias(const double*, const double*, index_t);

}  // namespace rnnext
