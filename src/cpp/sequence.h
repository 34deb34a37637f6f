// How a batch of sequences lies in memory: (B, T, F) when batch first,
// (T, B, F) otherwise, contiguous, F features per (b, t) row.
#pragma once

#include "common.h"

namespace rnnext {

struct SequenceShape {
  index_t batch;
  index_t steps;
  bool batch_first;

  // Element offset of row (b, t) in an array of `features` per row.
  index_t stride_b(index_t features) const { return batch_first ? steps * features : features; }
  index_t stride_t(index_t features) const { return batch_first ? features : batch * features; }
};

// Zeroes the rows (b, t >= lengths[b]) of y: outputs past a sequence's end are
// exactly zero, even when a layer with a bias produced them.
template <class T>
void zero_padding(T* y, index_t features, const index_t* lengths, SequenceShape shape) {
  if (lengths == nullptr) return;
  for (index_t b = 0; b < shape.batch; ++b)
    for (index_t t = lengths[b]; t < shape.steps; ++t) {
      T* row = y + b * shape.stride_b(features) + t * shape.stride_t(features);
      for (index_t j = 0; j < features; ++j) row[j] = T(0);
    }
}

}  // namespace rnnext
