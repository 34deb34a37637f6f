// The Python binding: converts and checks arguments (bind_args.h), allocates
// outputs, releases the GIL and makes one call into the core. Every cell
// goes through the same code: what differs between them is the traits below.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bind_args.h"
#include "dense.h"
#include "elman.h"
#include "gru.h"
#include "head.h"
#include "kernels.h"
#include "layer.h"
#include "lstm.h"
#include "sequence.h"
#include "threading.h"

namespace py = pybind11;
using namespace rnnext;
using namespace rnnext::binding;

void bind_quantized(py::module_& m);  // bind_quantized.cpp

namespace {

// ---------------------------------------------------------------- cells

// What the binding needs to know of a cell: its functional name, its gate
// blocks (stacked in W_x, W_h, b_x, b_h), its option and how to build it.
struct ElmanCell {
  static constexpr const char* name = "rnn";
  static constexpr bool projected = false;  // has W_hr (proj_size)
  static constexpr index_t gates = 1;
  static constexpr const char* gate_order = "";
  static constexpr const char* option = "activation";
  static constexpr bool option_first = false;  // checked after the weights
  using Option = Activation;
  static Option read_option(py::handle obj) { return parse_activation(obj); }
  template <class T>
  static std::shared_ptr<Layer<T>> make(const T* wx, const T* wh, const T* bx, const T* bh, index_t input,
                                        index_t hidden, Option activation) {
    return std::make_shared<ElmanLayer<T>>(wx, wh, bx, bh, input, hidden, activation);
  }
};

struct LstmCell {
  static constexpr const char* name = "lstm";
  static constexpr bool projected = true;
  static constexpr index_t gates = 4;
  static constexpr const char* gate_order = "(i, f, g, o)";
  static constexpr const char* option = nullptr;
  static constexpr bool option_first = false;
  struct Option {};
  static Option read_option(py::handle) { return {}; }
  template <class T>
  static std::shared_ptr<Layer<T>> make(const T* wx, const T* wh, const T* bx, const T* bh, index_t input,
                                        index_t hidden, Option, const T* w_hr = nullptr, index_t proj = 0) {
    return std::make_shared<LstmLayer<T>>(wx, wh, bx, bh, input, hidden, w_hr, proj);
  }
};

struct GruCell {
  static constexpr const char* name = "gru";
  static constexpr bool projected = false;
  static constexpr index_t gates = 3;
  static constexpr const char* gate_order = "(r, z, n)";
  static constexpr const char* option = "linear_before_reset";
  static constexpr bool option_first = true;
  using Option = bool;
  static Option read_option(py::handle obj) {
    if (!py::isinstance<py::bool_>(obj) && !py::isinstance(obj, py::module_::import("numpy").attr("bool_")))
      type_error("linear_before_reset: expected a bool, got " +
                 py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
    return py::bool_(py::reinterpret_borrow<py::object>(obj));
  }
  template <class T>
  static std::shared_ptr<Layer<T>> make(const T* wx, const T* wh, const T* bx, const T* bh, index_t input,
                                        index_t hidden, Option linear_before_reset) {
    return std::make_shared<GruLayer<T>>(wx, wh, bx, bh, input, hidden, linear_before_reset);
  }
};

// W_x (G*H, I), W_h (G*H, S), b_x and b_h (G*H,) or None, and for LSTM
// W_hr (P, H) or None (S = P with it, else H): checked, then packed as the
// cell's layer in the weights' precision. Gated cells need hidden_size >= 1
// (G*H rows say nothing of H when there are none).
template <class Cell>
py::object pack_cell(py::handle W_x_obj, py::handle W_h_obj, py::handle b_x_obj, py::handle b_h_obj,
                     py::handle option_obj, py::handle W_hr_obj = py::none()) {
  std::optional<typename Cell::Option> option;
  if (Cell::option_first) option = Cell::read_option(option_obj);
  std::vector<NamedArray> weights{{"W_x", as_numeric(W_x_obj, "W_x")},
                                  {"W_h", as_numeric(W_h_obj, "W_h")},
                                  {"b_x", optional_array(b_x_obj, "b_x")},
                                  {"b_h", optional_array(b_h_obj, "b_h")},
                                  {"W_hr", optional_array(W_hr_obj, "W_hr")}};
  const Precision precision = weights_precision(weights);
  const index_t G = Cell::gates;
  const std::string g = std::to_string(G), rows = G == 1 ? "hidden_size" : g + "*hidden_size";
  const py::array& W_x = *weights[0].array;
  if (W_x.ndim() != 2 || (G > 1 && (W_x.shape(0) % G != 0 || W_x.shape(0) == 0)))
    value_error("W_x: expected a 2-D array (" + rows + ", input_size)" +
                (G > 1 ? " with hidden_size >= 1, " + g + " gate blocks " + Cell::gate_order : std::string()) +
                ", got shape " + shape_of(W_x));
  const index_t hidden = W_x.shape(0) / G, input = W_x.shape(1);
  const std::string from = "hidden_size " + std::to_string(hidden) + " from W_x";
  index_t state = hidden;
  std::string state_name = "hidden_size";
  if (const auto& W_hr = weights[4].array) {
    if (!Cell::projected) value_error(std::string("W_hr: only an LSTM has projections, this is a ") + Cell::name);
    if (W_hr->ndim() != 2 || W_hr->shape(0) < 1 || W_hr->shape(1) != hidden)
      value_error("W_hr: expected a 2-D array (proj_size, hidden_size) with proj_size >= 1, " + from + ", got shape " +
                  shape_of(*W_hr));
    state = W_hr->shape(0);
    state_name = "proj_size";
  }
  expect_shape(*weights[1].array, "W_h", {G * hidden, state},
               "(" + rows + ", " + state_name + "), " + from +
                   (state_name == "proj_size" ? ", proj_size " + std::to_string(state) + " from W_hr" : ""));
  for (int i = 2; i < 4; ++i)
    if (weights[i].array) expect_shape(*weights[i].array, weights[i].name, {G * hidden}, "(" + rows + ",), " + from);
  if (!option) option = Cell::read_option(option_obj);
  return with_precision(precision, [&](auto zero) -> py::object {
    using T = decltype(zero);
    auto wx = to_c<T>(W_x), wh = to_c<T>(*weights[1].array);
    auto bx = cast_optional<T>(weights[2].array), bh = cast_optional<T>(weights[3].array);
    if constexpr (Cell::projected) {
      auto whr = cast_optional<T>(weights[4].array);
      return py::cast(Cell::template make<T>(wx.data(), wh.data(), data_or_null(bx), data_or_null(bh), input,
                                             hidden, *option, data_or_null(whr), whr ? state : 0));
    }
    return py::cast(Cell::template make<T>(wx.data(), wh.data(), data_or_null(bx), data_or_null(bh), input, hidden,
                                           *option));
  });
}

// ---------------------------------------------------------------- layers

// A layer's sequence arguments, checked and converted.
template <class T>
struct SequenceArguments {
  SequenceInput in;
  carray<T> x;
  std::optional<carray<T>> h0, c0;
  std::vector<index_t> lengths;
  LayerInput<T> input(bool reverse) const {
    return {x.data(), data_or_null(h0), data_or_null(c0), lengths.empty() ? nullptr : lengths.data(), in.shape,
            reverse};
  }
  py::array_t<T> new_state(index_t hidden) const {
    return in.unbatched ? new_array<T>({hidden}) : new_array<T>({in.shape.batch, hidden});
  }
};

template <class T>
SequenceArguments<T> read_sequence_arguments(const Layer<T>& w, py::handle x_obj, py::handle h0_obj,
                                             py::handle c0_obj, py::handle lengths_obj, bool batch_first) {
  const index_t hidden = w.hidden_size(), state = w.state_size();
  SequenceInput in = read_sequence(x_obj, w.input_size(), batch_first);
  std::optional<py::array> h0 = read_state(h0_obj, "h0", in, state, state == hidden ? "hidden_size" : "proj_size");
  if (!w.has_cell_state() && !is_none(c0_obj))
    value_error(std::string("c0: only an LSTM has a cell state, this is a ") + w.name() + " layer");
  std::optional<py::array> c0 = read_state(c0_obj, "c0", in, hidden);
  std::vector<index_t> lengths = read_lengths(lengths_obj, in);
  auto x = to_c<T>(in.x);
  return {std::move(in), std::move(x), cast_optional<T>(h0), cast_optional<T>(c0), std::move(lengths)};
}

// (out, h_n, c_n): out = h_seq, or the head applied to every valid step;
// c_n is None but for LSTM.
template <class T>
py::tuple layer_forward(const Layer<T>& w, py::handle x, py::handle h0, py::handle c0, py::handle lengths,
                        bool batch_first, bool reverse, py::handle head_obj) {
  const index_t hidden = w.hidden_size(), state = w.state_size();
  SequenceArguments<T> a = read_sequence_arguments(w, x, h0, c0, lengths, batch_first);
  const DenseWeights<T>* head = read_head<T>(head_obj, state);
  auto out = new_array<T>(sequence_shape(a.in, head ? head->out_features() : state));
  auto h_n = a.new_state(state);
  std::optional<py::array_t<T>> c_n;
  if (w.has_cell_state()) c_n = a.new_state(hidden);
  {
    py::gil_scoped_release release;
    forward_with_head(w, head, a.input(reverse), out.mutable_data(), h_n.mutable_data(),
                      c_n ? c_n->mutable_data() : nullptr);
  }
  return py::make_tuple(std::move(out), std::move(h_n), c_n ? py::object(*c_n) : py::none());
}

// What backward needs from a forward, and how its arrays are shaped in Python.
template <class T>
struct BoundCache {
  std::unique_ptr<SequenceCache<T>> cache;
  bool unbatched;
};

// (h_seq, h_n, c_n, cache): the forward, keeping what backward needs.
template <class T>
py::tuple layer_forward_cache(std::shared_ptr<Layer<T>> w, py::handle x, py::handle h0, py::handle c0,
                              py::handle lengths, bool batch_first, bool reverse) {
  const index_t hidden = w->hidden_size(), state = w->state_size();
  SequenceArguments<T> a = read_sequence_arguments(*w, x, h0, c0, lengths, batch_first);
  auto h_seq = new_array<T>(sequence_shape(a.in, state));
  auto h_n = a.new_state(state);
  std::optional<py::array_t<T>> c_n;
  if (w->has_cell_state()) c_n = a.new_state(hidden);
  auto bound = std::make_unique<BoundCache<T>>();
  bound->unbatched = a.in.unbatched;
  {
    py::gil_scoped_release release;
    bound->cache = forward_keeping<T>(w, a.input(reverse),
                                      {h_seq.mutable_data(), h_n.mutable_data(), c_n ? c_n->mutable_data() : nullptr});
  }
  return py::make_tuple(std::move(h_seq), std::move(h_n), c_n ? py::object(*c_n) : py::none(),
                        py::cast(std::move(bound)));
}

// model.step for one-layer models: (y_t, state) from x_t (B, I) or (I,);
// the state has the model's layout, (1, B, H) or (1, H) (an (h, c) pair for
// LSTM), and the result too. The streaming hot path: arguments that already
// are C-contiguous arrays of T are used as they are, and a step too small to
// be worth releasing the GIL keeps it.
template <class T>
py::tuple layer_step(const Layer<T>& w, py::handle x_obj, py::handle state_obj, py::handle head_obj) {
  const bool lstm = w.has_cell_state();
  const index_t input = w.input_size(), hidden = w.hidden_size(), state = w.state_size();
  carray<T> x = as_carray<T>(x_obj, "x_t");
  if ((x.ndim() != 1 && x.ndim() != 2) || x.shape(x.ndim() - 1) != input)
    value_error("x_t: expected shape (B, " + std::to_string(input) + ") or (" + std::to_string(input) +
                ",) (input_size " + std::to_string(input) + "), got " + shape_of(x));
  const bool unbatched = x.ndim() == 1;
  const index_t batch = unbatched ? 1 : x.shape(0);
  std::optional<carray<T>> h, c;
  auto read = [&](py::handle obj, const char* name, index_t width) {
    const char* size = width == hidden ? "H" : "P";
    carray<T> a = as_carray<T>(obj, name);
    if (unbatched) expect_shape(a, name, {1, width}, std::string("(num_layers, ") + size + ")");
    else expect_shape(a, name, {1, batch, width}, std::string("(num_layers, B, ") + size + ")");
    return a;
  };
  if (!is_none(state_obj)) {
    if (lstm) {
      if (!py::isinstance<py::tuple>(state_obj) && !py::isinstance<py::list>(state_obj))
        type_error("state: expected an (h, c) pair for an LSTM, got " +
                   py::str(py::type::of(state_obj).attr("__name__")).cast<std::string>());
      py::sequence pair = py::reinterpret_borrow<py::sequence>(state_obj);
      if (pair.size() != 2) value_error("state: expected an (h, c) pair, got " + std::to_string(pair.size()) + " items");
      if (!is_none(pair[0])) h = read(pair[0], "state[0]", state);
      if (!is_none(pair[1])) c = read(pair[1], "state[1]", hidden);
    } else {
      h = read(state_obj, "state", state);
    }
  }
  const DenseWeights<T>* head = read_head<T>(head_obj, state);
  const index_t out_features = head ? head->out_features() : state;
  auto y = unbatched ? new_array<T>({out_features}) : new_array<T>({batch, out_features});
  auto new_state = [&](index_t width) {
    return unbatched ? new_array<T>({1, width}) : new_array<T>({1, batch, width});
  };
  auto h_next = new_state(state);
  std::optional<py::array_t<T>> c_next;
  if (lstm) c_next = new_state(hidden);
  auto compute = [&] {
    stream_step(w, head, x.data(), data_or_null(h), data_or_null(c), batch, y.mutable_data(), h_next.mutable_data(),
                c_next ? c_next->mutable_data() : nullptr);
  };
  if (step_releases_gil(batch, input, hidden, w.gates(), out_features)) {
    py::gil_scoped_release release;
    compute();
  } else {
    compute();
  }
  if (lstm) return py::make_tuple(std::move(y), py::make_tuple(std::move(h_next), std::move(*c_next)));
  return py::make_tuple(std::move(y), std::move(h_next));
}

// Backpropagation through time from a forward's cache: a dict of the
// gradients of x, W_x, W_h, b_x, b_h, h0 (and c0 for LSTM), shaped like the
// forward's arguments.
template <class T>
py::dict layer_backward(const BoundCache<T>& bound, py::handle dh_seq_obj, py::handle dh_n_obj,
                        py::handle dc_n_obj) {
  const SequenceCache<T>& cache = *bound.cache;
  const Layer<T>& w = *cache.layer;
  const index_t input = w.input_size(), hidden = w.hidden_size(), state = w.state_size(), G = w.gates();
  const SequenceShape& s = cache.shape;
  std::vector<py::ssize_t> per_step = bound.unbatched ? std::vector<py::ssize_t>{s.steps, state}
                                      : s.batch_first ? std::vector<py::ssize_t>{s.batch, s.steps, state}
                                                      : std::vector<py::ssize_t>{s.steps, s.batch, state};
  auto per_sequence = [&](index_t width) {
    return bound.unbatched ? std::vector<py::ssize_t>{width} : std::vector<py::ssize_t>{s.batch, width};
  };
  auto dh_seq = read_gradient<T>(dh_seq_obj, "dh_seq", per_step, "like the forward's h_seq");
  auto dh_n = read_gradient<T>(dh_n_obj, "dh_n", per_sequence(state), "like the forward's h_n");
  auto dc_n = read_gradient<T>(dc_n_obj, "dc_n", per_sequence(hidden), "like the forward's c_n");
  per_step.back() = input;
  py::dict grads;
  auto dx = new_array<T>(per_step);
  auto dW_x = new_array<T>({G * hidden, input}), dW_h = new_array<T>({G * hidden, state});
  auto db_x = new_array<T>({G * hidden}), db_h = new_array<T>({G * hidden});
  auto dh0 = new_array<T>(per_sequence(state));
  std::optional<py::array_t<T>> dc0, dW_hr;
  if (w.has_cell_state()) dc0 = new_array<T>(per_sequence(hidden));
  if (w.projected()) dW_hr = new_array<T>({state, hidden});
  {
    py::gil_scoped_release release;
    LayerGradients<T> out{dx.mutable_data(), dW_x.mutable_data(), dW_h.mutable_data(), db_x.mutable_data(),
                          db_h.mutable_data(), dh0.mutable_data(), dc0 ? dc0->mutable_data() : nullptr};
    out.dW_hr = dW_hr ? dW_hr->mutable_data() : nullptr;
    w.backward(cache, {data_or_null(dh_seq), data_or_null(dh_n), data_or_null(dc_n)}, out);
  }
  if (dW_hr) grads["W_hr"] = *dW_hr;
  grads["x"] = dx;
  grads["W_x"] = dW_x;
  grads["W_h"] = dW_h;
  grads["b_x"] = db_x;
  grads["b_h"] = db_h;
  grads["h0"] = dh0;
  if (dc0) grads["c0"] = *dc0;
  return grads;
}

// `cell` names the functional whose cache is expected (rnn, lstm or gru):
// another cell's cache is refused like any other object.
py::dict backward(py::handle cache, py::handle dh_seq, py::handle dh_n, py::handle dc_n, const std::string& cell) {
  const std::optional<Precision> precision = precision_of<BoundCache>(cache);
  auto refuse = [&](const std::string& got) {
    type_error("cache: expected the cache returned by " + cell + "(..., return_cache=True), got " + got);
  };
  if (!precision) refuse(py::str(py::type::of(cache).attr("__name__")).cast<std::string>());
  return with_precision(*precision, [&](auto zero) -> py::dict {
    using T = decltype(zero);
    const auto& bound = cache.cast<const BoundCache<T>&>();
    const char* made_by = bound.cache->layer->name();
    if (cell != made_by) refuse(std::string("the cache of ") + made_by + "(...)");
    if (!bound.cache->layer->has_cell_state() && !is_none(dc_n))
      value_error(std::string("dc_n: only an LSTM has a cell state, this is a ") + made_by + " cache");
    return layer_backward(bound, dh_seq, dh_n, dc_n);
  });
}

// ---------------------------------------------------------------- classes

template <class T>
void bind_precision(py::module_& m, const char* suffix) {
  const std::string dtype = sizeof(T) == 4 ? "float32" : "float64";
  py::class_<BoundCache<T>>(m, ("Cache" + std::string(suffix)).c_str(), "What backward needs from a forward (opaque).");
  py::class_<Layer<T>, std::shared_ptr<Layer<T>>>(m, ("Layer" + std::string(suffix)).c_str(),
                                                  "One layer-direction's packed weights (made by pack_<cell>).")
      .def_property_readonly("cell", &Layer<T>::name)
      .def_property_readonly("input_size", &Layer<T>::input_size)
      .def_property_readonly("hidden_size", &Layer<T>::hidden_size)
      .def_property_readonly("state_size", &Layer<T>::state_size)
      .def_property_readonly("gates", &Layer<T>::gates)
      .def_property_readonly("dtype", [dtype](const Layer<T>&) { return dtype; })
      .def("forward", &layer_forward<T>, py::arg("x"), py::arg("h0") = py::none(), py::arg("c0") = py::none(),
           py::arg("lengths") = py::none(), py::arg("batch_first") = true, py::arg("reverse") = false,
           py::arg("head") = py::none(),
           "(out, h_n, c_n): every hidden state (or the head's output at every valid step) and the final states.")
      .def("forward_cache", &layer_forward_cache<T>, py::arg("x"), py::arg("h0") = py::none(),
           py::arg("c0") = py::none(), py::arg("lengths") = py::none(), py::arg("batch_first") = true,
           py::arg("reverse") = false, "(h_seq, h_n, c_n, cache): the forward, keeping what backward needs.")
      .def("step", &layer_step<T>, py::arg("x_t"), py::arg("state") = py::none(), py::arg("head") = py::none(),
           "(y_t, state) for one time step of a one-layer model, states shaped (1, B, H).");
}

template <class Cell>
void bind_cell(py::module_& m) {
  const std::string doc = std::string("Checks and packs ") + Cell::name + " weights; returns Layer32 or Layer64.";
  const std::string pack = std::string("pack_") + Cell::name;
  if constexpr (Cell::projected) {
    m.def(pack.c_str(), [](py::handle W_x, py::handle W_h, py::handle b_x, py::handle b_h, py::handle W_hr) {
      return pack_cell<Cell>(W_x, W_h, b_x, b_h, py::none(), W_hr);
    }, py::arg("W_x"), py::arg("W_h"), py::arg("b_x") = py::none(), py::arg("b_h") = py::none(),
          py::arg("W_hr") = py::none(), doc.c_str());
  } else {
    m.def(pack.c_str(), [](py::handle W_x, py::handle W_h, py::handle b_x, py::handle b_h, py::handle option) {
      return pack_cell<Cell>(W_x, W_h, b_x, b_h, option);
    }, py::arg("W_x"), py::arg("W_h"), py::arg("b_x") = py::none(),
          py::arg("b_h") = py::none(), py::arg(Cell::option), doc.c_str());
  }
}

py::dict build_info() {
  py::dict info;
  info["version"] = RNNEXT_VERSION;
#if defined(__clang__)
  info["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  info["compiler"] = std::string("gcc ") + __VERSION__;
#else
  info["compiler"] = "unknown";
#endif
  info["isa"] = kernels().isa;
  py::list isas;
  for (const char* const* p = available_isas(); *p; ++p) isas.append(*p);
  info["isas_available"] = isas;
  info["openmp"] = py::none();  // since 0.7 rnnext runs its own worker threads (pool.h)
  info["pool_workers"] = pool_workers();
  info["threads_recently_late"] = threads_recently_late();
  py::dict precisions;  // the instruction set doing each reduced precision's products
  precisions["bfloat16"] = quant_path(QuantKind::bfloat16);
  precisions["int8"] = quant_path(QuantKind::int8);
  info["precisions"] = precisions;
  info["num_threads"] = num_threads();
  info["usable_cpus"] = usable_cpus();
  return info;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "rnnext's C++ core. Use the public API in rnnext and rnnext.functional.";
  kernels();  // choose the instruction set now: a bad RNNEXT_FORCE_ISA fails the import

  bind_dense(m);  // first: the layers' methods take its classes as heads
  bind_precision<float>(m, "32");
  bind_precision<double>(m, "64");
  bind_cell<ElmanCell>(m);
  bind_cell<LstmCell>(m);
  bind_cell<GruCell>(m);
  bind_quantized(m);
  m.def("backward", &backward, py::arg("cache"), py::arg("dh_seq") = py::none(), py::arg("dh_n") = py::none(),
        py::arg("dc_n") = py::none(), py::arg("cell"),
        "Backpropagation through time from the cache of a forward of `cell` (rnn, lstm or gru).");
  m.def("set_num_threads", [](int n) {
    if (n < 1) value_error("set_num_threads: n must be a positive integer, got " + std::to_string(n));
    set_num_threads(n);
  }, py::arg("n"));
  m.def("get_num_threads", &num_threads);
  m.def("process_num_threads", &process_num_threads,
        "The process-wide thread count (set_num_threads), whatever this thread's own.");
  m.def("thread_num_threads", &thread_num_threads, "The calling thread's own thread count; 0: the process-wide one.");
  m.def("set_thread_num_threads", [](int n) {
    if (n < 0) value_error("n: expected a thread count >= 0 (0: the process-wide count), got " + std::to_string(n));
    set_thread_num_threads(n);
  }, py::arg("n"));
  m.def("build_info", &build_info);
}
