// Weight matrices packed for the micro-kernels.
//
// A weight W (N, K) that multiplies row vectors as  y = x W^T  is stored
// transposed, in column panels of NR = panel_width<T>() outputs:
//   panel p, row k holds W[p*NR + j, k] for j in [0, NR), zero past N.
// The micro-kernel then reads each panel as one contiguous stream and every
// output lane accumulates its dot product in plain k order, which keeps results
// identical for any row blocking or thread count.
#pragma once

#include "aligned_buffer.h"
#include "common.h"

namespace rnnext {

// What a kernel needs to read a packed matrix (plain data, no ownership).
template <class T>
struct PackedView {
  const T* data;
  index_t n;             // outputs (rows of W)
  index_t k;             // inputs (columns of W)
  index_t panels;        // ceil(n / NR)
  index_t panel_stride;  // elements from one panel to the next

  // Inputs [k0, k0 + count) only: a block of the reduction, for cache blocking.
  PackedView block(index_t k0, index_t count) const {
    return {data + k0 * panel_width<T>(), n, count, panels, panel_stride};
  }
};

// Panels [p0, p1) only: a thread's share of the outputs (n unchanged).
template <class T>
PackedView<T> panel_range(PackedView<T> w, index_t p0, index_t p1) {
  w.data += p0 * w.panel_stride;
  w.panels = p1 - p0;
  return w;
}

// The bytes a product streams from the weights.
template <class T>
double weight_bytes(const PackedView<T>& w) {
  return double(w.panels) * double(w.panel_stride) * double(sizeof(T));
}

// Rows given by pointers, `width` elements each: one block of columns of a
// matrix whose rows are several such blocks side by side.
template <class T>
struct RowBlock {
  const T* const* rows;
  index_t width;
};

template <class T>
class PackedMatrix {
 public:
  PackedMatrix() = default;
  // Packs W for y = x W^T; w: (n, k) row-major with row stride ld (elements).
  PackedMatrix(const T* w, index_t n, index_t k, index_t ld);
  // Packs M = R^T for y = x M^T = x R, where R has `count` rows of `width`
  // elements given by pointers (rows of a weight for backward products, or
  // the valid rows of a batch for weight gradients): n = width, k = count.
  static PackedMatrix transpose_of_rows(const T* const* rows, index_t count, index_t width);
  // The same for R = [R_0 | R_1 | ...]: n = the blocks' widths summed.
  static PackedMatrix transpose_of_rows(const RowBlock<T>* blocks, int count_of_blocks, index_t count);

  PackedView<T> view() const { return {data_.data(), n_, k_, panels_, k_ * panel_width<T>()}; }
  index_t n() const { return n_; }
  index_t k() const { return k_; }
  index_t padded_n() const { return panels_ * panel_width<T>(); }

 private:
  PackedMatrix(index_t n, index_t k);  // uninitialised, for a packing function to fill
  index_t n_ = 0, k_ = 0, panels_ = 0;
  AlignedBuffer<T> data_;
};

// A bias vector padded with zeros to a whole number of panels.
template <class T>
AlignedBuffer<T> pad_bias(const T* b1, const T* b2, index_t n);

}  // namespace rnnext
