// Decode-time matrix products on CPU, as an XLA FFI custom call:
//
//   y[M, N] = x[M, K] @ W[K, N]    for small M (one new token per sequence)
//
// A decode step reads every weight once for a handful of rows, so its speed is the
// speed at which the weights stream from memory. XLA:CPU's dot reads a row-major [K, N]
// weight with 8 rows at ~25 GB/s on a 2-core EPYC that streams 40+ GB/s; the column
// blocks of a row-major matrix are strided in memory. Here W is packed once (per set of
// parameters the sampler sees) into panels [N/P, K, P] (P columns, all K rows,
// contiguous), so each panel is one sequential read, multiplied into register
// accumulators for 8 rows at a time, with software prefetch ahead of the stream.
//
// Operands: x f32[M, K]; w f32[L, N/P (rounded up), K, P] (L stacked layers, zero
// columns past N); layer s32[] (which of the L to use); result y f32[M, N].
// Work is split into chunks of panels claimed from an atomic counter by the calling
// thread and by helpers on XLA's intra-op thread pool; a helper that starts late finds
// nothing to claim, so the call never waits on a thread that has not begun.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// Vector width and panel width chosen for the register file: 8 rows x kVectors
// accumulators + kVectors weight vectors must fit (32 registers with AVX-512, 16 without).
#if defined(__AVX512F__)
constexpr int kLanes = 16;
constexpr int kVectors = 3;
#elif defined(__AVX__)
constexpr int kLanes = 8;
constexpr int kVectors = 1;
#else
constexpr int kLanes = 4;
constexpr int kVectors = 1;
#endif
constexpr int kPanel = kLanes * kVectors;  // P: columns per panel
constexpr int kRowBlock = 8;               // rows of x multiplied per pass over a panel
constexpr int kPrefetchRows = 64;          // prefetch distance, in panel rows (K steps)

// Panels holding n columns (the last one zero-padded).
constexpr int64_t PanelCount(int64_t n) { return (n + kPanel - 1) / kPanel; }

// GCC/Clang vector extensions: AVX-512 / AVX / SSE / NEON from one source.
typedef float Vec __attribute__((vector_size(kLanes * sizeof(float))));
typedef float UnalignedVec __attribute__((vector_size(kLanes * sizeof(float)), aligned(4)));

// acc[r][P] = sum_k xt[k][r] * panel[k][:] for r < R. xt: [K][kRowBlock] (transposed rows).
template <int R>
inline void PanelProduct(const float* xt, int64_t k_size, const float* panel, float* acc_out) {
  Vec acc[R][kVectors];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < kVectors; ++v) acc[r][v] = Vec{};
  const float* w = panel;
  for (int64_t k = 0; k < k_size; ++k, w += kPanel, xt += kRowBlock) {
    for (int line = 0; line < kPanel; line += 64 / sizeof(float))
      __builtin_prefetch(w + kPrefetchRows * kPanel + line);
    Vec wv[kVectors];
    for (int v = 0; v < kVectors; ++v) wv[v] = *reinterpret_cast<const UnalignedVec*>(w + v * kLanes);
    for (int r = 0; r < R; ++r) {
      const Vec b = Vec{} + xt[r];  // broadcast
      for (int v = 0; v < kVectors; ++v) acc[r][v] += b * wv[v];  // fused by -ffp-contract
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < kVectors; ++v)
      *reinterpret_cast<UnalignedVec*>(acc_out + r * kPanel + v * kLanes) = acc[r][v];
}

struct Problem {
  const float* xt;  // [row blocks][K][kRowBlock], zero-padded rows
  const float* w;   // [panels][K][P] of the chosen layer
  float* y;         // [M][N]
  int64_t m, k, n, panels;
};

// Rows [r0, r0 + R) of y, panel p.
template <int R>
void RowsTimesPanel(const Problem& pr, int64_t block, int64_t p, float* staging) {
  PanelProduct<R>(pr.xt + block * pr.k * kRowBlock, pr.k, pr.w + p * pr.k * kPanel, staging);
  const int64_t col = p * kPanel;
  const int64_t width = std::min<int64_t>(kPanel, pr.n - col);
  const int64_t rows = std::min<int64_t>(R, pr.m - block * kRowBlock);
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(pr.y + (block * kRowBlock + r) * pr.n + col, staging + r * kPanel,
                width * sizeof(float));
}

void ComputePanels(const Problem& pr, int64_t p0, int64_t p1) {
  alignas(64) float staging[kRowBlock * kPanel];
  const int64_t blocks = (pr.m + kRowBlock - 1) / kRowBlock;
  for (int64_t p = p0; p < p1; ++p) {
    // Every row block against this panel while it is in cache.
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t rows = std::min<int64_t>(kRowBlock, pr.m - b * kRowBlock);
      if (rows > 4) RowsTimesPanel<8>(pr, b, p, staging);
      else if (rows > 2) RowsTimesPanel<4>(pr, b, p, staging);
      else if (rows == 2) RowsTimesPanel<2>(pr, b, p, staging);
      else RowsTimesPanel<1>(pr, b, p, staging);
    }
  }
}

// Runs task(0 .. count-1) on the calling thread and on helpers from XLA's intra-op pool.
// Tasks are claimed from an atomic counter; the caller waits only for tasks claimed by
// helpers already running, so a helper that starts late (or never) cannot stall it.
// The state is shared with the helpers, which may outlive the call.
template <typename Task>
void ParallelFor(ffi::ThreadPool& pool, int64_t count, Task task) {
  struct State {
    Task task;
    int64_t count;
    std::atomic<int64_t> next{0}, done{0};
    State(Task t, int64_t c) : task(std::move(t)), count(c) {}
    void Run() {
      for (int64_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < count;) {
        task(i);
        done.fetch_add(1, std::memory_order_release);
      }
    }
  };
  auto state = std::make_shared<State>(std::move(task), count);
  const int64_t helpers = std::min<int64_t>(std::max<int64_t>(1, pool.num_threads()) - 1,
                                            count - 1);
  for (int64_t h = 0; h < helpers; ++h) pool.Schedule([state] { state->Run(); });
  state->Run();
  while (state->done.load(std::memory_order_acquire) < count) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
  }
}

ffi::Error PackedMatmulImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x,
                            ffi::Buffer<ffi::F32> w, ffi::Buffer<ffi::S32> layer,
                            ffi::ResultBuffer<ffi::F32> y) {
  const auto xd = x.dimensions();
  const auto wd = w.dimensions();
  const auto yd = y->dimensions();
  if (xd.size() != 2 || wd.size() != 4 || yd.size() != 2)
    return ffi::Error::InvalidArgument("sjjax_packed_matmul: x [M, K], w [L, panels, K, P], y [M, N]");
  const int64_t m = xd[0], k = xd[1], n = yd[1], layers = wd[0], panels = wd[1];
  if (wd[2] != k || wd[3] != kPanel || yd[0] != m || panels != PanelCount(n))
    return ffi::Error::InvalidArgument("sjjax_packed_matmul: shapes do not match the packing");
  const int64_t l = layer.typed_data()[0];
  if (l < 0 || l >= layers)
    return ffi::Error::InvalidArgument("sjjax_packed_matmul: layer index out of range");
  if (m == 0 || n == 0) return ffi::Error::Success();

  const int64_t blocks = (m + kRowBlock - 1) / kRowBlock;
  // x transposed into row blocks so that one k step reads 8 rows' values together.
  // Shared with helpers that may outlive the call, hence the shared_ptr.
  auto xt = std::make_shared<std::vector<float>>(blocks * k * kRowBlock, 0.0f);
  const float* xs = x.typed_data();
  for (int64_t r = 0; r < m; ++r)
    for (int64_t i = 0; i < k; ++i)
      (*xt)[((r / kRowBlock) * k + i) * kRowBlock + r % kRowBlock] = xs[r * k + i];
  const Problem problem{xt->data(), w.typed_data() + l * panels * k * kPanel,
                        y->typed_data(), m, k, n, panels};
  // About 4 chunks of panels per thread: even shares without one atomic per panel.
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  const int64_t chunk = std::max<int64_t>(1, panels / (4 * threads));
  ParallelFor(pool, (panels + chunk - 1) / chunk, [problem, chunk, xt](int64_t c) {
    ComputePanels(problem, c * chunk, std::min(problem.panels, (c + 1) * chunk));
  });
  return ffi::Error::Success();
}

// Packs weights for PackedMatmul: w [L, K, N] (or [L, N, K] when `transposed`, as a
// tied embedding [V, d] is) -> packed [L, panels, K, P], zero past column N. One pass
// over the weights, split by (layer, panel) across threads like the product.
ffi::Error PackImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> w,
                    ffi::ResultBuffer<ffi::F32> packed, bool transposed) {
  const auto wd = w.dimensions();
  const auto pd = packed->dimensions();
  if (wd.size() != 3 || pd.size() != 4)
    return ffi::Error::InvalidArgument("sjjax_pack: w [L, K, N], packed [L, panels, K, P]");
  const int64_t layers = wd[0], k = transposed ? wd[2] : wd[1], n = transposed ? wd[1] : wd[2];
  const int64_t panels = pd[1];
  if (pd[0] != layers || pd[2] != k || pd[3] != kPanel || panels != PanelCount(n))
    return ffi::Error::InvalidArgument("sjjax_pack: shapes do not match the packing");
  const float* src = w.typed_data();
  float* dst = packed->typed_data();
  if (!transposed) {
    // Tasks of kPackRows source rows: a few sequential read streams, and each panel
    // gets one contiguous run of kPackRows * P floats.
    constexpr int64_t kPackRows = 16;
    const int64_t row_blocks = (k + kPackRows - 1) / kPackRows;
    ParallelFor(pool, layers * row_blocks, [=](int64_t t) {
      const int64_t l = t / row_blocks, i0 = (t % row_blocks) * kPackRows;
      const int64_t i1 = std::min(k, i0 + kPackRows);
      for (int64_t p = 0; p < panels; ++p) {
        const int64_t col = p * kPanel, width = std::min<int64_t>(kPanel, n - col);
        float* d = dst + (l * panels + p) * k * kPanel;
        for (int64_t i = i0; i < i1; ++i) {
          std::memcpy(d + i * kPanel, src + (l * k + i) * n + col, width * sizeof(float));
          std::fill(d + i * kPanel + width, d + (i + 1) * kPanel, 0.0f);
        }
      }
    });
  } else {
    // Source [n, k]: panel p is rows p*P .. p*P+P-1, one contiguous block, transposed.
    ParallelFor(pool, layers * panels, [=](int64_t t) {
      const int64_t l = t / panels, p = t % panels, col = p * kPanel;
      const int64_t width = std::min<int64_t>(kPanel, n - col);
      const float* s = src + (l * n + col) * k;
      float* d = dst + t * k * kPanel;
      std::fill(d, d + k * kPanel, 0.0f);
      for (int64_t j = 0; j < width; ++j)
        for (int64_t i = 0; i < k; ++i) d[i * kPanel + j] = s[j * k + i];
    });
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(SjjaxPack, PackImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()   // w [L, K, N] / [L, N, K]
                                  .Ret<ffi::Buffer<ffi::F32>>()   // packed [L, panels, K, P]
                                  .Attr<bool>("transposed"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(SjjaxPackedMatmul, PackedMatmulImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()   // x [M, K]
                                  .Arg<ffi::Buffer<ffi::F32>>()   // w [L, panels, K, P]
                                  .Arg<ffi::Buffer<ffi::S32>>()   // layer []
                                  .Ret<ffi::Buffer<ffi::F32>>());  // y [M, N]

extern "C" int SjjaxPanelWidth() { return kPanel; }
