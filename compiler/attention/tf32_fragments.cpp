// The pieces of the TF32 attention kernels (compiler/attention/tf32_fragments.h).
#include "compiler/attention/tf32_fragments.h"

#include "compiler/attention/emit.h"
#include "compiler/attention/tiles.h"

namespace minidl::codegen::attn {

Tf32Layout tf32_layout(const AttentionSpec& s, bool backward) {
  Tf32Layout l{};
  l.D = s.head_dim;
  l.DK = round_up(l.D, 8);
  l.ST = padded_stride(l.DK, 4);
  l.split = s.dtype == kFloat32;
  l.tiles = l.split ? s.split.value_or(default_split_tiles(backward, l.D)) : SplitTiles{};
  l.async = s.async_copy && l.split && !backward && !l.tiles.k && !l.tiles.v;
  const auto [bm, bn] = default_tf32_tiles(backward, l.D);
  l.BM = s.block_m ? s.block_m : bm;
  l.BN = s.block_n ? s.block_n : bn;
  l.G = backward ? s.groups : 1;
  l.SB = l.G * l.BM;
  l.warps = (backward ? l.G * l.BN : l.BM) / 16;
  l.NT = 32 * l.warps;
  const int resident = backward ? l.BN : l.BM, step = backward ? l.BM : l.BN;
  MINIDL_CHECK(resident % 16 == 0 && resident > 0 && l.warps <= 8 && step % 8 == 0 && step > 0 &&
                   (!backward || (l.BM % 16 == 0 && l.warps % (l.SB / 16) == 0)),
               ValueError,
               "[attention codegen] tf32 {} tiles {}x{}{}: the resident tile needs rows in 16s, at most 8 warps "
               "in all, the streamed one a multiple of 8{}",
               backward ? "backward" : "forward", l.BM, l.BN, l.G > 1 ? fmt::format(" in {} groups", l.G) : "",
               backward ? " (and of 16, its groups' rows dividing the warps in 16s)" : "");
  return l;
}

TileForm input_form(const Tf32Layout& l, bool split_at_load) {
  return !l.split ? TileForm::Exact : split_at_load ? TileForm::Split : TileForm::Float;
}

void frag_decl(SourceBuilder& b, const Tf32Layout& l, const std::string& name, const std::string& dims) {
  if (l.split)
    b.line("unsigned {0}_hi{1}, {0}_lo{1};", name, dims);
  else
    b.line("unsigned {}_hi{};", name, dims);
}
void frag_set(SourceBuilder& b, const Tf32Layout& l, const Frag& f, int i, const std::string& value) {
  if (l.split)
    b.line("split_tf32({}, {}[{}], {}[{}]);", value, f.hi(), i, f.lo(), i);
  else
    b.line("{}[{}] = to_tf32({});", f.hi(), i, value);
}
void frag_load(SourceBuilder& b, const Tf32Layout& l, const Frag& f, int i, const Tile& t, const std::string& off) {
  switch (t.form) {
    case TileForm::Split:
      b.line("{}[{}] = {}_hi[{}];", f.hi(), i, t.name, off);
      b.line("{}[{}] = {}_lo[{}];", f.lo(), i, t.name, off);
      break;
    case TileForm::Exact: b.line("{}[{}] = __float_as_uint({}[{}]);", f.hi(), i, t.name, off); break;
    case TileForm::Float: frag_set(b, l, f, i, fmt::format("{}[{}]", t.name, off)); break;
  }
}
void emit_mma(SourceBuilder& b, const Tf32Layout& l, const std::string& acc, const Frag& a, const Frag& bf,
              const std::string& acc_small) {
  if (l.split) {
    const std::string& small = acc_small.empty() ? acc : acc_small;
    b.line("mma_tf32({}, {}, {});", small, a.lo(), bf.hi());
    b.line("mma_tf32({}, {}, {});", small, a.hi(), bf.lo());
  }
  b.line("mma_tf32({}, {}, {});", acc, a.hi(), bf.hi());
}
void emit_fragment_products(SourceBuilder& b, const Tf32Layout& l, const Frag& a, const Tile& t, const char* steps,
                            const std::string& fold, bool pair, const std::string& row0) {
  const int n = pair ? 2 : 1;
  b.line("#pragma unroll");
  b.open("for (int dp = 0; dp < DK / 8; dp += {})", n);
  b.line("float accs[{}][4] = {{}};", n);
  if (l.split) b.line("float accs_small[{}][4] = {{}};", n);
  b.line("#pragma unroll");
  b.open("for (int kk = 0; kk < {}; ++kk)", steps);
  b.line("#pragma unroll");
  b.open("for (int h = 0; h < {} && dp + h < DK / 8; ++h)", n);
  b.line("const int dt = dp + h;");
  frag_decl(b, l, "bf", "[2]");
  const Frag bf{"bf", ""};
  const std::string r0 = row0 == "0" ? "" : row0 + " + ";
  frag_load_all(b, l, bf, t, k_row_offsets(r0));
  emit_mma(b, l, "accs[h]", a, bf, l.split ? "accs_small[h]" : "");
  b.close();
  b.close();
  b.line("#pragma unroll");
  b.open("for (int h = 0; h < {} && dp + h < DK / 8; ++h)", n);
  b.line("const int dt = dp + h;");
  b.line("float acc[4];");
  b.line("#pragma unroll");
  b.line("for (int e = 0; e < 4; ++e) acc[e] = accs[h][e]{};", l.split ? " + accs_small[h][e]" : "");
  b.line("#pragma unroll");
  b.line("for (int e = 0; e < 4; ++e) {}", fold);
  b.close();
  b.close();
}

void tile_store(SourceBuilder& b, const Tile& t, const std::string& off, const std::string& value) {
  if (t.form == TileForm::Split) {
    b.open("");
    b.line("unsigned big, small;");
    b.line("split_tf32({}, big, small);", value);
    b.line("{}_hi[{}] = big;", t.name, off);
    b.line("{}_lo[{}] = small;", t.name, off);
    b.close();
  } else {
    b.line("{}[{}] = {};", t.name, off, value);
  }
}

void emit_zero_fragments(SourceBuilder& b, const std::string& acc, const std::string& i, const std::string& n) {
  b.line("float {}[{}][4];", acc, n);
  b.line("#pragma unroll");
  b.line("for (int {1} = 0; {1} < {2}; ++{1}) {0}[{1}][0] = {0}[{1}][1] = {0}[{1}][2] = {0}[{1}][3] = 0.f;", acc, i, n);
}

void frag_load_all(SourceBuilder& b, const Tf32Layout& l, const Frag& f, const Tile& t,
                   const std::vector<std::string>& offs) {
  for (size_t i = 0; i < offs.size(); ++i) frag_load(b, l, f, static_cast<int>(i), t, offs[i]);
}

std::vector<std::string> a_offsets(const std::string& rows) {
  return {rows + " + g * ST + 8 * kk + t", rows + " + (g + 8) * ST + 8 * kk + t", rows + " + g * ST + 8 * kk + t + 4",
          rows + " + (g + 8) * ST + 8 * kk + t + 4"};
}

std::vector<std::string> b_offsets(const std::string& row) {
  return {"(" + row + ") * ST + 8 * kk + t", "(" + row + ") * ST + 8 * kk + t + 4"};
}

std::vector<std::string> k_row_offsets(const std::string& r0) {
  return {"(" + r0 + "8 * kk + 2 * t) * ST + 8 * dt + g", "(" + r0 + "8 * kk + 2 * t + 1) * ST + 8 * dt + g"};
}

void emit_tile_product(SourceBuilder& b, const Tf32Layout& l, const TileProduct& p) {
  emit_zero_fragments(b, p.acc, p.j, p.count);
  b.line("#pragma unroll");
  b.open("for (int kk = 0; kk < {}; ++kk)", p.steps);
  frag_decl(b, l, p.a, "[4]");
  const Frag a{p.a, ""};
  frag_load_all(b, l, a, *p.a_tile, p.a_offs);
  b.line("#pragma unroll");
  b.open("for (int {0} = 0; {0} < {1}; ++{0})", p.j, p.count);
  for (const std::string& line : p.j_lines) b.line("{}", line);
  frag_decl(b, l, "kf", "[2]");
  const Frag kf{"kf", ""};
  frag_load_all(b, l, kf, *p.b_tile, p.b_offs);
  emit_mma(b, l, fmt::format("{}[{}]", p.acc, p.j), a, kf);
  b.close();
  b.close();
}

void emit_tf32_constants(SourceBuilder& b, const Tf32Layout& l) {
  b.line("constexpr int D = {}, DK = {}, ST = {};  // head dim, padded to 8, tile row stride", l.D, l.DK, l.ST);
  b.line("constexpr int BM = {}, BN = {}, NT = {};", l.BM, l.BN, l.NT);
}

std::string tiles_comment(const Tf32Layout& l) {
  if (!l.split) return "one TF32 product per product";
  return fmt::format("3xTF32 products (NOTE [3xTF32]); split at load: {} (NOTE [Split at load])",
                     split_tiles_name(l.tiles));
}

}  // namespace minidl::codegen::attn
