// The Python binding of the dense layer (the models' output head) and of
// the kernels' reference and activation entry points for tests; registered
// by bindings.cpp's module through bind_dense.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <memory>
#include <string>
#include <vector>

#include "bind_args.h"
#include "dense.h"
#include "kernels.h"

namespace py = pybind11;

namespace rnnext {
namespace binding {
namespace {

py::object pack_dense(py::handle W_obj, py::handle b_obj) {
  std::vector<NamedArray> weights{{"W_o", as_numeric(W_obj, "W_o")}, {"b_o", optional_array(b_obj, "b_o")}};
  const Precision precision = weights_precision(weights);
  const py::array& W = *weights[0].array;
  if (W.ndim() != 2)
    value_error("W_o: expected a 2-D array (output_size, in_features), got shape " + shape_of(W));
  const index_t out = W.shape(0), in = W.shape(1);
  if (weights[1].array) expect_shape(*weights[1].array, "b_o", {out}, "(output_size,) from W_o");
  return with_precision(precision, [&](auto zero) -> py::object {
    using T = decltype(zero);
    auto w = to_c<T>(W);
    auto b = cast_optional<T>(weights[1].array);
    return py::cast(std::make_shared<DenseWeights<T>>(w.data(), data_or_null(b), out, in));
  });
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
  const Precision precision = weights_precision(weights);
  py::array x_any = as_numeric(x_obj, "x");
  const py::array& W = *weights[0].array;
  if (W.ndim() != 2) value_error("W: expected a 2-D array, got shape " + shape_of(W));
  if (x_any.ndim() != 2 || x_any.shape(1) != W.shape(1))
    value_error("x: expected shape (rows, " + std::to_string(W.shape(1)) + "), got " + shape_of(x_any));
  if (weights[1].array) expect_shape(*weights[1].array, "b", {index_t(W.shape(0))}, "(out_features,)");
  return with_precision(precision, [&](auto zero) -> py::array {
    using T = decltype(zero);
    auto x = to_c<T>(x_any), w = to_c<T>(W);
    auto b = cast_optional<T>(weights[1].array);
    auto y = new_array<T>({x.shape(0), w.shape(0)});
    dense_reference(x.data(), x.shape(0), w.data(), data_or_null(b), w.shape(0), w.shape(1), y.mutable_data());
    return y;
  });
}

// The SIMD activation on a float32/float64 array, for accuracy tests.
py::array activation_py(py::handle name, py::handle x_obj) {
  const Activation f = parse_activation(name);
  std::vector<NamedArray> arrays{{"x", as_numeric(x_obj, "x")}};
  const Precision precision = weights_precision(arrays);
  return with_precision(precision, [&](auto zero) -> py::array {
    using T = decltype(zero);
    auto x = to_c<T>(*arrays[0].array);
    py::array_t<T> y(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
    activation(f, x.data(), y.mutable_data(), x.size());
    return y;
  });
}

template <class T>
void bind_dense_class(py::module_& m, const char* suffix) {
  const std::string dtype = sizeof(T) == 4 ? "float32" : "float64";
  py::class_<DenseWeights<T>, std::shared_ptr<DenseWeights<T>>>(m, ("DenseWeights" + std::string(suffix)).c_str(),
                              "Packed dense-layer weights (made by pack_dense).")
      .def_property_readonly("in_features", &DenseWeights<T>::in_features)
      .def_property_readonly("out_features", &DenseWeights<T>::out_features)
      .def_property_readonly("dtype", [dtype](const DenseWeights<T>&) { return dtype; })
      .def("forward", &dense_forward<T>, py::arg("x"))
      .def("backward", &dense_backward<T>, py::arg("x"), py::arg("dy"), "(dW, db, dx) from x and dy.");
}

}  // namespace

void bind_dense(py::module_& m) {
  bind_dense_class<float>(m, "32");
  bind_dense_class<double>(m, "64");
  m.def("pack_dense", &pack_dense, py::arg("W"), py::arg("b") = py::none(),
        "Checks and packs dense weights; returns DenseWeights32 or DenseWeights64.");
  m.def("dense_reference", &dense_reference_py, py::arg("x"), py::arg("W"), py::arg("b") = py::none());
  m.def("activation", &activation_py, py::arg("name"), py::arg("x"));
}

}  // namespace binding
}  // namespace rnnext
