// Kiln's hand-written kernels run on the OpenMP team (detail::parallel_range): large inputs take
// the parallel path, which must cover every element once and give bitwise the same result at
// any thread count.
#include <gtest/gtest.h>

#include <vector>

#include "kiln/context.hpp"
#include "kiln/ops.hpp"
#include "support/test_support.hpp"

namespace kiln {
namespace {

// Restores the thread budget a test changes.
class BudgetGuard {
 public:
  BudgetGuard() : saved_(thread_budget()) {}
  ~BudgetGuard() { set_thread_budget(saved_); }
  BudgetGuard(const BudgetGuard&) = delete;
  BudgetGuard& operator=(const BudgetGuard&) = delete;

 private:
  ThreadBudget saved_;
};

TEST(ParallelKernels, LargeElementwiseAndCopiesMatchSerialLoops) {
  BudgetGuard guard;
  set_num_threads(2);
  const std::int64_t rows = 613, cols = 517;  // 316,921 elements: many odd-sized pieces
  Tensor a = test::random_tensor({rows, cols}, 1);
  Tensor b = test::random_tensor({rows, cols}, 2);
  const std::vector<float> va = a.to_vector(), vb = b.to_vector();
  const std::vector<float> sum = ops::add(a, b).to_vector();
  for (std::size_t i = 0; i < va.size(); ++i) ASSERT_EQ(sum[i], va[i] + vb[i]) << i;
  // Strided copy (the transposed view made dense) and a dtype conversion of it.
  const std::vector<float> t = a.transpose(0, 1).contiguous().to_vector();
  for (std::int64_t i = 0; i < rows; ++i) {
    for (std::int64_t j = 0; j < cols; ++j) {
      ASSERT_EQ(t[static_cast<std::size_t>(j * rows + i)],
                va[static_cast<std::size_t>(i * cols + j)]);
    }
  }
  const std::vector<float> h = a.to(DType::bf16).to_vector();
  for (std::size_t i = 0; i < va.size(); ++i) {
    ASSERT_EQ(h[i], bf16_to_f32(f32_to_bf16(va[i]))) << i;
  }
}

TEST(ParallelKernels, SameBitsAtOneAndTwoThreads) {
  BudgetGuard guard;
  Tensor x = test::random_tensor({1000, 333}, 3);
  Tensor y = test::random_tensor({333}, 4);
  auto run = [&] { return ops::sum(ops::mul(ops::add(x, y), x), {0}).to_vector(); };
  set_num_threads(1);
  const std::vector<float> one = run();
  set_num_threads(2);
  const std::vector<float> two = run();
  EXPECT_EQ(one, two);
}

}  // namespace
}  // namespace kiln
