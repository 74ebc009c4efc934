#include "kiln/dtype.hpp"

#include <cmath>
#include <limits>

#include "kiln/error.hpp"

namespace kiln {

std::size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32:
      return 4;
    case DType::bf16:
      return 2;
    case DType::f16:
      return 2;
    case DType::s32:
      return 4;
    case DType::u8:
      return 1;
    case DType::s8:
      return 1;
    case DType::s64:
      return 8;
  }
  throw Error("dtype_size: unknown dtype code " + std::to_string(static_cast<int>(t)));
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32:
      return "f32";
    case DType::bf16:
      return "bf16";
    case DType::f16:
      return "f16";
    case DType::s32:
      return "s32";
    case DType::u8:
      return "u8";
    case DType::s8:
      return "s8";
    case DType::s64:
      return "s64";
  }
  return "unknown";
}

DType parse_dtype(const std::string& name) {
  for (DType t :
       {DType::f32, DType::bf16, DType::f16, DType::s32, DType::u8, DType::s8, DType::s64}) {
    if (name == dtype_name(t)) return t;
  }
  throw Error("unknown dtype '" + name + "'; expected one of f32, bf16, f16, s32, u8, s8, s64");
}

float f16_to_f32(std::uint16_t h) {
  const std::uint32_t sign = (h >> 15) & 1u;
  const std::uint32_t exp = (h >> 10) & 0x1fu;
  const std::uint32_t mant = h & 0x3ffu;
  float v;
  if (exp == 0) {
    v = std::ldexp(static_cast<float>(mant), -24);  // subnormal or zero
  } else if (exp == 31) {
    v = mant ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  } else {
    v = std::ldexp(static_cast<float>(mant | 0x400u), static_cast<int>(exp) - 25);
  }
  return sign ? -v : v;
}

std::uint16_t f32_to_f16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  const std::uint32_t sign = (u >> 16) & 0x8000u;
  const std::uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7e00u);   // NaN
  if (abs >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // overflow -> inf
  if (abs < 0x38800000u) {                                                    // subnormal half
    const float a = std::fabs(f);
    const auto m = static_cast<std::uint32_t>(std::nearbyint(a * 16777216.f));  // a / 2^-24
    return static_cast<std::uint16_t>(sign | m);
  }
  // normal: round mantissa to 10 bits, nearest even
  std::uint32_t r = abs + 0xfffu + ((abs >> 13) & 1u);
  r -= 0x38000000u;  // rebias exponent 127 -> 15
  return static_cast<std::uint16_t>(sign | (r >> 13));
}

}  // namespace kiln
