// PrimitiveCache: entries are made once per key, and made again after the thread budget
// changes (a oneDNN primitive keeps the thread count it was created with).
#include <gtest/gtest.h>

#include "kiln/context.hpp"
#include "kiln/dnnl_interop.hpp"

namespace kiln {
namespace {

TEST(PrimitiveCache, MakesOncePerKeyAndAgainAfterABudgetChange) {
  const ThreadBudget saved = thread_budget();
  set_num_threads(1);
  PrimitiveCache<int> cache;
  int made = 0;
  auto make = [&] { return ++made; };
  PrimitiveKey a, b;
  a.add(1).add(Shape{2, 3});
  b.add(1).add(Shape{3, 2});
  EXPECT_EQ(cache.get(a, make), 1);
  EXPECT_EQ(cache.get(b, make), 2);
  EXPECT_EQ(cache.get(a, make), 1);  // a hit: not made again
  EXPECT_EQ(made, 2);
  set_num_threads(2);
  EXPECT_EQ(cache.get(a, make), 3);  // made again for the new budget
  EXPECT_EQ(cache.size(), 1u);
  set_num_threads(2);  // the same count again: the entries stay
  EXPECT_EQ(cache.get(a, make), 3);
  set_thread_budget(saved);
}

TEST(PrimitiveCache, BoundedByCapacity) {
  PrimitiveCache<int> cache(4);
  int made = 0;
  for (int i = 0; i < 10; ++i) {
    PrimitiveKey k;
    k.add(i);
    cache.get(k, [&] { return ++made; });
    EXPECT_LE(cache.size(), 4u);
  }
  EXPECT_EQ(made, 10);
}

}  // namespace
}  // namespace kiln
