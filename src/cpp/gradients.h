// Products that turn per-row gradients into weight gradients, shared by every
// layer's backward: one large product over all (valid) rows after the time
// loop, instead of a small one per step.
#pragma once

#include "common.h"

namespace rnnext {

// dW (n_out, n_in) = sum over r of dy[r]^T x[r], for `count` rows given by
// pointers (dy rows of n_out, x rows of n_in elements). Threads split the
// rows of dW, so no reduction is needed and every element is a sum in row
// order: results do not depend on the thread count.
template <class T>
void sum_of_outer_products(const T* const* dy_rows, const T* const* x_rows, index_t count, index_t n_out,
                           index_t n_in, T* dW);

// db (n) = sum over r of dy[r], in row order.
template <class T>
void sum_of_rows(const T* const* rows, index_t count, index_t n, T* db);

}  // namespace rnnext
