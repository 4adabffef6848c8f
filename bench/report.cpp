#include "bench/report.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "core/allocator.h"
#include "core/error.h"

namespace minidl::bench {

std::pair<double, double> mean_std(const std::vector<double>& v) {
  if (v.empty()) return {NAN, NAN};
  double m = 0;
  for (double x : v) m += x;
  m /= static_cast<double>(v.size());
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  if (v.size() == 1) return {m, NAN};  // one sample says nothing about the spread
  return {m, std::sqrt(s / static_cast<double>(v.size()))};
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) out += fmt::format("\\u{:04x}", c);
        else out += c;
    }
  }
  return out;
}

namespace {
// max_err is -1 when the row was not checked; NaN when the check found NaNs.
bool checked(const AttentionRow& r) { return !(r.max_err < 0); }
bool any_checked(const std::vector<AttentionRow>& rows) {
  return std::any_of(rows.begin(), rows.end(), [](const AttentionRow& r) { return checked(r); });
}
std::string err_str(double e) { return e >= 0 ? fmt::format("{:.2e}", e) : std::isnan(e) ? "nan" : ""; }

// A timing for the table and CSV: fixed-point, "nan"/"inf"/"-inf" (never "-nan") where not finite.
std::string ms_str(double v, int decimals) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return fmt::format("{:.{}f}", v, decimals);
}
// A standard deviation: `na` where it is undefined (a single repetition).
std::string std_str(double v, int decimals, const char* na) { return std::isnan(v) ? na : ms_str(v, decimals); }
// A JSON number; JSON has no NaN or infinity, so those are null.
std::string json_num(double v, int decimals) {
  return std::isfinite(v) ? fmt::format("{:.{}f}", v, decimals) : "null";
}
}  // namespace

std::string to_markdown(const std::vector<AttentionRow>& rows) {
  const bool check = any_checked(rows);
  std::string out =
      "| method | d_model | seq_len | status | fwd_mean_ms | fwd_std_ms | bwd_mean_ms | bwd_std_ms | mem_before_bwd |";
  out += check ? " max_err |\n" : "\n";
  out += "| --- | --- | --- | --- | --- | --- | --- | --- | --- |";
  out += check ? " --- |\n" : "\n";
  for (const auto& r : rows) {
    if (r.ok()) {
      out += fmt::format("| {} | {} | {} | OK | {} | {} | {} | {} | {} |", r.method, r.d_model,
                         r.seq_len, ms_str(r.fwd_mean_ms, 3), std_str(r.fwd_std_ms, 3, "n/a"),
                         ms_str(r.bwd_mean_ms, 3), std_str(r.bwd_std_ms, 3, "n/a"),
                         format_bytes(r.mem_before_bwd));
    } else {
      out += fmt::format("| {} | {} | {} | {} |  |  |  |  | {} |", r.method, r.d_model, r.seq_len,
                         r.status, r.status == "OOM" ? "OOM" : "");
    }
    out += check ? fmt::format(" {} |\n", err_str(r.max_err)) : "\n";
  }
  return out;
}

std::string to_csv(const std::vector<AttentionRow>& rows) {
  const bool check = any_checked(rows);
  std::string out =
      "method,d_model,seq_len,status,fwd_mean_ms,fwd_std_ms,bwd_mean_ms,bwd_std_ms,mem_before_bwd_bytes";
  out += check ? ",max_err\n" : "\n";
  for (const auto& r : rows) {
    std::string status = r.status;
    std::replace(status.begin(), status.end(), ',', ';');
    std::replace(status.begin(), status.end(), '"', '\'');
    if (r.ok())
      out += fmt::format("{},{},{},OK,{},{},{},{},{}", r.method, r.d_model, r.seq_len,
                         ms_str(r.fwd_mean_ms, 4), std_str(r.fwd_std_ms, 4, ""), ms_str(r.bwd_mean_ms, 4),
                         std_str(r.bwd_std_ms, 4, ""), r.mem_before_bwd);
    else
      out += fmt::format("{},{},{},\"{}\",,,,,", r.method, r.d_model, r.seq_len, status);
    if (check) out += fmt::format(",{}", err_str(r.max_err));
    out += '\n';
  }
  return out;
}

std::string to_json(const AttentionSetup& s, const std::vector<AttentionRow>& rows,
                    const std::string& extra_json) {
  std::string out = fmt::format(
      "{{\n  \"setup\": {{\"device\": \"{}\", \"dtype\": \"{}\", \"batch\": {}, \"heads\": {}, "
      "\"causal\": {}, \"reps\": {}, \"warmup\": {}}},\n  \"rows\": [",
      json_escape(s.device), json_escape(s.dtype), s.batch, s.heads, s.causal, s.reps, s.warmup);
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& r = rows[i];
    out += fmt::format(
        "{}\n    {{\"method\": \"{}\", \"d_model\": {}, \"seq_len\": {}, \"status\": \"{}\"", i ? "," : "",
        json_escape(r.method), r.d_model, r.seq_len, json_escape(r.status));
    if (r.ok())
      out += fmt::format(
          ", \"fwd_mean_ms\": {}, \"fwd_std_ms\": {}, \"bwd_mean_ms\": {}, \"bwd_std_ms\": {}, "
          "\"mem_before_bwd\": {}, \"first_call_ms\": {}",
          json_num(r.fwd_mean_ms, 6), json_num(r.fwd_std_ms, 6), json_num(r.bwd_mean_ms, 6),
          json_num(r.bwd_std_ms, 6), r.mem_before_bwd, json_num(r.first_call_ms, 3));
    if (checked(r))
      out += std::isfinite(r.max_err) ? fmt::format(", \"max_err\": {:.6e}", r.max_err) : ", \"max_err\": null";
    out += "}";
  }
  out += "\n  ]";
  if (!extra_json.empty()) out += ",\n  \"extra\": " + extra_json;
  return out + "\n}\n";
}

namespace {

// One panel of the plot: a log-log chart of value(row) against seq_len.
struct Panel {
  const char* title;
  const char* unit;
  double (*value)(const AttentionRow&);
};

std::string tick_label(double v) {
  if (v >= 1024.0 * 1024 * 1024) return fmt::format("{:g}G", v / (1024.0 * 1024 * 1024));
  if (v >= 1024.0 * 1024) return fmt::format("{:g}M", v / (1024.0 * 1024));
  if (v >= 1e4) return fmt::format("{:g}k", v / 1e3);
  return fmt::format("{:g}", v);
}

}  // namespace

std::string to_svg(const AttentionSetup& setup, const std::vector<AttentionRow>& rows) {
  const Panel panels[] = {
      {"forward", "ms", [](const AttentionRow& r) { return r.fwd_mean_ms; }},
      {"backward", "ms", [](const AttentionRow& r) { return r.bwd_mean_ms; }},
      {"mem_before_bwd", "bytes", [](const AttentionRow& r) { return static_cast<double>(r.mem_before_bwd); }},
  };
  const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"};
  std::set<int64_t> ds, seqs;
  std::set<std::string> methods;
  for (const auto& r : rows) ds.insert(r.d_model), seqs.insert(r.seq_len), methods.insert(r.method);
  const double pw = 380, ph = 300, ml = 70, mt = 50, gap = 40;
  const double width = ml + 3 * (pw + gap) + 140, height = mt + ph + 70;
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{:.0f}\" height=\"{:.0f}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{:.0f}\" y=\"22\" font-size=\"15\">minidl attention: eager vs compiled on {} ({}, batch {}{})</text>\n",
      width, height, ml, json_escape(setup.device), setup.dtype, setup.batch,
      setup.causal ? ", causal" : "");
  if (seqs.empty()) return svg + "</svg>\n";
  const double sx0 = std::log10(static_cast<double>(*seqs.begin())),
               sx1 = std::max(sx0 + 1e-9, std::log10(static_cast<double>(*seqs.rbegin())));
  for (int p = 0; p < 3; ++p) {
    const Panel& panel = panels[p];
    const double x0 = ml + p * (pw + gap), y0 = mt;
    double lo = INFINITY, hi = 0;
    for (const auto& r : rows)
      if (r.ok() && panel.value(r) > 0) lo = std::min(lo, panel.value(r)), hi = std::max(hi, panel.value(r));
    if (!(hi > 0)) lo = 1, hi = 10;
    const double ly0 = std::floor(std::log10(lo)), ly1 = std::max(ly0 + 1, std::ceil(std::log10(hi)));
    auto X = [&](double seq) { return x0 + (std::log10(seq) - sx0) / (sx1 - sx0) * pw; };
    auto Y = [&](double v) { return y0 + ph - (std::log10(v) - ly0) / (ly1 - ly0) * ph; };
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"13\">{} ({})</text>\n", x0, y0 - 8,
                       panel.title, panel.unit);
    svg += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"none\" stroke=\"#444\"/>\n",
                       x0, y0, pw, ph);
    for (double e = ly0; e <= ly1 + 1e-9; e += 1) {
      const double y = Y(std::pow(10.0, e));
      svg += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#ddd\"/>"
                         "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n",
                         x0, y, x0 + pw, y, x0 - 4, y + 4, tick_label(std::pow(10.0, e)));
    }
    for (int64_t s : seqs)
      svg += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{0:.1f}\" y2=\"{2:.1f}\" stroke=\"#eee\"/>"
                         "<text x=\"{0:.1f}\" y=\"{3:.1f}\" text-anchor=\"middle\">{4}</text>\n",
                         X(static_cast<double>(s)), y0, y0 + ph, y0 + ph + 16, s);
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">seq_len</text>\n", x0 + pw / 2,
                       y0 + ph + 34);
    int ci = 0;
    for (int64_t d : ds) {
      for (const auto& m : methods) {
        std::string pts;
        for (const auto& r : rows)
          if (r.d_model == d && r.method == m && r.ok() && panel.value(r) > 0)
            pts += fmt::format("{:.1f},{:.1f} ", X(static_cast<double>(r.seq_len)), Y(panel.value(r)));
        if (pts.empty()) continue;
        svg += fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{}/>\n", pts,
                           colors[ci % 7], m == "eager" ? "" : " stroke-dasharray=\"6,4\"");
      }
      ++ci;
    }
  }
  // Legend: colour = d_model, dash = method.
  double lx = ml + 3 * (pw + gap), ly = mt + 10;
  int ci = 0;
  for (int64_t d : ds) {
    svg += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\" stroke-width=\"3\"/>"
                       "<text x=\"{:.1f}\" y=\"{:.1f}\">d_model {}</text>\n",
                       lx, ly, lx + 24, ly, colors[ci++ % 7], lx + 30, ly + 4, d);
    ly += 18;
  }
  ly += 8;
  for (const auto& m : methods) {
    svg += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#333\" stroke-width=\"2\"{}/>"
                       "<text x=\"{:.1f}\" y=\"{:.1f}\">{}</text>\n",
                       lx, ly, lx + 24, ly, m == "eager" ? "" : " stroke-dasharray=\"6,4\"", lx + 30, ly + 4,
                       json_escape(m));
    ly += 18;
  }
  return svg + "</svg>\n";
}

}  // namespace minidl::bench
