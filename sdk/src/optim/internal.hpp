// Helpers shared by the optimisers (internal to optim).
//
// Chunks: work over a list of tensors is cut into chunks of at most kChunk elements whose
// boundaries depend only on the tensor sizes, never on the thread count; chunks run in parallel on
// the OpenMP team (ops::detail::parallel_range). Reductions keep one partial result per chunk and
// combine them in chunk order, so results are bitwise reproducible for any number of threads.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace kiln::optim::detail {

inline constexpr std::int64_t kChunk = 16384;

struct Chunk {
  std::size_t item;  // index into the caller's list
  std::int64_t begin, end;
};

// Chunks covering [0, sizes[k]) for every k, in order (empty items produce no chunk).
std::vector<Chunk> make_chunks(const std::vector<std::int64_t>& sizes);

// Runs fn(chunk index, chunk) for every chunk, in parallel when there is enough work.
void run_chunks(const std::vector<Chunk>& chunks,
                const std::function<void(std::size_t, const Chunk&)>& fn);

// The shortest decimal that rounds to `f`, as a double: 0.999f -> 0.999. Hyper-parameters are
// decimals typed by a person; PyTorch holds them as doubles (Python floats) and forms scalars
// such as 1 - beta2 in double before rounding to f32. Reading the float options this way gives
// the same scalars (1 - double(0.999f) would be off by 1.3e-5 relative).
double decimal(float f);

}  // namespace kiln::optim::detail
