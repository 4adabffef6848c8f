// safetensors I/O: named tensors in the format other tools (Hugging Face safetensors, PyTorch,
// MLX, candle) read and write.
//
// NOTE [safetensors layout]
//   bytes 0..8     header length N, unsigned 64-bit little-endian
//   bytes 8..8+N   JSON object, UTF-8: {"__metadata__": {str: str}?, name: {"dtype": "F32",
//                  "shape": [2, 3], "data_offsets": [begin, end]}, ...}; padded with spaces
//   rest           the data buffer: each tensor's elements, row-major, little-endian, at
//                  [begin, end) relative to the buffer's start
// Reading is strict, like the reference implementation: the ranges must tile the buffer exactly
// (no holes, no overlaps, nothing after the last), each range must hold exactly
// numel * itemsize bytes, and a malformed file raises a ValueError naming the problem.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "core/dtype.h"
#include "core/tensor.h"

namespace minidl::nn {

/// Tensors by name (sorted by name), as state_dict() returns them.
using TensorMap = std::map<std::string, Tensor>;

/// What a safetensors file holds: tensors (on the CPU) and the optional string metadata.
struct SafeTensors {
  TensorMap tensors;
  std::map<std::string, std::string> metadata;
};

/// The file's bytes for `tensors` (any device, dtype and layout) and optional metadata. Tensors
/// are ordered by element size, then name, so each starts aligned to its element size.
std::string serialize_safetensors(const TensorMap& tensors,
                                  const std::map<std::string, std::string>& metadata = {});
/// Parses a whole file's bytes. `source` names it in error messages.
SafeTensors deserialize_safetensors(std::string_view bytes, const std::string& source = "<bytes>");

/// Writes serialize_safetensors(...) to path atomically (write_file_atomically: concurrent saves
/// to one path leave one complete file). I/O failures are ValueErrors naming the path.
void save_safetensors(const std::string& path, const TensorMap& tensors,
                      const std::map<std::string, std::string>& metadata = {});
/// Reads and parses the file at path; every failure is a ValueError naming the path.
SafeTensors load_safetensors(const std::string& path);

/// safetensors' name for a dtype ("F32", "BF16", "I64", "BOOL", ...).
const char* safetensors_dtype_name(DType t);

}  // namespace minidl::nn
