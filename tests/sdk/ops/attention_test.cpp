#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "sdk/ops/parity.hpp"

namespace kiln {
namespace {

using ops::scaled_dot_product_attention;

// softmax(q k^T * scale + mask) v built from other ops, with the causal offset Lk - Lq.
Tensor reference_attention(const Tensor& q, const Tensor& k, const Tensor& v, bool causal,
                           const Tensor& mask = Tensor()) {
  const std::int64_t lq = q.size(-2), lk = k.size(-2);
  Tensor s =
      ops::matmul(q, k.transpose(-1, -2)) * (1.f / std::sqrt(static_cast<float>(q.size(-1))));
  if (mask.defined()) s = s + mask;
  if (causal) {
    std::vector<float> m(static_cast<std::size_t>(lq * lk));
    for (std::int64_t i = 0; i < lq; ++i)
      for (std::int64_t j = 0; j < lk; ++j)
        m[static_cast<std::size_t>(i * lk + j)] =
            j > i + (lk - lq) ? -std::numeric_limits<float>::infinity() : 0.f;
    s = s + Tensor::from_vector(m, {lq, lk});
  }
  return ops::matmul(ops::softmax(s, -1), v);
}

TEST(Attention, MatchesPyTorch) {
  const std::vector<std::pair<std::string, std::function<Tensor(const TensorList&)>>> cases = {
      {"attn_plain",
       [](const TensorList& in) { return scaled_dot_product_attention(in[0], in[1], in[2]); }},
      {"attn_causal",
       [](const TensorList& in) {
         return scaled_dot_product_attention(in[0], in[1], in[2], true);
       }},
      {"attn_decode",
       [](const TensorList& in) {
         return scaled_dot_product_attention(in[0], in[1], in[2], true);
       }},
      {"attn_bcast",
       [](const TensorList& in) { return scaled_dot_product_attention(in[0], in[1], in[2]); }},
  };
  for (const auto& [name, fn] : cases) {
    test::expect_parity(name, {"q", "k", "v"}, fn);          // matmul path, with backward
    test::expect_forward_parity(name, {"q", "k", "v"}, fn);  // direct (decoding) path
  }
  auto masked = [](const TensorList& in) {
    return scaled_dot_product_attention(in[0], in[1], in[2], false, in[3]);
  };
  test::expect_parity("attn_mask", {"q", "k", "v", "mask"}, masked);
  test::expect_forward_parity("attn_mask", {"q", "k", "v", "mask"}, masked);
  auto masked_causal = [](const TensorList& in) {
    return scaled_dot_product_attention(in[0], in[1], in[2], true, in[3], 0.3f);
  };
  test::expect_parity("attn_mask_grad", {"q", "k", "v", "mask"}, masked_causal);
  test::expect_forward_parity("attn_mask_grad", {"q", "k", "v", "mask"}, masked_causal);
}

TEST(Attention, GradientsOnOddShapes) {
  Tensor q = test::random_tensor({2, 3, 4}, 1).set_requires_grad();
  Tensor k = test::random_tensor({2, 5, 4}, 2).set_requires_grad();
  Tensor v = test::random_tensor({2, 5, 3}, 3).set_requires_grad();
  Tensor mask = test::random_tensor({3, 5}, 4).set_requires_grad();
  for (bool causal : {false, true}) {
    KILN_EXPECT_GRADCHECK(
        [causal](const TensorList& in) {
          return scaled_dot_product_attention(in[0], in[1], in[2], causal, in[3]);
        },
        {q, k, v, mask});
  }
  // Transposed views as operands (heads split out of a [N, L, H, D] tensor).
  Tensor qkv = test::random_tensor({1, 7, 3, 2, 4}, 5).set_requires_grad();
  KILN_EXPECT_GRADCHECK(
      [](const TensorList& in) {
        TensorList p = ops::chunk(in[0], 3, 2);
        auto heads = [](const Tensor& t) { return t.squeeze(2).transpose(1, 2); };  // [1,2,7,4]
        return scaled_dot_product_attention(heads(p[0]), heads(p[1]), heads(p[2]), true);
      },
      {qkv});
}

TEST(Attention, DirectAndMatmulPathsAgree) {
  // Lq = 20 > the direct-path limit: the no-grad call takes the matmul path too; compare both
  // paths and the composed reference on a few shapes, with broadcast batch dims and masks.
  for (std::int64_t lq : {1, 3, 16, 20}) {
    Tensor q = test::random_tensor({2, 3, lq, 8}, 10 + static_cast<std::uint64_t>(lq));
    Tensor k = test::random_tensor({2, 3, 24, 8}, 30);
    Tensor v = test::random_tensor({2, 3, 24, 6}, 31);
    Tensor mask = test::random_tensor({1, 3, 1, 24}, 32, -1.f, 1.f);
    for (bool causal : {false, true}) {
      NoGradGuard ng;
      Tensor ref = reference_attention(q, k, v, causal, mask);
      Tensor direct = scaled_dot_product_attention(q, k, v, causal, mask);
      EXPECT_TRUE(test::all_close(direct, ref, 1e-4f, 1e-5f)) << "lq " << lq;
    }
    Tensor qg = q.clone().set_requires_grad();
    Tensor via_matmul = scaled_dot_product_attention(qg, k, v, true, mask);
    NoGradGuard ng;
    EXPECT_TRUE(test::all_close(via_matmul, scaled_dot_product_attention(q, k, v, true, mask),
                                1e-4f, 1e-5f));
  }
}

TEST(Attention, DecodingAgainstAStridedKvCache) {
  // A preallocated cache [N, H, 32, D]; the first Lk positions are filled. Decoding the last
  // position with Lq = 1 over the cache view equals the last row of full causal attention.
  const std::int64_t n = 2, h = 3, cap = 32, d = 8, lk = 19;
  Tensor kc = Tensor::zeros({n, h, cap, d}), vc = Tensor::zeros({n, h, cap, d});
  Tensor k = test::random_tensor({n, h, lk, d}, 40), v = test::random_tensor({n, h, lk, d}, 41);
  kc.slice(2, 0, lk).copy_(k);
  vc.slice(2, 0, lk).copy_(v);
  Tensor q = test::random_tensor({n, h, lk, d}, 42);
  NoGradGuard ng;
  Tensor full = scaled_dot_product_attention(q, k, v, true);
  Tensor kview = kc.slice(2, 0, lk), vview = vc.slice(2, 0, lk);
  ASSERT_FALSE(kview.is_contiguous());
  Tensor last = scaled_dot_product_attention(q.slice(2, lk - 1, lk), kview, vview, true);
  EXPECT_TRUE(test::all_close(last, full.slice(2, lk - 1, lk), 1e-5f, 1e-6f));
  // A block of 4 new queries appended to the cache.
  Tensor block = scaled_dot_product_attention(q.slice(2, lk - 4, lk), kview, vview, true);
  EXPECT_TRUE(test::all_close(block, full.slice(2, lk - 4, lk), 1e-5f, 1e-6f));
  // A bf16 cache is read directly and stays close to f32.
  Tensor kb = kview.to(DType::bf16), vb = vview.to(DType::bf16);
  Tensor lb = scaled_dot_product_attention(q.slice(2, lk - 1, lk), kb, vb, true);
  EXPECT_TRUE(test::all_close(lb, last, 2e-2f, 2e-2f));
}

TEST(Attention, RowsWithoutKeysAreZero) {
  // Lq > Lk with a causal mask: the first Lq - Lk queries see no key.
  Tensor q = test::random_tensor({1, 5, 4}, 50);
  Tensor k = test::random_tensor({1, 3, 4}, 51), v = test::random_tensor({1, 3, 2}, 52);
  for (bool grad : {false, true}) {
    Tensor qq = grad ? q.clone().set_requires_grad() : q;
    Tensor y = scaled_dot_product_attention(qq, k, v, true);
    const auto vals = y.to_vector();
    for (int i = 0; i < 4; ++i) EXPECT_EQ(vals[static_cast<std::size_t>(i)], 0.f);
    for (float x : vals) EXPECT_TRUE(std::isfinite(x));
    if (grad) {
      ops::sum(y).backward();
      for (float g : qq.grad().to_vector()) EXPECT_TRUE(std::isfinite(g));
    }
  }
}

TEST(Attention, UNetAndGptShapes) {
  // Single head at 7x7 with 256 channels (U-Net) and 2 heads of 64 (GPT-2 style) against the
  // composed reference.
  Tensor x = test::random_tensor({3, 49, 256}, 60);
  NoGradGuard ng;
  EXPECT_TRUE(test::all_close(scaled_dot_product_attention(x, x, x),
                              reference_attention(x, x, x, false), 1e-4f, 1e-5f));
  Tensor q = test::random_tensor({2, 2, 40, 64}, 61), k = test::random_tensor({2, 2, 40, 64}, 62);
  EXPECT_TRUE(test::all_close(scaled_dot_product_attention(q, k, k, true),
                              reference_attention(q, k, k, true), 1e-4f, 1e-5f));
}

TEST(Attention, RejectsBadArguments) {
  Tensor q = Tensor::zeros({2, 3, 4}), k = Tensor::zeros({2, 5, 4}), v = Tensor::zeros({2, 5, 3});
  EXPECT_THROW(scaled_dot_product_attention(q, Tensor::zeros({2, 5, 6}), v), Error);
  EXPECT_THROW(scaled_dot_product_attention(q, k, Tensor::zeros({2, 4, 3})), Error);
  EXPECT_THROW(scaled_dot_product_attention(q, k, v, false, Tensor::zeros({3, 4})), Error);
  EXPECT_THROW(scaled_dot_product_attention(q, k, v, false, Tensor::zeros({3, 5}, DType::s32)),
               Error);
  EXPECT_THROW(scaled_dot_product_attention(Tensor::zeros({4}), k, v), Error);
  EXPECT_THROW(scaled_dot_product_attention(q.to(DType::s32), k, v), Error);
  EXPECT_THROW(scaled_dot_product_attention(q, Tensor::zeros({2, 0, 4}), Tensor::zeros({2, 0, 3})),
               Error);
  EXPECT_THROW(scaled_dot_product_attention(q, Tensor::zeros({3, 5, 4}), Tensor::zeros({3, 5, 3})),
               Error);
  try {
    scaled_dot_product_attention(q, Tensor::zeros({2, 5, 6}), v);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("scaled_dot_product_attention"), std::string::npos) << m;
    EXPECT_NE(m.find("[2, 5, 6]"), std::string::npos) << m;
  }
}

}  // namespace
}  // namespace kiln
