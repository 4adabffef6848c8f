// Results of `minidl-bench attention` and their renderings: the markdown table of
// ../shared/reference/seed_attention_table.md, CSV, JSON, and an SVG plot.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace minidl::bench {

/// One (method, d_model, seq_len) measurement.
struct AttentionRow {
  std::string method;  // "eager" or "compiled"
  int64_t d_model = 0, seq_len = 0;
  std::string status = "OK";  // "OK", "OOM" or "ERROR: <reason>"
  double fwd_mean_ms = 0, fwd_std_ms = 0, bwd_mean_ms = 0, bwd_std_ms = 0;
  int64_t mem_before_bwd = 0;  // bytes alive after the forward
  double max_err = -1;         // max relative error of compiled vs eager (--check), else -1
  double first_call_ms = 0;    // the untimed first call (tracing and JIT for compiled)
  bool ok() const { return status == "OK"; }
};

/// What the rows were measured on, for JSON and the plot title.
struct AttentionSetup {
  std::string device, dtype;
  int64_t batch = 8, heads = 0;  // heads 0: 3-D (batch, seq, d) inputs
  bool causal = false;
  int reps = 0, warmup = 0;
};

/// The seed's markdown table (plus a max_err column when any row was checked).
std::string to_markdown(const std::vector<AttentionRow>& rows);
/// The rows of the first table in text that to_markdown printed (e.g. a docs page holding one);
/// memory comes back to the printed precision. No table: no rows.
std::vector<AttentionRow> from_markdown(const std::string& text);
/// The same columns as CSV, memory in bytes.
std::string to_csv(const std::vector<AttentionRow>& rows);
/// {"setup": {...}, "rows": [...], "extra": <extra_json>} (extra_json must be valid JSON or empty).
std::string to_json(const AttentionSetup& setup, const std::vector<AttentionRow>& rows,
                    const std::string& extra_json = "");
/// Three log-log panels against seq_len (forward ms, backward ms, mem_before_bwd), one line per
/// method and d_model, a marker at every point; a line that runs out of memory ends in a cross
/// at the seq_len of its first OOM row; ERROR rows leave gaps.
std::string to_svg(const AttentionSetup& setup, const std::vector<AttentionRow>& rows);

/// Mean and population standard deviation; the deviation is NaN (undefined) for one value, both
/// are NaN for none.
std::pair<double, double> mean_std(const std::vector<double>& v);
/// Escapes a string for a JSON string literal (without the quotes).
std::string json_escape(const std::string& s);

}  // namespace minidl::bench
