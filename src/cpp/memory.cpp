#include <cstdlib>
#include <new>
#include <vector>

#include "aligned_buffer.h"

namespace rnnext {
namespace {

// Blocks this large are worth keeping: the kernel would otherwise map and
// zero fresh pages for them on every call (a tenth of a large backward pass).
constexpr std::size_t kRecycleBytes = std::size_t(128) << 10;  // glibc maps blocks from here up
constexpr std::size_t kMaxBlocks = 16;
constexpr std::size_t kMaxCachedBytes = std::size_t(512) << 20;

struct Block {
  void* p;
  std::size_t capacity;
};

// Per thread: buffers live within one call on the calling thread, so the
// next call of that thread finds them; no lock, nothing shared.
// Set when this thread's cache is gone (thread exit): buffers released after
// that are simply freed. Trivially destructible, so always safe to read.
thread_local bool cache_destroyed = false;

struct Cache {
  std::vector<Block> blocks;
  std::size_t bytes = 0;
  ~Cache() {
    for (const Block& b : blocks) std::free(b.p);
    cache_destroyed = true;
  }
};

thread_local Cache cache;

}  // namespace

void* acquire_memory(std::size_t bytes, std::size_t* capacity) {
  if (bytes >= kRecycleBytes && !cache_destroyed) {
    // The smallest cached block that fits, unless it is more than twice too big.
    std::size_t best = cache.blocks.size();
    for (std::size_t i = 0; i < cache.blocks.size(); ++i) {
      const std::size_t c = cache.blocks[i].capacity;
      if (c >= bytes && c <= 2 * bytes && (best == cache.blocks.size() || c < cache.blocks[best].capacity))
        best = i;
    }
    if (best < cache.blocks.size()) {
      const Block b = cache.blocks[best];
      cache.blocks.erase(cache.blocks.begin() + std::ptrdiff_t(best));
      cache.bytes -= b.capacity;
      *capacity = b.capacity;
      return b.p;
    }
  }
  void* p = std::aligned_alloc(64, bytes);  // bytes is a multiple of 64
  if (p == nullptr) throw std::bad_alloc();
  *capacity = bytes;
  return p;
}

void release_memory(void* p, std::size_t capacity) noexcept {
  if (capacity >= kRecycleBytes && !cache_destroyed && capacity + cache.bytes <= kMaxCachedBytes) {
    try {
      cache.blocks.push_back({p, capacity});
      cache.bytes += capacity;
      if (cache.blocks.size() > kMaxBlocks) {  // drop the oldest
        std::free(cache.blocks.front().p);
        cache.bytes -= cache.blocks.front().capacity;
        cache.blocks.erase(cache.blocks.begin());
      }
      return;
    } catch (...) {  // no memory for the list itself: just free the block
    }
  }
  std::free(p);
}

}  // namespace rnnext
