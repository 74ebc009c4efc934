// Umbrella header for kiln::nn: modules with named parameters and the layers built on them.
//
//   #include "kiln/nn.hpp"
//   struct Mlp : kiln::nn::Module {
//     std::shared_ptr<kiln::nn::Linear> fc1 =
//         register_module("fc1", std::make_shared<kiln::nn::Linear>(2, 64));
//     std::shared_ptr<kiln::nn::Linear> fc2 =
//         register_module("fc2", std::make_shared<kiln::nn::Linear>(64, 3));
//     kiln::Tensor forward(const kiln::Tensor& x) const {
//       return fc2->forward(fc1->forward(x, {.act = kiln::ops::Act::relu}));
//     }
//   };
#pragma once

#include "kiln/nn/avg_pool2d.hpp"
#include "kiln/nn/batch_norm2d.hpp"
#include "kiln/nn/conv2d.hpp"
#include "kiln/nn/conv_transpose2d.hpp"
#include "kiln/nn/dropout.hpp"
#include "kiln/nn/embedding.hpp"
#include "kiln/nn/group_norm.hpp"
#include "kiln/nn/init.hpp"
#include "kiln/nn/layer_norm.hpp"
#include "kiln/nn/linear.hpp"
#include "kiln/nn/max_pool2d.hpp"
#include "kiln/nn/module.hpp"
#include "kiln/nn/rnn.hpp"
#include "kiln/nn/upsample.hpp"
