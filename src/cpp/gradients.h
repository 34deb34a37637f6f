// Products that turn per-row gradients into weight gradients, shared by every
// layer's backward: one large product over all (valid) rows after the time
// loop, instead of a small one per step.
#pragma once

#include "common.h"
#include "packing.h"

namespace rnnext {

// dW (n_out, n_in) = sum over r < count of dy[r]^T x[r]: dy rows of n_out
// elements, dy_step apart; x rows (n_in elements) by pointers. Threads split
// the rows of dW, so nothing is reduced across threads and every element is a
// sum in row order: results do not depend on the thread count.
template <class T>
void sum_of_outer_products(const T* dy, index_t dy_step, const T* const* x_rows, index_t count, index_t n_out,
                           index_t n_in, T* dW);

// The same for x = [x_0 | x_1 | ...] (blocks of row pointers): one product,
// dW (n_out, the blocks' widths summed) row-major, each element the same
// sum as in a product of its block alone. A layer's [dW_x | dW_h] is one
// product over [x_t | h_{t-1}]: dy is read (and transposed) once.
template <class T>
void sum_of_outer_products(const T* dy, index_t dy_step, const RowBlock<T>* blocks, int count_of_blocks,
                           index_t count, index_t n_out, T* dW);

// db (n) = sum over r < count of dy[r] (rows dy_step apart), in row order.
template <class T>
void sum_of_rows(const T* dy, index_t dy_step, index_t count, index_t n, T* db);

}  // namespace rnnext
