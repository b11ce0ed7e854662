// The selective scan on CPUs as one fused kernel per direction, for mmambaout/ops/cpu_scan.py.
//
// Each task owns a batch and a run of channels of one group, and walks time a chunk at a time with
// all the chunk's working values in small buffers, one row per channel (Δ, Δ·u) or per
// (channel, state) (decays, states): Δ = softplus(delta + bias), the decays, Δ·u·B, the states,
// Σ_n C·h + D·u all come from one read of u and delta and go out in one write of y. Everything
// but the recurrence h_t = a_t·h_{t-1} + x_t runs along time, contiguous, and vectorises; the
// recurrence interleaves the rows' independent chains. The forward keeps the state before every
// chunk; the backward walks the chunks from the last, recomputes their states from those, and
// runs the adjoint gh_t = C_t·gy_t + a_{t+1}·gh_{t+1} backwards the same way. What channels
// share (A, D, bias across batches; B, C across a group's channels) is summed from per-task
// parts afterwards: no races. How the work is cut depends on the shapes only, never on the
// number of threads, so every run gives the same bits at any thread count.
//
// exp and log1p are written out (branch-free polynomials, no libm calls) so that their loops
// vectorise; the hot functions are compiled for AVX-512, AVX2 + FMA and baseline x86-64, and the
// best one the CPU runs is used unless use_instruction_set picks another (cpu_scan.py), so one
// build runs on any x86-64 at the best width it offers.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace {

using torch::Tensor;

#define ALWAYS_INLINE inline __attribute__((always_inline))

// e^x to ~1e-7 relative: e^x = 2^k·e^r, k = round(x / ln 2), |r| <= ln 2 / 2, e^r by Cephes'
// expf polynomial. 0 from about -87 down (the clamp makes 2^(k-1) = 0 there: float32's
// denormals are not worth a branch), inf above the largest float's log, NaN kept.
ALWAYS_INLINE float exp_(float x) {
  const float clamped = std::min(std::max(x, -87.f), 88.72f);
  const float k = (clamped * 1.44269504f + 12582912.f) - 12582912.f;  // rounds: 1.5·2^23
  const float r = (clamped - k * 0.693359375f) - k * -2.12194440e-4f;  // ln 2 in two parts
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  const int32_t bits = (static_cast<int32_t>(k) + 126) << 23;  // 2^(k-1): k = 128 fits
  float half_scale;
  std::memcpy(&half_scale, &bits, sizeof half_scale);
  const float result = x > 88.72f ? std::numeric_limits<float>::infinity() : p * half_scale * 2.f;
  return x != x ? x : result;
}

// log(1 + y) for y in [0, 1], to ~1e-8 relative: 2·atanh(s) with s = y / (2 + y) <= 1/3.
ALWAYS_INLINE float log1p_unit(float y) {
  const float s = y / (2.f + y), s2 = s * s;
  float p = 1.f / 13;
  p = p * s2 + 1.f / 11;
  p = p * s2 + 1.f / 9;
  p = p * s2 + 1.f / 7;
  p = p * s2 + 1.f / 5;
  p = p * s2 + 1.f / 3;
  p = p * s2 + 1.f;
  return 2.f * s * p;
}

// The recurrences of R rows at once, each row's running value in a register (R independent
// chains hide the multiply-add's latency). Rows are `stride` floats apart.
// Forward: x_t += a_t·x_{t-1} for t = 1..len (x_0 is the state before).
template <int R>
ALWAYS_INLINE void scan_rows(const float* a, int64_t a_stride, float* x, int64_t x_stride,
                             int64_t len) {
  float h[R];
  for (int j = 0; j < R; ++j) h[j] = x[j * x_stride];
  for (int64_t t = 1; t <= len; ++t) {
#pragma GCC unroll 8
    for (int j = 0; j < R; ++j) {
      h[j] = a[j * a_stride + t - 1] * h[j] + x[j * x_stride + t];
      x[j * x_stride + t] = h[j];
    }
  }
}

// Backward: g_t += later, later = a_t·g_t for t = len-1..0; `later` carries into and out of the
// chunk (a_{t+1}·gh_{t+1} from the step after it).
template <int R>
ALWAYS_INLINE void scan_rows_reversed(const float* a, float* g, int64_t stride, float* later,
                                      int64_t len) {
  float c[R];
  for (int j = 0; j < R; ++j) c[j] = later[j];
  for (int64_t t = len - 1; t >= 0; --t) {
#pragma GCC unroll 8
    for (int j = 0; j < R; ++j) {
      const float gh = g[j * stride + t] + c[j];
      g[j * stride + t] = gh;
      c[j] = a[j * stride + t] * gh;
    }
  }
  for (int j = 0; j < R; ++j) later[j] = c[j];
}

// The inputs, float32 and contiguous: u, delta (b, d, L), A (d, n), B, C (b, g, n, L), D and
// delta_bias (d) or null.
struct Problem {
  const float *u, *delta, *A, *B, *C, *D, *bias;
  bool softplus;
  int64_t batch, dim, groups, state, length, chunk, num_chunks;

  int64_t channels() const { return dim / groups; }  // per group
  // Channels per buffer block: enough (channel, state) rows for independent chains in the
  // recurrence, few enough for the buffers to stay in L2.
  int64_t block() const { return std::max<int64_t>(1, 16 / state); }
  int64_t blocks() const { return (channels() + block() - 1) / block(); }  // per group
};

// Rows of a run of K channels over one chunk of time: per channel Δ, Δ·u (and softplus'
// slope), per (channel, state) the decays and the states (with the state before the chunk
// first: row t + 1 is h_t, row t is h_{t-1}).
struct ChunkRows {
  int64_t K, N, T;
  std::vector<float> storage;
  float *dt, *du, *slope, *decay, *states;

  ChunkRows(int64_t K, int64_t N, int64_t T)
      : K(K), N(N), T(T), storage(3 * K * T + K * N * (2 * T + 1)) {
    dt = storage.data();
    du = dt + K * T;
    slope = du + K * T;
    decay = slope + K * T;
    states = decay + K * N * T;
  }
  float* states_of(int64_t kn) { return states + kn * (T + 1); }

  // Δ, Δ·u, decays and states of channels c0..c0+K-1 of `batch` over [t0, t0 + len), from `h`
  // (K·N), which ends as the chunk's last state; with `slopes`, softplus' slope too.
  ALWAYS_INLINE void solve(const Problem& p, int64_t batch, int64_t c0, int64_t t0, int64_t len,
                           float* h, bool slopes) {
    const int64_t L = p.length, group = c0 / p.channels();
    const float* B = p.B + (batch * p.groups + group) * N * L + t0;
    for (int64_t k = 0; k < K; ++k) {
      const int64_t row = (batch * p.dim + c0 + k) * L + t0;
      const float *delta = p.delta + row, *u = p.u + row;
      const float bias = p.bias ? p.bias[c0 + k] : 0.f;
      float *dt_k = dt + k * T, *du_k = du + k * T, *slope_k = slope + k * T;
      if (p.softplus) {
        for (int64_t t = 0; t < len; ++t) {  // softplus(v) = max(v, 0) + log(1 + e^-|v|)
          const float v = delta[t] + bias, e = exp_(-std::fabs(v));
          dt_k[t] = std::max(v, 0.f) + log1p_unit(e);
          du_k[t] = dt_k[t] * u[t];
          slope_k[t] = e;
        }
        for (int64_t t = 0; slopes && t < len; ++t) {  // sigmoid(v), the backward's
          const float e = slope_k[t];
          slope_k[t] = (delta[t] + bias >= 0.f ? 1.f : e) / (1.f + e);
        }
      } else {
        for (int64_t t = 0; t < len; ++t) {
          dt_k[t] = delta[t] + bias;
          du_k[t] = dt_k[t] * u[t];
        }
      }
      for (int64_t n = 0; n < N; ++n) {
        const float A = p.A[(c0 + k) * N + n];
        const float* B_n = B + n * L;
        float *a = decay + (k * N + n) * T, *x = states_of(k * N + n);
        x[0] = h[k * N + n];
        for (int64_t t = 0; t < len; ++t) {
          a[t] = exp_(dt_k[t] * A);
          x[t + 1] = du_k[t] * B_n[t];
        }
      }
    }
    int64_t kn = 0;
    for (; kn + 8 <= K * N; kn += 8) scan_rows<8>(decay + kn * T, T, states_of(kn), T + 1, len);
    for (; kn + 4 <= K * N; kn += 4) scan_rows<4>(decay + kn * T, T, states_of(kn), T + 1, len);
    for (; kn < K * N; ++kn) scan_rows<1>(decay + kn * T, T, states_of(kn), T + 1, len);
    for (kn = 0; kn < K * N; ++kn) h[kn] = states_of(kn)[len];
  }
};

// y, last state and the state before every chunk of channels c0..c0+count-1 (one group).
ALWAYS_INLINE void forward_channels(const Problem& p, int64_t batch, int64_t c0, int64_t count,
                                     float* y, float* last_state, float* chunk_states) {
  const int64_t N = p.state, T = p.chunk, L = p.length;
  const int64_t group = c0 / p.channels();
  const float* C = p.C + (batch * p.groups + group) * N * L;
  ChunkRows rows(count, N, T);
  std::vector<float> h(count * N, 0.f);
  for (int64_t c = 0; c < p.num_chunks; ++c) {
    const int64_t t0 = c * T, len = std::min(T, L - t0);
    for (int64_t kn = 0; kn < count * N; ++kn)
      chunk_states[((batch * p.dim + c0) * N + kn) * p.num_chunks + c] = h[kn];
    rows.solve(p, batch, c0, t0, len, h.data(), false);
    for (int64_t k = 0; k < count; ++k) {
      const int64_t row = (batch * p.dim + c0 + k) * L + t0;
      const float D = p.D ? p.D[c0 + k] : 0.f;
      float* y_k = y + row;
      for (int64_t t = 0; t < len; ++t) y_k[t] = D * p.u[row + t];
      for (int64_t n = 0; n < N; ++n) {
        const float *C_n = C + n * L + t0, *h_n = rows.states_of(k * N + n) + 1;
        for (int64_t t = 0; t < len; ++t) y_k[t] += C_n[t] * h_n[t];
      }
    }
  }
  std::copy(h.begin(), h.end(), last_state + (batch * p.dim + c0) * N);
}

// Where the backward of one task writes: its own rows of ∂u and ∂delta, its (b, channels) part
// of ∂A, ∂D, ∂bias, and its own (n, L) part of ∂B and ∂C (zeroed, accumulated over channels).
struct Gradients {
  float *u, *delta, *A, *D, *bias, *B, *C;
};

// Gradients of channels c0..c0+K-1 (one buffer block) of `batch`; the B and C parts accumulate.
ALWAYS_INLINE void backward_block(const Problem& p, const float* grad_y, const float* grad_last,
                                  const float* chunk_states, int64_t batch, int64_t c0, int64_t K,
                                  Gradients g) {
  const int64_t N = p.state, T = p.chunk, L = p.length, KN = K * N;
  const int64_t group = c0 / p.channels();
  const float *B = p.B + (batch * p.groups + group) * N * L,
              *C = p.C + (batch * p.groups + group) * N * L;
  ChunkRows rows(K, N, T);
  // per channel ∂/∂Δ through the decays and ∂/∂(Δ·u); per (channel, state) ∂/∂h
  std::vector<float> storage(2 * K * T + KN * T + 3 * KN + 2 * K, 0.f);
  float *grad_dt = storage.data(), *grad_drive = grad_dt + K * T, *grad_h = grad_drive + K * T;
  float *h = grad_h + KN * T, *later = h + KN, *grad_A = later + KN;  // later: a_{t+1}·gh_{t+1}
  float *grad_D = grad_A + KN, *grad_bias = grad_D + K;
  const int64_t first_row = (batch * p.dim + c0) * N;  // in (b, d, n)
  std::copy(grad_last + first_row, grad_last + first_row + KN, later);
  for (int64_t c = p.num_chunks - 1; c >= 0; --c) {
    const int64_t t0 = c * T, len = std::min(T, L - t0);
    for (int64_t kn = 0; kn < KN; ++kn) h[kn] = chunk_states[(first_row + kn) * p.num_chunks + c];
    rows.solve(p, batch, c0, t0, len, h, true);
    // the adjoint, last step first: gh_t = C_t·gy_t + a_{t+1}·gh_{t+1}
    for (int64_t k = 0; k < K; ++k) {
      const float* gy = grad_y + (batch * p.dim + c0 + k) * L + t0;
      for (int64_t n = 0; n < N; ++n) {
        const float* C_n = C + n * L + t0;
        float* gh = grad_h + (k * N + n) * T;
        for (int64_t t = 0; t < len; ++t) gh[t] = C_n[t] * gy[t];
      }
    }
    int64_t kn = 0;
    for (; kn + 8 <= KN; kn += 8)
      scan_rows_reversed<8>(rows.decay + kn * T, grad_h + kn * T, T, later + kn, len);
    for (; kn + 4 <= KN; kn += 4)
      scan_rows_reversed<4>(rows.decay + kn * T, grad_h + kn * T, T, later + kn, len);
    for (; kn < KN; ++kn)
      scan_rows_reversed<1>(rows.decay + kn * T, grad_h + kn * T, T, later + kn, len);
    for (int64_t k = 0; k < K; ++k) {
      const int64_t row = (batch * p.dim + c0 + k) * L + t0;
      const float *gy = grad_y + row, *dt = rows.dt + k * T, *du = rows.du + k * T;
      float *grad_dt_k = grad_dt + k * T, *grad_drive_k = grad_drive + k * T;
      std::fill(grad_dt_k, grad_dt_k + len, 0.f);
      std::fill(grad_drive_k, grad_drive_k + len, 0.f);
      for (int64_t n = 0; n < N; ++n) {
        const int64_t kn = k * N + n;
        const float A = p.A[(c0 + k) * N + n];
        const float *B_n = B + n * L + t0, *a = rows.decay + kn * T, *gh = grad_h + kn * T;
        const float* states = rows.states_of(kn);  // states[t] = h_{t-1}, states[t + 1] = h_t
        float *grad_B = g.B + n * L + t0, *grad_C = g.C + n * L + t0;
        float grad_A_kn = 0.f;
#pragma omp simd reduction(+ : grad_A_kn)
        for (int64_t t = 0; t < len; ++t) {
          // ∂/∂(Δ_t·A) = gh_t·a_t·h_{t-1} (not gh_t·(h_t - x_t): that cancels where a_t << 1)
          const float grad_log_decay = gh[t] * a[t] * states[t];
          grad_A_kn += grad_log_decay * dt[t];
          grad_dt_k[t] += grad_log_decay * A;
          grad_drive_k[t] += gh[t] * B_n[t];  // ∂/∂(Δ_t·u_t), as x_t = Δ_t·u_t·B_t
          grad_B[t] += gh[t] * du[t];
          grad_C[t] += states[t + 1] * gy[t];
        }
        grad_A[kn] += grad_A_kn;
      }
      const float D = p.D ? p.D[c0 + k] : 0.f;
      const float *u = p.u + row, *slope = rows.slope + k * T;
      float *grad_u = g.u + row, *grad_delta = g.delta + row;
      const bool softplus = p.softplus;  // a local: GCC vectorises its loop only then
      float grad_D_k = 0.f, grad_bias_k = 0.f;
#pragma omp simd reduction(+ : grad_D_k, grad_bias_k)
      for (int64_t t = 0; t < len; ++t) {
        grad_u[t] = grad_drive_k[t] * dt[t] + D * gy[t];
        grad_D_k += gy[t] * u[t];
        const float grad_dt_t = grad_dt_k[t] + grad_drive_k[t] * u[t];
        const float grad_delta_t = softplus ? grad_dt_t * slope[t] : grad_dt_t;
        grad_delta[t] = grad_delta_t;
        grad_bias_k += grad_delta_t;
      }
      grad_D[k] += grad_D_k;
      grad_bias[k] += grad_bias_k;
    }
  }
  std::copy(grad_A, grad_A + KN, g.A + first_row);
  std::copy(grad_D, grad_D + K, g.D + batch * p.dim + c0);
  std::copy(grad_bias, grad_bias + K, g.bias + batch * p.dim + c0);
}

// One copy of the hot functions per instruction set: each inlines the functions above, which
// GCC then vectorises at that set's width. `runs` says whether this CPU can execute the copy.
struct InstructionSet {
  const char* name;
  bool (*runs)();
  void (*forward_channels)(const Problem&, int64_t, int64_t, int64_t, float*, float*, float*);
  void (*backward_block)(const Problem&, const float*, const float*, const float*, int64_t,
                         int64_t, int64_t, Gradients);
};

#define INSTRUCTION_SET(NAME, TARGET, RUNS)                                                     \
  TARGET void forward_channels_##NAME(const Problem& p, int64_t batch, int64_t c0,             \
                                      int64_t count, float* y, float* last_state,              \
                                      float* chunk_states) {                                   \
    forward_channels(p, batch, c0, count, y, last_state, chunk_states);                        \
  }                                                                                            \
  TARGET void backward_block_##NAME(const Problem& p, const float* grad_y,                     \
                                    const float* grad_last, const float* chunk_states,         \
                                    int64_t batch, int64_t c0, int64_t K, Gradients g) {       \
    backward_block(p, grad_y, grad_last, chunk_states, batch, c0, K, g);                       \
  }                                                                                            \
  bool runs_##NAME() { return RUNS; }                                                          \
  constexpr InstructionSet NAME##_set{#NAME, runs_##NAME, forward_channels_##NAME,             \
                                      backward_block_##NAME};

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
// the x86-64 levels: v4 = AVX-512 F/BW/CD/DQ/VL, v3 = AVX2 + FMA (+ BMI, F16C, ...)
INSTRUCTION_SET(avx512, __attribute__((target("arch=x86-64-v4"))),
                (__builtin_cpu_init(), __builtin_cpu_supports("x86-64-v4")))
INSTRUCTION_SET(avx2, __attribute__((target("arch=x86-64-v3"))),
                (__builtin_cpu_init(), __builtin_cpu_supports("x86-64-v3")))
INSTRUCTION_SET(baseline, , true)
const InstructionSet* const kInstructionSets[] = {&avx512_set, &avx2_set, &baseline_set};
#else
INSTRUCTION_SET(baseline, , true)
const InstructionSet* const kInstructionSets[] = {&baseline_set};
#endif

// the first (best) set this CPU runs, until use_instruction_set picks another
std::atomic<const InstructionSet*> active_set{[] {
  for (const InstructionSet* set : kInstructionSets)
    if (set->runs()) return set;
  return kInstructionSets[std::size(kInstructionSets) - 1];
}()};

// (name, whether this CPU runs it) of every compiled set, best first
std::vector<std::pair<std::string, bool>> instruction_sets() {
  std::vector<std::pair<std::string, bool>> sets;
  for (const InstructionSet* set : kInstructionSets) sets.emplace_back(set->name, set->runs());
  return sets;
}

void use_instruction_set(const std::string& name) {
  for (const InstructionSet* set : kInstructionSets) {
    if (name != set->name) continue;
    TORCH_CHECK(set->runs(), "selective_scan cpu kernel: this CPU cannot run ", name);
    active_set = set;
    return;
  }
  TORCH_CHECK(false, "selective_scan cpu kernel: no instruction set ", name, " in this build");
}

std::string instruction_set() { return active_set.load()->name; }

const float* data_or_null(const c10::optional<Tensor>& tensor) {
  return tensor ? tensor->data_ptr<float>() : nullptr;
}

Problem problem(const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& B,
                const Tensor& C, const c10::optional<Tensor>& D,
                const c10::optional<Tensor>& delta_bias, bool softplus, int64_t chunk) {
  // the Python wrapper hands over checked shapes; these guard the memory layout
  for (const Tensor* t : {&u, &delta, &A, &B, &C, D ? &*D : &u, delta_bias ? &*delta_bias : &u})
    TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == torch::kFloat32 && t->is_contiguous(),
                "selective_scan cpu kernel: tensors must be contiguous float32 on the CPU");
  TORCH_CHECK(chunk >= 1, "selective_scan cpu kernel: chunk must be >= 1, got ", chunk);
  const int64_t length = u.size(2);
  return Problem{u.data_ptr<float>(), delta.data_ptr<float>(), A.data_ptr<float>(),
                 B.data_ptr<float>(), C.data_ptr<float>(), data_or_null(D),
                 data_or_null(delta_bias), softplus, u.size(0), u.size(1), B.size(1), A.size(1),
                 length, chunk, (length + chunk - 1) / chunk};
}

// How the backward cuts a group's channels into runs, one task each: runs of kRunChannels
// channels at least, whose own parts of ∂B and ∂C (N·L floats each, to zero, fill and sum) cost
// little beside their scans, into kBackwardTasks tasks or fewer, enough for most machines' threads.
constexpr int64_t kRunChannels = 16, kBackwardTasks = 64;

// (batch, group, j) for task i, where each group's channels are cut into `per_group` runs.
struct Runs {
  int64_t groups, channels, per_group;
  int64_t tasks(int64_t batch) const { return batch * groups * per_group; }
  int64_t batch_of(int64_t i) const { return i / (groups * per_group); }
  // first channel and count of task i's run
  std::pair<int64_t, int64_t> channels_of(int64_t i) const {
    const int64_t group = i / per_group % groups, j = i % per_group;
    const int64_t begin = j * channels / per_group, end = (j + 1) * channels / per_group;
    return {group * channels + begin, end - begin};
  }
};

std::vector<Tensor> forward(const Tensor& u, const Tensor& delta, const Tensor& A,
                            const Tensor& B, const Tensor& C, const c10::optional<Tensor>& D,
                            const c10::optional<Tensor>& delta_bias, bool softplus,
                            int64_t chunk) {
  const Problem p = problem(u, delta, A, B, C, D, delta_bias, softplus, chunk);
  Tensor y = torch::empty_like(u);
  Tensor last_state = u.new_empty({p.batch, p.dim, p.state});
  Tensor chunk_states = u.new_empty({p.batch, p.dim, p.state, p.num_chunks});
  const Runs runs{p.groups, p.channels(), p.blocks()};
  float *y_data = y.data_ptr<float>(), *last_data = last_state.data_ptr<float>(),
        *chunk_data = chunk_states.data_ptr<float>();
  const auto forward_run = active_set.load()->forward_channels;
  at::parallel_for(0, runs.tasks(p.batch), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const auto [c0, count] = runs.channels_of(i);
      forward_run(p, runs.batch_of(i), c0, count, y_data, last_data, chunk_data);
    }
  });
  return {y, last_state, chunk_states};
}

// ∂u, ∂delta, ∂A, ∂B, ∂C, ∂D, ∂delta_bias (the last two undefined where D, delta_bias are None)
std::vector<Tensor> backward(const Tensor& grad_y, const Tensor& grad_last_state, const Tensor& u,
                             const Tensor& delta, const Tensor& A, const Tensor& B,
                             const Tensor& C, const c10::optional<Tensor>& D,
                             const c10::optional<Tensor>& delta_bias, bool softplus,
                             const Tensor& chunk_states, int64_t chunk) {
  const Problem p = problem(u, delta, A, B, C, D, delta_bias, softplus, chunk);
  for (const Tensor* t : {&grad_y, &grad_last_state, &chunk_states})
    TORCH_CHECK(t->scalar_type() == torch::kFloat32 && t->is_contiguous(),
                "selective_scan cpu kernel: gradients must be contiguous float32");
  // from the shapes alone: cut by the thread count, the parts would sum to other bits
  const int64_t per_group = std::max<int64_t>(
      1, std::min(p.channels() / kRunChannels, kBackwardTasks / (p.batch * p.groups)));
  const Runs runs{p.groups, p.channels(), per_group};
  const auto backward_run = active_set.load()->backward_block;
  Tensor grad_u = torch::empty_like(u), grad_delta = torch::empty_like(delta);
  Tensor grad_A = u.new_empty({p.batch, p.dim, p.state});
  Tensor grad_D = u.new_empty({p.batch, p.dim}), grad_bias = u.new_empty({p.batch, p.dim});
  Tensor grad_B = u.new_zeros({p.batch, p.groups, per_group, p.state, p.length});
  Tensor grad_C = torch::zeros_like(grad_B);
  const float *grad_y_data = grad_y.data_ptr<float>(),
              *grad_last_data = grad_last_state.data_ptr<float>(),
              *chunk_data = chunk_states.data_ptr<float>();
  const int64_t part = p.state * p.length;  // one run's (n, L) part of ∂B and ∂C
  at::parallel_for(0, runs.tasks(p.batch), 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const auto [first, count] = runs.channels_of(i);
      const Gradients g{grad_u.data_ptr<float>(), grad_delta.data_ptr<float>(),
                        grad_A.data_ptr<float>(), grad_D.data_ptr<float>(),
                        grad_bias.data_ptr<float>(), grad_B.data_ptr<float>() + i * part,
                        grad_C.data_ptr<float>() + i * part};
      for (int64_t c0 = first; c0 < first + count; c0 += p.block()) {
        backward_run(p, grad_y_data, grad_last_data, chunk_data, runs.batch_of(i), c0,
                     std::min(p.block(), first + count - c0), g);
      }
    }
  });
  return {grad_u,
          grad_delta,
          grad_A.sum(0),
          grad_B.sum(2),
          grad_C.sum(2),
          D ? grad_D.sum(0) : Tensor(),
          delta_bias ? grad_bias.sum(0) : Tensor()};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "The selective scan on CPUs, fused: forward and backward (see cpu_scan.py)";
  m.def("forward", &forward, "y, last state, state before every chunk");
  m.def("backward", &backward, "gradients of u, delta, A, B, C, D, delta_bias");
  m.def("instruction_sets", &instruction_sets,
        "(name, whether this CPU runs it) of every compiled instruction set, best first");
  m.def("use_instruction_set", &use_instruction_set, "run the copy compiled for this one");
  m.def("instruction_set", &instruction_set, "the instruction set in use");
}
