// Names of the attention kernels' math and split tiles (compiler/attention/spec.h).
#include "compiler/attention/spec.h"

#include <algorithm>
#include <iterator>

#include "base/error.h"

namespace minidl::codegen {

const char* attention_math_name(AttentionMath m) { return m == AttentionMath::Ffma ? "ffma" : "tf32"; }

int max_head_dim(AttentionMath m) { return m == AttentionMath::Ffma ? 256 : 128; }

namespace {
constexpr std::pair<bool SplitTiles::*, const char*> kSplitNames[] = {
    {&SplitTiles::q, "q"}, {&SplitTiles::k, "k"}, {&SplitTiles::v, "v"}, {&SplitTiles::dout, "do"}, {&SplitTiles::ds, "ds"}};
}  // namespace

std::string split_tiles_name(const SplitTiles& t) {
  std::string s;
  for (const auto& [member, name] : kSplitNames)
    if (t.*member) {
      if (!s.empty()) s += '+';
      s += name;
    }
  return s.empty() ? "none" : s;
}

SplitTiles parse_split_tiles(const std::string& text) {
  SplitTiles t;
  if (text == "none") return t;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t end = std::min(text.find('+', start), text.size());
    const std::string name = text.substr(start, end - start);
    const auto it = std::find_if(std::begin(kSplitNames), std::end(kSplitNames),
                                 [&](const auto& e) { return name == e.second; });
    MINIDL_CHECK(it != std::end(kSplitNames), ValueError,
                 "[attention tiles] MINIDL_ATTENTION_TILES split tiles must be 'none' or names from q, k, "
                 "v, do, ds joined by '+', got '{}'",
                 text);
    t.*(it->first) = true;
    start = end + 1;
  }
  return t;
}

}  // namespace minidl::codegen
