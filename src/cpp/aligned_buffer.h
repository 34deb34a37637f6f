// A 64-byte aligned array that owns its memory, zero-initialised unless asked not to be.
// Baseline code only; kernels receive raw pointers.
#pragma once

#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

#include "common.h"

namespace rnnext {

template <class T>
class AlignedBuffer {
 public:
  enum Uninitialized { uninitialized };
  AlignedBuffer() = default;
  explicit AlignedBuffer(index_t count) : AlignedBuffer(count, uninitialized) {
    if (count) std::memset(data_.get(), 0, static_cast<std::size_t>(count) * sizeof(T));
  }
  // For workspaces every element of which is written before it is read.
  AlignedBuffer(index_t count, Uninitialized) : size_(count) {
    if (count == 0) return;
    index_t bytes = round_up(checked_mul(count, index_t(sizeof(T))), 64);
    void* p = std::aligned_alloc(64, static_cast<std::size_t>(bytes));
    if (p == nullptr) throw std::bad_alloc();
    data_.reset(static_cast<T*>(p));
  }
  T* data() { return data_.get(); }
  const T* data() const { return data_.get(); }
  index_t size() const { return size_; }

 private:
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> data_;
  index_t size_ = 0;
};

}  // namespace rnnext
