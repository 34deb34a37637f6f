#include "layer.h"

#include <cstring>

#include "recurrence.h"

namespace rnnext {

template <class T>
std::unique_ptr<SequenceCache<T>> forward_keeping(std::shared_ptr<const Layer<T>> layer, const LayerInput<T>& in,
                                                  const LayerOutput<T>& out) {
  const SequenceShape shape = in.shape;
  const index_t rows = checked_mul(shape.batch, shape.steps);
  const index_t batch_states = checked_mul(shape.batch, layer->state_size());
  const index_t batch_cells = checked_mul(shape.batch, layer->hidden_size());
  auto cache = std::make_unique<SequenceCache<T>>();
  cache->shape = shape;
  cache->reverse = in.reverse;
  cache->x = copy_of(in.x, checked_mul(rows, layer->input_size()));
  if (in.h0) cache->h0 = copy_of(in.h0, batch_states);
  if (in.c0) cache->c0 = copy_of(in.c0, batch_cells);
  if (in.lengths) cache->lengths.assign(in.lengths, in.lengths + shape.batch);
  cache->h_seq = AlignedBuffer<T>(checked_mul(rows, layer->state_size()), AlignedBuffer<T>::uninitialized);
  // The forward reads the cache's copies: what backward will see.
  layer->forward(cache->input(), {cache->h_seq.data(), out.h_n, out.c_n}, cache.get());
  if (cache->h_seq.size())
    std::memcpy(out.h_seq, cache->h_seq.data(), sizeof(T) * std::size_t(cache->h_seq.size()));
  cache->layer = std::move(layer);
  return cache;
}

template std::unique_ptr<SequenceCache<float>> forward_keeping(std::shared_ptr<const Layer<float>>,
                                                               const LayerInput<float>&, const LayerOutput<float>&);
template std::unique_ptr<SequenceCache<double>> forward_keeping(std::shared_ptr<const Layer<double>>,
                                                                const LayerInput<double>&, const LayerOutput<double>&);

}  // namespace rnnext
