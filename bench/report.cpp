#include "bench/report.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include "base/error.h"
#include "core/allocator.h"

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

namespace {
// A cell of to_markdown's table back to a number: "n/a" and "" (not measured) are NaN.
double md_number(const std::string& cell) {
  if (cell.empty() || cell == "n/a") return NAN;
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(cell, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  MINIDL_CHECK(used == cell.size(), ValueError, "[attention] '{}' in the table is not a number", cell);
  return v;
}
}  // namespace

std::vector<AttentionRow> from_markdown(const std::string& text) {
  const std::string header = "| method | d_model | seq_len | status | fwd_mean_ms |";
  std::vector<AttentionRow> rows;
  size_t at = text.find(header);
  if (at == std::string::npos) return rows;
  at = text.find('\n', at);      // past the header
  at = text.find('\n', at + 1);  // past the | --- | line
  while (at != std::string::npos && at + 1 < text.size() && text[at + 1] == '|') {
    const size_t end = text.find('\n', at + 1);
    const std::string line = text.substr(at + 1, end == std::string::npos ? std::string::npos : end - at - 1);
    at = end;
    std::vector<std::string> cells;
    for (size_t c = 1; c < line.size();) {
      const size_t bar = std::min(line.find('|', c), line.size());
      std::string cell = line.substr(c, bar - c);
      cell.erase(0, cell.find_first_not_of(' '));
      cell.erase(cell.find_last_not_of(' ') + 1);
      cells.push_back(cell);
      c = bar + 1;
    }
    MINIDL_CHECK(cells.size() >= 9, ValueError, "[attention] a table row has {} cells, not 9: {}", cells.size(),
                 line);
    AttentionRow r;
    r.method = cells[0];
    r.d_model = static_cast<int64_t>(md_number(cells[1]));
    r.seq_len = static_cast<int64_t>(md_number(cells[2]));
    r.status = cells[3];
    if (r.ok()) {
      r.fwd_mean_ms = md_number(cells[4]);
      r.fwd_std_ms = md_number(cells[5]);
      r.bwd_mean_ms = md_number(cells[6]);
      r.bwd_std_ms = md_number(cells[7]);
      r.mem_before_bwd = parse_bytes(cells[8]);
    }
    if (cells.size() > 9 && !cells[9].empty()) r.max_err = md_number(cells[9]);
    rows.push_back(r);
  }
  return rows;
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

// NOTE [Plot layout]
// SVG has no text measurement, so label widths are estimated from their length at 0.62 em a
// character, which is wider than the digits and lowercase letters of common sans-serif fonts:
// each panel's left margin fits its widest tick label, the gap after it fits half its last
// seq_len label, so no label reaches into the next panel.
double text_width(const std::string& s, double font_size = 12) {
  return static_cast<double>(s.size()) * font_size * 0.62;
}

// A log axis: ticks at base^e for e = lo, lo + step, ..., hi.
struct LogAxis {
  double base = 10;
  int lo = 0, hi = 1, step = 1;
  std::string (*label)(int e) = nullptr;
};

// 10^e as a plain number ("0.01", "100", "10k").
std::string decimal_label(int e) {
  const double v = std::pow(10.0, e);
  return e >= 4 ? fmt::format("{:g}k", v / 1e3) : fmt::format("{:g}", v);
}

// 2^e bytes in the largest binary unit that divides it exactly ("512 KiB", "1 MiB", "16 GiB").
std::string binary_label(int e) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  const int u = std::clamp(e / 10, 0, 5);
  return fmt::format("{} {}", int64_t(1) << (e - 10 * u), kUnits[u]);
}

// The axis that holds [lo, hi]: decades for times; for bytes, powers of two a step apart (the
// smallest of 1, 2, 5, 10 that gives at most 8 ticks), so every tick is a round binary size.
LogAxis make_axis(double lo, double hi, bool bytes) {
  LogAxis a;
  if (!(hi > 0) || !(lo > 0)) lo = bytes ? 1024 : 1, hi = lo * (bytes ? 1024 : 10);
  if (!bytes) {
    a.lo = static_cast<int>(std::floor(std::log10(lo) + 1e-9));
    a.hi = std::max(a.lo + 1, static_cast<int>(std::ceil(std::log10(hi) - 1e-9)));
    a.label = decimal_label;
    return a;
  }
  a.base = 2;
  a.label = binary_label;
  const double e0 = std::floor(std::log2(lo) + 1e-9), e1 = std::ceil(std::log2(hi) - 1e-9);
  for (int step : {1, 2, 5, 10}) {
    a.step = step;
    a.lo = static_cast<int>(std::floor(e0 / step)) * step;
    a.hi = std::max(a.lo + step, static_cast<int>(std::ceil(e1 / step)) * step);
    if ((a.hi - a.lo) / step <= 8) break;
  }
  return a;
}

// One panel of the plot: a log-log chart of value(row) against seq_len.
struct Panel {
  const char* title;
  bool bytes;
  double (*value)(const AttentionRow&);
};

const char* const kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"};

// A point marker: filled for eager, hollow for compiled (the lines' dash, for lone points).
std::string marker(double x, double y, const char* color, bool filled) {
  return fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\" stroke=\"{}\" stroke-width=\"1.5\"/>\n", x,
                     y, filled ? color : "white", color);
}
// The out-of-memory marker: a cross.
std::string cross(double x, double y, const char* color) {
  return fmt::format("<path d=\"M{0:.1f},{1:.1f}L{2:.1f},{3:.1f}M{0:.1f},{3:.1f}L{2:.1f},{1:.1f}\" stroke=\"{4}\" "
                     "stroke-width=\"2\" fill=\"none\"/>\n",
                     x - 4.5, y - 4.5, x + 4.5, y + 4.5, color);
}
// Text for SVG (XML): &, < and > escaped.
std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) out += c == '&' ? "&amp;" : c == '<' ? "&lt;" : c == '>' ? "&gt;" : std::string(1, c);
  return out;
}
const char* dash(const std::string& method) { return method == "eager" ? "" : " stroke-dasharray=\"6,4\""; }

}  // namespace

std::string to_svg(const AttentionSetup& setup, const std::vector<AttentionRow>& rows) {
  const Panel panels[] = {
      {"forward (ms)", false, [](const AttentionRow& r) { return r.fwd_mean_ms; }},
      {"backward (ms)", false, [](const AttentionRow& r) { return r.bwd_mean_ms; }},
      {"mem_before_bwd (bytes)", true, [](const AttentionRow& r) { return static_cast<double>(r.mem_before_bwd); }},
  };
  std::set<int64_t> ds, seqs;
  std::set<std::string> methods;
  for (const auto& r : rows) ds.insert(r.d_model), seqs.insert(r.seq_len), methods.insert(r.method);
  const bool any_oom = std::any_of(rows.begin(), rows.end(), [](const AttentionRow& r) { return r.status == "OOM"; });
  const std::string title =
      fmt::format("minidl attention: eager vs compiled on {} ({}, batch {}{})", xml_escape(setup.device),
                  setup.dtype, setup.batch, setup.causal ? ", causal" : "");
  const double pw = 380, ph = 300, mt = 50;

  // The axes first: their labels decide the margins (NOTE [Plot layout]).
  LogAxis axes[3];
  double margins[3];
  for (int p = 0; p < 3; ++p) {
    double lo = INFINITY, hi = 0;
    for (const auto& r : rows) {
      const double v = panels[p].value(r);
      if (r.ok() && v > 0 && std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
    }
    axes[p] = make_axis(lo, hi, panels[p].bytes);
    double widest = 0;
    for (int e = axes[p].lo; e <= axes[p].hi; e += axes[p].step) widest = std::max(widest, text_width(axes[p].label(e)));
    margins[p] = widest + 12;
  }
  const double last_seq_half = seqs.empty() ? 0 : text_width(std::to_string(*seqs.rbegin())) / 2;
  const double after = last_seq_half + 16;  // right of each panel
  double x0s[3];
  for (int p = 0; p < 3; ++p) x0s[p] = (p ? x0s[p - 1] + pw + after : 0) + margins[p];
  const double lx = x0s[2] + pw + after + 8;
  double legend_w = any_oom ? text_width("out of memory at that seq_len") + 34 : 0;
  for (int64_t d : ds) legend_w = std::max(legend_w, text_width(fmt::format("d_model {}", d)) + 34);
  for (const auto& m : methods) legend_w = std::max(legend_w, text_width(m) + 34);
  const double width = std::max(lx + legend_w + 10, x0s[0] + text_width(title, 15) + 10), height = mt + ph + 70;

  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{:.0f}\" height=\"{:.0f}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{:.0f}\" y=\"22\" font-size=\"15\">{}</text>\n",
      width, height, x0s[0], title);
  if (seqs.empty()) return svg + "</svg>\n";
  // One seq_len: a decade around it, so its points sit in the middle.
  const double s_lo = std::log10(static_cast<double>(*seqs.begin())), s_hi = std::log10(static_cast<double>(*seqs.rbegin()));
  const double sx0 = seqs.size() == 1 ? s_lo - 0.5 : s_lo, sx1 = seqs.size() == 1 ? s_hi + 0.5 : s_hi;

  for (int p = 0; p < 3; ++p) {
    const Panel& panel = panels[p];
    const LogAxis& axis = axes[p];
    const double x0 = x0s[p], y0 = mt;
    auto X = [&](double seq) { return x0 + (std::log10(seq) - sx0) / (sx1 - sx0) * pw; };
    auto Y = [&](double v) {
      return y0 + ph - (std::log(v) / std::log(axis.base) - axis.lo) / (axis.hi - axis.lo) * ph;
    };
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"13\">{}</text>\n", x0, y0 - 8, panel.title);
    svg += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"none\" stroke=\"#444\"/>\n",
                       x0, y0, pw, ph);
    for (int e = axis.lo; e <= axis.hi; e += axis.step) {
      const double y = Y(std::pow(axis.base, e));
      svg += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#ddd\"/>"
                         "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n",
                         x0, y, x0 + pw, y, x0 - 5, y + 4, axis.label(e));
    }
    double last_right = -INFINITY;  // right end of the last seq_len label drawn
    for (int64_t s : seqs) {
      const double x = X(static_cast<double>(s)), half = text_width(std::to_string(s)) / 2;
      svg += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1:.1f}\" x2=\"{0:.1f}\" y2=\"{2:.1f}\" stroke=\"#eee\"/>\n", x, y0,
                         y0 + ph);
      if (x - half < last_right + 4) continue;  // would overlap its left neighbour
      svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n", x, y0 + ph + 16, s);
      last_right = x + half;
    }
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">seq_len</text>\n", x0 + pw / 2,
                       y0 + ph + 34);
    int ci = 0;
    for (int64_t d : ds) {
      const char* color = kColors[ci++ % 7];
      for (const auto& m : methods) {
        std::vector<const AttentionRow*> line;
        for (const auto& r : rows)
          if (r.d_model == d && r.method == m) line.push_back(&r);
        std::stable_sort(line.begin(), line.end(),
                         [](const AttentionRow* a, const AttentionRow* b) { return a->seq_len < b->seq_len; });
        std::string pts, markers;
        int npts = 0;
        bool oom_marked = false;
        double last_x = NAN, last_y = NAN;
        auto flush = [&] {  // a polyline for each run of two or more points
          if (npts >= 2)
            svg += fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{}/>\n", pts, color,
                               dash(m));
          pts.clear();
          npts = 0;
        };
        for (const AttentionRow* r : line) {
          const double v = panel.value(*r);
          if (r->ok() && v > 0 && std::isfinite(v)) {
            last_x = X(static_cast<double>(r->seq_len)), last_y = Y(v);
            pts += fmt::format("{:.1f},{:.1f} ", last_x, last_y);
            ++npts;
            markers += marker(last_x, last_y, color, m == "eager");
            continue;
          }
          flush();
          if (r->status != "OOM" || oom_marked) continue;
          // The line ends in a cross at the seq_len that ran out, level with its last point.
          oom_marked = true;
          const double x = X(static_cast<double>(r->seq_len)), y = std::isnan(last_y) ? y0 + 8 : last_y;
          if (!std::isnan(last_x))
            markers += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\" "
                                   "stroke-width=\"1\" stroke-dasharray=\"2,3\"/>\n",
                                   last_x, last_y, x, y, color);
          markers += cross(x, y, color);
        }
        flush();
        svg += markers;
      }
    }
  }
  // Legend: colour = d_model, dash and marker = method, cross = out of memory.
  double ly = mt + 10;
  int ci = 0;
  for (int64_t d : ds) {
    svg += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\" stroke-width=\"3\"/>"
                       "<text x=\"{:.1f}\" y=\"{:.1f}\">d_model {}</text>\n",
                       lx, ly, lx + 24, ly, kColors[ci++ % 7], lx + 30, ly + 4, d);
    ly += 18;
  }
  ly += 8;
  for (const auto& m : methods) {
    svg += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#333\" stroke-width=\"2\"{}/>"
                       "<text x=\"{:.1f}\" y=\"{:.1f}\">{}</text>\n",
                       lx, ly, lx + 24, ly, dash(m), lx + 30, ly + 4, xml_escape(m));
    svg += marker(lx + 12, ly, "#333", m == "eager");
    ly += 18;
  }
  if (any_oom) {
    ly += 8;
    svg += cross(lx + 12, ly, "#333");
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\">out of memory at that seq_len</text>\n", lx + 30, ly + 4);
  }
  return svg + "</svg>\n";
}

}  // namespace minidl::bench
