// The basic layers: Linear, Embedding, LayerNorm, Dropout, activations, Sequential and MLP.
// Parameters are public members, as in PyTorch (linear->weight). Initialisation follows
// PyTorch: Linear U(-1/sqrt(in), 1/sqrt(in)), Embedding N(0, 1), LayerNorm ones and zeros.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "nn/module.h"

namespace minidl::nn {

/// y = x·Wᵀ + b over the last dim: (..., in) -> (..., out). weight (out, in), bias (out,).
class Linear : public Module {
 public:
  /// Weight U(-1/sqrt(in), 1/sqrt(in)) and, if bias, the same for the bias.
  Linear(int64_t in_features, int64_t out_features, bool bias = true);
  Tensor forward(const Tensor& x) override;

  Tensor weight, bias;  // bias is undefined when built without one
  const int64_t in_features, out_features;
};

/// Lookup table: (...) integer ids -> (..., dim). weight (num_embeddings, dim).
class Embedding : public Module {
 public:
  /// Weight N(0, 1).
  Embedding(int64_t num_embeddings, int64_t dim);
  Tensor forward(const Tensor& ids) override;

  Tensor weight;
  const int64_t num_embeddings, dim;
};

/// Normalises the last dim to zero mean and unit variance, then scales and shifts.
class LayerNorm : public Module {
 public:
  /// Weight ones, bias zeros, over a last dim of size dim.
  explicit LayerNorm(int64_t dim, double eps = 1e-5);
  Tensor forward(const Tensor& x) override;

  Tensor weight, bias;  // (dim,)
  const double eps;
};

/// Zeroes elements with probability p and scales the rest by 1/(1-p), in training mode only.
class Dropout : public Module {
 public:
  /// p in [0, 1).
  explicit Dropout(double p = 0.5);
  Tensor forward(const Tensor& x) override;

  const double p;
};

/// max(x, 0).
class ReLU : public Module {
 public:
  ReLU() : Module("ReLU") {}
  Tensor forward(const Tensor& x) override;
};
/// GELU, tanh approximation (GPT-2's).
class GELU : public Module {
 public:
  GELU() : Module("GELU") {}
  Tensor forward(const Tensor& x) override;
};
/// tanh(x).
class Tanh : public Module {
 public:
  Tanh() : Module("Tanh") {}
  Tensor forward(const Tensor& x) override;
};
/// 1 / (1 + exp(-x)).
class Sigmoid : public Module {
 public:
  Sigmoid() : Module("Sigmoid") {}
  Tensor forward(const Tensor& x) override;
};
/// x * sigmoid(x).
class SiLU : public Module {
 public:
  SiLU() : Module("SiLU") {}
  Tensor forward(const Tensor& x) override;
};

/// The activation module for "relu", "gelu", "tanh", "sigmoid" or "silu"; ValueError otherwise.
std::shared_ptr<Module> make_activation(const std::string& name);

/// Applies its modules in order; they are registered as "0", "1", ...
class Sequential : public Module {
 public:
  /// A Sequential of `modules`, in order.
  Sequential(std::initializer_list<std::shared_ptr<Module>> modules = {});
  Tensor forward(const Tensor& x) override;

  /// Appends a module (registered under the next index).
  void push_back(std::shared_ptr<Module> m);
  /// Number of modules.
  size_t size() const { return children().size(); }
  /// The i-th module.
  const std::shared_ptr<Module>& operator[](size_t i) const { return children().at(i).second; }

 protected:
  /// An empty Sequential reporting another type name (for subclasses such as MLP).
  explicit Sequential(std::string type_name) : Module(std::move(type_name)) {}
};

/// Linear layers of the given sizes with an activation between them (none after the last):
/// MLP({2, 64, 64, 3}) is Linear(2,64), ReLU, Linear(64,64), ReLU, Linear(64,3).
class MLP : public Sequential {
 public:
  /// sizes: input, hidden..., output; activation as for make_activation(); dropout after each
  /// activation when > 0.
  MLP(const std::vector<int64_t>& sizes, const std::string& activation = "relu", double dropout = 0.0);

  std::vector<std::shared_ptr<Linear>> linears;  // the Linear layers, in order
};

}  // namespace minidl::nn
