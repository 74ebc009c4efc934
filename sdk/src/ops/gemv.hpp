// linear for a few rows of x, streaming a plain weight (internal; see gemv.cpp).
#pragma once

#include <cstdint>

#include "core/tensor_impl.hpp"

namespace kiln::ops::detail {

// The most rows of x small_m_linear takes: at 4 rows and more the packed-weight GEMM was as fast
// or faster (bench/matmul_bench.cpp, linear_{1,2,4,8}x3072x768_*_cold).
inline constexpr std::int64_t kSmallLinearRows = 2;

// True when small_m_linear can compute m rows against weight w: 1 <= m <= kSmallLinearRows, w a
// plain row-major [N, K] f32 or bf16 tensor, and the CPU has AVX2 and FMA.
bool small_m_linear_applies(std::int64_t m, const TensorImpl& w);

// y[m, N] = x[m, k] w[N, k]^T (+ bias[N]); x, bias and y dense f32. For bf16 weights x is rounded
// to bf16 first. Runs on the calling thread's OpenMP team.
void small_m_linear(const float* x, std::int64_t m, std::int64_t k, const TensorImpl& w,
                    const float* bias, float* y);

}  // namespace kiln::ops::detail
