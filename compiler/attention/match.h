// The attention matcher, a pass of build_plan() (compiler/plan.cpp) like those of
// compiler/passes/passes.h: it finds attention spelled with ops and puts a FusedAttention node
// (compiler/attention/attention.h) in its place.
#pragma once

#include <string>
#include <vector>

#include "compiler/graph.h"

namespace minidl {

/// Replaces each softmax(Q·Kᵀ·scale [+ causal mask])·V subgraph by one FusedAttention node
/// (match.cpp, NOTE [Attention spellings]). Returns one line per near-match it rejected, naming
/// the check that failed; each is also logged at debug level on the "compiler" logger.
std::vector<std::string> match_attention(Graph& g);

}  // namespace minidl
