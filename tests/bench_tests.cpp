// minidl-bench attention: argument parsing, the table/CSV/JSON/SVG renderings, OOM rows.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>

#include "bench/args.h"
#include "bench/attention.h"
#include "bench/bench.h"
#include "bench/report.h"
#include "minidl/minidl.h"

using namespace minidl;
using namespace minidl::bench;

namespace {

int count(const std::string& s, const std::string& what) {
  int n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + what.size())) ++n;
  return n;
}

std::vector<AttentionRow> sample_rows() {
  AttentionRow ok{"eager", 16, 256, "OK", 0.1314, 0.0371, 0.389, 0.133, 19660800};
  AttentionRow comp{"compiled", 16, 256, "OK", 0.273, 0.069, 0.384, 0.032, 393216};
  AttentionRow oom{"eager", 16, 16384, "OOM"};
  AttentionRow err{"compiled", 16, 16384, "ERROR: [x] broke, badly"};
  return {ok, comp, oom, err};
}

// A registered subcommand's main, or nullptr (attention-kernels exists in CUDA builds only).
SubcommandMain subcommand(const std::string& name) {
  for (const auto& s : subcommands())
    if (name == s.name) return s.main;
  return nullptr;
}

// The rows of the plot test: eager d_model 64 runs out of memory at seq_len 512.
std::vector<AttentionRow> plot_rows(const std::vector<int64_t>& seqs) {
  std::vector<AttentionRow> rows;
  for (const char* m : {"eager", "compiled"})
    for (int64_t d : {16, 64})
      for (int64_t n : seqs) {
        AttentionRow r{m, d, n, "OK", 0.01 * n, 0.001, 0.02 * n, 0.002, n * n * (m[0] == 'e' ? 40 : 1)};
        if (m[0] == 'e' && d == 64 && n == 512) r.status = "OOM";
        rows.push_back(r);
      }
  return rows;
}

// x, y, width of every <rect> but the background, in order: the three panels.
std::vector<std::array<double, 3>> panel_rects(const std::string& svg) {
  std::vector<std::array<double, 3>> out;
  const std::regex re(R"re(<rect x="([0-9.]+)" y="([0-9.]+)" width="([0-9.]+)")re");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), re); it != std::sregex_iterator(); ++it)
    out.push_back({std::stod((*it)[1]), std::stod((*it)[2]), std::stod((*it)[3])});
  return out;
}

}  // namespace

TEST_CASE("attention args: defaults and values") {
  AttentionConfig c = parse_attention_args({"--device", "cpu"});
  CHECK(c.device == kCPU);
  CHECK(c.batch == 8);
  CHECK(c.methods == std::vector<std::string>{"eager", "compiled"});
  CHECK(c.format == "md");
  CHECK_FALSE(c.ds.empty());
  c = parse_attention_args({"--device=cpu", "--d", "16,32", "--seq=64", "--batch", "2", "--heads", "4",
                            "--dtype", "bf16", "--causal", "--methods", "eager", "--reps", "5",
                            "--warmup", "0", "--mem-limit", "6GiB", "--format", "json", "--check",
                            "--plot", "x.svg", "--seed", "7"});
  CHECK(c.ds == std::vector<int64_t>{16, 32});
  CHECK(c.seqs == std::vector<int64_t>{64});
  CHECK(c.batch == 2);
  CHECK(c.heads == 4);
  CHECK(c.dtype == kBFloat16);
  CHECK(c.causal);
  CHECK(c.check);
  CHECK(c.methods == std::vector<std::string>{"eager"});
  CHECK(c.reps == 5);
  CHECK(c.warmup == 0);
  CHECK(c.mem_limit == 6LL << 30);
  CHECK(c.format == "json");
  CHECK(c.plot == "x.svg");
  CHECK(c.seed == 7);
}

TEST_CASE("attention args: errors name the option") {
  auto fails = [](std::vector<std::string> argv, const std::string& needle) {
    try {
      parse_attention_args(argv);
    } catch (const Error& e) {
      CHECK_MESSAGE(std::string(e.what()).find(needle) != std::string::npos, e.what());
      return true;
    }
    return false;
  };
  CHECK(fails({"--frobnicate"}, "--frobnicate"));
  CHECK(fails({"--d", "16,x"}, "--d"));
  CHECK(fails({"--d", "0"}, "--d"));
  CHECK(fails({"--seq"}, "--seq"));
  CHECK(fails({"--dtype", "f64"}, "--dtype"));
  CHECK(fails({"--dtype", "q8"}, "q8"));
  CHECK(fails({"--methods", "eager,fast"}, "fast"));
  CHECK(fails({"--reps", "0"}, "--reps"));
  CHECK(fails({"--format", "xml"}, "--format"));
  CHECK(fails({"--mem-limit", "lots"}, "lots"));
  CHECK(fails({"--causal=1"}, "--causal"));
  CHECK(fails({"stray"}, "stray"));
  // --plot is checked before a run that may take minutes.
  CHECK(fails({"--device", "cpu", "--plot", "/nonexistent-minidl-dir/x.svg"}, "--plot"));
  CHECK(fails({"--device", "cpu", "--plot", std::filesystem::temp_directory_path().string()}, "folder"));
  CHECK(fails({"--device", "cpu", "--replot", "/nonexistent-minidl-table.md", "--plot", "x.svg"}, "--replot"));
  CHECK(fails({"--device", "cpu", "--replot", "x.md"}, "--plot"));
  if (!cuda::is_available()) CHECK(fails({"--device", "cuda"}, "cuda"));
}

TEST_CASE("attention table: the seed's markdown format") {
  const std::string md = to_markdown(sample_rows());
  CHECK(md.rfind("| method | d_model | seq_len | status | fwd_mean_ms | fwd_std_ms | bwd_mean_ms | "
                 "bwd_std_ms | mem_before_bwd |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
                 0) == 0);
  CHECK(md.find("| eager | 16 | 256 | OK | 0.131 | 0.037 | 0.389 | 0.133 | 18.75 MiB |\n") != std::string::npos);
  CHECK(md.find("| compiled | 16 | 256 | OK | 0.273 | 0.069 | 0.384 | 0.032 | 384.00 KiB |\n") != std::string::npos);
  CHECK(md.find("| eager | 16 | 16384 | OOM |  |  |  |  | OOM |\n") != std::string::npos);
  CHECK(md.find("| compiled | 16 | 16384 | ERROR: [x] broke, badly |  |  |  |  |  |\n") != std::string::npos);
  CHECK(count(md, "\n") == 6);
  CHECK(md.find("max_err") == std::string::npos);
  auto rows = sample_rows();
  rows[1].max_err = 3.5e-7;
  const std::string checked = to_markdown(rows);
  CHECK(checked.find("| mem_before_bwd | max_err |") != std::string::npos);
  CHECK(checked.find("| 384.00 KiB | 3.50e-07 |") != std::string::npos);
}

TEST_CASE("attention table: CSV and JSON") {
  const std::string csv = to_csv(sample_rows());
  CHECK(csv.rfind("method,d_model,seq_len,status,fwd_mean_ms,fwd_std_ms,bwd_mean_ms,bwd_std_ms,"
                  "mem_before_bwd_bytes\n", 0) == 0);
  CHECK(csv.find("eager,16,256,OK,0.1314,0.0371,0.3890,0.1330,19660800\n") != std::string::npos);
  CHECK(csv.find("eager,16,16384,\"OOM\",,,,,\n") != std::string::npos);
  // The error's comma must not add a field: every line has 9 fields (8 commas outside quotes).
  size_t start = 0;
  while (start < csv.size()) {
    size_t end = csv.find('\n', start);
    std::string line = csv.substr(start, end - start);
    int commas = 0;
    bool quoted = false;
    for (char ch : line) quoted ^= ch == '"', commas += (!quoted && ch == ',');
    CHECK_MESSAGE(commas == 8, line);
    start = end + 1;
  }
  AttentionSetup setup{"cpu", "float32", 8, 0, false, 3, 1};
  const std::string json = to_json(setup, sample_rows(), "{\"hits\": 2}");
  CHECK(json.find("\"setup\": {\"device\": \"cpu\", \"dtype\": \"float32\", \"batch\": 8") != std::string::npos);
  CHECK(json.find("\"method\": \"eager\", \"d_model\": 16, \"seq_len\": 256, \"status\": \"OK\", "
                  "\"fwd_mean_ms\": 0.131400") != std::string::npos);
  CHECK(json.find("\"status\": \"OOM\"}") != std::string::npos);
  CHECK(json.find("\"extra\": {\"hits\": 2}") != std::string::npos);
  CHECK(count(json, "{") == count(json, "}"));
  CHECK(count(json, "[") == count(json, "]"));
  CHECK(json_escape("a\"b\\c\nd") == "a\\\"b\\\\c\\nd");
}

TEST_CASE("attention plot: one line per method and d_model, gaps for failed rows") {
  const std::string svg = to_svg({"cpu", "float32", 8, 0, false, 3, 1}, plot_rows({128, 256, 512}));
  CHECK(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0) == 0);
  CHECK(svg.find("</svg>") != std::string::npos);
  CHECK(count(svg, "<polyline") == 3 * 4);  // 3 panels x (2 methods x 2 d_model)
  CHECK(count(svg, "d_model 16") == 1);
  CHECK(count(svg, "stroke-dasharray=\"6,4\"") == 3 * 2 + 1);  // compiled lines and its legend entry
  CHECK(count(svg, "<text") > 20);
  CHECK(count(svg, "<circle") == 3 * 11 + 2);  // every OK point, and the two methods' legend entries
}

TEST_CASE("attention plot: an OOM row ends its line in a cross, with a legend entry") {
  const std::string svg = to_svg({"cpu", "float32", 8, 0, false, 3, 1}, plot_rows({128, 256, 512}));
  CHECK(count(svg, "<path") == 3 + 1);  // one cross per panel, one in the legend
  CHECK(count(svg, "out of memory") == 1);
  CHECK(count(svg, "stroke-dasharray=\"2,3\"") == 3);  // from the last point to the cross
  const std::string ok = to_svg({"cpu", "float32", 8, 0, false, 3, 1}, plot_rows({128, 256}));
  CHECK(count(ok, "<path") == 0);
  CHECK(count(ok, "out of memory") == 0);
}

TEST_CASE("attention plot: one seq_len draws points inside the panels") {
  const std::string svg = to_svg({"cpu", "float32", 8, 0, false, 3, 1}, plot_rows({256}));
  CHECK(count(svg, "<polyline") == 0);
  CHECK(count(svg, "<circle") == 3 * 4 + 2);
  const auto rects = panel_rects(svg);
  REQUIRE(rects.size() == 3);
  const std::regex re(R"re(<circle cx="([0-9.]+)")re");
  int inside = 0;
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), re); it != std::sregex_iterator(); ++it) {
    const double x = std::stod((*it)[1]);
    for (const auto& r : rects) inside += x > r[0] + 10 && x < r[0] + r[2] - 10;
  }
  CHECK(inside == 3 * 4);
}

TEST_CASE("attention plot: the memory axis is in binary units; labels stay out of the next panel") {
  for (const auto& seqs : {std::vector<int64_t>{128, 256, 512}, std::vector<int64_t>{256, 16384},
                           std::vector<int64_t>{1024, 1000000}}) {
    const std::string svg = to_svg({"NVIDIA H200", "float32", 8, 0, false, 3, 1}, plot_rows(seqs));
    const auto rects = panel_rects(svg);
    REQUIRE(rects.size() == 3);
    // Tick labels are right-aligned left of their panel; the memory panel's are binary sizes.
    const std::regex tick(R"re(<text x="([0-9.]+)" y="[0-9.]+" text-anchor="end">([^<]*)</text>)re");
    const std::regex binary(R"(\d+ (B|KiB|MiB|GiB|TiB|PiB))");
    int memory_ticks = 0;
    for (auto it = std::sregex_iterator(svg.begin(), svg.end(), tick); it != std::sregex_iterator(); ++it) {
      const double right = std::stod((*it)[1]);
      const std::string label = (*it)[2];
      const double left = right - 0.62 * 12 * static_cast<double>(label.size());  // as NOTE [Plot layout]
      size_t p = 0;
      while (p + 1 < rects.size() && right > rects[p + 1][0] - 20) ++p;  // the panel it belongs to
      const double prev_right = p ? rects[p - 1][0] + rects[p - 1][2] : 0;
      // The previous panel's last seq_len label reaches half its width past the panel.
      const double prev_label = p ? 0.62 * 12 * static_cast<double>(std::to_string(seqs.back()).size()) / 2 : 0;
      CHECK_MESSAGE(left >= prev_right + prev_label, label, " reaches into the panel on its left");
      if (p == 2) {
        ++memory_ticks;
        CHECK_MESSAGE(std::regex_match(label, binary), label);
      }
    }
    CHECK(memory_ticks >= 2);
    CHECK(memory_ticks <= 9);
    // The legend starts right of the last panel's last seq_len label.
    const std::regex legend(R"re(<text x="([0-9.]+)" y="[0-9.]+">d_model 16<)re");
    std::smatch m;
    REQUIRE(std::regex_search(svg, m, legend));
    CHECK(std::stod(m[1]) > rects[2][0] + rects[2][2] + 0.62 * 12 * static_cast<double>(std::to_string(seqs.back()).size()) / 2);
  }
}

TEST_CASE("attention table: read back from markdown (--replot)") {
  auto rows = sample_rows();
  rows[1].max_err = 3.5e-7;
  rows[0].fwd_std_ms = NAN;  // one repetition
  const std::vector<AttentionRow> back = from_markdown("# a page\n\n" + to_markdown(rows) + "\nmore text\n");
  REQUIRE(back.size() == rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    CHECK(back[i].method == rows[i].method);
    CHECK(back[i].d_model == rows[i].d_model);
    CHECK(back[i].seq_len == rows[i].seq_len);
    CHECK(back[i].status == rows[i].status);
  }
  CHECK(back[0].fwd_mean_ms == doctest::Approx(0.131).epsilon(1e-9));
  CHECK(std::isnan(back[0].fwd_std_ms));
  CHECK(back[0].bwd_std_ms == doctest::Approx(0.133));
  CHECK(std::abs(static_cast<double>(back[0].mem_before_bwd - rows[0].mem_before_bwd)) < 0.005 * (1 << 20));
  CHECK(back[1].mem_before_bwd == rows[1].mem_before_bwd);  // 384.00 KiB exactly
  CHECK(back[1].max_err == doctest::Approx(3.5e-7));
  CHECK(back[0].max_err < 0);
  CHECK(from_markdown("no table here").empty());
  // The H200 table of docs/benchmarks.md, which docs/img/attention_h200.svg plots.
  std::ifstream f(std::filesystem::path(MINIDL_SOURCE_DIR) / "docs" / "benchmarks.md");
  const std::string doc((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const auto h200 = from_markdown(doc);
  CHECK(h200.size() == 40);
  CHECK(std::all_of(h200.begin(), h200.end(), [](const AttentionRow& r) { return r.ok() && r.mem_before_bwd > 0; }));
}

TEST_CASE("attention table: one repetition has no std; NaN and inf timings") {
  auto [m, sd] = mean_std({2.0});
  CHECK(m == 2.0);
  CHECK(std::isnan(sd));
  std::tie(m, sd) = mean_std({1.0, 3.0});
  CHECK(sd == 1.0);
  std::vector<AttentionRow> rows{{"eager", 16, 256, "OK", 0.5, NAN, 1.5, NAN, 1024}};
  CHECK(to_markdown(rows).find("| OK | 0.500 | n/a | 1.500 | n/a | 1.00 KiB |") != std::string::npos);
  CHECK(to_csv(rows).find("eager,16,256,OK,0.5000,,1.5000,,1024\n") != std::string::npos);
  const AttentionSetup setup{"cpu", "float32", 8, 0, false, 1, 0};
  CHECK(to_json(setup, rows).find("\"fwd_std_ms\": null") != std::string::npos);
  rows[0].fwd_mean_ms = -NAN;
  rows[0].bwd_mean_ms = INFINITY;
  rows[0].max_err = NAN;
  const std::string md = to_markdown(rows), json = to_json(setup, rows);
  CHECK(md.find("| OK | nan | n/a | inf | n/a | 1.00 KiB | nan |") != std::string::npos);
  CHECK(md.find("-nan") == std::string::npos);
  CHECK(json.find("\"fwd_mean_ms\": null") != std::string::npos);
  CHECK(json.find("\"bwd_mean_ms\": null") != std::string::npos);
  CHECK(json.find("\"max_err\": null") != std::string::npos);
  CHECK(json.find("nan") == std::string::npos);
  CHECK(json.find("inf") == std::string::npos);
  // A measured row with one repetition.
  const AttentionConfig c = parse_attention_args({"--device", "cpu", "--batch", "1", "--reps", "1", "--warmup", "0"});
  const AttentionRow r = run_attention_row(c, "eager", 8, 16);
  REQUIRE_MESSAGE(r.ok(), r.status);
  CHECK(std::isnan(r.fwd_std_ms));
  CHECK(std::isfinite(r.fwd_mean_ms));
}

TEST_CASE("attention: the exit status is 1 when a row is ERROR, not for OOM") {
  auto rows = sample_rows();  // OK, OK, OOM, ERROR
  CHECK(attention_exit_status(rows) == 1);
  rows.pop_back();
  CHECK(attention_exit_status(rows) == 0);
  CHECK(attention_exit_status({}) == 0);
}

TEST_CASE("bench subcommands: one comma-list parser, errors name the option") {
  const SubcommandMain ops = subcommand("ops");
  REQUIRE(static_cast<bool>(ops));
  CHECK_THROWS_WITH_AS(ops({"--mbytes", "5x"}), doctest::Contains("--mbytes"), ValueError);
  CHECK_THROWS_WITH_AS(ops({"--seq", "1,,2"}), doctest::Contains("--seq"), ValueError);
  CHECK_THROWS_WITH_AS(ops({"--d", "0"}), doctest::Contains("--d"), ValueError);
  CHECK_THROWS_WITH_AS(ops({"--frobnicate"}), doctest::Contains("--frobnicate"), ValueError);
  if (const SubcommandMain kernels = subcommand("attention-kernels")) {
    CHECK_THROWS_WITH_AS(kernels({"--d", "16,x"}), doctest::Contains("--d"), ValueError);
    CHECK_THROWS_WITH_AS(kernels({"--n", ""}), doctest::Contains("--n"), ValueError);
    CHECK_THROWS_WITH_AS(kernels({"--reps", "ten"}), doctest::Contains("--reps"), ValueError);
    CHECK_THROWS_WITH_AS(kernels({"--math", "ffma,,tf32"}), doctest::Contains("--math"), ValueError);
  }
  CHECK(split_list("a;;b", ';') == std::vector<std::string>{"a", "", "b"});
  CHECK(split_list("") == std::vector<std::string>{""});
}

TEST_CASE("attention rows: eager on the CPU, and OOM as a row status") {
  AttentionConfig c = parse_attention_args({"--device", "cpu", "--batch", "2", "--reps", "2", "--warmup", "0"});
  const int64_t before = memory_allocated(kCPU);
  AttentionRow r = run_attention_row(c, "eager", 8, 32);
  REQUIRE_MESSAGE(r.ok(), r.status);
  CHECK(r.fwd_mean_ms > 0);
  CHECK(r.bwd_mean_ms > 0);
  // Q, K, V, dO, O and the saved 2x32x32 probabilities are alive before backward.
  CHECK(r.mem_before_bwd - before >= (5 * 2 * 32 * 8 + 2 * 32 * 32) * 4);
  CHECK(memory_allocated(kCPU) == before);

  set_memory_limit(before + 64 * 1024, kCPU);  // far below a 2x512x512 score matrix
  AttentionRow oom = run_attention_row(c, "eager", 8, 512);
  set_memory_limit(0, kCPU);
  CHECK(oom.status == "OOM");
  CHECK(memory_allocated(kCPU) == before);
}
