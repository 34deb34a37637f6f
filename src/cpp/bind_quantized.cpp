// The binding of reduced-precision layers (quantized_layer.h): the model's
// quantize() hands over weights already quantized (and a file's are checked
// by rnnext.io before they get here); this checks dtypes and shapes again,
// so no call can make the core read past an array, and packs them.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <memory>
#include <optional>
#include <string>

#include "bind_args.h"
#include "kernels.h"
#include "quantized_layer.h"

namespace py = pybind11;
using namespace rnnext;
using namespace rnnext::binding;

namespace {

QuantKind parse_kind(const std::string& precision) {
  if (precision == "bfloat16") return QuantKind::bfloat16;
  if (precision == "int8") return QuantKind::int8;
  value_error("precision: expected 'bfloat16' or 'int8', got '" + precision + "'");
}

CellKind parse_cell(const std::string& cell) {
  if (cell == "rnn") return CellKind::rnn;
  if (cell == "lstm") return CellKind::lstm;
  if (cell == "gru") return CellKind::gru;
  value_error("cell: expected 'rnn', 'lstm' or 'gru', got '" + cell + "'");
}

// A C-contiguous array of exactly dtype E and shape dims, or ValueError naming it.
template <class E>
carray<E> exact(py::handle obj, const std::string& name, std::initializer_list<index_t> dims) {
  if (!py::isinstance<py::array>(obj) || !py::reinterpret_borrow<py::array>(obj).dtype().equal(py::dtype::of<E>()))
    type_error(name + ": expected an array of dtype " + py::str(py::dtype::of<E>()).cast<std::string>());
  carray<E> a = py::reinterpret_borrow<py::array>(obj).cast<carray<E>>();
  expect_shape(a, name, dims, "from the layer's sizes");
  return a;
}

std::shared_ptr<Layer<float>> pack_quantized(const std::string& cell_name, const std::string& precision,
                                             py::handle W_x, py::handle W_x_scale, py::handle W_h,
                                             py::handle W_h_scale, py::handle b_x, py::handle b_h,
                                             index_t input, index_t hidden, py::handle activation,
                                             bool linear_before_reset) {
  const CellKind cell = parse_cell(cell_name);
  const QuantKind kind = parse_kind(precision);
  const index_t G = cell == CellKind::lstm ? 4 : cell == CellKind::gru ? 3 : 1;
  if (input < 1 || hidden < 1) value_error("input and hidden sizes must be >= 1");
  if (kind == QuantKind::int8 && (input > kInt8MaxInputs || hidden > kInt8MaxInputs))
    value_error("int8: input_size and hidden_size must be at most 65536 (the int32 sums could overflow)");
  const index_t rows = checked_mul(G, hidden);
  checked_mul(rows, input);
  checked_mul(rows, hidden);
  std::optional<carray<std::int8_t>> x8, h8;
  std::optional<carray<std::uint16_t>> x16, h16;
  std::optional<carray<float>> xs, hs;
  QuantizedWeight wx{}, wh{};
  if (kind == QuantKind::int8) {
    x8 = exact<std::int8_t>(W_x, "W_x", {rows, input});
    h8 = exact<std::int8_t>(W_h, "W_h", {rows, hidden});
    xs = exact<float>(W_x_scale, "W_x_scale", {rows});
    hs = exact<float>(W_h_scale, "W_h_scale", {rows});
    wx = {x8->data(), xs->data()};
    wh = {h8->data(), hs->data()};
  } else {
    x16 = exact<std::uint16_t>(W_x, "W_x", {rows, input});
    h16 = exact<std::uint16_t>(W_h, "W_h", {rows, hidden});
    wx = {x16->data(), nullptr};
    wh = {h16->data(), nullptr};
  }
  std::optional<carray<float>> bx, bh;
  if (!is_none(b_x)) bx = exact<float>(b_x, "b_x", {rows});
  if (!is_none(b_h)) bh = exact<float>(b_h, "b_h", {rows});
  const Activation f = cell == CellKind::rnn ? parse_activation(activation) : Activation::tanh;
  py::gil_scoped_release release;
  return std::make_shared<QuantizedLayer>(cell, kind, wx, wh, bx ? bx->data() : nullptr, bh ? bh->data() : nullptr,
                                          input, hidden, f, linear_before_reset);
}

}  // namespace

void bind_quantized(py::module_& m) {
  m.def("pack_quantized", &pack_quantized, py::arg("cell"), py::arg("precision"), py::arg("W_x"),
        py::arg("W_x_scale"), py::arg("W_h"), py::arg("W_h_scale"), py::arg("b_x"), py::arg("b_h"),
        py::arg("input_size"), py::arg("hidden_size"), py::arg("activation") = "tanh",
        py::arg("linear_before_reset") = true,
        "Packs one layer-direction's quantized weights (int8 with float32 row scales, or bfloat16 bits as "
        "uint16) as a Layer32 for inference.");
  m.def("quant_path", [](const std::string& precision) { return std::string(quant_path(parse_kind(precision))); },
        py::arg("precision"), "The instruction set running a precision's products.");
}
