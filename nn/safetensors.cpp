// safetensors reading and writing; the layout is in NOTE [safetensors layout] (safetensors.h).
#include "nn/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <vector>

#include "core/file_io.h"
#include "core/grad_mode.h"
#include "nn/json.h"

namespace minidl::nn {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; minidl copies it as is");
static_assert(sizeof(bool) == 1, "safetensors BOOL is one byte per element");

namespace {

// The reference implementation's limit: no real header comes close.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DTypeName {
  DType dtype;
  const char* name;
};
constexpr DTypeName kDTypeNames[] = {{kBool, "BOOL"},       {kInt32, "I32"},   {kInt64, "I64"},
                                     {kFloat16, "F16"},     {kBFloat16, "BF16"}, {kFloat32, "F32"},
                                     {kFloat64, "F64"}};

std::string supported_names() {
  std::string s;
  for (const auto& d : kDTypeNames) s += (s.empty() ? "" : ", ") + std::string(d.name);
  return s;
}

// One tensor's header entry, checked against the buffer.
struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;
};

class Reader {
 public:
  Reader(std::string_view bytes, const std::string& source) : bytes_(bytes), source_(source) {}

  SafeTensors read() {
    if (bytes_.size() < 8)
      fail("is {} bytes long, too short to hold the 8-byte header length", bytes_.size());
    uint64_t n = 0;
    std::memcpy(&n, bytes_.data(), 8);
    if (n > kMaxHeaderBytes)
      fail("header length {} is over the {}-byte limit (not a safetensors file?)", n, kMaxHeaderBytes);
    if (n > bytes_.size() - 8)
      fail("header length {} runs past the end of the file ({} bytes; truncated?)", n, bytes_.size());
    const std::string_view header = bytes_.substr(8, n);
    if (header.empty() || header[0] != '{') fail("header does not start with '{{'");
    data_ = bytes_.substr(8 + n);

    JsonValue root;
    try {
      root = parse_json(header, "safetensors");
    } catch (const ValueError& e) {
      throw ValueError(fmt::format("{} (header of {})", e.what(), source_));
    }
    if (root.kind != JsonValue::Kind::Object) fail("header is a JSON {}, not an object", root.kind_name());

    SafeTensors out;
    std::vector<Entry> entries;
    for (const auto& [name, value] : root.object) {
      if (name == "__metadata__") out.metadata = metadata(value);
      else entries.push_back(entry(name, value));
    }
    check_tiling(entries);
    for (const Entry& e : entries) out.tensors.emplace(e.name, tensor(e));
    return out;
  }

 private:
  template <class... Args>
  [[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) const {
    throw ValueError(fmt::format("[safetensors] {}: {}", source_,
                                 fmt::format(f, std::forward<Args>(args)...)));
  }

  std::map<std::string, std::string> metadata(const JsonValue& v) const {
    if (v.kind != JsonValue::Kind::Object) fail("__metadata__ is a JSON {}, not an object", v.kind_name());
    std::map<std::string, std::string> m;
    for (const auto& [k, s] : v.object) {
      if (s.kind != JsonValue::Kind::String)
        fail("__metadata__ value of {} is a JSON {}, not a string", json_quote(k), s.kind_name());
      m.emplace(k, s.string);
    }
    return m;
  }

  uint64_t non_negative(const JsonValue& v, const std::string& name, const char* field) const {
    if (v.kind != JsonValue::Kind::Integer || v.integer < 0)
      fail("tensor {}: {} must hold non-negative integers", json_quote(name), field);
    return static_cast<uint64_t>(v.integer);
  }

  Entry entry(const std::string& name, const JsonValue& v) const {
    const std::string q = json_quote(name);
    if (v.kind != JsonValue::Kind::Object) fail("tensor {} is a JSON {}, not an object", q, v.kind_name());
    for (const auto& [k, unused] : v.object)
      if (k != "dtype" && k != "shape" && k != "data_offsets")
        fail("tensor {} has an unknown field {}", q, json_quote(k));
    const JsonValue *dt = v.find("dtype"), *shape = v.find("shape"), *offsets = v.find("data_offsets");
    if (!dt || !shape || !offsets) fail("tensor {} needs dtype, shape and data_offsets", q);

    Entry e{name, kFloat32, {}, 0, 0};
    if (dt->kind != JsonValue::Kind::String) fail("tensor {}: dtype is a JSON {}, not a string", q, dt->kind_name());
    const auto* known = std::find_if(std::begin(kDTypeNames), std::end(kDTypeNames),
                                     [&](const DTypeName& d) { return dt->string == d.name; });
    if (known == std::end(kDTypeNames))
      fail("tensor {} has dtype {}, which minidl does not support (supported: {})", q,
           json_quote(dt->string), supported_names());
    e.dtype = known->dtype;

    if (shape->kind != JsonValue::Kind::Array) fail("tensor {}: shape is a JSON {}, not an array", q, shape->kind_name());
    uint64_t nbytes = itemsize(e.dtype);
    for (const JsonValue& d : shape->array) {
      const uint64_t n = non_negative(d, name, "shape");
      if (__builtin_mul_overflow(nbytes, n, &nbytes) || nbytes > static_cast<uint64_t>(INT64_MAX))
        fail("tensor {}: shape is too large", q);
      e.shape.push_back(static_cast<int64_t>(n));
    }

    if (offsets->kind != JsonValue::Kind::Array || offsets->array.size() != 2)
      fail("tensor {}: data_offsets must be an array [begin, end]", q);
    e.begin = non_negative(offsets->array[0], name, "data_offsets");
    e.end = non_negative(offsets->array[1], name, "data_offsets");
    if (e.begin > e.end) fail("tensor {}: data_offsets [{}, {}] end before they begin", q, e.begin, e.end);
    if (e.end > data_.size())
      fail("tensor {}: data_offsets [{}, {}] run past the end of the data ({} bytes; truncated?)", q,
           e.begin, e.end, data_.size());
    if (e.end - e.begin != nbytes)
      fail("tensor {}: {} {} needs {} bytes but data_offsets [{}, {}] hold {}", q,
           dtype_name(e.dtype), shape_str(e.shape), nbytes, e.begin, e.end, e.end - e.begin);
    return e;
  }

  // The ranges must cover the data exactly once, in some order (no polyglot files).
  void check_tiling(const std::vector<Entry>& entries) const {
    std::vector<const Entry*> order;
    for (const Entry& e : entries) order.push_back(&e);
    std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
      return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
    });
    uint64_t at = 0;
    const Entry* prev = nullptr;
    for (const Entry* e : order) {
      if (e->begin < at)
        fail("tensors {} [{}, {}) and {} [{}, {}) overlap", json_quote(prev->name), prev->begin,
             prev->end, json_quote(e->name), e->begin, e->end);
      if (e->begin > at) fail("data bytes [{}, {}) belong to no tensor", at, e->begin);
      at = e->end;
      prev = e;
    }
    if (at != data_.size()) fail("{} data bytes after the last tensor belong to no tensor", data_.size() - at);
  }

  Tensor tensor(const Entry& e) const {
    NoGradGuard no_grad;
    Tensor t = empty(e.shape, e.dtype, kCPU, "safetensors");
    const char* src = data_.data() + e.begin;
    if (e.dtype == kBool) {
      for (uint64_t i = 0; i < e.end - e.begin; ++i)
        if (src[i] != 0 && src[i] != 1)
          fail("tensor {}: BOOL byte {} is {}, not 0 or 1", json_quote(e.name), i,
               static_cast<int>(static_cast<unsigned char>(src[i])));
    }
    if (e.end > e.begin) std::memcpy(t.data_ptr(), src, e.end - e.begin);
    return t;
  }

  std::string_view bytes_, data_;
  const std::string& source_;
};

}  // namespace

const char* safetensors_dtype_name(DType t) {
  for (const auto& d : kDTypeNames)
    if (d.dtype == t) return d.name;
  throw_unsupported_dtype("safetensors", t);
}

std::string serialize_safetensors(const TensorMap& tensors,
                                  const std::map<std::string, std::string>& metadata) {
  NoGradGuard no_grad;
  struct Item {
    const std::string* name;
    Tensor data;  // contiguous, on the CPU
  };
  std::vector<Item> items;
  for (const auto& [name, t] : tensors) {
    MINIDL_CHECK(!name.empty() && name != "__metadata__", ValueError,
                 "[safetensors] invalid tensor name '{}'", name);
    MINIDL_CHECK(t.defined() && t.has_storage(), ValueError,
                 "[safetensors] tensor '{}' has no data to save", name);
    items.push_back({&name, t.detach().to(kCPU).contiguous()});
  }
  // Larger elements first, so every tensor starts aligned to its element size.
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    return itemsize(a.data.dtype()) > itemsize(b.data.dtype());
  });

  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    for (const auto& [k, v] : metadata)
      header += fmt::format("{}{}:{}", header.back() == '{' ? "" : ",", json_quote(k, "safetensors"),
                            json_quote(v, "safetensors"));
    header += "}";
  }
  uint64_t offset = 0;
  for (const Item& it : items) {
    const uint64_t n = it.data.nbytes();
    std::string shape;
    for (int64_t d : it.data.shape()) shape += fmt::format("{}{}", shape.empty() ? "" : ",", d);
    header += fmt::format("{}{}:{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
                          header.size() > 1 ? "," : "", json_quote(*it.name, "safetensors"),
                          safetensors_dtype_name(it.data.dtype()), shape, offset, offset + n);
    offset += n;
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');

  std::string out(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  out.reserve(8 + header.size() + offset);
  out += header;
  for (const Item& it : items)
    if (it.data.nbytes() > 0) out.append(static_cast<const char*>(it.data.data_ptr()), it.data.nbytes());
  return out;
}

SafeTensors deserialize_safetensors(std::string_view bytes, const std::string& source) {
  return Reader(bytes, source).read();
}

void save_safetensors(const std::string& path, const TensorMap& tensors,
                      const std::map<std::string, std::string>& metadata) {
  write_file_atomically(path, serialize_safetensors(tensors, metadata), "safetensors");
}

SafeTensors load_safetensors(const std::string& path) {
  return deserialize_safetensors(read_file(path, "safetensors"), "'" + path + "'");
}

}  // namespace minidl::nn
