#include "kiln/random.hpp"

#include <cmath>
#include <numbers>

#include "kiln/error.hpp"

namespace kiln {
namespace {
constexpr std::uint32_t kMul0 = 0xD2511F53u;
constexpr std::uint32_t kMul1 = 0xCD9E8D57u;
constexpr std::uint32_t kWeyl0 = 0x9E3779B9u;
constexpr std::uint32_t kWeyl1 = 0xBB67AE85u;

inline std::uint32_t mulhilo(std::uint32_t a, std::uint32_t b, std::uint32_t& hi) {
  const std::uint64_t p = static_cast<std::uint64_t>(a) * b;
  hi = static_cast<std::uint32_t>(p >> 32);
  return static_cast<std::uint32_t>(p);
}

inline float u32_to_unit(std::uint32_t x) {
  return static_cast<float>(x >> 8) * (1.0f / 16777216.0f);  // [0, 1)
}
}  // namespace

std::uint64_t mix_seed(std::uint64_t a, std::uint64_t b) {
  std::uint64_t z = a + 0x9E3779B97F4A7C15ull * (b + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::array<std::uint32_t, 4> Philox::block(std::array<std::uint32_t, 4> c,
                                           std::array<std::uint32_t, 2> k) {
  for (int round = 0; round < 10; ++round) {
    std::uint32_t hi0, hi1;
    const std::uint32_t lo0 = mulhilo(kMul0, c[0], hi0);
    const std::uint32_t lo1 = mulhilo(kMul1, c[2], hi1);
    c = {hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0};
    k[0] += kWeyl0;
    k[1] += kWeyl1;
  }
  return c;
}

Philox::Philox(std::uint64_t seed, std::uint64_t index, std::uint64_t stream)
    : key_{static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)},
      // The upper 64 counter bits name the (index, stream) pair; the lower 64 count blocks.
      stream_hi_(mix_seed(index, stream)) {}

std::array<std::uint32_t, 4> Philox::next_block() {
  const std::array<std::uint32_t, 4> ctr = {
      static_cast<std::uint32_t>(position_), static_cast<std::uint32_t>(position_ >> 32),
      static_cast<std::uint32_t>(stream_hi_), static_cast<std::uint32_t>(stream_hi_ >> 32)};
  position_++;
  return block(ctr, key_);
}

std::uint32_t Philox::next_u32() {
  if (buf_used_ == 4) {
    buf_ = next_block();
    buf_used_ = 0;
  }
  return buf_[static_cast<std::size_t>(buf_used_++)];
}

std::uint64_t Philox::next_u64() {
  const std::uint64_t lo = next_u32();
  return lo | (static_cast<std::uint64_t>(next_u32()) << 32);
}

float Philox::uniform() {
  return u32_to_unit(next_u32());
}

float Philox::normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_;
  }
  // Box-Muller on (0,1] x [0,1): u1 never 0 so log is finite.
  const float u1 = 1.0f - uniform();
  const float u2 = uniform();
  const float r = std::sqrt(-2.0f * std::log(u1));
  const float theta = 2.0f * std::numbers::pi_v<float> * u2;
  spare_ = r * std::sin(theta);
  has_spare_ = true;
  return r * std::cos(theta);
}

std::uint64_t Philox::below(std::uint64_t n) {
  KILN_CHECK(n > 0, "random: below(0) has no valid result");
  // Lemire-style rejection on 64 bits: unbiased.
  const std::uint64_t limit = (~std::uint64_t(0)) - ((~std::uint64_t(0)) % n);
  std::uint64_t x;
  do {
    x = next_u64();
  } while (x >= limit);
  return x % n;
}

void Philox::fill_uniform(float* out, std::int64_t n, float lo, float hi) {
  const float scale = hi - lo;
  for (std::int64_t i = 0; i < n; ++i) out[i] = lo + scale * uniform();
}

void Philox::fill_normal(float* out, std::int64_t n, float mean, float stddev) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = mean + stddev * normal();
}

void Philox::seek(std::uint64_t position) {
  position_ = position;
  buf_used_ = 4;
  has_spare_ = false;
}

Generator::Generator(std::uint64_t seed, std::uint64_t stream)
    : seed_(seed), stream_(stream), rng_(seed, 0, stream) {}

void Generator::manual_seed(std::uint64_t seed) {
  seed_ = seed;
  rng_ = Philox(seed, 0, stream_);
}

Generator& default_generator() {
  static Generator g(0);
  return g;
}

void manual_seed(std::uint64_t seed) {
  default_generator().manual_seed(seed);
}

Tensor randn_for_samples(const std::vector<std::int64_t>& indices, const Shape& sample_shape,
                         std::uint64_t seed, std::uint64_t stream) {
  Shape shape = {static_cast<std::int64_t>(indices.size())};
  shape.insert(shape.end(), sample_shape.begin(), sample_shape.end());
  Tensor t = Tensor::empty(shape, DType::f32);
  const std::int64_t per = shape_numel(sample_shape);
  float* p = t.data<float>();
  for (std::size_t r = 0; r < indices.size(); ++r) {
    KILN_CHECK(indices[r] >= 0, "randn_for_samples: negative sample index ", indices[r]);
    Philox rng(seed, static_cast<std::uint64_t>(indices[r]), stream);
    rng.fill_normal(p + static_cast<std::int64_t>(r) * per, per);
  }
  return t;
}

}  // namespace kiln
