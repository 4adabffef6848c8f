// The pieces of the TF32 attention kernels (compiler/attention/tf32.cpp): the layout of a
// block, shared tiles and their forms, mma fragments and the products over them, the shared
// memory plan. The NOTEs cited here are in compiler/attention/generate.cpp.
#pragma once

#include <spdlog/fmt/fmt.h>

#include <cstddef>
#include <string>
#include <vector>

#include "base/error.h"
#include "compiler/attention/spec.h"
#include "compiler/codegen/source_builder.h"

namespace minidl::codegen::attn {

// How the elements of a shared tile become TF32 fragment registers.
enum class TileForm {
  Float,  // float values, rounded (one product) or split (3xTF32) by the warp that reads them
  Exact,  // float values that are TF32 numbers already (16-bit storage): read as they are
  Split,  // name_hi, name_lo hold each element's big and small parts: NOTE [Split at load]
};

struct Tile {
  std::string name;
  TileForm form = TileForm::Float;
};

// The TF32 layout: a warp owns 16 rows of the resident tile (query rows forward, keys backward);
// mma m16n8k8 fragments (g = lane / 4, t = lane % 4). DK: head dim padded to 8; ST: row stride
// ≡ 4 (mod 32).
struct Tf32Layout {
  int D, DK, ST, BM, BN, NT, warps;
  int G, SB;         // backward: warp groups (NOTE [Query groups]) and the query rows of a step, G·BM
  bool split;        // 3xTF32 (float32 storage) or one TF32 product (16-bit storage)
  bool async;        // forward: float K/V tiles copied with cp.async (NOTE [Async K/V pipeline])
  SplitTiles tiles;  // float32 storage: the tiles split at load
};

// A fragment: the registers name_hi<at> (and name_lo<at> with the split), at = "" or "[kk]".
struct Frag {
  std::string name, at;
  std::string hi() const { return name + "_hi" + at; }
  std::string lo() const { return name + "_lo" + at; }
};

// The block's shared memory carved into arrays, in order (each a multiple of 16 bytes).
class SmemPlan {
 public:
  // `count` floats named t.name, or two unsigned arrays t.name_hi, t.name_lo for a Split tile.
  void tile(const Tile& t, int count, const std::string& what) {
    if (t.form == TileForm::Split) {
      add("unsigned", t.name + "_hi", count, what + ", big parts");
      add("unsigned", t.name + "_lo", count, what + ", small parts");
    } else {
      add("float", t.name, count, what);
    }
  }
  void floats(const std::string& name, int count, const std::string& what) { add("float", name, count, what); }
  size_t bytes() const { return 4 * words_; }
  void emit(SourceBuilder& b) const {
    b.line("MINIDL_DYNAMIC_SMEM(smem);");
    for (const auto& d : decls_) b.raw_line(d);
  }

 private:
  void add(const char* type, const std::string& name, int count, const std::string& what) {
    MINIDL_CHECK(count % 4 == 0, ValueError, "[attention codegen] shared array {} of {} words breaks alignment",
                 name, count);
    decls_.push_back(fmt::format("{}* {} = reinterpret_cast<{}*>(smem + {});  // {}", type, name, type, 4 * words_, what));
    words_ += count;
  }
  std::vector<std::string> decls_;
  size_t words_ = 0;
};

Tf32Layout tf32_layout(const AttentionSpec& s, bool backward);

/// The form of an input's tile (q, k, v, dout), split at load or not.
TileForm input_form(const Tf32Layout& l, bool split_at_load);

/// Declares fragment registers name_hi<dims> (and name_lo<dims> with the split).
void frag_decl(SourceBuilder& b, const Tf32Layout& l, const std::string& name, const std::string& dims);
/// Element i of fragment f = the TF32 part(s) of the float `value`.
void frag_set(SourceBuilder& b, const Tf32Layout& l, const Frag& f, int i, const std::string& value);
/// Element i of fragment f = element `off` of tile t.
void frag_load(SourceBuilder& b, const Tf32Layout& l, const Frag& f, int i, const Tile& t, const std::string& off);
/// acc += a · b: NOTE [3xTF32] (small terms first). With `acc_small`, the two small terms go
/// there instead, a chain apart from acc's: NOTE [Two chains per product].
void emit_mma(SourceBuilder& b, const Tf32Layout& l, const std::string& acc, const Frag& a, const Frag& bf,
              const std::string& acc_small = "");
/// For each output fragment dt (head-dim columns 8·dt + 2t + {0, 1}): acc = Σ_kk a · (rows
/// row0 + 8·kk + 2t and row0 + 8·kk + 2t + 1, column 8·dt + g of tile t) over `steps` k-steps, in a
/// zeroed temporary (NOTE [Short mma chains]), then `fold` (a statement over element e of acc
/// and of the output fragment dt) adds it into the output. `pair`: two fragments at a time,
/// each with its small terms apart, four independent mma chains (NOTE [Two chains per product]);
/// else one fragment, two chains.
void emit_fragment_products(SourceBuilder& b, const Tf32Layout& l, const Frag& a, const Tile& t, const char* steps,
                            const std::string& fold, bool pair, const std::string& row0 = "0");
/// Emits `float acc[n][4]` zeroed, indexed by `i` (a fragment per i < n).
void emit_zero_fragments(SourceBuilder& b, const std::string& acc, const std::string& i, const std::string& n);
/// Elements 0, 1, ... of fragment f = elements offs[0], offs[1], ... of tile t.
void frag_load_all(SourceBuilder& b, const Tf32Layout& l, const Frag& f, const Tile& t,
                   const std::vector<std::string>& offs);
/// The offsets of the A fragment of the warp's 16 rows starting at shared offset `rows`, k-step kk.
std::vector<std::string> a_offsets(const std::string& rows);
/// The offsets of the B fragment of tile row `row` (an expression), k-step kk.
std::vector<std::string> b_offsets(const std::string& row);
/// The offsets of the B fragment of k-step kk's rows (from `r0`, "" or "<rows> + ") and output
/// fragment dt: rows 8·kk + 2t and 8·kk + 2t + 1, column 8·dt + g (NOTE [Permuted k in
/// register-sourced products]).
std::vector<std::string> k_row_offsets(const std::string& r0);
/// One product over shared tiles, acc[j] += a · b for each fragment j of the output, one k-step
/// kk of `steps` at a time: the A fragment `a` (4 elements of a_tile at a_offs) is loaded once a
/// k-step, the B fragment (2 elements of b_tile at b_offs) once a k-step and j.
struct TileProduct {
  std::string acc, j, count;           // float acc[count][4], indexed by j
  std::string steps;                   // k-steps
  std::string a;                       // the A fragment's name
  const Tile* a_tile;
  std::vector<std::string> a_offs;     // 4 offsets, over kk
  std::vector<std::string> j_lines;    // emitted first in the loop over j
  const Tile* b_tile;
  std::vector<std::string> b_offs;     // 2 offsets, over kk and j
};
void emit_tile_product(SourceBuilder& b, const Tf32Layout& l, const TileProduct& p);

/// Stores the float `value` into element `off` of tile t (split there when t is Split).
void tile_store(SourceBuilder& b, const Tile& t, const std::string& off, const std::string& value);

/// constexpr D, DK, ST, BM, BN, NT of the layout.
void emit_tf32_constants(SourceBuilder& b, const Tf32Layout& l);
/// How the products are computed, for the kernel's header comment.
std::string tiles_comment(const Tf32Layout& l);

}  // namespace minidl::codegen::attn
