// Vectorised activations and their building block exp, accurate to a few ulp
// over the whole range, with IEEE behaviour kept: NaN propagates, tanh and
// sigmoid saturate exactly to +-1 / 0 / 1 without overflow, large inputs give
// Inf where the function does. Never compiled with -ffast-math.
// Included from kernels_impl.h inside an instruction-set namespace.
#pragma once

#include "simd.h"

// exp(x), float. Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, then
// Cephes' degree-6 polynomial (about 1 ulp). 2^n is applied as two factors so
// that results down to the smallest denormal and up to Inf are formed
// correctly without integer overflow.
RNNEXT_INLINE simd<float>::V exp_vec(simd<float>::V x) {
  using V = simd<float>::V;
  using I = simd<float>::I;
  using U = simd<float>::U;
  const V lo = splat(-104.0f), hi = splat(89.0f);
  x = select(x < lo, lo, x);  // comparisons are false for NaN: NaN stays NaN
  x = select(x > hi, hi, x);
  // Round x / ln2 to the nearest integer with the 1.5 * 2^23 trick: exact,
  // branch-free, and no float-to-int conversion of NaN.
  const V magic = splat(12582912.0f);
  V t = x * 1.44269504088896341f + magic;
  V n = t - magic;
  V r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  V p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  U ni = (U)t - (U)magic;               // n as an integer, two's complement
  U n1 = (U)((I)ni >> 1);               // n = n1 + n2, each in [-75, 64]
  U n2 = ni - n1;
  V s1 = (V)((n1 + 127u) << 23);
  V s2 = (V)((n2 + 127u) << 23);
  return p * s1 * s2;
}

// exp(x), double. Same scheme, Taylor polynomial of degree 13 on
// |r| <= ln2/2 (truncation error below 1e-17 relative).
RNNEXT_INLINE simd<double>::V exp_vec(simd<double>::V x) {
  using V = simd<double>::V;
  using I = simd<double>::I;
  using U = simd<double>::U;
  const V lo = splat(-746.0), hi = splat(710.0);
  x = select(x < lo, lo, x);
  x = select(x > hi, hi, x);
  const V magic = splat(6755399441055744.0);  // 1.5 * 2^52
  V t = x * 1.4426950408889634074 + magic;
  V n = t - magic;
  V r = x - n * 6.93145751953125e-1;
  r = r - n * 1.42860682030941723212e-6;
  V p = splat(1.0 / 6227020800.0);  // 1/13!
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * (r * r) + r + 1.0;
  U ni = (U)t - (U)magic;
  U n1 = (U)((I)ni >> 1);
  U n2 = ni - n1;
  V s1 = (V)((n1 + 1023u) << 52);
  V s2 = (V)((n2 + 1023u) << 52);
  return p * s1 * s2;
}

// tanh, float: Cephes tanhf. An odd polynomial near zero, where
// 1 - 2/(exp(2|x|) + 1) would cancel; that formula elsewhere.
RNNEXT_INLINE simd<float>::V tanh_vec(simd<float>::V x) {
  using V = simd<float>::V;
  V ax = select(x < 0.0f, -x, x);
  V z = x * x;
  V p = splat(-5.70498872745e-3f);
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  V small = p * z * x + x;
  V e = exp_vec(ax + ax);
  V large = 1.0f - 2.0f / (e + 1.0f);
  large = select(x < 0.0f, -large, large);
  return select(ax < 0.625f, small, large);
}

// tanh, double: Cephes tanh, a rational approximation near zero.
RNNEXT_INLINE simd<double>::V tanh_vec(simd<double>::V x) {
  using V = simd<double>::V;
  V ax = select(x < 0.0, -x, x);
  V z = x * x;
  V num = splat(-9.64399179425052238628e-1);
  num = num * z - 9.92877231001918586564e1;
  num = num * z - 1.61468768441708447952e3;
  V den = z + 1.12811678491632931402e2;
  den = den * z + 2.23548839060100448583e3;
  den = den * z + 4.84406305325125486048e3;
  V small = x + x * z * (num / den);
  V e = exp_vec(ax + ax);
  V large = 1.0 - 2.0 / (e + 1.0);
  large = select(x < 0.0, -large, large);
  return select(ax < 0.625, small, large);
}

// sigmoid(x) = 1 / (1 + exp(-x)): exp(-x) = Inf gives exactly 0, no warning.
template <class V>
RNNEXT_INLINE V sigmoid_vec(V x) {
  const V one = V{} + 1.0f;
  return one / (one + exp_vec(-x));
}

// relu(NaN) is NaN, relu(-0) is +0.
template <class V>
RNNEXT_INLINE V relu_vec(V x) {
  return select((x > 0.0f) | (x != x), x, V{});
}

template <Activation act, class V>
RNNEXT_INLINE V activate(V x) {
  if constexpr (act == Activation::tanh) return tanh_vec(x);
  else if constexpr (act == Activation::sigmoid) return sigmoid_vec(x);
  else return relu_vec(x);
}

// dz = g * f'(z), with f'(z) computed from h = f(z), which the forward keeps:
// tanh' = 1 - h^2, sigmoid' = h (1 - h), relu' = [h > 0] (0 at z = 0, and the
// gradient is selected, not multiplied, as torch does, so an infinite g
// past a dead unit stays 0).
template <Activation act, class V>
RNNEXT_INLINE V activation_backward(V g, V h) {
  if constexpr (act == Activation::tanh) return g * (1.0f - h * h);
  else if constexpr (act == Activation::sigmoid) return g * (h * (1.0f - h));
  else return select(h > 0.0f, g, V{});
}
