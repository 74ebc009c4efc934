#include "optim/internal.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "ops/op_util.hpp"

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
  // Below a couple of chunks' worth of elements a fork/join costs more than it saves.
  if (chunks.size() < 2 || total < 2 * kChunk) {
    for (std::size_t i = 0; i < chunks.size(); ++i) fn(i, chunks[i]);
    return;
  }
  // On the OpenMP team that runs oneDNN's primitives (docs/benchmarks.md, "Threading"): a TBB
  // worker here had to share its core with that team's spinning thread, so an Adam step ran
  // almost serially between a training step's primitives.
  ops::detail::parallel_range(static_cast<std::int64_t>(chunks.size()), 1,
                              [&](std::int64_t b, std::int64_t e) {
                                for (std::int64_t i = b; i < e; ++i) {
                                  const auto k = static_cast<std::size_t>(i);
                                  fn(k, chunks[k]);
                                }
                              });
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
