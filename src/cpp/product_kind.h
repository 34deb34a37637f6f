// What the time loop's thread plan needs to know of a layer's products
// (recurrence.h): the bytes of a weight element, and the rows a product
// computes at once. Baseline code.
#pragma once

#include "common.h"

namespace rnnext {

struct ProductKind {
  double element_bytes = 0;  // 0: those of the states (float or double)
  // Rows computed together whatever the count (AMX bfloat16 tiles: 16):
  // threads then share each step's rows rather than split them below that.
  index_t tile_rows = 1;
  // Threads own whole sequences, never share a step's rows: the LSTM with
  // projections, whose second product per step needs all of m_t.
  bool whole_sequences = false;
};

constexpr ProductKind kWholeSequences{0, 1, true};

}  // namespace rnnext
