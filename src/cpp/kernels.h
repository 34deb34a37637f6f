// The interface between the instruction-set independent drivers and the
// kernels compiled once per instruction set (kernels_<isa>.cpp).
// Arguments are plain data; a kernel call never allocates.
#pragma once

#include "common.h"
#include "packing.h"

namespace rnnext {

// Dense layer on m rows:  c[r, :] = a[r, :] · W^T + bias  (or c += a W^T).
// With a_step > 1, "row" r of A is column r of a row-major matrix.
//   a: rows of w.k elements, row r at a + r*lda
//   c: rows of ldc elements; n_store columns are written (w.n, or the padded
//      width when c is a padded workspace)
template <class T>
struct DenseArgs {
  const T* a;
  index_t lda;
  index_t m;
  PackedView<T> w;
  const T* bias;  // padded to w.panels * NR, or null
  T* c;
  index_t ldc;
  index_t n_store;
  bool accumulate = false;  // c += a W^T (bias ignored): a later block of a long reduction
  index_t a_step = 1;       // between consecutive elements of an A row (lda for A^T)
};

// Elman recurrence h_t = f(xproj_t + h_{t-1} W_h^T) for the batch rows
// [batch_begin, batch_end) and the hidden units of panels [panel_begin,
// panel_end): one thread's share, all steps. xproj_t = x_t W_x^T + b is
// computed before, for every step at once.
//   h_seq[b, t, :] at h_seq + b*h_stride_b + t*h_stride_t      (hidden_size)
//   h0, h_n        (B, hidden_size) rows; h0 null means zeros
//   xproj          row (b, t) at (b*steps + t) * padded hidden
// Steps past lengths[b] are not touched (the driver zeroes them).
template <class T>
struct ElmanArgs {
  const T* h0;
  T* h_seq;
  index_t h_stride_b, h_stride_t;
  T* h_n;
  const index_t* lengths;  // (B,), or null: every sequence has `steps` steps
  index_t batch_begin, batch_end;
  index_t panel_begin, panel_end;
  index_t steps, hidden_size;
  PackedView<T> w_h;
  const T* zeros;  // hidden_size zeros, the state before step 0 without h0
  const T* xproj;
  Activation activation;
  bool reverse;
  // Called after every step when threads share the rows (hidden-unit slices).
  void (*barrier)(void*);
  void* barrier_state;
};

// Backpropagation through time for batch rows [batch_begin, batch_end): the
// sequential part only. Walking the forward's steps backwards,
//   dz_t      = (dh_seq[t] + dh_{t}) * f'(z_t)       (f' from h_t)
//   dh_{t-1}  = dz_t W_h                              (one product per step)
// writes dz rows (b*steps + t) * padded hidden, and dh0 rows (B, H). The
// weight and input gradients are single products over all rows afterwards.
template <class T>
struct ElmanBackwardArgs {
  const T* h_seq;  // forward states, layout of ElmanArgs::h_seq
  index_t h_stride_b, h_stride_t;
  const T* dh_seq;  // same layout as h_seq, or null (zero)
  const T* dh_n;    // (B, H), or null (zero)
  T* dz;
  T* dh0;
  const index_t* lengths;
  index_t batch_begin, batch_end;
  index_t panel_begin, panel_end;
  index_t steps, hidden_size;
  PackedView<T> w_h_t;  // W_h^T packed: y = dz W_h
  Activation activation;
  bool reverse;
  void (*barrier)(void*);  // as in ElmanArgs
  void* barrier_state;
};

struct KernelTable {
  const char* isa;
  void (*dense_f32)(const DenseArgs<float>&);
  void (*dense_f64)(const DenseArgs<double>&);
  void (*elman_forward_f32)(const ElmanArgs<float>&);
  void (*elman_forward_f64)(const ElmanArgs<double>&);
  void (*elman_backward_f32)(const ElmanBackwardArgs<float>&);
  void (*elman_backward_f64)(const ElmanBackwardArgs<double>&);
  // Elementwise activation, exposed for accuracy tests.
  void (*activation_f32)(Activation, const float*, float*, index_t);
  void (*activation_f64)(Activation, const double*, double*, index_t);
};

// The table for the best instruction set this CPU supports, or the one named
// by RNNEXT_FORCE_ISA; chosen once, on first use.
const KernelTable& kernels();
// Instruction sets this build has kernels for and this CPU can run.
const char* const* available_isas();

inline void dense(const DenseArgs<float>& a) { kernels().dense_f32(a); }
inline void dense(const DenseArgs<double>& a) { kernels().dense_f64(a); }
inline void elman_forward_slice(const ElmanArgs<float>& a) { kernels().elman_forward_f32(a); }
inline void elman_forward_slice(const ElmanArgs<double>& a) { kernels().elman_forward_f64(a); }
inline void elman_backward_slice(const ElmanBackwardArgs<float>& a) { kernels().elman_backward_f32(a); }
inline void elman_backward_slice(const ElmanBackwardArgs<double>& a) { kernels().elman_backward_f64(a); }
inline void activation(Activation f, const float* x, float* y, index_t n) {
  kernels().activation_f32(f, x, y, n);
}
inline void activation(Activation f, const double* x, double* y, index_t n) {
  kernels().activation_f64(f, x, y, n);
}

}  // namespace rnnext
