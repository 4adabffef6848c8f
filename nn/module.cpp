#include "nn/module.h"

#include <algorithm>
#include <optional>

#include "core/grad_mode.h"

namespace minidl::nn {

void Module::check_new_name(const std::string& name) const {
  MINIDL_CHECK(!name.empty() && name.find('.') == std::string::npos, ValueError,
               "[{}] invalid name '{}': names are non-empty and contain no '.'", type_name_, name);
  const auto taken = [&](const auto& list) {
    return std::any_of(list.begin(), list.end(), [&](const auto& e) { return e.first == name; });
  };
  MINIDL_CHECK(!taken(params_) && !taken(children_), ValueError,
               "[{}] name '{}' is already registered", type_name_, name);
}

void Module::register_parameter(const std::string& name, Tensor& slot) {
  check_new_name(name);
  MINIDL_CHECK(slot.defined() && slot.is_leaf(), ValueError,
               "[{}] parameter '{}' must be a defined leaf tensor", type_name_, name);
  slot.requires_grad_(true);
  params_.emplace_back(name, &slot);
}

void Module::collect_slots(const std::string& prefix,
                           std::vector<std::pair<std::string, Tensor*>>& out) const {
  for (const auto& [name, slot] : params_) out.emplace_back(prefix + name, slot);
  for (const auto& [name, child] : children_) child->collect_slots(prefix + name + ".", out);
}

std::vector<std::pair<std::string, Tensor*>> Module::named_slots() const {
  std::vector<std::pair<std::string, Tensor*>> out;
  collect_slots("", out);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& [name, slot] : named_slots()) {
    const bool seen = std::any_of(out.begin(), out.end(),
                                  [&](const auto& e) { return e.second.is_same(*slot); });
    if (!seen) out.emplace_back(name, *slot);
  }
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (const Tensor& p : parameters()) n += p.numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

Module& Module::convert(std::optional<Device> device, std::optional<DType> dtype) {
  NoGradGuard no_grad;
  std::vector<std::pair<Tensor, Tensor>> moved;  // old -> new, so a shared tensor moves once
  for (auto& [name, slot] : named_slots()) {
    const Device d = device.value_or(slot->device());
    const DType t = dtype && is_floating(slot->dtype()) ? *dtype : slot->dtype();
    if (slot->device() == d && slot->dtype() == t) continue;
    auto it = std::find_if(moved.begin(), moved.end(),
                           [&](const auto& e) { return e.first.is_same(*slot); });
    if (it == moved.end()) {
      Tensor p = slot->detach().to(d).to(t);
      p.requires_grad_(slot->requires_grad());
      if (slot->grad().defined()) p.set_grad(slot->grad().to(d).to(t));
      moved.emplace_back(*slot, p);
      it = moved.end() - 1;
    }
    *slot = it->second;
  }
  return *this;
}

Module& Module::to(Device device, DType dtype) { return convert(device, dtype); }
Module& Module::to(Device device) { return convert(device, std::nullopt); }
Module& Module::to(DType dtype) { return convert(std::nullopt, dtype); }

void Module::zero_grad() {
  for (const Tensor& p : parameters()) p.zero_grad();
}

TensorMap Module::state_dict() const {
  TensorMap out;
  for (const auto& [name, slot] : named_slots()) out.emplace(name, slot->detach());
  return out;
}

void Module::load_state_dict(const TensorMap& state) {
  std::vector<std::string> missing, unexpected, mis_shaped;
  const auto slots = named_slots();
  for (const auto& [name, slot] : slots) {
    auto it = state.find(name);
    if (it == state.end()) missing.push_back(name);
    else if (!it->second.defined() || it->second.shape() != slot->shape())
      mis_shaped.push_back(fmt::format("{} (expected {}, got {})", name, shape_str(slot->shape()),
                                       it->second.defined() ? shape_str(it->second.shape()) : "undefined"));
  }
  for (const auto& [name, t] : state) {
    const bool known = std::any_of(slots.begin(), slots.end(), [&](const auto& s) { return s.first == name; });
    if (!known) unexpected.push_back(name);
  }
  const auto list = [](const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
    return s;
  };
  if (!missing.empty() || !unexpected.empty()) {
    std::string msg = fmt::format("[load_state_dict] state does not match {}:", type_name_);
    if (!missing.empty()) msg += fmt::format(" missing keys: {}.", list(missing));
    if (!unexpected.empty()) msg += fmt::format(" unexpected keys: {}.", list(unexpected));
    if (!mis_shaped.empty()) msg += fmt::format(" mis-shaped keys: {}.", list(mis_shaped));
    throw ValueError(msg);
  }
  MINIDL_CHECK(mis_shaped.empty(), ShapeError, "[load_state_dict] mis-shaped keys for {}: {}",
               type_name_, list(mis_shaped));
  NoGradGuard no_grad;
  for (const auto& [name, slot] : slots) slot->copy_(state.at(name));
}

void Module::save(const std::string& path) const { save_safetensors(path, state_dict()); }

void Module::load(const std::string& path) { load_state_dict(load_safetensors(path).tensors); }

Module::ParameterSwap::ParameterSwap(Module& m, const std::vector<Tensor>& params) {
  const std::vector<Tensor> originals = m.parameters();
  MINIDL_CHECK(params.size() == originals.size(), ValueError,
               "[with_parameters] {} has {} parameters, got {} tensors", m.type_name(),
               originals.size(), params.size());
  for (size_t i = 0; i < params.size(); ++i)
    MINIDL_CHECK(params[i].defined() && params[i].shape() == originals[i].shape(), ShapeError,
                 "[with_parameters] tensor {} is {}, but {}'s parameter {} is {}", i,
                 describe(params[i]), m.type_name(), i, describe(originals[i]));
  for (auto& [name, slot] : m.named_slots()) {
    const auto it = std::find_if(originals.begin(), originals.end(),
                                 [&](const Tensor& p) { return p.is_same(*slot); });
    saved_.emplace_back(slot, *slot);
    *slot = params[static_cast<size_t>(it - originals.begin())];
  }
}

Module::ParameterSwap::~ParameterSwap() {
  for (auto& [slot, original] : saved_) *slot = original;
}

}  // namespace minidl::nn
