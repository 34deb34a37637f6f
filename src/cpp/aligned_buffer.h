// A 64-byte aligned array that owns its memory, zero-initialised unless asked
// not to be. Large blocks are recycled per thread (memory.cpp), so the
// workspaces of repeated calls do not fault in fresh pages every time.
// Baseline code only; kernels receive raw pointers.
#pragma once

#include <cstddef>
#include <cstring>
#include <utility>

#include "common.h"

namespace rnnext {

// 64-byte aligned memory of at least `bytes`; *capacity receives what was
// actually reserved (pass it back to release_memory). Throws std::bad_alloc.
void* acquire_memory(std::size_t bytes, std::size_t* capacity);
void release_memory(void* p, std::size_t capacity) noexcept;

template <class T>
class AlignedBuffer {
 public:
  enum Uninitialized { uninitialized };
  AlignedBuffer() = default;
  explicit AlignedBuffer(index_t count) : AlignedBuffer(count, uninitialized) {
    if (count) std::memset(data_, 0, static_cast<std::size_t>(count) * sizeof(T));
  }
  // For workspaces every element of which is written before it is read.
  AlignedBuffer(index_t count, Uninitialized) : size_(count) {
    if (count == 0) return;
    const index_t bytes = round_up(checked_mul(count, index_t(sizeof(T))), 64);
    data_ = static_cast<T*>(acquire_memory(static_cast<std::size_t>(bytes), &capacity_));
  }
  AlignedBuffer(AlignedBuffer&& other) noexcept { swap(other); }
  AlignedBuffer& operator=(AlignedBuffer&& other) noexcept {
    AlignedBuffer(std::move(other)).swap(*this);
    return *this;
  }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer() {
    if (data_) release_memory(data_, capacity_);
  }

  T* data() { return data_; }
  const T* data() const { return data_; }
  index_t size() const { return size_; }

 private:
  void swap(AlignedBuffer& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    std::swap(capacity_, other.capacity_);
  }
  T* data_ = nullptr;
  index_t size_ = 0;
  std::size_t capacity_ = 0;
};

}  // namespace rnnext
