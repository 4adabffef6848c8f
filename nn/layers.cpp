#include "nn/layers.h"

#include <cmath>

#include "core/ops.h"
#include "nn/init.h"

namespace minidl::nn {

// ---- Linear

Linear::Linear(int64_t in, int64_t out, bool with_bias)
    : Module("Linear"), in_features(in), out_features(out) {
  MINIDL_CHECK(in > 0 && out > 0, ValueError, "[Linear] sizes must be positive, got in={} out={}", in, out);
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  weight = empty({out, in});
  init_uniform_(weight, -bound, bound);
  register_parameter("weight", weight);
  if (with_bias) {
    bias = empty({out});
    init_uniform_(bias, -bound, bound);
    register_parameter("bias", bias);
  }
}

Tensor Linear::forward(const Tensor& x) {
  MINIDL_CHECK(x.dim() >= 1 && x.size(-1) == in_features, ShapeError,
               "[Linear] input {} does not end in in_features={}", shape_str(x.shape()), in_features);
  Shape out_shape = x.shape();
  out_shape.back() = out_features;
  // One 2-D matmul over all leading dims: the weight gradient is one GEMM, not one per batch.
  Tensor y = matmul(x.reshape({-1, in_features}), weight.t());
  if (bias.defined()) y = y + bias;
  return y.reshape(out_shape);
}

// ---- Embedding

Embedding::Embedding(int64_t n, int64_t d) : Module("Embedding"), num_embeddings(n), dim(d) {
  MINIDL_CHECK(n > 0 && d > 0, ValueError, "[Embedding] sizes must be positive, got {} x {}", n, d);
  weight = empty({n, d});
  init_normal_(weight, 1.0);
  register_parameter("weight", weight);
}

Tensor Embedding::forward(const Tensor& ids) { return embedding(weight, ids); }

// ---- LayerNorm

LayerNorm::LayerNorm(int64_t d, double e) : Module("LayerNorm"), eps(e) {
  MINIDL_CHECK(d > 0, ValueError, "[LayerNorm] dim must be positive, got {}", d);
  weight = ones({d});
  bias = zeros({d});
  register_parameter("weight", weight);
  register_parameter("bias", bias);
}

Tensor LayerNorm::forward(const Tensor& x) { return layer_norm(x, weight, bias, eps); }

// ---- Dropout and activations

Dropout::Dropout(double prob) : Module("Dropout"), p(prob) {
  MINIDL_CHECK(p >= 0 && p < 1, ValueError, "[Dropout] probability must be in [0, 1), got {}", p);
}

Tensor Dropout::forward(const Tensor& x) { return dropout(x, p, is_training()); }

Tensor ReLU::forward(const Tensor& x) { return relu(x); }
Tensor GELU::forward(const Tensor& x) { return gelu(x); }
Tensor Tanh::forward(const Tensor& x) { return tanh(x); }
Tensor Sigmoid::forward(const Tensor& x) { return sigmoid(x); }
Tensor SiLU::forward(const Tensor& x) { return silu(x); }

std::shared_ptr<Module> make_activation(const std::string& name) {
  if (name == "relu") return std::make_shared<ReLU>();
  if (name == "gelu") return std::make_shared<GELU>();
  if (name == "tanh") return std::make_shared<Tanh>();
  if (name == "sigmoid") return std::make_shared<Sigmoid>();
  if (name == "silu") return std::make_shared<SiLU>();
  throw ValueError(fmt::format(
      "[make_activation] unknown activation '{}' (relu, gelu, tanh, sigmoid or silu)", name));
}

// ---- Sequential and MLP

Sequential::Sequential(std::initializer_list<std::shared_ptr<Module>> modules) : Module("Sequential") {
  for (const auto& m : modules) push_back(m);
}

void Sequential::push_back(std::shared_ptr<Module> m) {
  MINIDL_CHECK(m != nullptr, ValueError, "[{}] cannot add a null module", type_name());
  register_module(std::to_string(size()), std::move(m));
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor y = x;
  for (const auto& [name, m] : children()) y = m->forward(y);
  return y;
}

MLP::MLP(const std::vector<int64_t>& sizes, const std::string& activation, double dropout)
    : Sequential("MLP") {
  MINIDL_CHECK(sizes.size() >= 2, ValueError, "[MLP] needs at least an input and an output size, got {}",
               sizes.size());
  make_activation(activation);  // rejects a bad name even when no activation is needed
  for (size_t i = 0; i + 1 < sizes.size(); ++i) {
    linears.push_back(std::make_shared<Linear>(sizes[i], sizes[i + 1]));
    push_back(linears.back());
    if (i + 2 < sizes.size()) {
      push_back(make_activation(activation));
      if (dropout > 0) push_back(std::make_shared<Dropout>(dropout));
    }
  }
}

}  // namespace minidl::nn
