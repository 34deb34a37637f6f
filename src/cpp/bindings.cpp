// The Python binding: converts and checks arguments, allocates outputs,
// releases the GIL and makes one call into the core. The only file that
// includes pybind11; every user-facing error message is written here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "dense.h"
#include "elman.h"
#include "gru.h"
#include "lstm.h"
#include "kernels.h"
#include "sequence.h"
#include "threading.h"

namespace py = pybind11;
using namespace rnnext;

namespace {

template <class T>
using carray = py::array_t<T, py::array::c_style | py::array::forcecast>;

[[noreturn]] void type_error(const std::string& message) { throw py::type_error(message); }
[[noreturn]] void value_error(const std::string& message) { throw py::value_error(message); }

std::string shape_of(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    s += std::to_string(a.shape(i));
    if (a.ndim() == 1 || i + 1 < a.ndim()) s += a.ndim() == 1 ? "," : ", ";
  }
  return s + ")";
}

std::string shape_str(std::initializer_list<index_t> dims) {
  std::string s = "(";
  std::size_t i = 0;
  for (index_t d : dims) {
    s += std::to_string(d);
    if (dims.size() == 1 || ++i < dims.size()) s += dims.size() == 1 ? "," : ", ";
  }
  return s + ")";
}

std::string dtype_of(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

bool is_none(py::handle h) { return !h || h.is_none(); }

// np.asarray(obj), refusing anything that is not real numbers (complex,
// object, strings, dates): those are TypeErrors naming the argument. A
// conversion that runs out of memory (a list of huge views) stays a
// MemoryError, and KeyboardInterrupt and the like pass through; the converting
// constructor keeps the error where py::array::ensure would clear it.
py::array as_numeric(py::handle obj, const std::string& name) {
  py::array a;
  try {
    a = py::array(py::reinterpret_borrow<py::object>(obj));
  } catch (py::error_already_set& e) {
    if (e.matches(PyExc_MemoryError) || !e.matches(PyExc_Exception)) throw;
    type_error(name + ": expected an array of real numbers, got " +
               py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
  }
  const char kind = a.dtype().kind();
  if (kind != 'f' && kind != 'i' && kind != 'u' && kind != 'b')
    type_error(name + ": expected an array of real numbers, got dtype " + dtype_of(a));
  return a;
}

// np.errstate(all="ignore") for a scope: a float64 value past float32's
// range cast to float32 becomes +-inf silently, as it would in the kernels
// (API.md: NaN and Inf emit no warnings; under warnings-as-errors the
// warning would otherwise fail the copy).
class QuietCasts {
 public:
  QuietCasts() : state_(py::module_::import("numpy").attr("errstate")(py::arg("all") = "ignore")) {
    state_.attr("__enter__")();
  }
  ~QuietCasts() {
    py::error_scope pending;  // an error being raised survives __exit__
    try {
      state_.attr("__exit__")(py::none(), py::none(), py::none());
    } catch (py::error_already_set&) {  // nothing to report it to from a destructor
    }
  }
  QuietCasts(const QuietCasts&) = delete;
  QuietCasts& operator=(const QuietCasts&) = delete;

 private:
  py::object state_;
};

// a as a C-contiguous array of T: a itself when it already is one, else a
// copy. A copy that fails (MemoryError for a view too large to copy) raises:
// carray<T>::ensure would clear that error and hand back a null array, the
// converting constructor keeps it. Only a cast from a wider floating type can
// overflow, so only that one pays for QuietCasts (about 1 us).
template <class T>
carray<T> to_c(const py::array& a) {
  if (py::isinstance<carray<T>>(a)) return py::reinterpret_borrow<carray<T>>(a);
  const py::dtype from = a.dtype();
  std::optional<QuietCasts> quiet;
  if (from.kind() == 'f' && std::size_t(from.itemsize()) > sizeof(T)) quiet.emplace();
  return carray<T>(py::reinterpret_borrow<py::object>(a));
}

void expect_shape(const py::array& a, const std::string& name, std::initializer_list<index_t> dims,
                  const std::string& meaning) {
  bool ok = a.ndim() == py::ssize_t(dims.size());
  py::ssize_t i = 0;
  for (index_t d : dims) ok = ok && a.shape(i++) == d;
  if (!ok)
    value_error(name + ": expected shape " + shape_str(dims) + " " + meaning + ", got " + shape_of(a));
}

Activation parse_activation(py::handle obj) {
  if (!py::isinstance<py::str>(obj))
    type_error("activation: expected one of 'tanh', 'sigmoid', 'relu', got " +
               py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
  const std::string name = obj.cast<std::string>();
  if (name == "tanh") return Activation::tanh;
  if (name == "sigmoid") return Activation::sigmoid;
  if (name == "relu") return Activation::relu;
  value_error("activation: expected one of 'tanh', 'sigmoid', 'relu', got '" + name + "'");
}

const char* activation_name(Activation a) {
  switch (a) {
    case Activation::tanh: return "tanh";
    case Activation::sigmoid: return "sigmoid";
    case Activation::relu: return "relu";
  }
  return "?";
}

// Weights share one floating dtype, float32 or float64, checked before any
// shape: that dtype decides the precision of the whole computation.
struct NamedArray {
  const char* name;
  std::optional<py::array> array;  // nullopt when the argument was None
};

bool weights_are_double(const std::vector<NamedArray>& weights) {
  const NamedArray* first = nullptr;
  for (const NamedArray& w : weights) {
    if (!w.array) continue;
    const py::dtype dt = w.array->dtype();
    if (dt.kind() != 'f' || (dt.itemsize() != 4 && dt.itemsize() != 8))
      type_error(std::string(w.name) + ": expected float32 or float64 weights, got dtype " +
                 dtype_of(*w.array));
    if (first == nullptr) first = &w;
    else if (dt.itemsize() != first->array->dtype().itemsize())
      type_error(std::string("weights must all be float32 or all float64: ") + first->name + " is " +
                 dtype_of(*first->array) + ", " + w.name + " is " + dtype_of(*w.array));
  }
  return first != nullptr && first->array->dtype().itemsize() == 8;
}

std::optional<py::array> optional_array(py::handle obj, const char* name) {
  if (is_none(obj)) return std::nullopt;
  return as_numeric(obj, name);
}

template <class T>
std::optional<carray<T>> cast_optional(const std::optional<py::array>& a) {
  if (!a) return std::nullopt;
  return to_c<T>(*a);
}

template <class T>
const T* data_or_null(const std::optional<carray<T>>& a) {
  return a ? a->data() : nullptr;
}

// An argument as a C-contiguous array of T: as it is when it already is one
// (the streaming hot path), else checked and converted.
template <class T>
carray<T> as_carray(py::handle obj, const char* name) {
  if (py::isinstance<carray<T>>(obj)) return py::reinterpret_borrow<carray<T>>(obj);
  return to_c<T>(as_numeric(obj, name));
}

// ---------------------------------------------------------------- sequences

// How x is laid out, read from its shape (and checked against input_size).
struct SequenceInput {
  py::array x;
  bool unbatched;
  SequenceShape shape;
};

SequenceInput read_sequence(py::handle x_obj, index_t input_size, bool batch_first) {
  SequenceInput in;
  in.x = as_numeric(x_obj, "x");
  const std::string layout = batch_first ? "(B, T, " : "(T, B, ";
  const std::string expected = layout + std::to_string(input_size) + ") or unbatched (T, " +
                               std::to_string(input_size) + ")";
  if (in.x.ndim() != 2 && in.x.ndim() != 3)
    value_error("x: expected a 2-D or 3-D array " + expected + ", got shape " + shape_of(in.x));
  if (in.x.shape(in.x.ndim() - 1) != input_size)
    value_error("x: expected shape " + expected + " (input_size " + std::to_string(input_size) +
                "), got " + shape_of(in.x));
  in.unbatched = in.x.ndim() == 2;
  if (in.unbatched) in.shape = {1, in.x.shape(0), true};
  else if (batch_first) in.shape = {in.x.shape(0), in.x.shape(1), true};
  else in.shape = {in.x.shape(1), in.x.shape(0), false};
  return in;
}

// A state argument (h0): (B, H), or (H,) for an unbatched input.
std::optional<py::array> read_state(py::handle obj, const char* name, const SequenceInput& in,
                                    index_t hidden) {
  if (is_none(obj)) return std::nullopt;
  py::array h = as_numeric(obj, name);
  if (in.unbatched) expect_shape(h, name, {hidden}, "(hidden_size,) for an unbatched x");
  else expect_shape(h, name, {in.shape.batch, hidden}, "(B, hidden_size)");
  return h;
}

// lengths: integers, (B,) (a scalar or (1,) for an unbatched x), 1 <= l <= T.
std::vector<index_t> read_lengths(py::handle obj, const SequenceInput& in) {
  std::vector<index_t> out;
  if (is_none(obj)) return out;
  py::array a = as_numeric(obj, "lengths");
  const char kind = a.dtype().kind();
  if (kind != 'i' && kind != 'u')
    type_error("lengths: expected an integer array, got dtype " + dtype_of(a));
  const index_t batch = in.shape.batch, steps = in.shape.steps;
  const bool ok = in.unbatched ? (a.ndim() == 0 || (a.ndim() == 1 && a.shape(0) == 1))
                               : (a.ndim() == 1 && a.shape(0) == batch);
  if (!ok)
    value_error("lengths: expected shape " + (in.unbatched ? std::string("() or (1,)") : shape_str({batch})) +
                " (one length per sequence), got " + shape_of(a));
  // Values past int64 are out of range whatever their sign after the cast.
  if (kind == 'u') {
    auto u = to_c<std::uint64_t>(a);
    for (py::ssize_t i = 0; i < u.size(); ++i)
      if (u.data()[i] > std::uint64_t(steps))
        value_error("lengths[" + std::to_string(i) + "] = " + std::to_string(u.data()[i]) +
                    " is outside [1, T] with T = " + std::to_string(steps));
  }
  auto l = to_c<index_t>(a);
  out.assign(l.data(), l.data() + l.size());
  for (std::size_t i = 0; i < out.size(); ++i)
    if (out[i] < 1 || out[i] > steps)
      value_error("lengths[" + std::to_string(i) + "] = " + std::to_string(out[i]) +
                  " is outside [1, T] with T = " + std::to_string(steps));
  return out;
}

template <class T>
py::array_t<T> new_array(std::vector<py::ssize_t> shape) {
  index_t count = 1;
  for (py::ssize_t d : shape) count = checked_mul(count, d);
  return py::array_t<T>(shape);
}

// Shape of a per-step output with `features` per row, for the layout of x.
std::vector<py::ssize_t> sequence_shape(const SequenceInput& in, index_t features) {
  const SequenceShape& s = in.shape;
  if (in.unbatched) return {s.steps, features};
  if (s.batch_first) return {s.batch, s.steps, features};
  return {s.steps, s.batch, features};
}

template <class T>
const DenseWeights<T>* read_head(py::handle head, index_t hidden) {
  if (is_none(head)) return nullptr;
  if (!py::isinstance<DenseWeights<T>>(head))
    type_error("head: expected packed dense weights of the layer's dtype, got " +
               py::str(py::type::of(head).attr("__name__")).cast<std::string>());
  const auto* h = head.cast<const DenseWeights<T>*>();
  if (h->in_features() != hidden)
    value_error("head: expected in_features = hidden_size = " + std::to_string(hidden) + ", got " +
                std::to_string(h->in_features()));
  return h;
}

// ---------------------------------------------------------------- Elman RNN

// (out, h_n): out = h_seq, or the head applied to every valid step.
template <class T>
py::tuple elman_forward(const ElmanWeights<T>& w, py::handle x_obj, py::handle h0_obj,
                        py::handle lengths_obj, bool batch_first, bool reverse, py::handle head_obj) {
  const index_t input = w.input_size(), hidden = w.hidden_size();
  SequenceInput in = read_sequence(x_obj, input, batch_first);
  std::optional<py::array> h0_any = read_state(h0_obj, "h0", in, hidden);
  std::vector<index_t> lengths = read_lengths(lengths_obj, in);
  const DenseWeights<T>* head = read_head<T>(head_obj, hidden);

  auto x = to_c<T>(in.x);
  auto h0 = cast_optional<T>(h0_any);
  const SequenceShape shape = in.shape;
  const index_t rows = checked_mul(shape.batch, shape.steps);
  auto out = new_array<T>(sequence_shape(in, head ? head->out_features() : hidden));
  auto h_n = in.unbatched ? new_array<T>({hidden}) : new_array<T>({shape.batch, hidden});
  const index_t* len = lengths.empty() ? nullptr : lengths.data();
  {
    py::gil_scoped_release release;
    if (head == nullptr) {
      w.forward(x.data(), data_or_null(h0), len, shape, reverse, out.mutable_data(), h_n.mutable_data());
    } else {
      AlignedBuffer<T> h_seq(checked_mul(rows, hidden));
      w.forward(x.data(), data_or_null(h0), len, shape, reverse, h_seq.data(), h_n.mutable_data());
      head->forward(h_seq.data(), rows, out.mutable_data());
      zero_padding(out.mutable_data(), head->out_features(), len, shape);
    }
  }
  return py::make_tuple(std::move(out), std::move(h_n));
}

// One step for streaming: (y_t, h_t) from x_t (B, I) or (I,) and h_{t-1}.
template <class T>
py::tuple elman_step(const ElmanWeights<T>& w, py::handle x_obj, py::handle h_obj, py::handle head_obj) {
  const index_t input = w.input_size(), hidden = w.hidden_size();
  py::array x_any = as_numeric(x_obj, "x_t");
  if (x_any.ndim() != 1 && x_any.ndim() != 2)
    value_error("x_t: expected shape (B, " + std::to_string(input) + ") or (" + std::to_string(input) +
                ",), got " + shape_of(x_any));
  if (x_any.shape(x_any.ndim() - 1) != input)
    value_error("x_t: expected shape (B, " + std::to_string(input) + ") or (" + std::to_string(input) +
                ",) (input_size " + std::to_string(input) + "), got " + shape_of(x_any));
  const bool unbatched = x_any.ndim() == 1;
  const index_t batch = unbatched ? 1 : x_any.shape(0);
  std::optional<py::array> h_any = optional_array(h_obj, "state");
  if (h_any) {
    if (unbatched) expect_shape(*h_any, "state", {hidden}, "(hidden_size,) for an unbatched x_t");
    else expect_shape(*h_any, "state", {batch, hidden}, "(B, hidden_size)");
  }
  const DenseWeights<T>* head = read_head<T>(head_obj, hidden);
  auto x = to_c<T>(x_any);
  auto h = cast_optional<T>(h_any);
  const index_t out_features = head ? head->out_features() : hidden;
  auto y = unbatched ? new_array<T>({out_features}) : new_array<T>({batch, out_features});
  auto h_next = unbatched ? new_array<T>({hidden}) : new_array<T>({batch, hidden});
  {
    py::gil_scoped_release release;
    const SequenceShape shape{batch, 1, true};
    if (head == nullptr) {
      w.forward(x.data(), data_or_null(h), nullptr, shape, false, y.mutable_data(), h_next.mutable_data());
    } else {
      w.forward(x.data(), data_or_null(h), nullptr, shape, false, h_next.mutable_data(),
                h_next.mutable_data());
      head->forward(h_next.data(), batch, y.mutable_data());
    }
  }
  return py::make_tuple(std::move(y), std::move(h_next));
}

// (h_seq, h_n, cache): the forward, keeping what rnn_backward needs.
template <class T>
py::tuple elman_forward_cache(std::shared_ptr<ElmanWeights<T>> w, py::handle x_obj, py::handle h0_obj,
                              py::handle lengths_obj, bool batch_first, bool reverse) {
  const index_t input = w->input_size(), hidden = w->hidden_size();
  SequenceInput in = read_sequence(x_obj, input, batch_first);
  std::optional<py::array> h0_any = read_state(h0_obj, "h0", in, hidden);
  std::vector<index_t> lengths = read_lengths(lengths_obj, in);
  auto x = to_c<T>(in.x);
  auto h0 = cast_optional<T>(h0_any);
  auto h_seq = new_array<T>(sequence_shape(in, hidden));
  auto h_n = in.unbatched ? new_array<T>({hidden}) : new_array<T>({in.shape.batch, hidden});
  std::unique_ptr<ElmanCache<T>> cache;
  {
    py::gil_scoped_release release;
    cache = std::make_unique<ElmanCache<T>>(w, x.data(), data_or_null(h0), std::move(lengths), in.shape,
                                            reverse, h_n.mutable_data());
    cache->unbatched = in.unbatched;
    if (cache->h_seq.size())
      std::memcpy(h_seq.mutable_data(), cache->h_seq.data(), sizeof(T) * std::size_t(cache->h_seq.size()));
  }
  return py::make_tuple(std::move(h_seq), std::move(h_n), py::cast(std::move(cache)));
}

// A gradient argument shaped exactly like the forward output it belongs to.
template <class T>
std::optional<carray<T>> read_gradient(py::handle obj, const char* name, const std::vector<py::ssize_t>& shape,
                                       const std::string& meaning) {
  if (is_none(obj)) return std::nullopt;
  py::array g = as_numeric(obj, name);
  bool ok = g.ndim() == py::ssize_t(shape.size());
  for (std::size_t i = 0; ok && i < shape.size(); ++i) ok = g.shape(i) == shape[i];
  if (!ok) {
    std::string expected = "(";
    for (std::size_t i = 0; i < shape.size(); ++i)
      expected += std::to_string(shape[i]) + (shape.size() == 1 ? "," : i + 1 < shape.size() ? ", " : "");
    value_error(std::string(name) + ": expected shape " + expected + ") " + meaning + ", got " + shape_of(g));
  }
  return to_c<T>(g);
}

template <class T>
py::dict elman_backward(const ElmanCache<T>& cache, py::handle dh_seq_obj, py::handle dh_n_obj) {
  const ElmanWeights<T>& w = *cache.weights;
  const index_t input = w.input_size(), hidden = w.hidden_size();
  const SequenceShape& s = cache.shape;
  auto per_step = [&](index_t features) -> std::vector<py::ssize_t> {
    if (cache.unbatched) return {s.steps, features};
    if (s.batch_first) return {s.batch, s.steps, features};
    return {s.steps, s.batch, features};
  };
  auto per_sequence = [&]() -> std::vector<py::ssize_t> {
    if (cache.unbatched) return {hidden};
    return {s.batch, hidden};
  };
  auto dh_seq = read_gradient<T>(dh_seq_obj, "dh_seq", per_step(hidden), "like the forward's h_seq");
  auto dh_n = read_gradient<T>(dh_n_obj, "dh_n", per_sequence(), "like the forward's h_n");
  auto dx = new_array<T>(per_step(input));
  auto dW_x = new_array<T>({hidden, input});
  auto dW_h = new_array<T>({hidden, hidden});
  auto db = new_array<T>({hidden});
  auto dh0 = new_array<T>(per_sequence());
  {
    py::gil_scoped_release release;
    w.backward(cache, data_or_null(dh_seq), data_or_null(dh_n),
               {dx.mutable_data(), dW_x.mutable_data(), dW_h.mutable_data(), db.mutable_data(), dh0.mutable_data()});
  }
  py::dict grads;
  grads["x"] = dx;
  grads["W_x"] = dW_x;
  grads["W_h"] = dW_h;
  grads["b_x"] = db;
  grads["b_h"] = db.attr("copy")();  // the two biases get equal but separate gradients
  grads["h0"] = dh0;
  return grads;
}

py::dict rnn_backward(py::handle cache, py::handle dh_seq, py::handle dh_n) {
  if (py::isinstance<ElmanCache<float>>(cache))
    return elman_backward(cache.cast<const ElmanCache<float>&>(), dh_seq, dh_n);
  if (py::isinstance<ElmanCache<double>>(cache))
    return elman_backward(cache.cast<const ElmanCache<double>&>(), dh_seq, dh_n);
  type_error("cache: expected the cache returned by rnn(..., return_cache=True), got " +
             py::str(py::type::of(cache).attr("__name__")).cast<std::string>());
}

// model.step: the state has the model's layout, (1, B, H) or (1, H), and the
// result too. The streaming hot path: a few microseconds matter here, so a
// step small enough to take less time than releasing the GIL keeps it.
template <class T>
py::tuple elman_step_model(const ElmanWeights<T>& w, py::handle x_obj, py::handle state_obj, py::handle head_obj) {
  const index_t input = w.input_size(), hidden = w.hidden_size();
  carray<T> x = as_carray<T>(x_obj, "x_t");
  if ((x.ndim() != 1 && x.ndim() != 2) || x.shape(x.ndim() - 1) != input)
    value_error("x_t: expected shape (B, " + std::to_string(input) + ") or (" + std::to_string(input) +
                ",) (input_size " + std::to_string(input) + "), got " + shape_of(x));
  const bool unbatched = x.ndim() == 1;
  const index_t batch = unbatched ? 1 : x.shape(0);
  std::optional<carray<T>> h;
  if (!is_none(state_obj)) {
    h = as_carray<T>(state_obj, "state");
    if (unbatched) expect_shape(*h, "state", {1, hidden}, "(num_layers, H)");
    else expect_shape(*h, "state", {1, batch, hidden}, "(num_layers, B, H)");
  }
  const DenseWeights<T>* head = read_head<T>(head_obj, hidden);
  const index_t out_features = head ? head->out_features() : hidden;
  auto y = unbatched ? new_array<T>({out_features}) : new_array<T>({batch, out_features});
  auto state = unbatched ? new_array<T>({1, hidden}) : new_array<T>({1, batch, hidden});
  auto compute = [&] {
    const SequenceShape shape{batch, 1, true};
    T* h_next = state.mutable_data();
    w.forward(x.data(), data_or_null(h), nullptr, shape, false, head ? h_next : y.mutable_data(), h_next);
    if (head) head->forward(h_next, batch, y.mutable_data());
  };
  const double work = double(batch) * double(hidden) * double(input + hidden + out_features);
  if (work > 1 << 18) {
    py::gil_scoped_release release;
    compute();
  } else {
    compute();
  }
  return py::make_tuple(std::move(y), std::move(state));
}

py::object pack_rnn(py::handle W_x_obj, py::handle W_h_obj, py::handle b_x_obj, py::handle b_h_obj,
                    py::handle activation_obj) {
  std::vector<NamedArray> weights{{"W_x", as_numeric(W_x_obj, "W_x")},
                                  {"W_h", as_numeric(W_h_obj, "W_h")},
                                  {"b_x", optional_array(b_x_obj, "b_x")},
                                  {"b_h", optional_array(b_h_obj, "b_h")}};
  const bool is_double = weights_are_double(weights);
  const py::array& W_x = *weights[0].array;
  if (W_x.ndim() != 2)
    value_error("W_x: expected a 2-D array (hidden_size, input_size), got shape " + shape_of(W_x));
  const index_t hidden = W_x.shape(0), input = W_x.shape(1);
  const std::string h = std::to_string(hidden);
  expect_shape(*weights[1].array, "W_h", {hidden, hidden}, "(hidden_size, hidden_size), hidden_size " + h + " from W_x");
  for (int i = 2; i < 4; ++i)
    if (weights[i].array)
      expect_shape(*weights[i].array, weights[i].name, {hidden}, "(hidden_size,), hidden_size " + h + " from W_x");
  const Activation activation = parse_activation(activation_obj);
  auto build = [&](auto zero) -> py::object {
    using T = decltype(zero);
    auto wx = to_c<T>(W_x), wh = to_c<T>(*weights[1].array);
    auto bx = cast_optional<T>(weights[2].array), bh = cast_optional<T>(weights[3].array);
    return py::cast(std::make_shared<ElmanWeights<T>>(wx.data(), wh.data(), data_or_null(bx),
                                                      data_or_null(bh), input, hidden, activation));
  };
  return is_double ? build(double{}) : build(float{});
}

// ---------------------------------------------------------------- LSTM and GRU

// Checks W_x (G*H, I), W_h (G*H, H), b_x and b_h (G*H,) of a cell with G
// gate blocks; returns whether they are float64, and I and H.
bool read_gated_weights(const std::vector<NamedArray>& weights, index_t gates, const std::string& order,
                        index_t* input, index_t* hidden) {
  const bool is_double = weights_are_double(weights);
  const py::array& W_x = *weights[0].array;
  const std::string g = std::to_string(gates);
  if (W_x.ndim() != 2 || W_x.shape(0) % gates != 0 || W_x.shape(0) == 0)
    value_error("W_x: expected a 2-D array (" + g + "*hidden_size, input_size) with hidden_size >= 1, " + g +
                " gate blocks " + order +
                ", got shape " + shape_of(W_x));
  *hidden = W_x.shape(0) / gates;
  *input = W_x.shape(1);
  const std::string h = std::to_string(*hidden);
  const std::string from = "hidden_size " + h + " from W_x";
  expect_shape(*weights[1].array, "W_h", {gates * *hidden, *hidden}, "(" + g + "*hidden_size, hidden_size), " + from);
  for (int i = 2; i < 4; ++i)
    if (weights[i].array) expect_shape(*weights[i].array, weights[i].name, {gates * *hidden}, "(" + g + "*hidden_size,), " + from);
  return is_double;
}

std::vector<NamedArray> gated_arguments(py::handle W_x, py::handle W_h, py::handle b_x, py::handle b_h) {
  return {{"W_x", as_numeric(W_x, "W_x")},
          {"W_h", as_numeric(W_h, "W_h")},
          {"b_x", optional_array(b_x, "b_x")},
          {"b_h", optional_array(b_h, "b_h")}};
}

template <class T>
struct GatedInput {
  SequenceInput in;
  carray<T> x;
  std::optional<carray<T>> h0, c0;
  std::vector<index_t> lengths;
};

template <class T>
GatedInput<T> read_gated_input(index_t input, index_t hidden, py::handle x_obj, py::handle h0_obj,
                               py::handle c0_obj, py::handle lengths_obj, bool batch_first) {
  SequenceInput in = read_sequence(x_obj, input, batch_first);
  std::optional<py::array> h0 = read_state(h0_obj, "h0", in, hidden);
  std::optional<py::array> c0 = read_state(c0_obj, "c0", in, hidden);
  std::vector<index_t> lengths = read_lengths(lengths_obj, in);
  auto x = to_c<T>(in.x);
  return {std::move(in), std::move(x), cast_optional<T>(h0), cast_optional<T>(c0), std::move(lengths)};
}

template <class T>
py::array_t<T> new_state(const SequenceInput& in, index_t hidden) {
  return in.unbatched ? new_array<T>({hidden}) : new_array<T>({in.shape.batch, hidden});
}

// A gated layer's forward: (h_seq, h_n, c_n) for LSTM, (h_seq, h_n) for GRU,
// and the cache last with keep (what lstm_backward / gru_backward need).
template <class T, class Weights>
py::tuple gated_forward(std::shared_ptr<Weights> w, py::handle x, py::handle h0, py::handle c0, py::handle lengths,
                        bool batch_first, bool reverse, bool keep) {
  constexpr bool lstm = std::is_same<Weights, LstmWeights<T>>::value;
  using Cache = std::conditional_t<lstm, LstmCache<T>, GruCache<T>>;
  const index_t hidden = w->hidden_size();
  GatedInput<T> a = read_gated_input<T>(w->input_size(), hidden, x, h0, c0, lengths, batch_first);
  auto h_seq = new_array<T>(sequence_shape(a.in, hidden));
  auto h_n = new_state<T>(a.in, hidden);
  auto c_n = lstm ? new_state<T>(a.in, hidden) : py::array_t<T>();
  std::unique_ptr<Cache> cache;
  {
    py::gil_scoped_release release;
    const index_t* len = a.lengths.empty() ? nullptr : a.lengths.data();
    if (keep) {
      if constexpr (lstm)
        cache = std::make_unique<Cache>(w, a.x.data(), data_or_null(a.h0), data_or_null(a.c0), std::move(a.lengths),
                                        a.in.shape, reverse, h_n.mutable_data(), c_n.mutable_data());
      else
        cache = std::make_unique<Cache>(w, a.x.data(), data_or_null(a.h0), std::move(a.lengths), a.in.shape, reverse,
                                        h_n.mutable_data());
      cache->unbatched = a.in.unbatched;
      if (cache->h_seq.size())
        std::memcpy(h_seq.mutable_data(), cache->h_seq.data(), sizeof(T) * std::size_t(cache->h_seq.size()));
    } else if constexpr (lstm) {
      w->forward(a.x.data(), data_or_null(a.h0), data_or_null(a.c0), len, a.in.shape, reverse, h_seq.mutable_data(),
                 h_n.mutable_data(), c_n.mutable_data());
    } else {
      w->forward(a.x.data(), data_or_null(a.h0), len, a.in.shape, reverse, h_seq.mutable_data(), h_n.mutable_data());
    }
  }
  py::list out;
  out.append(std::move(h_seq));
  out.append(std::move(h_n));
  if (lstm) out.append(std::move(c_n));
  if (keep) out.append(py::cast(std::move(cache)));
  return py::tuple(out);
}

template <class T>
py::tuple lstm_forward(std::shared_ptr<LstmWeights<T>> w, py::handle x, py::handle h0, py::handle c0,
                       py::handle lengths, bool batch_first, bool reverse) {
  return gated_forward<T>(std::move(w), x, h0, c0, lengths, batch_first, reverse, false);
}

template <class T>
py::tuple lstm_forward_cache(std::shared_ptr<LstmWeights<T>> w, py::handle x, py::handle h0, py::handle c0,
                             py::handle lengths, bool batch_first, bool reverse) {
  return gated_forward<T>(std::move(w), x, h0, c0, lengths, batch_first, reverse, true);
}

template <class T>
py::tuple gru_forward(std::shared_ptr<GruWeights<T>> w, py::handle x, py::handle h0, py::handle lengths,
                      bool batch_first, bool reverse) {
  return gated_forward<T>(std::move(w), x, h0, py::none(), lengths, batch_first, reverse, false);
}

template <class T>
py::tuple gru_forward_cache(std::shared_ptr<GruWeights<T>> w, py::handle x, py::handle h0, py::handle lengths,
                            bool batch_first, bool reverse) {
  return gated_forward<T>(std::move(w), x, h0, py::none(), lengths, batch_first, reverse, true);
}

// The output gradients of a gated cell's backward, shaped like the forward's
// outputs, and arrays for the input gradients.
template <class T, class Cache>
struct GatedGradients {
  std::optional<carray<T>> dh_seq, dh_n, dc_n;
  py::array_t<T> dx, dW_x, dW_h, db_x, db_h, dh0, dc0;
  GatedGradients(const Cache& cache, index_t gates, py::handle dh_seq_obj, py::handle dh_n_obj, py::handle dc_n_obj) {
    const index_t input = cache.weights->input_size(), hidden = cache.weights->hidden_size();
    const SequenceShape& s = cache.shape;
    std::vector<py::ssize_t> per_step = cache.unbatched ? std::vector<py::ssize_t>{s.steps, hidden}
                                        : s.batch_first ? std::vector<py::ssize_t>{s.batch, s.steps, hidden}
                                                        : std::vector<py::ssize_t>{s.steps, s.batch, hidden};
    std::vector<py::ssize_t> per_sequence = cache.unbatched ? std::vector<py::ssize_t>{hidden}
                                                            : std::vector<py::ssize_t>{s.batch, hidden};
    dh_seq = read_gradient<T>(dh_seq_obj, "dh_seq", per_step, "like the forward's h_seq");
    dh_n = read_gradient<T>(dh_n_obj, "dh_n", per_sequence, "like the forward's h_n");
    dc_n = read_gradient<T>(dc_n_obj, "dc_n", per_sequence, "like the forward's c_n");
    per_step.back() = input;
    dx = new_array<T>(per_step);
    dW_x = new_array<T>({gates * hidden, input});
    dW_h = new_array<T>({gates * hidden, hidden});
    db_x = new_array<T>({gates * hidden});
    db_h = new_array<T>({gates * hidden});
    dh0 = new_array<T>(per_sequence);
    dc0 = new_array<T>(per_sequence);
  }
  py::dict dict(bool with_c) {
    py::dict grads;
    grads["x"] = dx;
    grads["W_x"] = dW_x;
    grads["W_h"] = dW_h;
    grads["b_x"] = db_x;
    grads["b_h"] = db_h;
    grads["h0"] = dh0;
    if (with_c) grads["c0"] = dc0;
    return grads;
  }
};

template <class T>
py::dict lstm_backward_typed(const LstmCache<T>& cache, py::handle dh_seq, py::handle dh_n, py::handle dc_n) {
  GatedGradients<T, LstmCache<T>> g(cache, 4, dh_seq, dh_n, dc_n);
  {
    py::gil_scoped_release release;
    cache.weights->backward(cache, data_or_null(g.dh_seq), data_or_null(g.dh_n), data_or_null(g.dc_n),
                            {g.dx.mutable_data(), g.dW_x.mutable_data(), g.dW_h.mutable_data(), g.db_x.mutable_data(),
                             g.dh0.mutable_data(), g.dc0.mutable_data()});
    std::memcpy(g.db_h.mutable_data(), g.db_x.data(), sizeof(T) * std::size_t(g.db_x.size()));
  }
  return g.dict(true);
}

template <class T>
py::dict gru_backward_typed(const GruCache<T>& cache, py::handle dh_seq, py::handle dh_n) {
  GatedGradients<T, GruCache<T>> g(cache, 3, dh_seq, dh_n, py::none());
  {
    py::gil_scoped_release release;
    cache.weights->backward(cache, data_or_null(g.dh_seq), data_or_null(g.dh_n),
                            {g.dx.mutable_data(), g.dW_x.mutable_data(), g.dW_h.mutable_data(), g.db_x.mutable_data(),
                             g.db_h.mutable_data(), g.dh0.mutable_data()});
  }
  return g.dict(false);
}

py::dict lstm_backward(py::handle cache, py::handle dh_seq, py::handle dh_n, py::handle dc_n) {
  if (py::isinstance<LstmCache<float>>(cache))
    return lstm_backward_typed(cache.cast<const LstmCache<float>&>(), dh_seq, dh_n, dc_n);
  if (py::isinstance<LstmCache<double>>(cache))
    return lstm_backward_typed(cache.cast<const LstmCache<double>&>(), dh_seq, dh_n, dc_n);
  type_error("cache: expected the cache returned by lstm(..., return_cache=True), got " +
             py::str(py::type::of(cache).attr("__name__")).cast<std::string>());
}

py::dict gru_backward(py::handle cache, py::handle dh_seq, py::handle dh_n) {
  if (py::isinstance<GruCache<float>>(cache))
    return gru_backward_typed(cache.cast<const GruCache<float>&>(), dh_seq, dh_n);
  if (py::isinstance<GruCache<double>>(cache))
    return gru_backward_typed(cache.cast<const GruCache<double>&>(), dh_seq, dh_n);
  type_error("cache: expected the cache returned by gru(..., return_cache=True), got " +
             py::str(py::type::of(cache).attr("__name__")).cast<std::string>());
}

// model.step for one-layer LSTM and GRU models: the state has the model's
// layout, (1, B, H) or (1, H) (an (h, c) pair for LSTM), and the result too.
// The streaming hot path, one C++ call: see elman_step_model.
template <class T, class Weights>
py::tuple gated_step_model(const Weights& w, py::handle x_obj, py::handle state_obj, py::handle head_obj) {
  constexpr bool lstm = std::is_same<Weights, LstmWeights<T>>::value;
  const index_t input = w.input_size(), hidden = w.hidden_size();
  carray<T> x = as_carray<T>(x_obj, "x_t");
  if ((x.ndim() != 1 && x.ndim() != 2) || x.shape(x.ndim() - 1) != input)
    value_error("x_t: expected shape (B, " + std::to_string(input) + ") or (" + std::to_string(input) +
                ",) (input_size " + std::to_string(input) + "), got " + shape_of(x));
  const bool unbatched = x.ndim() == 1;
  const index_t batch = unbatched ? 1 : x.shape(0);
  std::optional<carray<T>> h, c;
  auto read = [&](py::handle obj, const char* name) {
    carray<T> a = as_carray<T>(obj, name);
    if (unbatched) expect_shape(a, name, {1, hidden}, "(num_layers, H)");
    else expect_shape(a, name, {1, batch, hidden}, "(num_layers, B, H)");
    return a;
  };
  if (!is_none(state_obj)) {
    if (lstm) {
      if (!py::isinstance<py::tuple>(state_obj) && !py::isinstance<py::list>(state_obj))
        type_error("state: expected an (h, c) pair for an LSTM, got " +
                   py::str(py::type::of(state_obj).attr("__name__")).cast<std::string>());
      py::sequence pair = py::reinterpret_borrow<py::sequence>(state_obj);
      if (pair.size() != 2) value_error("state: expected an (h, c) pair, got " + std::to_string(pair.size()) + " items");
      if (!is_none(pair[0])) h = read(pair[0], "state[0]");
      if (!is_none(pair[1])) c = read(pair[1], "state[1]");
    } else {
      h = read(state_obj, "state");
    }
  }
  const DenseWeights<T>* head = read_head<T>(head_obj, hidden);
  const index_t out_features = head ? head->out_features() : hidden;
  auto y = unbatched ? new_array<T>({out_features}) : new_array<T>({batch, out_features});
  auto h_next = unbatched ? new_array<T>({1, hidden}) : new_array<T>({1, batch, hidden});
  std::optional<py::array_t<T>> c_next;
  if (lstm) c_next = unbatched ? new_array<T>({1, hidden}) : new_array<T>({1, batch, hidden});
  auto compute = [&] {
    const SequenceShape shape{batch, 1, true};
    T* h_out = h_next.mutable_data();
    if constexpr (lstm)
      w.forward(x.data(), data_or_null(h), data_or_null(c), nullptr, shape, false, h_out, h_out, c_next->mutable_data());
    else
      w.forward(x.data(), data_or_null(h), nullptr, shape, false, h_out, h_out);
    if (head) head->forward(h_out, batch, y.mutable_data());
    else std::memcpy(y.mutable_data(), h_out, sizeof(T) * std::size_t(batch * hidden));
  };
  const double work = double(batch) * double(hidden) * double(Weights::gates) * double(input + hidden) +
                      double(batch) * double(hidden) * double(out_features);
  if (work > 1 << 18) {
    py::gil_scoped_release release;
    compute();
  } else {
    compute();
  }
  if constexpr (lstm) return py::make_tuple(std::move(y), py::make_tuple(std::move(h_next), std::move(*c_next)));
  return py::make_tuple(std::move(y), std::move(h_next));
}

py::object pack_lstm(py::handle W_x, py::handle W_h, py::handle b_x, py::handle b_h) {
  std::vector<NamedArray> weights = gated_arguments(W_x, W_h, b_x, b_h);
  index_t input, hidden;
  const bool is_double = read_gated_weights(weights, 4, "(i, f, g, o)", &input, &hidden);
  auto build = [&](auto zero) -> py::object {
    using T = decltype(zero);
    auto wx = to_c<T>(*weights[0].array), wh = to_c<T>(*weights[1].array);
    auto bx = cast_optional<T>(weights[2].array), bh = cast_optional<T>(weights[3].array);
    return py::cast(std::make_shared<LstmWeights<T>>(wx.data(), wh.data(), data_or_null(bx), data_or_null(bh),
                                                     input, hidden));
  };
  return is_double ? build(double{}) : build(float{});
}

py::object pack_gru(py::handle W_x, py::handle W_h, py::handle b_x, py::handle b_h, py::handle lbr_obj) {
  if (!py::isinstance<py::bool_>(lbr_obj) && !py::isinstance(lbr_obj, py::module_::import("numpy").attr("bool_")))
    type_error("linear_before_reset: expected a bool, got " +
               py::str(py::type::of(lbr_obj).attr("__name__")).cast<std::string>());
  const bool lbr = py::bool_(py::reinterpret_borrow<py::object>(lbr_obj));
  std::vector<NamedArray> weights = gated_arguments(W_x, W_h, b_x, b_h);
  index_t input, hidden;
  const bool is_double = read_gated_weights(weights, 3, "(r, z, n)", &input, &hidden);
  auto build = [&](auto zero) -> py::object {
    using T = decltype(zero);
    auto wx = to_c<T>(*weights[0].array), wh = to_c<T>(*weights[1].array);
    auto bx = cast_optional<T>(weights[2].array), bh = cast_optional<T>(weights[3].array);
    return py::cast(std::make_shared<GruWeights<T>>(wx.data(), wh.data(), data_or_null(bx), data_or_null(bh),
                                                    input, hidden, lbr));
  };
  return is_double ? build(double{}) : build(float{});
}

// ---------------------------------------------------------------- dense

py::object pack_dense(py::handle W_obj, py::handle b_obj) {
  std::vector<NamedArray> weights{{"W_o", as_numeric(W_obj, "W_o")}, {"b_o", optional_array(b_obj, "b_o")}};
  const bool is_double = weights_are_double(weights);
  const py::array& W = *weights[0].array;
  if (W.ndim() != 2)
    value_error("W_o: expected a 2-D array (output_size, in_features), got shape " + shape_of(W));
  const index_t out = W.shape(0), in = W.shape(1);
  if (weights[1].array) expect_shape(*weights[1].array, "b_o", {out}, "(output_size,) from W_o");
  auto build = [&](auto zero) -> py::object {
    using T = decltype(zero);
    auto w = to_c<T>(W);
    auto b = cast_optional<T>(weights[1].array);
    return py::cast(std::make_shared<DenseWeights<T>>(w.data(), data_or_null(b), out, in));
  };
  return is_double ? build(double{}) : build(float{});
}

// y (..., out) = x (..., in) W^T + b, any leading axes.
template <class T>
py::array_t<T> dense_forward(const DenseWeights<T>& w, py::handle x_obj) {
  py::array x_any = as_numeric(x_obj, "x");
  const index_t in = w.in_features();
  if (x_any.ndim() < 1 || x_any.shape(x_any.ndim() - 1) != in)
    value_error("x: expected shape (..., " + std::to_string(in) + "), got " + shape_of(x_any));
  auto x = to_c<T>(x_any);
  std::vector<py::ssize_t> shape(x.shape(), x.shape() + x.ndim());
  shape.back() = w.out_features();
  auto y = new_array<T>(shape);
  index_t rows = 1;
  for (py::ssize_t i = 0; i + 1 < x.ndim(); ++i) rows *= x.shape(i);
  {
    py::gil_scoped_release release;
    w.forward(x.data(), rows, y.mutable_data());
  }
  return y;
}

// (dW, db, dx) of y = x W^T + b, from x (..., in) and dy (..., out).
template <class T>
py::tuple dense_backward(const DenseWeights<T>& w, py::handle x_obj, py::handle dy_obj) {
  const index_t in = w.in_features(), out = w.out_features();
  py::array x_any = as_numeric(x_obj, "x");
  if (x_any.ndim() < 1 || x_any.shape(x_any.ndim() - 1) != in)
    value_error("x: expected shape (..., " + std::to_string(in) + "), got " + shape_of(x_any));
  std::vector<py::ssize_t> dy_shape(x_any.shape(), x_any.shape() + x_any.ndim());
  dy_shape.back() = out;
  auto dy = read_gradient<T>(dy_obj, "dy", dy_shape, "(x's leading axes, out_features)");
  if (!dy) type_error("dy: expected an array, got None");
  auto x = to_c<T>(x_any);
  index_t rows = 1;
  for (py::ssize_t i = 0; i + 1 < x.ndim(); ++i) rows *= x.shape(i);
  auto dW = new_array<T>({out, in});
  auto db = new_array<T>({out});
  auto dx = new_array<T>(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
  {
    py::gil_scoped_release release;
    w.backward(x.data(), dy->data(), rows, dW.mutable_data(), db.mutable_data(), dx.mutable_data());
  }
  return py::make_tuple(std::move(dW), std::move(db), std::move(dx));
}

// The naive kernel, for tests: x (rows, in), W (out, in), b (out,) or None.
py::array dense_reference_py(py::handle x_obj, py::handle W_obj, py::handle b_obj) {
  std::vector<NamedArray> weights{{"W", as_numeric(W_obj, "W")}, {"b", optional_array(b_obj, "b")}};
  const bool is_double = weights_are_double(weights);
  py::array x_any = as_numeric(x_obj, "x");
  const py::array& W = *weights[0].array;
  if (W.ndim() != 2) value_error("W: expected a 2-D array, got shape " + shape_of(W));
  if (x_any.ndim() != 2 || x_any.shape(1) != W.shape(1))
    value_error("x: expected shape (rows, " + std::to_string(W.shape(1)) + "), got " + shape_of(x_any));
  if (weights[1].array) expect_shape(*weights[1].array, "b", {index_t(W.shape(0))}, "(out_features,)");
  auto run = [&](auto zero) -> py::array {
    using T = decltype(zero);
    auto x = to_c<T>(x_any), w = to_c<T>(W);
    auto b = cast_optional<T>(weights[1].array);
    auto y = new_array<T>({x.shape(0), w.shape(0)});
    dense_reference(x.data(), x.shape(0), w.data(), data_or_null(b), w.shape(0), w.shape(1), y.mutable_data());
    return y;
  };
  return is_double ? run(double{}) : run(float{});
}

// The SIMD activation on a float32/float64 array, for accuracy tests.
py::array activation_py(py::handle name, py::handle x_obj) {
  const Activation f = parse_activation(name);
  std::vector<NamedArray> arrays{{"x", as_numeric(x_obj, "x")}};
  const bool is_double = weights_are_double(arrays);
  auto run = [&](auto zero) -> py::array {
    using T = decltype(zero);
    auto x = to_c<T>(*arrays[0].array);
    py::array_t<T> y(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
    activation(f, x.data(), y.mutable_data(), x.size());
    return y;
  };
  return is_double ? run(double{}) : run(float{});
}

// ---------------------------------------------------------------- classes

template <class T>
void bind_layers(py::module_& m, const char* suffix) {
  const std::string dtype = sizeof(T) == 4 ? "float32" : "float64";
  py::class_<ElmanCache<T>>(m, ("RnnCache" + std::string(suffix)).c_str(),
                            "What rnn_backward needs from a forward (opaque).");
  py::class_<ElmanWeights<T>, std::shared_ptr<ElmanWeights<T>>>(m, ("ElmanWeights" + std::string(suffix)).c_str(),
                              "Packed Elman RNN weights (made by pack_rnn).")
      .def_property_readonly("input_size", &ElmanWeights<T>::input_size)
      .def_property_readonly("hidden_size", &ElmanWeights<T>::hidden_size)
      .def_property_readonly("activation", [](const ElmanWeights<T>& w) { return activation_name(w.activation()); })
      .def_property_readonly("dtype", [dtype](const ElmanWeights<T>&) { return dtype; })
      .def("forward", &elman_forward<T>, py::arg("x"), py::arg("h0") = py::none(),
           py::arg("lengths") = py::none(), py::arg("batch_first") = true, py::arg("reverse") = false,
           py::arg("head") = py::none(),
           "(out, h_n): every hidden state (or the head's output at every valid step) and the final state.")
      .def("forward_cache", &elman_forward_cache<T>, py::arg("x"), py::arg("h0") = py::none(),
           py::arg("lengths") = py::none(), py::arg("batch_first") = true, py::arg("reverse") = false,
           "(h_seq, h_n, cache): the forward, keeping what rnn_backward needs.")
      .def("step", &elman_step<T>, py::arg("x_t"), py::arg("state") = py::none(), py::arg("head") = py::none(),
           "(y_t, h_t) for one time step.")
      .def("step_model", &elman_step_model<T>, py::arg("x_t"), py::arg("state") = py::none(),
           py::arg("head") = py::none(), "(y_t, state) for one time step, states shaped (1, B, H).");
  py::class_<LstmCache<T>>(m, ("LstmCache" + std::string(suffix)).c_str(),
                           "What lstm_backward needs from a forward (opaque).");
  py::class_<LstmWeights<T>, std::shared_ptr<LstmWeights<T>>>(m, ("LstmWeights" + std::string(suffix)).c_str(),
                                                             "Packed LSTM weights (made by pack_lstm).")
      .def_property_readonly("input_size", &LstmWeights<T>::input_size)
      .def_property_readonly("hidden_size", &LstmWeights<T>::hidden_size)
      .def_property_readonly("dtype", [dtype](const LstmWeights<T>&) { return dtype; })
      .def("forward", &lstm_forward<T>, py::arg("x"), py::arg("h0") = py::none(), py::arg("c0") = py::none(),
           py::arg("lengths") = py::none(), py::arg("batch_first") = true, py::arg("reverse") = false,
           "(h_seq, h_n, c_n).")
      .def("forward_cache", &lstm_forward_cache<T>, py::arg("x"), py::arg("h0") = py::none(),
           py::arg("c0") = py::none(), py::arg("lengths") = py::none(), py::arg("batch_first") = true,
           py::arg("reverse") = false, "(h_seq, h_n, c_n, cache): the forward, keeping what lstm_backward needs.")
      .def("step_model", &gated_step_model<T, LstmWeights<T>>, py::arg("x_t"), py::arg("state") = py::none(),
           py::arg("head") = py::none(), "(y_t, (h, c)) for one time step, states shaped (1, B, H).");
  py::class_<GruCache<T>>(m, ("GruCache" + std::string(suffix)).c_str(),
                          "What gru_backward needs from a forward (opaque).");
  py::class_<GruWeights<T>, std::shared_ptr<GruWeights<T>>>(m, ("GruWeights" + std::string(suffix)).c_str(),
                                                           "Packed GRU weights (made by pack_gru).")
      .def_property_readonly("input_size", &GruWeights<T>::input_size)
      .def_property_readonly("hidden_size", &GruWeights<T>::hidden_size)
      .def_property_readonly("linear_before_reset", &GruWeights<T>::linear_before_reset)
      .def_property_readonly("dtype", [dtype](const GruWeights<T>&) { return dtype; })
      .def("forward", &gru_forward<T>, py::arg("x"), py::arg("h0") = py::none(), py::arg("lengths") = py::none(),
           py::arg("batch_first") = true, py::arg("reverse") = false, "(h_seq, h_n).")
      .def("forward_cache", &gru_forward_cache<T>, py::arg("x"), py::arg("h0") = py::none(),
           py::arg("lengths") = py::none(), py::arg("batch_first") = true, py::arg("reverse") = false,
           "(h_seq, h_n, cache): the forward, keeping what gru_backward needs.")
      .def("step_model", &gated_step_model<T, GruWeights<T>>, py::arg("x_t"), py::arg("state") = py::none(),
           py::arg("head") = py::none(), "(y_t, h) for one time step, states shaped (1, B, H).");
  py::class_<DenseWeights<T>, std::shared_ptr<DenseWeights<T>>>(m, ("DenseWeights" + std::string(suffix)).c_str(),
                              "Packed dense-layer weights (made by pack_dense).")
      .def_property_readonly("in_features", &DenseWeights<T>::in_features)
      .def_property_readonly("out_features", &DenseWeights<T>::out_features)
      .def_property_readonly("dtype", [dtype](const DenseWeights<T>&) { return dtype; })
      .def("forward", &dense_forward<T>, py::arg("x"))
      .def("backward", &dense_backward<T>, py::arg("x"), py::arg("dy"), "(dW, db, dx) from x and dy.");
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
#ifdef _OPENMP
  info["openmp"] = _OPENMP;
#else
  info["openmp"] = py::none();
#endif
  info["num_threads"] = num_threads();
  return info;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "rnnext's C++ core. Use the public API in rnnext and rnnext.functional.";
  kernels();  // choose the instruction set now: a bad RNNEXT_FORCE_ISA fails the import

  bind_layers<float>(m, "32");
  bind_layers<double>(m, "64");
  m.def("pack_rnn", &pack_rnn, py::arg("W_x"), py::arg("W_h"), py::arg("b_x") = py::none(),
        py::arg("b_h") = py::none(), py::arg("activation") = "tanh",
        "Checks and packs Elman RNN weights; returns ElmanWeights32 or ElmanWeights64.");
  m.def("rnn_backward", &rnn_backward, py::arg("cache"), py::arg("dh_seq") = py::none(),
        py::arg("dh_n") = py::none(), "Backpropagation through time from a forward's cache.");
  m.def("pack_lstm", &pack_lstm, py::arg("W_x"), py::arg("W_h"), py::arg("b_x") = py::none(),
        py::arg("b_h") = py::none(), "Checks and packs LSTM weights; returns LstmWeights32 or LstmWeights64.");
  m.def("lstm_backward", &lstm_backward, py::arg("cache"), py::arg("dh_seq") = py::none(),
        py::arg("dh_n") = py::none(), py::arg("dc_n") = py::none(),
        "Backpropagation through time from an LSTM forward's cache.");
  m.def("pack_gru", &pack_gru, py::arg("W_x"), py::arg("W_h"), py::arg("b_x") = py::none(),
        py::arg("b_h") = py::none(), py::arg("linear_before_reset") = true,
        "Checks and packs GRU weights; returns GruWeights32 or GruWeights64.");
  m.def("gru_backward", &gru_backward, py::arg("cache"), py::arg("dh_seq") = py::none(),
        py::arg("dh_n") = py::none(), "Backpropagation through time from a GRU forward's cache.");
  m.def("pack_dense", &pack_dense, py::arg("W"), py::arg("b") = py::none(),
        "Checks and packs dense weights; returns DenseWeights32 or DenseWeights64.");
  m.def("dense_reference", &dense_reference_py, py::arg("x"), py::arg("W"), py::arg("b") = py::none());
  m.def("activation", &activation_py, py::arg("name"), py::arg("x"));
  m.def("set_num_threads", [](int n) {
    if (n < 1) value_error("set_num_threads: n must be a positive integer, got " + std::to_string(n));
    set_num_threads(n);
  }, py::arg("n"));
  m.def("get_num_threads", &num_threads);
  m.def("build_info", &build_info);
}
