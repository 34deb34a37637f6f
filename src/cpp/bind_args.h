// Argument conversion and checking for the Python binding (bindings.cpp and
// bind_dense.cpp, its only includers): NumPy arrays in, C-contiguous arrays of the
// computation's type out, and every user-facing error message about an
// argument's type, dtype, shape or value.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <optional>
#include <string>
#include <vector>

#include "common.h"
#include "dense.h"
#include "sequence.h"

namespace rnnext {
namespace binding {

namespace py = pybind11;

template <class T>
using carray = py::array_t<T, py::array::c_style | py::array::forcecast>;

[[noreturn]] inline void type_error(const std::string& message) { throw py::type_error(message); }
[[noreturn]] inline void value_error(const std::string& message) { throw py::value_error(message); }

inline std::string shape_of(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    s += std::to_string(a.shape(i));
    if (a.ndim() == 1 || i + 1 < a.ndim()) s += a.ndim() == 1 ? "," : ", ";
  }
  return s + ")";
}

inline std::string shape_str(std::initializer_list<index_t> dims) {
  std::string s = "(";
  std::size_t i = 0;
  for (index_t d : dims) {
    s += std::to_string(d);
    if (dims.size() == 1 || ++i < dims.size()) s += dims.size() == 1 ? "," : ", ";
  }
  return s + ")";
}

inline std::string dtype_of(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

inline bool is_none(py::handle h) { return !h || h.is_none(); }

// np.asarray(obj), refusing anything that is not real numbers (complex,
// object, strings, dates): those are TypeErrors naming the argument. A
// conversion that runs out of memory (a list of huge views) stays a
// MemoryError, and KeyboardInterrupt and the like pass through; the converting
// constructor keeps the error where py::array::ensure would clear it.
inline py::array as_numeric(py::handle obj, const std::string& name) {
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

inline void expect_shape(const py::array& a, const std::string& name, std::initializer_list<index_t> dims,
                  const std::string& meaning) {
  bool ok = a.ndim() == py::ssize_t(dims.size());
  py::ssize_t i = 0;
  for (index_t d : dims) ok = ok && a.shape(i++) == d;
  if (!ok)
    value_error(name + ": expected shape " + shape_str(dims) + " " + meaning + ", got " + shape_of(a));
}

inline Activation parse_activation(py::handle obj) {
  if (!py::isinstance<py::str>(obj))
    type_error("activation: expected one of 'tanh', 'sigmoid', 'relu', got " +
               py::str(py::type::of(obj).attr("__name__")).cast<std::string>());
  const std::string name = obj.cast<std::string>();
  if (name == "tanh") return Activation::tanh;
  if (name == "sigmoid") return Activation::sigmoid;
  if (name == "relu") return Activation::relu;
  value_error("activation: expected one of 'tanh', 'sigmoid', 'relu', got '" + name + "'");
}

// Weights share one floating dtype, float32 or float64, checked before any
// shape: that dtype decides the precision of the whole computation.
struct NamedArray {
  const char* name;
  std::optional<py::array> array;  // nullopt when the argument was None
};

// The precisions the core computes in. Adding one means a value here and a
// case in with_precision and precision_of, nothing else in the binding.
enum class Precision { float32, float64 };

// f(T{}) with T the C++ type of precision p.
template <class F>
decltype(auto) with_precision(Precision p, F&& f) {
  if (p == Precision::float64) return f(double{});
  return f(float{});
}

// The precision of a bound object of class template C (C<float>, C<double>),
// or nullopt when obj is not one of them.
template <template <class> class C>
std::optional<Precision> precision_of(py::handle obj) {
  if (py::isinstance<C<float>>(obj)) return Precision::float32;
  if (py::isinstance<C<double>>(obj)) return Precision::float64;
  return std::nullopt;
}

inline Precision weights_precision(const std::vector<NamedArray>& weights) {
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
  return first != nullptr && first->array->dtype().itemsize() == 8 ? Precision::float64 : Precision::float32;
}

inline std::optional<py::array> optional_array(py::handle obj, const char* name) {
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

inline SequenceInput read_sequence(py::handle x_obj, index_t input_size, bool batch_first) {
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
inline std::optional<py::array> read_state(py::handle obj, const char* name, const SequenceInput& in,
                                    index_t hidden, const std::string& size = "hidden_size") {
  if (is_none(obj)) return std::nullopt;
  py::array h = as_numeric(obj, name);
  if (in.unbatched) expect_shape(h, name, {hidden}, "(" + size + ",) for an unbatched x");
  else expect_shape(h, name, {in.shape.batch, hidden}, "(B, " + size + ")");
  return h;
}

// lengths: integers, (B,) (a scalar or (1,) for an unbatched x), 1 <= l <= T.
inline std::vector<index_t> read_lengths(py::handle obj, const SequenceInput& in) {
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
inline std::vector<py::ssize_t> sequence_shape(const SequenceInput& in, index_t features) {
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


// Registers the dense layer's classes and functions (bind_dense.cpp).
void bind_dense(py::module_& m);

}  // namespace binding
}  // namespace rnnext
