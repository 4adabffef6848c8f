#include "core/cpu/gemm.h"

#include <algorithm>
#include <vector>

namespace minidl::cpu {

namespace {
// Block sizes: an A panel (kMc x kKc) and a B panel (kKc x kNc) in compute type fit L2, and
// the i-k-j inner loop runs over contiguous rows of the B panel, which the compiler vectorises.
constexpr int64_t kMc = 64, kKc = 256, kNc = 256;
}  // namespace

template <class T>
void gemm(int64_t m, int64_t n, int64_t k, const T* a, int64_t sa0, int64_t sa1, const T* b,
          int64_t sb0, int64_t sb1, T* c, int64_t sc0, int64_t sc1) {
  using C = compute_t<T>;
  // Panels sized to the problem: small products (attention heads) must not allocate and zero
  // full-size panels on every call.
  const int64_t mc = std::min(kMc, m), kc = std::min(kKc, k), nc = std::min(kNc, n);
  std::vector<C> ap(mc * kc), bp(kc * nc), acc(mc * nc);
  for (int64_t i0 = 0; i0 < m; i0 += kMc) {
    const int64_t mb = std::min(kMc, m - i0);
    for (int64_t j0 = 0; j0 < n; j0 += kNc) {
      const int64_t nb = std::min(kNc, n - j0);
      std::fill(acc.begin(), acc.begin() + mb * nb, C(0));
      for (int64_t p0 = 0; p0 < k; p0 += kKc) {
        const int64_t kb = std::min(kKc, k - p0);
        for (int64_t i = 0; i < mb; ++i)
          for (int64_t p = 0; p < kb; ++p)
            ap[i * kb + p] = static_cast<C>(a[(i0 + i) * sa0 + (p0 + p) * sa1]);
        for (int64_t p = 0; p < kb; ++p)
          for (int64_t j = 0; j < nb; ++j)
            bp[p * nb + j] = static_cast<C>(b[(p0 + p) * sb0 + (j0 + j) * sb1]);
        for (int64_t i = 0; i < mb; ++i) {
          C* crow = acc.data() + i * nb;
          const C* arow = ap.data() + i * kb;
          for (int64_t p = 0; p < kb; ++p) {
            const C av = arow[p];
            const C* brow = bp.data() + p * nb;
            for (int64_t j = 0; j < nb; ++j) crow[j] += av * brow[j];
          }
        }
      }
      for (int64_t i = 0; i < mb; ++i)
        for (int64_t j = 0; j < nb; ++j) c[(i0 + i) * sc0 + (j0 + j) * sc1] = T(acc[i * nb + j]);
    }
  }
}

template void gemm<float>(int64_t, int64_t, int64_t, const float*, int64_t, int64_t, const float*,
                          int64_t, int64_t, float*, int64_t, int64_t);
template void gemm<double>(int64_t, int64_t, int64_t, const double*, int64_t, int64_t,
                           const double*, int64_t, int64_t, double*, int64_t, int64_t);
template void gemm<Half>(int64_t, int64_t, int64_t, const Half*, int64_t, int64_t, const Half*,
                         int64_t, int64_t, Half*, int64_t, int64_t);
template void gemm<BFloat16>(int64_t, int64_t, int64_t, const BFloat16*, int64_t, int64_t,
                             const BFloat16*, int64_t, int64_t, BFloat16*, int64_t, int64_t);

}  // namespace minidl::cpu
