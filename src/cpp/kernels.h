// The interface between the instruction-set independent drivers and the
// kernels compiled once per instruction set (kernels_<isa>.cpp).
// Arguments are plain data; a kernel call never allocates.
#pragma once

#include "common.h"
#include "packing.h"
#include "phase_claims.h"
#include "quant_packing.h"
#include "sequence.h"

namespace rnnext {

// Dense layer on m rows:  c[r, :] = a[r, :] · W^T + bias  (or c += a W^T).
// With a_step > 1, "row" r of A is column r of a row-major matrix.
//   a: rows of w.k elements, row r at a + r*lda
//   c: rows of ldc elements; n_store columns are written (w.n, or the padded
//      width when c is a padded workspace)
// W: the weights' view, PackedView<T> or (float32 rows, reduced-precision
// weights, inference only) QuantView; likewise in the forward Args below.
template <class T, class W = PackedView<T>>
struct DenseArgs {
  const T* a;
  index_t lda;
  index_t m;
  W w;
  const T* bias;  // padded to w.panels * NR, or null
  T* c;
  index_t ldc;
  index_t n_store;
  bool accumulate = false;  // c += a W^T (bias ignored): a later block of a long reduction
  index_t a_step = 1;       // between consecutive elements of an A row (lda for A^T)
};

// What every cell's time loop shares: which sequences and unit blocks one
// thread computes, over how many steps, in which direction, and how the
// threads share each step's units when they share the rows.
struct TimeLoop {
  const index_t* lengths;  // (B,), or null: every sequence has `steps` steps
  index_t batch_begin, batch_end;
  index_t panel_begin, panel_end;  // unit blocks: panels of the hidden state
  index_t steps, hidden_size;
  index_t h_stride_b, h_stride_t;  // h_seq[b, t, :] at h_seq + b*h_stride_b + t*h_stride_t
  bool reverse;
  // Set when threads share the rows: each phase's unit blocks are claimed
  // piece by piece (phase_claims.h); null: this thread owns its panels.
  PhaseClaims* claims;

  // The steps of sequence b, and the time its step s reads (from its end
  // when reversed).
  index_t length(index_t b) const { return lengths ? lengths[b] : steps; }
  index_t time_of(index_t b, index_t s) const { return reverse ? length(b) - 1 - s : s; }
  // Where step t of sequence b is: its h_seq row's offset, and its row in the
  // sequence-major per-step workspaces (input projection, gates, dz).
  index_t offset(index_t b, index_t t) const { return b * h_stride_b + t * h_stride_t; }
  index_t row(index_t b, index_t t) const { return b * steps + t; }
};

// Every row and unit block of a batch laid out as `shape`.
inline TimeLoop whole_batch(SequenceShape shape, const index_t* lengths, index_t blocks, index_t hidden,
                            bool reverse) {
  return {lengths, 0, shape.batch, 0, blocks, shape.steps, hidden, shape.stride_b(hidden), shape.stride_t(hidden),
          reverse, nullptr};
}

// Elman recurrence h_t = f(xproj_t + h_{t-1} W_h^T) for the batch rows
// [batch_begin, batch_end) and the hidden units of panels [panel_begin,
// panel_end): one thread's share, all steps. xproj_t = x_t W_x^T + b is
// computed before, for every step at once.
//   h_seq[b, t, :] at h_seq + b*h_stride_b + t*h_stride_t      (hidden_size)
//   h0, h_n        (B, hidden_size) rows; h0 null means zeros
//   xproj          row (b, t) at (b*steps + t) * padded hidden
// Steps past lengths[b] are not touched (the driver zeroes them).
template <class T, class W = PackedView<T>>
struct ElmanArgs : TimeLoop {
  const T* h0;
  T* h_seq;
  T* h_n;
  W w_h;
  const T* zeros;  // hidden_size zeros, the state before step 0 without h0
  const T* xproj;
  Activation activation;
};

// Backpropagation through time for batch rows [batch_begin, batch_end): the
// sequential part only. Walking the forward's steps backwards,
//   dz_t      = (dh_seq[t] + dh_{t}) * f'(z_t)       (f' from h_t)
//   dh_{t-1}  = dz_t W_h                              (one product per step)
// writes dz rows (b*steps + t) * padded hidden, and dh0 rows (B, H). The
// weight and input gradients are single products over all rows afterwards.
template <class T>
struct ElmanBackwardArgs : TimeLoop {
  const T* h_seq;  // forward states, layout of ElmanArgs::h_seq
  const T* dh_seq;  // same layout as h_seq, or null (zero)
  const T* dh_n;    // (B, H), or null (zero)
  T* dz;
  T* dh0;
  PackedView<T> w_h_t;  // W_h^T packed: y = dz W_h
  Activation activation;
};

// The gated cells below use the gate-interleaved layout of gate_layout.h:
// Hp = hidden units rounded up to whole panels, a gate row holds G*Hp values,
// and panel_begin/panel_end count unit blocks (panels of the hidden state).

// LSTM (gates i, f, g, o; PyTorch's equations) for one thread's share of
// all steps:
//   c_t = f * c_{t-1} + i * g,   h_t = o * tanh(c_t).
// The step's product h_{t-1} W_h^T delivers the four gate panels of a unit
// block one after the other; the epilogue completes the block at its last.
template <class T, class W = PackedView<T>>
struct LstmArgs : TimeLoop {
  const T* h0;  // (B, H), or null (zeros)
  const T* c0;  // (B, H), or null (zeros)
  T* h_seq;
  T* h_n;
  T* c_n;
  T* gates;  // row (b*steps + t) * 4Hp: x_t W_x^T + b in, activated gates out
  T* c_seq;  // row (b*steps + t) * Hp: c_t, kept for backward; or null,
  T* c_state;  // ... and then (B, Hp): the running cell state
  W w_h;              // W_h interleaved: 4Hp outputs, k = H
  const T* zeros;     // Hp zeros
};

// LSTM backpropagation through time, the sequential part: walking the steps
// backwards, the gate gradients dz_t from dh_t and the carried dc, and
// dh_{t-1} = dz_t W_h (one product per step, the next step's cell backward
// fused into its epilogue). Writes dz (gate layout), dh0 and dc0.
template <class T>
struct LstmBackwardArgs : TimeLoop {
  const T* h_seq;
  const T* dh_seq;  // layout of h_seq, or null
  const T* dh_n;    // (B, H), or null
  const T* dc_n;    // (B, H), or null
  const T* gates;   // the forward's activated gates
  const T* c_seq;   // the forward's c_t rows
  const T* c0;      // (B, H), or null
  const T* zeros;   // Hp zeros
  T* dz;            // gate layout: gradients of the gates' pre-activations
  T* dc;            // (B, Hp) workspace: the carried cell-state gradient
  T* dh0;           // (B, H)
  T* dc0;           // (B, H)
  PackedView<T> w_h_t;  // (W_h interleaved)^T: H outputs, k = 4Hp
};

// LSTM with projections (PyTorch's proj_size = P): the cell as above gives
// m_t = o * tanh(c_t) (H units), and the state is h_t = m_t W_hr^T (P
// units), which the next step's product reads (W_h: 4Hp outputs, k = P).
// Two products per step, the second over all of m_t: threads own whole
// sequences (batch rows). h rows (h_seq, h0, h_n) are P wide, c rows H.
template <class T>
struct LstmProjArgs : TimeLoop {
  const T* h0;  // (B, P), or null (zeros)
  const T* c0;  // (B, H), or null (zeros)
  T* h_seq;     // P wide, TimeLoop's strides
  T* h_n;       // (B, P)
  T* c_n;       // (B, H)
  T* gates;     // as LstmArgs
  T* c_seq;     // as LstmArgs, or null ...
  T* c_state;   // ... and then (B, Hp)
  T* m_seq;     // row (b*steps + t) * Hp: m_t, kept for backward; or null ...
  T* m_state;   // ... and then (B, Hp)
  PackedView<T> w_h;   // W_h interleaved: 4Hp outputs, k = P
  PackedView<T> w_hr;  // P outputs, k = H
  const T* zeros;      // max(Hp, P) zeros
  index_t proj;
};

// Its backpropagation through time, the sequential part. Walking the steps
// backwards: dh_t = dh_seq[t] (+ dh_n at the last step, + dz_{t+1} W_h
// otherwise), kept in dh_rows for dW_hr; dm_t = dh_t W_hr; the cell backward
// from dm_t and the carried dc gives dz_t. Writes dz, dh_rows, dh0, dc0.
template <class T>
struct LstmProjBackwardArgs : TimeLoop {
  const T* h_seq;   // the forward's states (P wide; the thread plan reads its element size)
  const T* dh_seq;  // layout of h_seq (P wide), or null
  const T* dh_n;    // (B, P), or null
  const T* dc_n;    // (B, H), or null
  const T* gates;   // the forward's activated gates
  const T* c_seq;   // the forward's c_t rows
  const T* c0;      // (B, H), or null
  const T* zeros;   // max(Hp, P) zeros
  T* dz;            // gate layout
  T* dh_rows;       // row (b*steps + t) * P: dh_t
  T* dc;            // (B, Hp) workspace
  T* dh0;           // (B, P)
  T* dc0;           // (B, H)
  PackedView<T> w_h_t;   // (W_h interleaved)^T: P outputs, k = 4Hp
  PackedView<T> w_hr_t;  // W_hr^T: H outputs, k = P
  index_t proj;
};

// GRU (gates r, z, n; PyTorch's equations), h_t = (1 - z) * n + z * h_{t-1}.
// linear_before_reset: n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), one
// product per step. Otherwise (ONNX's default) n = tanh(W_in x + b_in +
// W_hn (r * h) + b_hn): a product for r and z, then one for n.
template <class T, class W = PackedView<T>>
struct GruArgs : TimeLoop {
  const T* h0;
  T* h_seq;
  T* h_n;
  T* gates;  // row (b*steps + t) * 3Hp: x_t W_x^T + b in; r, z, n out
  T* hn;     // row (b*steps + t) * Hp: W_hn h + b_hn (linear_before_reset),
             // else r * h_{t-1}
  const T* b_hn;  // Hp (linear_before_reset; otherwise b_hn is in the projection bias)
  W w_h;   // linear_before_reset: W_h interleaved (3Hp outputs);
           // else [W_hr; W_hz] interleaved (2Hp outputs)
  W w_hn;  // W_hn (Hp outputs), when not linear_before_reset
  const T* zeros;
  bool linear_before_reset;
  bool keep;  // training: activations and hn rows are written for backward
};

// GRU backpropagation through time, the sequential part. Writes dz (input
// side: gradients of the r, z, n pre-activations, gate layout), dz_h (the
// recurrent side: [dr, dz, dn * r] in gate layout with linear_before_reset,
// else [dr, dz] 2Hp wide), dn (Hp, not linear_before_reset: the gradient of
// W_hn (r * h)), and dh0.
template <class T>
struct GruBackwardArgs : TimeLoop {
  const T* h_seq;
  const T* h0;
  const T* zeros;
  const T* dh_seq;
  const T* dh_n;
  const T* gates;  // the forward's r, z, n
  const T* hn;     // the forward's hn rows
  T* dz;
  T* dz_h;
  T* dn;
  T* direct;  // (B, Hp) workspace: z * dh, carried to the previous step
  T* dh0;
  PackedView<T> w_h_t;   // (the w_h of GruArgs)^T: H outputs
  PackedView<T> w_hn_t;  // W_hn^T: H outputs, k = Hp (not linear_before_reset)
  bool linear_before_reset;
};

// Elementwise activation y = f(x) over n values, exposed for accuracy tests.
template <class T>
struct ActivationArgs {
  Activation f;
  const T* x;
  T* y;
  index_t n;
};

// Every kernel, registered once: X(name, Args) says that each instruction set
// implements name##_kernel<T>(const Args<T>&) for float and double (in the
// cell headers kernels_impl.h includes), and that drivers call it as name(args).
#define RNNEXT_KERNELS(X)                  \
  X(dense, DenseArgs)                      \
  X(activation, ActivationArgs)            \
  X(elman_forward, ElmanArgs)              \
  X(elman_backward, ElmanBackwardArgs)     \
  X(lstm_forward, LstmArgs)                \
  X(lstm_backward, LstmBackwardArgs)       \
  X(lstm_proj_forward, LstmProjArgs)       \
  X(lstm_proj_backward, LstmProjBackwardArgs) \
  X(gru_forward, GruArgs)                  \
  X(gru_backward, GruBackwardArgs)

struct KernelTable {
  const char* isa;
#define RNNEXT_TABLE_FIELD(name, Args)           \
  void (*name##_f32)(const Args<float>&);      \
  void (*name##_f64)(const Args<double>&);
  RNNEXT_KERNELS(RNNEXT_TABLE_FIELD)
#undef RNNEXT_TABLE_FIELD
};

// The table for the best instruction set this CPU supports, or the one named
// by RNNEXT_FORCE_ISA; chosen once, on first use.
const KernelTable& kernels();
// Instruction sets this build has kernels for and this CPU can run.
const char* const* available_isas();

#define RNNEXT_WRAPPER(name, Args)                                              \
  inline void name(const Args<float>& a) { kernels().name##_f32(a); }          \
  inline void name(const Args<double>& a) { kernels().name##_f64(a); }
RNNEXT_KERNELS(RNNEXT_WRAPPER)
#undef RNNEXT_WRAPPER

// The forward kernels again, for float32 rows and reduced-precision weights
// (quant_gemm.h), each instruction set's own or emulated: X(name, Args) says
// that each implements name##_kernel<float, QuantView>.
#define RNNEXT_QUANT_KERNELS(X) \
  X(dense, DenseArgs)           \
  X(elman_forward, ElmanArgs)   \
  X(lstm_forward, LstmArgs)     \
  X(gru_forward, GruArgs)

struct QuantKernelTable {
  const char* isa;
  // The instruction set doing each precision's products: a native one
  // ("avx512_bf16", "avx512_vnni") or "<isa>-emulated".
  const char* bfloat16_path;
  const char* int8_path;
#define RNNEXT_QUANT_FIELD(name, Args) void (*name)(const Args<float, QuantView>&);
  RNNEXT_QUANT_KERNELS(RNNEXT_QUANT_FIELD)
#undef RNNEXT_QUANT_FIELD
};

// The best table for one precision on this CPU (or, with RNNEXT_FORCE_ISA,
// that instruction set's emulation); chosen once per precision.
const QuantKernelTable& quant_kernels(QuantKind kind);
// The name of the path quant_kernels(kind) runs, for build_info.
const char* quant_path(QuantKind kind);

#define RNNEXT_QUANT_WRAPPER(name, Args) \
  inline void name(const Args<float, QuantView>& a) { quant_kernels(quant_kind(a)).name(a); }
inline QuantKind quant_kind(const DenseArgs<float, QuantView>& a) { return a.w.kind; }
inline QuantKind quant_kind(const ElmanArgs<float, QuantView>& a) { return a.w_h.kind; }
inline QuantKind quant_kind(const LstmArgs<float, QuantView>& a) { return a.w_h.kind; }
inline QuantKind quant_kind(const GruArgs<float, QuantView>& a) { return a.w_h.kind; }
RNNEXT_QUANT_KERNELS(RNNEXT_QUANT_WRAPPER)
#undef RNNEXT_QUANT_WRAPPER

template <class T>
void activation(Activation f, const T* x, T* y, index_t n) {
  activation(ActivationArgs<T>{f, x, y, n});
}

}  // namespace rnnext
