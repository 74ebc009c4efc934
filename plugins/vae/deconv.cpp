#include "deconv.hpp"

#include <oneapi/tbb/parallel_for.h>

#include "kiln/autograd.hpp"
#include "kiln/ops.hpp"

namespace kiln::vae {

namespace {

struct Geometry {
  std::int64_t n, h, w, c, k, oh, ow, s, p;
};

Geometry geometry(const Shape& cols, std::int64_t stride, std::int64_t padding) {
  KILN_CHECK(cols.size() == 6 && cols[1] == cols[2], "vae: col2im takes [C, k, k, N, H, W], got ",
             shape_str(cols));
  Geometry g{cols[3], cols[4], cols[5], cols[0], cols[1], 0, 0, stride, padding};
  g.oh = (g.h - 1) * stride - 2 * padding + g.k;
  g.ow = (g.w - 1) * stride - 2 * padding + g.k;
  KILN_CHECK(g.oh > 0 && g.ow > 0, "vae: col2im: empty output for ", shape_str(cols));
  return g;
}

// floor(a / b) for b > 0 (C++ division truncates toward zero).
std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}

// scatter: img += cols (forward); gather: cols = img (backward), over the same index map.
// Each (n, c) owns one output plane and its k * k input planes, so tasks never share memory.
template <bool kScatter>
void walk(const Geometry& g, float* cols, float* img) {
  tbb::parallel_for(std::int64_t{0}, g.n * g.c, [&](std::int64_t nc) {
    const std::int64_t n = nc / g.c, c = nc % g.c;
    float* plane = img + nc * g.oh * g.ow;
    for (std::int64_t i = 0; i < g.k; ++i) {
      for (std::int64_t j = 0; j < g.k; ++j) {
        float* col = cols + (((c * g.k + i) * g.k + j) * g.n + n) * g.h * g.w;
        // Input positions whose output y * s - p + i lies inside the image.
        const std::int64_t y0 = std::max<std::int64_t>(0, -floor_div(i - g.p, g.s));
        const std::int64_t y1 = std::min<std::int64_t>(g.h, floor_div(g.oh - 1 + g.p - i, g.s) + 1);
        const std::int64_t x0 = std::max<std::int64_t>(0, -floor_div(j - g.p, g.s));
        const std::int64_t x1 = std::min<std::int64_t>(g.w, floor_div(g.ow - 1 + g.p - j, g.s) + 1);
        for (std::int64_t y = y0; y < y1; ++y) {
          float* orow = plane + (y * g.s - g.p + i) * g.ow - g.p + j;
          float* crow = col + y * g.w;
          if constexpr (kScatter) {
            for (std::int64_t x = x0; x < x1; ++x) orow[x * g.s] += crow[x];
          } else {
            for (std::int64_t x = x0; x < x1; ++x) crow[x] = orow[x * g.s];
          }
        }
      }
    }
  });
}

}  // namespace

Tensor col2im(const Tensor& cols_in, std::int64_t stride, std::int64_t padding) {
  const Geometry g = geometry(cols_in.shape(), stride, padding);
  const Tensor cols = cols_in.detach().contiguous();
  Tensor out = Tensor::zeros({g.n, g.c, g.oh, g.ow});
  walk<true>(g, cols.data<float>(), out.data<float>());
  if (needs_grad({cols_in})) {
    record("vae.col2im", {cols_in}, {&out}, [g](const TensorList& grads) {
      const Tensor go = grads[0].contiguous();
      Tensor gc = Tensor::zeros({g.c, g.k, g.k, g.n, g.h, g.w});
      walk<false>(g, gc.data<float>(), go.data<float>());
      return TensorList{gc};
    });
  }
  return out;
}

Tensor conv_transpose2d_gemm(const Tensor& x, const Tensor& w, const Tensor& b, std::int64_t stride,
                             std::int64_t padding) {
  KILN_CHECK(x.dim() == 4 && w.dim() == 4 && w.size(0) == x.size(1) && w.size(2) == w.size(3),
             "vae: conv_transpose2d_gemm: x ", shape_str(x.shape()), " and w ",
             shape_str(w.shape()), " do not fit");
  const std::int64_t n = x.size(0), cin = x.size(1), h = x.size(2), wd = x.size(3);
  const std::int64_t cout = w.size(1), k = w.size(2);
  // cols = W^T [Cout*k*k, Cin] x X [Cin, N*H*W]: each (c, i, j, n) a contiguous H x W plane.
  const Tensor wt = w.reshape({cin, cout * k * k}).transpose(0, 1);
  const Tensor cols = ops::matmul(wt, x.transpose(0, 1).reshape({cin, n * h * wd}));
  Tensor out = col2im(cols.reshape({cout, k, k, n, h, wd}), stride, padding);
  if (b.defined()) out = out + b.view({1, cout, 1, 1});
  return out;
}

}  // namespace kiln::vae
