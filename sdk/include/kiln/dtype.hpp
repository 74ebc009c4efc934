// Element types of kiln::Tensor.
//
//   kiln::DType t = kiln::DType::bf16;
//   size_t bytes = kiln::dtype_size(t) * n;          // 2 * n
//   float x = kiln::bf16_to_f32(kiln::f32_to_bf16(1.5f));
//
// f32 is the compute type; bf16 halves weight and activation traffic and runs at twice the f32
// rate in oneDNN's AVX-512 BF16 kernels; f16 is read from files and converted; u8/s32/s64 carry
// data (pixels, labels, token ids).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#include "kiln/export.hpp"

namespace kiln {

// Values are part of the plugin ABI: append only.
enum class DType : std::uint8_t { f32 = 0, bf16 = 1, f16 = 2, s32 = 3, u8 = 4, s8 = 5, s64 = 6 };

KILN_API std::size_t dtype_size(DType t);
KILN_API const char* dtype_name(DType t);
// Parses "f32", "bf16", ...; throws kiln::Error naming the accepted values otherwise.
KILN_API DType parse_dtype(const std::string& name);
inline bool is_floating(DType t) {
  return t == DType::f32 || t == DType::bf16 || t == DType::f16;
}

// Round-to-nearest-even conversion, as oneDNN and PyTorch do it; NaN stays NaN.
inline std::uint16_t f32_to_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}
inline float bf16_to_f32(std::uint16_t h) {
  std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
KILN_API float f16_to_f32(std::uint16_t h);
KILN_API std::uint16_t f32_to_f16(float f);

}  // namespace kiln
