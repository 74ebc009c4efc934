// Tensor allocation details that the per-op fast paths rely on: 64-byte alignment for every size
// (small tensors share one heap block with their Storage), the size limit check, and size(d).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "kiln/tensor.hpp"
#include "support/test_support.hpp"

namespace kiln {
namespace {

TEST(TensorAlloc, EveryOutputIs64ByteAlignedAndWritable) {
  std::vector<Tensor> keep;  // keep them alive so the blocks are distinct
  for (std::int64_t n : {0, 1, 3, 16, 127, 128, 129, 1000, 4096, 1 << 20}) {
    for (DType t : {DType::f32, DType::bf16, DType::u8}) {
      Tensor x = Tensor::empty({n}, t);
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(x.raw_data()) % 64, 0u)
          << n << " " << dtype_name(t);
      if (n > 0) {
        x.fill_(3.f);
        EXPECT_EQ(x.to_vector().back(), 3.f);
      }
      keep.push_back(x);
    }
  }
  // Values survive other allocations (no overlap between small blocks).
  for (const Tensor& x : keep) {
    if (x.numel() > 0) {
      EXPECT_EQ(x.to_vector().front(), 3.f);
    }
  }
}

// The VmFlags line of the mapping of this process that holds address a ("" when none does).
std::string vm_flags_at(std::uintptr_t a) {
  std::ifstream f("/proc/self/smaps");
  std::string line;
  bool inside = false;
  while (std::getline(f, line)) {
    std::uintptr_t lo = 0, hi = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> lo >> dash >> hi && dash == '-') {
      inside = lo <= a && a < hi;
    } else if (inside && line.rfind("VmFlags:", 0) == 0) {
      return line;
    }
  }
  return "";
}

TEST(TensorAlloc, LargeTensorsAreAdvisedIntoHugePages) {
  if (!std::filesystem::exists("/sys/kernel/mm/transparent_hugepage/enabled")) {
    GTEST_SKIP() << "this kernel has no transparent huge pages";
  }
  ASSERT_EQ(std::getenv("KILN_HUGE_PAGES"), nullptr) << "the test needs the default";
  Tensor big = Tensor::empty({3 << 20});  // 12 MiB: at least four whole 2 MiB pages inside
  const auto start = reinterpret_cast<std::uintptr_t>(big.raw_data());
  const std::uintptr_t page = std::uintptr_t{2} << 20;
  const std::uintptr_t inside = (start + page - 1) / page * page + page;  // a page wholly inside
  const std::string flags = vm_flags_at(inside);
  ASSERT_FALSE(flags.empty()) << "no mapping holds the tensor's data in /proc/self/smaps";
  EXPECT_NE((flags + " ").find(" hg "), std::string::npos) << flags;  // "hg": MADV_HUGEPAGE
}

TEST(TensorAlloc, ToStreamingMemoryMovesTheStorageAndKeepsEveryView) {
  ASSERT_EQ(std::getenv("KILN_HUGE_PAGES"), nullptr) << "the test needs the default";
  const std::uintptr_t page = std::uintptr_t{2} << 20;
  // 2.5 MiB + 4 bytes: not a whole number of pages, and (from malloc) not on a page boundary.
  const std::int64_t n = (5 << 19) / 4 + 1;
  Tensor t = Tensor::arange(n);
  const Tensor view = t.slice(0, n - 10, n);  // another TensorImpl over the same storage
  const std::vector<float> before = t.to_vector();
  to_streaming_memory(t);
  const auto p = reinterpret_cast<std::uintptr_t>(t.raw_data());
  EXPECT_EQ(p % page, 0u);
  EXPECT_EQ(t.to_vector(), before);
  EXPECT_EQ(view.contiguous().to_vector(), std::vector<float>(before.end() - 10, before.end()));
  if (std::filesystem::exists("/sys/kernel/mm/transparent_hugepage/enabled")) {
    EXPECT_NE((vm_flags_at(p) + " ").find(" hg "), std::string::npos) << vm_flags_at(p);
  }
  // Writes go to the new memory and every view sees them; a second call leaves it in place.
  t.fill_(7.f);
  EXPECT_EQ(view.contiguous().to_vector(), std::vector<float>(10, 7.f));
  to_streaming_memory(t);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(t.raw_data()), p);
  // Under 2 MiB nothing moves.
  Tensor small = Tensor::ones({1000});
  const void* sp = small.raw_data();
  to_streaming_memory(small);
  EXPECT_EQ(small.raw_data(), sp);
}

TEST(TensorAlloc, ViewsKeepSmallStorageAlive) {
  Tensor v;
  {
    Tensor x = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3});
    v = x.slice(1, 1, 3);
  }
  EXPECT_EQ(v.contiguous().to_vector(), (std::vector<float>{2, 3, 5, 6}));
}

TEST(TensorAlloc, SizeLimitAndZeroSizedShapes) {
  EXPECT_THROW(Tensor::empty({1 << 21, 1 << 20}), Error);          // 2^41 elements
  EXPECT_THROW(Tensor::empty({std::int64_t{1} << 62, 4}), Error);  // overflows int64
  EXPECT_THROW(Tensor::empty({2, -1}), Error);
  // A zero makes the tensor empty; the other dimensions still obey the limit.
  EXPECT_EQ(Tensor::empty({std::int64_t{1} << 40, 0}).numel(), 0);
  EXPECT_EQ(Tensor::empty({0, std::int64_t{1} << 40}).strides(), (Shape{std::int64_t{1} << 40, 1}));
  EXPECT_THROW(Tensor::empty({std::int64_t{1} << 40, std::int64_t{1} << 40, 0}), Error);
  EXPECT_EQ(shape_numel({std::int64_t{1} << 62, 4}), std::numeric_limits<std::int64_t>::max());
  EXPECT_EQ(shape_numel({std::int64_t{1} << 62, 4, 0}), 0);
}

TEST(TensorAlloc, SizeAcceptsNegativeIndicesAndRejectsOthers) {
  Tensor x = Tensor::empty({2, 3, 4});
  EXPECT_EQ(x.size(0), 2);
  EXPECT_EQ(x.size(2), 4);
  EXPECT_EQ(x.size(-1), 4);
  EXPECT_EQ(x.size(-3), 2);
  EXPECT_THROW(x.size(3), Error);
  EXPECT_THROW(x.size(-4), Error);
  EXPECT_THROW(Tensor::scalar(1.f).size(0), Error);  // a 0-d tensor has no dimensions
  EXPECT_THROW(Tensor().size(0), Error);
}

}  // namespace
}  // namespace kiln
