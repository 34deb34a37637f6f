#include "recurrence.h"

#include <cstring>

#include "gradients.h"
#include "kernels.h"

namespace rnnext {

template <class T, class W>
void project_inputs(const T* x, SequenceShape shape, const index_t* lengths, const W& w, const T* bias, T* out) {
  const index_t batch = shape.batch, steps = shape.steps, input = w.k;
  const index_t width = w.panels * panel_width<T>();
  auto length = [&](index_t b) { return lengths ? lengths[b] : steps; };
  index_t rows = 0;
  for (index_t b = 0; b < batch; ++b) rows += length(b);
  const double flops = 2.0 * double(rows) * double(input) * double(width);
  if (rows <= kFewRows && rows > 0) {  // a streaming step: threads take panels, not rows
    const int threads = threads_for_weights(w.panels, weight_bytes(w));
    if (threads > 1) {
      run_parallel(threads, [&](int index, int count) {
        index_t p0, p1;
        split_range(w.panels, index, count, &p0, &p1);
        const W part = panel_range(w, p0, p1);
        const index_t col0 = p0 * panel_width<T>();
        for (index_t b = 0; b < batch; ++b)
          for (index_t t = 0; t < length(b); ++t) {
            DenseArgs<T, W> projection{x + b * shape.stride_b(input) + t * shape.stride_t(input), input, 1, part,
                                       bias + col0, out + (b * steps + t) * width + col0, width,
                                       (p1 - p0) * panel_width<T>()};
            dense(projection);
          }
      });
      return;
    }
  }
  run_parallel(threads_for(rows, flops), [&](int index, int count) {
    index_t begin, end, first = 0;
    split_range(rows, index, count, &begin, &end);
    for (index_t b = 0; b < batch && first < end; first += length(b), ++b) {
      const index_t lo = begin > first ? begin : first;
      const index_t hi = end < first + length(b) ? end : first + length(b);
      if (lo >= hi) continue;
      const index_t t0 = lo - first;
      DenseArgs<T, W> projection{x + b * shape.stride_b(input) + t0 * shape.stride_t(input),
                                 shape.stride_t(input), hi - lo, w, bias, out + (b * steps + t0) * width, width, width};
      dense(projection);
    }
  });
}

template <class T>
void input_gradient(const T* dz, index_t ld, SequenceShape shape, const index_t* lengths, PackedView<T> w_t, T* dx) {
  const index_t batch = shape.batch, steps = shape.steps, input = w_t.n, width = w_t.k;
  auto length = [&](index_t b) { return lengths ? lengths[b] : steps; };
  const double flops = 2.0 * double(batch) * double(steps) * double(width) * double(input);  // at most
  run_parallel(threads_for(batch, flops), [&](int index, int count) {
    index_t begin, end;
    split_range(batch, index, count, &begin, &end);
    for (index_t b = begin; b < end; ++b) {
      T* out = dx + b * shape.stride_b(input);
      DenseArgs<T> product{dz + b * steps * ld, ld, length(b), w_t, nullptr, out, shape.stride_t(input), input};
      dense(product);
      for (index_t t = length(b); t < steps; ++t)
        for (index_t j = 0; j < input; ++j) out[t * shape.stride_t(input) + j] = T(0);
    }
  });
}

template <class T>
StepRows<T>::StepRows(const T* x_seq, index_t input, const T* h_seq, const T* h0, index_t hidden,
                      const index_t* lengths, SequenceShape shape, bool reverse,
                      std::initializer_list<std::pair<T*, index_t>> dz)
    : x(checked_mul(shape.batch, shape.steps)),
      prev(x.size()),
      zero(input > hidden ? input : hidden) {
  const index_t steps = shape.steps;
  for (index_t b = 0; b < shape.batch; ++b) {
    const index_t len = lengths ? lengths[b] : steps;
    for (index_t t = 0; t < steps; ++t) {
      const index_t r = b * steps + t;
      if (t >= len) {
        for (const auto& rows : dz)
          if (rows.second > 0) std::memset(rows.first + r * rows.second, 0, sizeof(T) * std::size_t(rows.second));
        x[r] = prev[r] = zero.data();
        continue;
      }
      const index_t t_prev = reverse ? t + 1 : t - 1;
      const bool first = reverse ? t_prev >= len : t_prev < 0;
      x[r] = x_seq + b * shape.stride_b(input) + t * shape.stride_t(input);
      prev[r] = first ? (h0 ? h0 + b * hidden : zero.data())
                      : h_seq + b * shape.stride_b(hidden) + t_prev * shape.stride_t(hidden);
    }
  }
}

template <class T>
void gated_gradients(const GateLayout<T>& layout, const T* dy, const T* const* x_rows, index_t count, index_t k,
                     T* dW, T* db) {
  gated_gradients(layout, dy, {RowBlock<T>{x_rows, k}}, {dW}, count, db);
}

template <class T>
void gated_gradients(const GateLayout<T>& layout, const T* dy, std::initializer_list<RowBlock<T>> blocks,
                     std::initializer_list<T*> dW, index_t count, T* db) {
  const index_t width = layout.width();
  index_t k = 0;
  for (const RowBlock<T>& block : blocks) k += block.width;
  // Also holds the bias sums afterwards: at least one row, even when k = 0.
  AlignedBuffer<T> interleaved(checked_mul(width, k > 1 ? k : 1), AlignedBuffer<T>::uninitialized);
  sum_of_outer_products(dy, width, blocks.begin(), int(blocks.size()), count, width, interleaved.data());
  index_t first = 0;
  auto out = dW.begin();
  for (const RowBlock<T>& block : blocks) {
    layout.deinterleave_rows(interleaved.data(), block.width, *out++, k, first);
    first += block.width;
  }
  if (db == nullptr) return;
  sum_of_rows(dy, width, count, width, interleaved.data());
  layout.deinterleave_rows(interleaved.data(), 1, db);
}

template <class T>
PackedMatrix<T> pack_transpose(const T* r, index_t n, index_t k) {
  std::vector<const T*> rows(n);
  for (index_t i = 0; i < n; ++i) rows[i] = r + i * k;
  return PackedMatrix<T>::transpose_of_rows(rows.data(), n, k);
}

template <class T>
AlignedBuffer<T> copy_of(const T* data, index_t count) {
  AlignedBuffer<T> out(count, AlignedBuffer<T>::uninitialized);
  if (count) std::memcpy(out.data(), data, sizeof(T) * std::size_t(count));
  return out;
}

#define RNNEXT_INSTANTIATE(T)                                                                              \
  template void project_inputs(const T*, SequenceShape, const index_t*, const PackedView<T>&, const T*, T*); \
  template void input_gradient(const T*, index_t, SequenceShape, const index_t*, PackedView<T>, T*);               \
  template struct StepRows<T>;                                                                             \
  template void gated_gradients(const GateLayout<T>&, const T*, const T* const*, index_t, index_t, T*, T*);      \
  template void gated_gradients(const GateLayout<T>&, const T*, std::initializer_list<RowBlock<T>>,               \
                                std::initializer_list<T*>, index_t, T*);                                           \
  template PackedMatrix<T> pack_transpose(const T*, index_t, index_t);                                    \
  template AlignedBuffer<T> copy_of(const T*, index_t);
RNNEXT_INSTANTIATE(float)
RNNEXT_INSTANTIATE(double)
#undef RNNEXT_INSTANTIATE
template void project_inputs(const float*, SequenceShape, const index_t*, const QuantView&, const float*, float*);

}  // namespace rnnext
