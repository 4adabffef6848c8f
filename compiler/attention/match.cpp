// The attention matcher (compiler/attention/match.h): the one place that knows how attention is
// spelled.
#include "compiler/attention/match.h"

#include <cmath>
#include <limits>
#include <optional>
#include <set>

#include "base/log.h"
#include "compiler/attention/attention.h"

namespace minidl {

// NOTE [Attention spellings]
// The matcher starts at each softmax and walks back to the matmul that made its scores:
//
//   S  = matmul(Q', Kᵀ)   Q' is Q, or Q·c, c·Q, Q/c (scale pre-applied to Q)
//                         Kᵀ is permute(K) swapping exactly the last two dims (transpose(-2, -1),
//                         transpose(-1, -2), permute, t()), or any other value X of shape
//                         (..., d, Nk) (K given already transposed): K is then the view Xᵀ
//   S' = S, then in any order:
//        scale  S·c, c·S, S/c          c a positive finite constant scalar
//        mask   masked_fill(S, M, -inf)  M a constant, true exactly where key j > query i
//               S + M                  M a constant, -inf where j > i and 0 elsewhere
//   P  = softmax(S', last dim)
//   O  = matmul(P, V)
//
// and replaces O by fused_attention(Q, K, V, scale = product of the c's, causal = a mask was
// found). Every other shape of computation is left alone: a wrong match is worse than none
// (a matcher once took a permuted K for a transposed one and gave silently wrong results).
// A softmax whose output a matmul reads is a near-match when a check fails: the check is named
// in a debug-level log line. The checks: softmax (not log_softmax) over the last dim; the
// probabilities read only by matmul(P, V) and each score value on the way read only by the
// next step; scale factors positive; at most one mask, constant, with exactly the causal
// pattern and -inf; a permute of K swapping exactly the last two dims; q, k, v of one batch
// shape and head dim (FusedAttention's shape rule).

namespace {

// Where the walk back from a softmax through scale and mask steps ended.
struct Scores {
  ValueId matmul_out = -1;  // output of matmul(Q', Kᵀ), if the walk reached one
  std::string stopped_at;   // else the op (or "input", "constant") it stopped at
  double scale = 1.0;
  bool causal = false;
  std::string problem;  // first failed check on the way, if any
};

struct Match {
  size_t pv;  // position of matmul(P, V)
  ValueId q, k, v;
  bool k_is_transposed_operand;  // K must be made as the view Xᵀ of the matmul's operand
  double scale;
  bool causal;
};

// The value of a constant all of whose elements are one number (a 0-dim tensor, or one
// broadcast with stride 0), else nothing.
std::optional<double> constant_scalar(const Graph& g, ValueId v) {
  const Value& val = g.values[v];
  if (val.kind != ValueKind::Constant || val.data.numel() == 0) return std::nullopt;
  const Tensor& t = val.data;
  for (int64_t d = 0; d < t.dim(); ++d)
    if (t.shape()[d] != 1 && t.strides()[d] != 0) return std::nullopt;
  return make_view(t, {}, {}, t.offset()).item();
}

// c if n computes x·c, c·x or x/c with c a constant scalar (setting *x), else nothing.
std::optional<double> scale_factor(const Graph& g, const GraphNode& n, ValueId* x) {
  const auto* b = dynamic_cast<const Binary*>(n.op.get());
  if (!b) return std::nullopt;
  if (b->op() == BinaryOp::Mul) {
    for (int s = 0; s < 2; ++s)
      if (auto c = constant_scalar(g, n.inputs[s])) {
        *x = n.inputs[1 - s];
        return c;
      }
  }
  if (b->op() == BinaryOp::Div)
    if (auto c = constant_scalar(g, n.inputs[1])) {
      *x = n.inputs[0];
      return 1.0 / *c;
    }
  return std::nullopt;
}

// Empty if the constant t (..., Nq, Nk) holds `above` where j > i and `elsewhere` everywhere
// else; otherwise where it first differs. Dims broadcast with stride 0 are read once.
std::string causal_pattern_mismatch(const Tensor& t, double above, double elsewhere) {
  const Tensor c = t.device().is_cpu() ? t : t.cpu();
  const int64_t n = c.dim();
  if (n < 2) return fmt::format("it has shape {}, not (..., Nq, Nk)", shape_str(c.shape()));
  Shape walk = c.shape();  // batch dims to visit: 1 where broadcast
  for (int64_t d = 0; d < n - 2; ++d)
    if (c.strides()[d] == 0) walk[d] = 1;
  std::string where;
  MINIDL_DISPATCH_ALL(c.dtype(), "attention matcher", [&] {
    const auto* base = static_cast<const scalar_t*>(c.data_ptr());
    const int64_t mats = numel(Shape(walk.begin(), walk.end() - 2));
    for (int64_t m = 0; m < mats && where.empty(); ++m) {
      int64_t off = 0, rem = m;
      for (int64_t d = n - 3; d >= 0; --d) {
        off += (rem % walk[d]) * c.strides()[d];
        rem /= walk[d];
      }
      for (int64_t i = 0; i < walk[n - 2] && where.empty(); ++i)
        for (int64_t j = 0; j < walk[n - 1]; ++j) {
          const double x = static_cast<double>(static_cast<compute_t<scalar_t>>(
              base[off + i * c.strides()[n - 2] + j * c.strides()[n - 1]]));
          const double want = j > i ? above : elsewhere;
          if (x != want) {
            where = fmt::format("element (query {}, key {}) of matrix {} is {:g}, not {:g}", i, j,
                                m, x, want);
            break;
          }
        }
    }
  });
  return where;
}

// Walks back from the softmax input through scale and mask steps.
Scores walk_scores(const Graph& g, const GraphIndex& idx, ValueId x) {
  Scores s;
  bool masked = false;
  auto problem = [&](std::string p) {
    if (s.problem.empty()) s.problem = std::move(p);
  };
  for (;;) {
    if (idx.uses(x) != 1)
      problem(fmt::format("scores %{} are read {} times; only the next step may read them", x,
                          idx.uses(x)));
    const int32_t p = idx.producer[x];
    if (p < 0) {
      s.stopped_at = g.values[x].kind == ValueKind::Input ? "an input" : "a constant";
      return s;
    }
    const GraphNode& n = g.nodes[p];
    if (dynamic_cast<const Matmul*>(n.op.get())) {
      s.matmul_out = x;
      return s;
    }
    ValueId next = -1;
    if (auto c = scale_factor(g, n, &next)) {
      if (!(*c > 0 && std::isfinite(*c)))
        problem(fmt::format("scale factor {:g} (in {}) is not a positive finite number", *c,
                            node_str(n)));
      s.scale *= *c;
    } else if (const auto* mf = dynamic_cast<const MaskedFill*>(n.op.get())) {
      next = n.inputs[0];
      const ValueId m = n.inputs[1];
      if (masked)
        problem(fmt::format("a second mask ({})", node_str(n)));
      else if (g.values[m].kind != ValueKind::Constant)
        problem(
            fmt::format("mask %{} of {} is computed at run time, not a constant, so its "
                        "pattern cannot be checked",
                        m, node_str(n)));
      else if (mf->value() != -std::numeric_limits<double>::infinity())
        problem(
            fmt::format("masked_fill value {:g} (in {}) is not -inf", mf->value(), node_str(n)));
      else if (auto w = causal_pattern_mismatch(g.values[m].data, 1, 0); !w.empty())
        problem(fmt::format("mask %{} of {} is not causal (true exactly where key > query): {}", m,
                            node_str(n), w));
      masked = s.causal = true;
    } else if (const auto* b = dynamic_cast<const Binary*>(n.op.get());
               b && b->op() == BinaryOp::Add &&
               (g.values[n.inputs[0]].kind == ValueKind::Constant ||
                g.values[n.inputs[1]].kind == ValueKind::Constant)) {
      const int side = g.values[n.inputs[1]].kind == ValueKind::Constant ? 1 : 0;
      next = n.inputs[1 - side];
      const ValueId m = n.inputs[side];
      const double inf = std::numeric_limits<double>::infinity();
      if (masked)
        problem(fmt::format("a second mask ({})", node_str(n)));
      else if (auto w = causal_pattern_mismatch(g.values[m].data, -inf, 0); !w.empty())
        problem(
            fmt::format("additive constant %{} of {} is not a causal mask (0 where key <= "
                        "query, -inf above): {}",
                        m, node_str(n), w));
      masked = s.causal = true;
    } else {
      s.stopped_at = fmt::format("'{}' ({})", n.op->name(), node_str(n));
      return s;
    }
    x = next;
  }
}

// A match at the softmax at position sm, or nothing; `why` is set when this is a near-match
// that a check rejected.
std::optional<Match> try_match(const Graph& g, const GraphIndex& idx, size_t sm, std::string& why) {
  const GraphNode& soft = g.nodes[sm];
  const auto& op = static_cast<const Softmax&>(*soft.op);
  const ValueId p = soft.outputs[0];
  bool feeds_matmul = false;
  for (int32_t u : idx.users[p])
    feeds_matmul = feeds_matmul || dynamic_cast<const Matmul*>(g.nodes[u].op.get());
  if (!feeds_matmul) return std::nullopt;  // a softmax, not attention

  const int64_t last = static_cast<int64_t>(g.meta(p).shape.size()) - 1;
  if (op.is_log()) return why = "it is log_softmax, not softmax", std::nullopt;
  if (op.dim() != last)
    return why = fmt::format("softmax over dim {}, not the last dim ({})", op.dim(), last),
           std::nullopt;
  if (idx.uses(p) != 1)
    return why = fmt::format("probabilities %{} are read {} times; only matmul(P, V) may read them",
                             p, idx.uses(p)),
           std::nullopt;
  const int32_t pv = idx.users[p][0];
  if (g.nodes[pv].inputs[0] != p)
    return why = fmt::format("probabilities %{} are not the left operand of {}", p,
                             node_str(g.nodes[pv])),
           std::nullopt;
  const Scores s = walk_scores(g, idx, soft.inputs[0]);
  if (!s.problem.empty()) return why = s.problem, std::nullopt;
  if (s.matmul_out < 0)
    return why = fmt::format("scores come from {}, not from matmul(Q, Kᵀ)", s.stopped_at),
           std::nullopt;

  Match m{static_cast<size_t>(pv), -1, -1, g.nodes[pv].inputs[1], false, s.scale, s.causal};
  const GraphNode& qk = g.nodes[idx.producer[s.matmul_out]];
  m.q = qk.inputs[0];
  if (const int32_t qp = idx.producer[m.q]; qp >= 0) {
    ValueId unscaled = -1;
    if (auto c = scale_factor(g, g.nodes[qp], &unscaled)) {
      if (!(*c > 0 && std::isfinite(*c)))
        return why = fmt::format("scale factor {:g} on Q (in {}) is not a positive finite number",
                                 *c, node_str(g.nodes[qp])),
               std::nullopt;
      m.q = unscaled;
      m.scale *= *c;
    }
  }
  const ValueId kt = qk.inputs[1];
  const int32_t kp = idx.producer[kt];
  const auto* perm = kp >= 0 ? dynamic_cast<const Permute*>(g.nodes[kp].op.get()) : nullptr;
  if (perm && !perm->is_last_two_transpose())
    return why = fmt::format("Kᵀ operand %{} is permute {}, not a transpose of the last two dims",
                             kt, perm->attrs()),
           std::nullopt;
  m.k = perm ? g.nodes[kp].inputs[0] : kt;
  m.k_is_transposed_operand = perm == nullptr;

  TensorMeta k_meta = g.meta(m.k);
  if (m.k_is_transposed_operand && k_meta.shape.size() >= 2)
    std::swap(k_meta.shape[k_meta.shape.size() - 1], k_meta.shape[k_meta.shape.size() - 2]);
  try {
    FusedAttention(m.scale, m.causal).infer({g.meta(m.q), k_meta, g.meta(m.v)});
  } catch (const Error& e) {
    return why = fmt::format("mismatched shapes: {}", e.what()), std::nullopt;
  }
  return m;
}

// Permute dims swapping the last two of `rank`.
std::vector<int64_t> last_two_swapped(size_t rank) {
  std::vector<int64_t> dims(rank);
  for (size_t i = 0; i < rank; ++i) dims[i] = static_cast<int64_t>(i);
  std::swap(dims[rank - 1], dims[rank - 2]);
  return dims;
}

// Inserts the FusedAttention node before matmul(P, V) and redirects O's readers to it; the
// replaced nodes are left for dce. Returns the new node's position.
size_t rewrite(Graph& g, const Match& m) {
  size_t pos = m.pv;
  const ValueId o = g.nodes[m.pv].outputs[0];
  ValueId k = m.k;
  if (m.k_is_transposed_operand)
    k = g.add_node(std::make_shared<Permute>(last_two_swapped(g.meta(m.k).shape.size())), {m.k},
                   pos++)[0];
  const ValueId fused =
      g.add_node(std::make_shared<FusedAttention>(m.scale, m.causal), {m.q, k, m.v}, pos)[0];
  g.replace_uses(o, fused);
  return pos;
}

}  // namespace

std::vector<std::string> match_attention(Graph& g) {
  std::vector<std::string> rejected;
  std::set<ValueId> tried;  // outputs of the softmaxes already examined
  for (bool changed = true; changed;) {
    changed = false;
    const GraphIndex idx(g);
    for (size_t i = 0; i < g.nodes.size() && !changed; ++i) {
      if (!dynamic_cast<const Softmax*>(g.nodes[i].op.get())) continue;
      if (!tried.insert(g.nodes[i].outputs[0]).second) continue;
      std::string why;
      if (auto m = try_match(g, idx, i, why)) {
        const std::string at = node_str(g.nodes[i]);
        const GraphNode& fused = g.nodes[rewrite(g, *m)];
        log("compiler")
            .debug("attention: {} matched, replaced by {} {}", at, node_str(fused),
                   fused.op->attrs());
        changed = true;
      } else if (!why.empty()) {
        rejected.push_back(fmt::format("{}: {}", node_str(g.nodes[i]), why));
        log("compiler").debug("attention: no match at {}", rejected.back());
      }
    }
  }
  return rejected;
}

}  // namespace minidl
