// Module: the base of every layer and model, in the style of PyTorch's C++ frontend. A module
// owns parameters (Tensor members it registers by name) and submodules (shared_ptrs it
// registers by name); the base class walks that tree for parameters(), train()/eval(), to(),
// zero_grad(), state_dict() and save()/load().
//
//   struct Net : nn::Module {
//     std::shared_ptr<nn::Linear> fc;
//     Net() : Module("Net") { fc = register_module("fc", std::make_shared<nn::Linear>(4, 2)); }
//     Tensor forward(const Tensor& x) override { return fc->forward(x); }
//   };
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/device.h"
#include "core/dtype.h"
#include "core/tensor.h"
#include "nn/safetensors.h"

namespace minidl::nn {

// NOTE [Parameter slots]
// A module registers the *address* of each parameter member (register_parameter(name, weight)),
// not a copy of the handle. Whatever replaces the tensor in that member -- to(), or
// with_parameters() swapping in other tensors for a traced call -- is what forward() reads. So
// modules are neither copyable nor movable (the addresses would dangle); hold them by
// shared_ptr.
class Module {
 public:
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  /// The computation: one tensor in, one tensor out.
  virtual Tensor forward(const Tensor& x) = 0;
  /// Same as forward(x).
  Tensor operator()(const Tensor& x) { return forward(x); }

  /// The module's type ("Linear"), as used in error messages.
  const std::string& type_name() const { return type_name_; }

  /// Every parameter of this module and its submodules, depth-first in registration order,
  /// each tensor once (what an optimizer takes).
  std::vector<Tensor> parameters() const;
  /// Parameters with dotted names ("blocks.0.attn.q_proj.weight"), in parameters() order.
  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  /// Direct submodules with their names, in registration order.
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const {
    return children_;
  }
  /// Total number of parameter elements.
  int64_t num_parameters() const;

  /// Sets training mode here and in every submodule (dropout is active only in training).
  void train(bool on = true);
  /// train(false).
  void eval() { train(false); }
  /// True in training mode (the default), false after eval().
  bool is_training() const { return training_; }

  /// Moves every parameter (and gradient) to `device`, converting floating ones to `dtype`.
  /// Parameters are replaced by new leaf tensors: build optimizers after moving the model.
  Module& to(Device device, DType dtype);
  /// to(device) keeping each parameter's dtype.
  Module& to(Device device);
  /// Converts floating parameters to dtype, keeping each parameter's device.
  Module& to(DType dtype);
  /// Drops every parameter's gradient.
  void zero_grad();

  /// Detached parameters by dotted name (sharing storage with the module).
  TensorMap state_dict() const;
  /// Copies `state` into the parameters (converting dtype and device). Every parameter must be
  /// present with its exact shape and no other key may appear; otherwise throws a ValueError
  /// (missing / unexpected keys) or ShapeError (mis-shaped keys) listing them all, before
  /// anything is written.
  void load_state_dict(const TensorMap& state);
  /// Saves state_dict() as a safetensors file.
  void save(const std::string& path) const;
  /// Loads a safetensors file written by save() (or any tool) with load_state_dict().
  void load(const std::string& path);

  /// Calls fn() with the parameters temporarily replaced by `params` (one per parameters()
  /// entry, same shapes), then restores them, also when fn throws: the module as a function of
  /// its parameters, e.g. for compile() to trace with the parameters as inputs.
  template <class F>
  auto with_parameters(const std::vector<Tensor>& params, F&& fn) {
    ParameterSwap swap(*this, params);
    return fn();
  }

 protected:
  explicit Module(std::string type_name) : type_name_(std::move(type_name)) {}

  /// Registers the member `slot` as parameter `name` and marks it as requiring grad.
  /// See NOTE [Parameter slots].
  void register_parameter(const std::string& name, Tensor& slot);
  /// Registers a submodule under `name` and returns it (to store in a typed member).
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    check_new_name(name);
    children_.emplace_back(name, module);
    return module;
  }

 private:
  // Restores the swapped-out parameters in its destructor.
  class ParameterSwap {
   public:
    ParameterSwap(Module& m, const std::vector<Tensor>& params);
    ~ParameterSwap();
    ParameterSwap(const ParameterSwap&) = delete;
    ParameterSwap& operator=(const ParameterSwap&) = delete;

   private:
    std::vector<std::pair<Tensor*, Tensor>> saved_;
  };

  Module& convert(std::optional<Device> device, std::optional<DType> dtype);
  void check_new_name(const std::string& name) const;
  /// Every parameter slot of the tree with its dotted name (a shared tensor may appear twice).
  std::vector<std::pair<std::string, Tensor*>> named_slots() const;
  void collect_slots(const std::string& prefix, std::vector<std::pair<std::string, Tensor*>>& out) const;

  std::string type_name_;
  bool training_ = true;
  std::vector<std::pair<std::string, Tensor*>> params_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

}  // namespace minidl::nn
