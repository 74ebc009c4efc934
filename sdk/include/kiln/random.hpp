// Counter-based random numbers (Philox 4x32-10, Salmon et al. 2011).
//
//   kiln::Philox rng(seed, /*index=*/i, /*stream=*/0);   // sample i's generator
//   float z = rng.normal();
//   kiln::Tensor z = kiln::randn_for_samples({10, 11, 12}, {100}, seed);  // [3,100], row r <-
//   (seed, indices[r])
//
// A Philox stream is a pure function of (key, counter): sample i's randomness depends on
// (seed, i, stream) alone, never on batch size, thread count or shard. Streams separate uses
// within one sample (e.g. stream 0 = latent noise, 1 = dropout, 2 = sampling).
//
// kiln::Generator is a stateful convenience wrapper (seed + running offset) used for weight
// initialisation and data shuffling; its whole state is two integers, so checkpoints can save it.
#pragma once

#include <array>
#include <cstdint>

#include "kiln/export.hpp"
#include "kiln/tensor.hpp"

namespace kiln {

class KILN_API Philox {
 public:
  Philox(std::uint64_t seed, std::uint64_t index = 0, std::uint64_t stream = 0);

  // Raw 4x32-bit block for the current counter, then advances the counter.
  std::array<std::uint32_t, 4> next_block();
  std::uint32_t next_u32();
  std::uint64_t next_u64();
  float uniform();                       // [0, 1), 24 random bits
  float normal();                        // N(0, 1), Box-Muller
  std::uint64_t below(std::uint64_t n);  // uniform integer in [0, n), unbiased

  void fill_uniform(float* out, std::int64_t n, float lo = 0.f, float hi = 1.f);
  void fill_normal(float* out, std::int64_t n, float mean = 0.f, float stddev = 1.f);

  // Position within the stream, for saving/restoring.
  std::uint64_t position() const { return position_; }
  void seek(std::uint64_t position);

  static std::array<std::uint32_t, 4> block(std::array<std::uint32_t, 4> counter,
                                            std::array<std::uint32_t, 2> key);

 private:
  std::array<std::uint32_t, 2> key_;
  std::uint64_t stream_hi_;     // upper counter words: index
  std::uint64_t position_ = 0;  // lower counter words: block number
  std::array<std::uint32_t, 4> buf_{};
  int buf_used_ = 4;
  bool has_spare_ = false;
  float spare_ = 0.f;
};

// Stateful generator: Philox(seed, 0, stream) with a running position.
class KILN_API Generator {
 public:
  explicit Generator(std::uint64_t seed = 0, std::uint64_t stream = 0);
  void manual_seed(std::uint64_t seed);
  std::uint64_t seed() const { return seed_; }
  Philox& philox() { return rng_; }
  float uniform() { return rng_.uniform(); }
  float normal() { return rng_.normal(); }
  std::uint64_t below(std::uint64_t n) { return rng_.below(n); }

 private:
  std::uint64_t seed_;
  std::uint64_t stream_;
  Philox rng_;
};

// The process-wide default generator (weight initialisation when none is given).
KILN_API Generator& default_generator();
KILN_API void manual_seed(std::uint64_t seed);

// A [indices.size(), sample_shape...] f32 tensor whose row r is N(0,1) noise drawn from
// Philox(seed, indices[r], stream): the same sample index always gets the same noise.
KILN_API Tensor randn_for_samples(const std::vector<std::int64_t>& indices,
                                  const Shape& sample_shape, std::uint64_t seed,
                                  std::uint64_t stream = 0);

// Mixes several integers into one 64-bit seed (SplitMix64 finaliser), e.g. (seed, step, layer).
KILN_API std::uint64_t mix_seed(std::uint64_t a, std::uint64_t b);

}  // namespace kiln
