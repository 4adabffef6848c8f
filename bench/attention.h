// `minidl-bench attention`: options and one measured row, exposed for the tests.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/device.h"
#include "bench/report.h"
#include "core/dtype.h"

namespace minidl::bench {

struct AttentionConfig {
  std::vector<int64_t> ds, seqs;
  int64_t batch = 8, heads = 0;
  DType dtype = kFloat32;
  bool causal = false, check = false;
  std::vector<std::string> methods;
  int reps = 3, warmup = 1;
  Device device;
  int64_t mem_limit = 0;  // bytes, 0: none
  std::string format = "md", plot;
  std::string replot, device_name;  // --replot TABLE: plot TABLE's rows, measure nothing
  uint64_t seed = 0;
};

/// Parses the subcommand's options (see `minidl-bench attention --help`); throws ValueError
/// (or DeviceError for an unusable --device) naming the bad option.
AttentionConfig parse_attention_args(const std::vector<std::string>& argv);
/// Measures one row; OOM and other minidl errors become the row's status, never an exception.
AttentionRow run_attention_row(const AttentionConfig& c, const std::string& method, int64_t d,
                               int64_t n);
/// The subcommand's exit status for its rows: 1 when any row is ERROR, else 0 (OOM is a
/// measured outcome, not a failure).
int attention_exit_status(const std::vector<AttentionRow>& rows);

}  // namespace minidl::bench
