// conv_transpose2d with few output channels (an image decoder's last layer), as a GEMM and a
// col2im scatter, the way PyTorch computes every transposed convolution:
//
//   cols [Cout*kh*kw, N*H*W] = W^T [Cout*kh*kw, Cin] X [Cin, N*H*W]
//   out[n, c, y*sh - ph + i*dh, x*sw - pw + j*dw] += cols[(c, i, j), (n, y, x)]
//
// oneDNN 2.6's deconvolution vectorises over output channels: with one output channel it pads
// to 16 and ran below the GEMM route on the VAE's 32 -> 1 layer (docs/models/vae.md, "Speed").
// Gradients come from the matmul's and col2im's own backward (col2im's is the matching gather,
// im2col), so this path is differentiable in x, w and b like the primitive path.
#include "ops/conv_transpose_narrow.hpp"

#include <algorithm>

#include "kiln/autograd.hpp"
#include "ops/op_util.hpp"

namespace kiln::ops::detail {
namespace {

struct Col2im {
  std::int64_t n, c, h, w;  // input planes: cols [c, kh, kw, n, h, w]
  std::int64_t kh, kw, oh, ow, sh, sw, ph, pw, dh, dw;
};

// floor(a / b) for b > 0 (C++ division truncates toward zero).
std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  return a >= 0 ? a / b : -((-a + b - 1) / b);
}

// Scatter (img += cols, the forward) or gather (cols = img, the backward) over the same index
// map. Each (n, c) owns one output plane and its kh * kw input planes, so pieces never share
// memory.
template <bool kScatter>
void walk(const Col2im& g, float* cols, float* img) {
  parallel_range(g.n * g.c, 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t nc = b; nc < e; ++nc) {
      const std::int64_t n = nc / g.c, c = nc % g.c;
      float* plane = img + nc * g.oh * g.ow;
      for (std::int64_t i = 0; i < g.kh; ++i) {
        for (std::int64_t j = 0; j < g.kw; ++j) {
          float* col = cols + (((c * g.kh + i) * g.kw + j) * g.n + n) * g.h * g.w;
          const std::int64_t oi = i * g.dh - g.ph, oj = j * g.dw - g.pw;
          // Input rows y with 0 <= y * sh + oi < oh, columns likewise.
          const std::int64_t y0 = std::max<std::int64_t>(0, -floor_div(oi, g.sh));
          const std::int64_t y1 = std::min<std::int64_t>(g.h, floor_div(g.oh - 1 - oi, g.sh) + 1);
          const std::int64_t x0 = std::max<std::int64_t>(0, -floor_div(oj, g.sw));
          const std::int64_t x1 = std::min<std::int64_t>(g.w, floor_div(g.ow - 1 - oj, g.sw) + 1);
          for (std::int64_t y = y0; y < y1; ++y) {
            float* orow = plane + (y * g.sh + oi) * g.ow + oj;
            float* crow = col + y * g.w;
            if constexpr (kScatter) {
              for (std::int64_t x = x0; x < x1; ++x) orow[x * g.sw] += crow[x];
            } else {
              for (std::int64_t x = x0; x < x1; ++x) crow[x] = orow[x * g.sw];
            }
          }
        }
      }
    }
  });
}

Tensor col2im(const Tensor& cols_in, const Col2im& g) {
  const Tensor cols = cols_in.detach().contiguous();
  Tensor out = Tensor::zeros({g.n, g.c, g.oh, g.ow});
  walk<true>(g, cols.data<float>(), out.data<float>());
  if (needs_grad({cols_in})) {
    record("conv_transpose2d.col2im", {cols_in}, {&out}, [g](const TensorList& grads) {
      const Tensor go = grads[0].contiguous();
      Tensor gc = Tensor::empty({g.c * g.kh * g.kw, g.n * g.h * g.w});
      // Positions no output reads (cropped by the padding) get no gradient.
      gc.zero_();
      walk<false>(g, gc.data<float>(), const_cast<float*>(go.data<float>()));
      return TensorList{gc};
    });
  }
  return out;
}

}  // namespace

bool narrow_transpose_applies(const NarrowTransposeGeom& g) {
  return g.groups == 1 && g.oc <= kNarrowTransposeChannels && g.f32;
}

Tensor conv_transpose2d_narrow(const Tensor& x, const Tensor& w, const Tensor& b,
                               const NarrowTransposeGeom& g, Act act, float alpha) {
  const std::int64_t n = x.size(0), cin = x.size(1), h = x.size(2), wd = x.size(3);
  const std::int64_t cout = w.size(1), kh = w.size(2), kw = w.size(3);
  // W [Cin, Cout, kh, kw] viewed as W^T [Cout*kh*kw, Cin]; X as [Cin, N*H*W] (one copy).
  const Tensor wt = w.reshape({cin, cout * kh * kw}).transpose(0, 1);
  const Tensor xc = x.contiguous().transpose(0, 1).contiguous().reshape({cin, n * h * wd});
  const Tensor cols = matmul(wt, xc);
  const Col2im geom{n, cout, h, wd, kh, kw, g.oh, g.ow, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw};
  Tensor out = col2im(cols, geom);
  if (b.defined()) out = out + b.reshape({1, cout, 1, 1});
  return act == Act::none ? out : activation(out, act, alpha);
}

}  // namespace kiln::ops::detail
