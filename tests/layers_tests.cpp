// The layers point one way: a file includes only its own folder and the layers below it
// (docs/layout.md draws them). This reads every #include of the library's sources.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;

// Bottom to top. Folders of one rank are beside each other: neither includes the other.
const std::map<std::string, int> kLayerRank = {
    {"base", 0},     {"runtime", 1}, {"core", 2},  {"autograd", 3},
    {"compiler", 4}, {"nn", 4},      {"optim", 4}, {"minidl", 5},  // minidl: the umbrella header
};

/// The layer an include names ("core/tensor.h" -> core), if it names one.
std::optional<std::string> included_layer(const std::string& line) {
  const auto open = line.find_first_of("\"<", line.find("include"));
  if (line.rfind("#include", 0) != 0 || open == std::string::npos) return std::nullopt;
  const auto slash = line.find('/', open);
  if (slash == std::string::npos) return std::nullopt;  // "row.cuh": the file's own folder
  const std::string layer = line.substr(open + 1, slash - open - 1);
  if (!kLayerRank.count(layer)) return std::nullopt;  // <spdlog/...>, <doctest/...>
  return layer;
}

/// Why `from` may not include `line`, or nothing when it may.
std::optional<std::string> crossing(const std::string& from, const std::string& line) {
  const auto to = included_layer(line);
  if (!to || *to == from || kLayerRank.at(*to) < kLayerRank.at(from)) return std::nullopt;
  return from + " (layer " + std::to_string(kLayerRank.at(from)) + ") includes " + *to +
         " (layer " + std::to_string(kLayerRank.at(*to)) + "): " + line;
}

}  // namespace

TEST_CASE("layers: the check itself flags upward and sideways includes") {
  CHECK(crossing("core", "#include \"autograd/node.h\""));
  CHECK(crossing("runtime", "#include \"core/tensor.h\""));
  CHECK(crossing("nn", "#include \"compiler/compile.h\""));  // beside, not below
  CHECK(crossing("base", "#include <minidl/minidl.h>"));
  CHECK_FALSE(crossing("core", "#include \"base/error.h\""));
  CHECK_FALSE(crossing("core", "#include \"core/ops.h\""));
  CHECK_FALSE(crossing("core", "#include \"row.cuh\""));
  CHECK_FALSE(crossing("core", "#include <spdlog/spdlog.h>"));
  CHECK_FALSE(crossing("compiler", "#include \"autograd/node.h\""));
}

TEST_CASE("layers: no include of the library crosses a layer upward") {
  const fs::path root = MINIDL_SOURCE_DIR;
  int files = 0;
  std::vector<std::string> crossings;
  for (const auto& [layer, rank] : kLayerRank) {
    const fs::path dir = layer == "minidl" ? root / "include" / "minidl" : root / layer;
    REQUIRE_MESSAGE(fs::is_directory(dir), dir.string());
    for (const auto& entry : fs::recursive_directory_iterator(dir)) {
      const std::string ext = entry.path().extension().string();
      if (!entry.is_regular_file() ||
          (ext != ".h" && ext != ".cpp" && ext != ".cu" && ext != ".cuh" && ext != ".in"))
        continue;
      ++files;
      std::ifstream in(entry.path());
      std::string line;
      for (int n = 1; std::getline(in, line); ++n)
        if (auto why = crossing(layer, line))
          crossings.push_back(fs::relative(entry.path(), root).string() + ":" + std::to_string(n) +
                              ": " + *why);
    }
  }
  CHECK(files > 100);
  for (const auto& c : crossings) FAIL_CHECK(c);
}
