#include "optim/internal.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>

#include <oneapi/tbb/parallel_for.h>

namespace kiln::optim::detail {

std::vector<Chunk> make_chunks(const std::vector<std::int64_t>& sizes) {
  std::vector<Chunk> chunks;
  for (std::size_t k = 0; k < sizes.size(); ++k) {
    for (std::int64_t b = 0; b < sizes[k]; b += kChunk) {
      chunks.push_back({k, b, std::min(sizes[k], b + kChunk)});
    }
  }
  return chunks;
}

void run_chunks(const std::vector<Chunk>& chunks,
                const std::function<void(std::size_t, const Chunk&)>& fn) {
  std::int64_t total = 0;
  for (const Chunk& c : chunks) total += c.end - c.begin;
  // Below a couple of chunks' worth of elements the TBB hand-off costs more than it saves.
  if (chunks.size() < 2 || total < 2 * kChunk) {
    for (std::size_t i = 0; i < chunks.size(); ++i) fn(i, chunks[i]);
    return;
  }
  oneapi::tbb::parallel_for(
      oneapi::tbb::blocked_range<std::size_t>(0, chunks.size(), 1),
      [&](const oneapi::tbb::blocked_range<std::size_t>& r) {
        for (std::size_t i = r.begin(); i != r.end(); ++i) fn(i, chunks[i]);
      },
      oneapi::tbb::simple_partitioner());
}

double decimal(float f) {
  if (!std::isfinite(f)) return f;
  char buf[64];
  const auto printed = std::to_chars(buf, buf + sizeof(buf), f);  // shortest round-trip form
  double d = f;
  std::from_chars(buf, printed.ptr, d);
  return d;
}

}  // namespace kiln::optim::detail
