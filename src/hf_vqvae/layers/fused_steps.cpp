// The steps of the package's cached autoregressive samplers, each as one call: the gated PixelCNN's vertical stack at
// one row (`pixelcnn_row`), its horizontal stack, output layers and draw at one position (`pixelcnn_step`), and the
// WaveNet's blocks, output layers and draw at one sample (`wavenet_step`). Python builds a step's description once
// (every weight, buffer and size, see layers/fused_steps.py) and calls it per row or position through ctypes, with the
// thread count to run on: a row splits its positions between threads, a step its batch (WorkerPool).
//
// Why: in eager torch a position is 75 (PixelCNN) to 110 (WaveNet) tensor operations that each cost a few
// microseconds whatever their size, where the arithmetic of a position at batch 1 to 4 takes tens of microseconds.
// Here a position costs its arithmetic and the reading of its weights.
//
// The arithmetic is the eager step's, in another order of float additions: products accumulate over the inputs in
// order, then the gate is tanh(content) * sigmoid(gate) from an exponential accurate to about one unit in the last
// place. The logits agree with the eager ones to float rounding, so a seeded draw picks the same codes.
//
// Plain C++17 with GCC/Clang vector extensions (no torch headers: it compiles in about a second); every matrix is
// row-major (inputs, outputs), so a product streams each weight row once per block of up to six batch rows, 16
// outputs per vector.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include <pthread.h>

namespace {

constexpr int kLanes = 16;
typedef float vf __attribute__((vector_size(64)));
typedef float vf_unaligned __attribute__((vector_size(64), aligned(4), may_alias));
typedef int32_t vi __attribute__((vector_size(64)));

inline vf load(const float* p) { return *reinterpret_cast<const vf_unaligned*>(p); }
inline void store(float* p, vf v) { *reinterpret_cast<vf_unaligned*>(p) = v; }
inline vf splat(float x) { return vf{} + x; }
inline vi bits(vf v) { return (vi)v; }  // the same 64 bytes, read as integers
inline vf from_bits(vi v) { return (vf)v; }

// out[r, j] = add[r, j] (or 0) + sum_k x[r, k] * w[k, j] for r < R and j < 16 V, w's rows w_stride apart: R * V
// accumulators kept in registers while the K weight rows stream past.
template <int R, int V>
inline void product_block(int64_t K, const float* x, int64_t x_stride, const float* w, int64_t w_stride,
                          const float* add, int64_t add_stride, float* out, int64_t out_stride) {
    vf acc[R][V];
    for (int r = 0; r < R; ++r)
        for (int v = 0; v < V; ++v) acc[r][v] = add ? load(add + r * add_stride + v * kLanes) : vf{};
    for (int64_t k = 0; k < K; ++k) {
        const float* row = w + k * w_stride;
        vf weights[V];
        for (int v = 0; v < V; ++v) weights[v] = load(row + v * kLanes);
        for (int r = 0; r < R; ++r) {
            const vf xr = splat(x[r * x_stride + k]);
            for (int v = 0; v < V; ++v) acc[r][v] += xr * weights[v];
        }
    }
    for (int r = 0; r < R; ++r)
        for (int v = 0; v < V; ++v) store(out + r * out_stride + v * kLanes, acc[r][v]);
}

// R rows of a product over the N outputs of a panel of w (rows w_stride apart).
template <int R>
inline void product_rows(int64_t K, int64_t N, const float* x, int64_t x_stride, const float* w, int64_t w_stride,
                         const float* add, int64_t add_stride, float* out, int64_t out_stride) {
    // 128 outputs at a time for up to 3 rows, 64 for more: as many accumulators as the registers hold.
    constexpr int wide = R <= 3 ? 8 : 4;
    int64_t n = 0;
    for (; n + wide * kLanes <= N; n += wide * kLanes)
        product_block<R, wide>(K, x, x_stride, w + n, w_stride, add ? add + n : nullptr, add_stride, out + n,
                               out_stride);
    for (; n + 4 * kLanes <= N; n += 4 * kLanes)  // a 64-wide panel
        product_block<R, 4>(K, x, x_stride, w + n, w_stride, add ? add + n : nullptr, add_stride, out + n, out_stride);
    for (; n + kLanes <= N; n += kLanes)
        product_block<R, 1>(K, x, x_stride, w + n, w_stride, add ? add + n : nullptr, add_stride, out + n, out_stride);
    for (; n < N; ++n)  // sizes that are not a multiple of 16
        for (int r = 0; r < R; ++r) {
            float sum = add ? add[r * add_stride + n] : 0.0f;
            for (int64_t k = 0; k < K; ++k) sum += x[r * x_stride + k] * w[k * w_stride + n];
            out[r * out_stride + n] = sum;
        }
}

// out (B, N) = add (B, N; row stride 0 for a bias shared by every row; null for none) + x (B, K) @ w (K, N), six
// rows at a time. Measured on an AMD EPYC (Zen 4) core, (256 x 960) @ (960 x 128): 114 GFLOP/s in blocks of 6 or 5
// rows, 60 in blocks of 4, 86 to 90 in blocks of 2 or 3 rows of 128 outputs. The outputs go by panels of 128 (64
// where a 128-wide panel of the weights would not fit in a 1 MB L2 cache), each panel read by every block of rows
// before the next, so that a weight matrix larger than the cache is read from memory once, not once per block.
void product(int64_t B, int64_t K, int64_t N, const float* x, int64_t x_stride, const float* w, const float* add,
             int64_t add_stride, float* out, int64_t out_stride) {
    const int64_t panel = K * 128 * 4 <= (640 << 10) ? 128 : 64;
    for (int64_t n0 = 0; n0 < N; n0 += panel) {
        const int64_t width = N - n0 < panel ? N - n0 : panel;
        const float* wp = w + n0;
        auto rows = [&](int64_t b) {
            return std::make_tuple(x + b * x_stride, add ? add + b * add_stride + n0 : nullptr,
                                   out + b * out_stride + n0);
        };
        int64_t b = 0;
        for (; B - b >= 6; b += 6) {
            auto [xb, ab, ob] = rows(b);
            product_rows<6>(K, width, xb, x_stride, wp, N, ab, add_stride, ob, out_stride);
        }
        for (int64_t left = B - b; left > 0; left = B - b) {
            auto [xb, ab, ob] = rows(b);
            switch (left) {
                case 5: product_rows<5>(K, width, xb, x_stride, wp, N, ab, add_stride, ob, out_stride); b += 5; break;
                case 3: product_rows<3>(K, width, xb, x_stride, wp, N, ab, add_stride, ob, out_stride); b += 3; break;
                case 1: product_rows<1>(K, width, xb, x_stride, wp, N, ab, add_stride, ob, out_stride); b += 1; break;
                default:  // 4 or 2 rows: blocks of 2
                    product_rows<2>(K, width, xb, x_stride, wp, N, ab, add_stride, ob, out_stride);
                    b += 2;
                    break;
            }
        }
    }
}

// exp(x) for x in [-87.3, 88.3] (clamped to it), Cephes' expf: x = n log 2 + r with |r| <= log(2) / 2, a degree-6
// polynomial for exp(r), 2^n from the exponent bits.
inline vf exp_clamped(vf x) {
    x = x < -87.3f ? splat(-87.3f) : x;
    x = x > 88.3f ? splat(88.3f) : x;
    const vf shifted = x * 1.44269504088896341f + 12582912.0f;  // 1.5 * 2^23: rounds n to an integer in the low bits
    const vf n = shifted - 12582912.0f;
    vf r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    vf p = splat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    return p * from_bits(((bits(shifted) - 0x4B400000) + 127) << 23);
}

// tanh(content) * sigmoid(gate): tanh(a) = sign(a) (1 - e) / (1 + e) with e = exp(-2 |a|), sigmoid(b) = 1 / (1 +
// exp(-b)).
inline vf gated_unit(vf content, vf gate) {
    const vf e = exp_clamped(from_bits(bits(content) & INT32_MAX) * -2.0f);
    const vf tanh = from_bits(bits((1.0f - e) / (1.0f + e)) | (bits(content) & INT32_MIN));
    return tanh / (1.0f + exp_clamped(-gate));
}

// out (B, C) = tanh(pre[:, :C]) * sigmoid(pre[:, C:]) for pre (B, 2C), plus bias (B, 2C, rows 2C apart; null for
// none) first.
void gate(int64_t B, int64_t C, const float* pre, int64_t pre_stride, const float* bias, float* out,
          int64_t out_stride) {
    for (int64_t b = 0; b < B; ++b) {
        const float* content = pre + b * pre_stride;
        const float* gates = content + C;
        const float* content_bias = bias ? bias + b * 2 * C : nullptr;
        float* o = out + b * out_stride;
        int64_t c = 0;
        if (content_bias) {
            const float* gate_bias = content_bias + C;
            for (; c + kLanes <= C; c += kLanes)
                store(o + c, gated_unit(load(content + c) + load(content_bias + c), load(gates + c) + load(gate_bias + c)));
            for (; c < C; ++c)
                o[c] = std::tanh(content[c] + content_bias[c]) / (1.0f + std::exp(-(gates[c] + gate_bias[c])));
        } else {
            for (; c + kLanes <= C; c += kLanes) store(o + c, gated_unit(load(content + c), load(gates + c)));
            for (; c < C; ++c) o[c] = std::tanh(content[c]) / (1.0f + std::exp(-gates[c]));
        }
    }
}

void relu(int64_t count, float* x) {
    for (int64_t i = 0; i < count; ++i) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

// Draws one category per row of (B, K) logits where uniform[b] falls in the CDF of softmax(logits / temperature),
// what `draw_from_logits` computes (the first category whose cumulative probability exceeds it, the last at most);
// writes it to codes[b * codes_stride]. cdf is (B, K) scratch space.
void draw(int64_t B, int64_t K, const float* logits, float temperature, const float* uniform, float* cdfs,
          int64_t* codes, int64_t codes_stride) {
    for (int64_t b = 0; b < B; ++b) {
        const float* x = logits + b * K;
        float* cdf = cdfs + b * K;
        int64_t k = 0;
        float top = x[0] / temperature;
        for (; k + kLanes <= K; k += kLanes) {  // cdf holds logits / temperature for now
            const vf scaled = load(x + k) / temperature;
            store(cdf + k, scaled);
            for (int lane = 0; lane < kLanes; ++lane) top = scaled[lane] > top ? scaled[lane] : top;
        }
        for (; k < K; ++k) top = (cdf[k] = x[k] / temperature) > top ? cdf[k] : top;
        for (k = 0; k + kLanes <= K; k += kLanes) store(cdf + k, exp_clamped(load(cdf + k) - top));
        for (; k < K; ++k) cdf[k] = std::exp(cdf[k] - top);
        float total = 0.0f;
        for (k = 0; k < K; ++k) cdf[k] = total += cdf[k];
        const float target = uniform[b] * total;
        int64_t drawn = 0;
        while (drawn < K - 1 && cdf[drawn] <= target) ++drawn;
        codes[b * codes_stride] = drawn;
    }
}

// rows[b] = embedding[codes[b * codes_stride]] for b < B, rows `row_stride` apart.
void embed(int64_t B, int64_t C, const float* embedding, const int64_t* codes, int64_t codes_stride, float* rows,
           int64_t row_stride) {
    for (int64_t b = 0; b < B; ++b) std::memcpy(rows + b * row_stride, embedding + codes[b * codes_stride] * C, C * 4);
}

// The output layers shared by both samplers: logits = W_l relu(W_h relu(W_s [gated, 1]) + b_h) + b_l.
struct OutputLayers {
    int64_t gated_width, skip_channels, classes;
    const float* skip_weight;  // (gated_width, skip_channels): every layer's skip convolution, its bias after it
    const float* hidden_weight;  // (skip_channels, skip_channels)
    const float* hidden_bias;
    const float* logits_weight;  // (skip_channels, classes)
    const float* logits_bias;
    float* skips;  // (batch, skip_channels)
    float* hidden;  // (batch, skip_channels)
    float* logits;  // (batch, classes)
    float* cdf;  // (batch, classes): scratch space of the draw
    const float* uniform;  // (batch): this position's uniform numbers, drawn by the caller from its generator
    float temperature;
};

// The logits at one position for batch rows b0 ... b0 + B - 1 from every layer's gated activations (batch,
// gated_width), and the codes drawn from them.
void output_layers(const OutputLayers& o, int64_t b0, int64_t B, const float* gated, int64_t* codes,
                   int64_t codes_stride) {
    const int64_t S = o.skip_channels, K = o.classes;
    float *skips = o.skips + b0 * S, *hidden = o.hidden + b0 * S, *logits = o.logits + b0 * K;
    product(B, o.gated_width, S, gated + b0 * o.gated_width, o.gated_width, o.skip_weight, nullptr, 0, skips, S);
    relu(B * S, skips);
    product(B, S, S, skips, S, o.hidden_weight, o.hidden_bias, 0, hidden, S);
    relu(B * S, hidden);
    product(B, S, K, hidden, S, o.logits_weight, o.logits_bias, 0, logits, K);
    draw(B, K, logits, o.temperature, o.uniform + b0, o.cdf + b0 * K, codes + b0 * codes_stride, codes_stride);
}

// Tells the core that this thread is spinning on a memory location.
inline void cpu_pause() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
}

// Waits until all `count` threads of a call arrive: spins for a few microseconds (a layer of work on the other core
// ends about when this one's does), then sleeps, so that a thread not scheduled on a busy machine costs a wait, not
// a spinning core.
class Barrier {
  public:
    explicit Barrier(int count) : count_(count) {}
    void arrive_and_wait() {
        std::unique_lock<std::mutex> lock(mutex_);
        const int64_t generation = generation_;
        if (++waiting_ == count_) {
            waiting_ = 0;
            released_.store(++generation_, std::memory_order_release);
            lock.unlock();
            woken_.notify_all();
            return;
        }
        lock.unlock();
        for (int spin = 0; spin < 4000; ++spin) {
            if (released_.load(std::memory_order_acquire) != generation) return;
            cpu_pause();
        }
        lock.lock();
        woken_.wait(lock, [&] { return generation_ != generation; });
    }

  private:
    std::mutex mutex_;
    std::condition_variable woken_;
    std::atomic<int64_t> released_{0};
    int64_t generation_ = 0;
    int waiting_ = 0;
    const int count_;
};

// The threads that run parts of a call next to the calling one: started at the first call that asks for them and
// kept, each spinning briefly for the next call (steps follow each other within microseconds), then sleeping. Every
// worker acknowledges every call, needed or not, so that none can fall a call behind. One call at a time: a call that
// finds the pool busy (another Python thread sampling) runs all its parts itself. A forked child starts with an
// empty pool.
class WorkerPool {
  public:
    static WorkerPool& instance() {
        static WorkerPool* pool = [] {
            pthread_atfork(nullptr, nullptr, [] { current() = new WorkerPool(); });  // the parent's threads are gone
            return current() = new WorkerPool();
        }();
        (void)pool;
        return *current();
    }

    // Runs work(part, parts) for part < parts, part 0 on this thread; or work(0, 1), all on this thread, where the
    // pool is busy.
    template <class Work>
    void run(int64_t parts, Work& work) {
        std::unique_lock<std::mutex> busy(calling_, std::try_to_lock);
        if (parts <= 1 || !busy.owns_lock()) {
            work(0, 1);
            return;
        }
        while (static_cast<int64_t>(workers_.size()) < parts - 1) {
            const int64_t index = static_cast<int64_t>(workers_.size()) + 1;
            const int64_t seen = generation_.load(std::memory_order_relaxed);  // the calls before this one
            workers_.emplace_back([this, index, seen] { serve(index, seen); });
            workers_.back().detach();
        }
        context_ = &work;
        call_ = [](void* context, int64_t part, int64_t parts) { (*static_cast<Work*>(context))(part, parts); };
        parts_ = parts;
        remaining_.store(static_cast<int64_t>(workers_.size()), std::memory_order_relaxed);
        {
            std::lock_guard<std::mutex> lock(mutex_);
            generation_.fetch_add(1, std::memory_order_release);
        }
        woken_.notify_all();
        work(0, parts);
        for (int64_t spin = 0; remaining_.load(std::memory_order_acquire) > 0; ++spin) {
            if (spin < 100000) cpu_pause();
            else std::this_thread::yield();  // a worker is not scheduled: give it this core
        }
    }

  private:
    static WorkerPool*& current() {
        static WorkerPool* pool = nullptr;
        return pool;
    }

    void serve(int64_t index, int64_t seen) {
        for (;;) {
            int64_t generation = seen;
            for (int spin = 0; spin < 20000 && generation == seen; ++spin) {  // about 50 to 100 us
                cpu_pause();
                generation = generation_.load(std::memory_order_acquire);
            }
            if (generation == seen) {
                std::unique_lock<std::mutex> lock(mutex_);
                woken_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
                generation = generation_.load(std::memory_order_acquire);
            }
            seen = generation;
            if (index < parts_) call_(context_, index, parts_);
            remaining_.fetch_sub(1, std::memory_order_release);
        }
    }

    std::mutex calling_, mutex_;
    std::condition_variable woken_;
    std::vector<std::thread> workers_;
    std::atomic<int64_t> generation_{0}, remaining_{0};
    void* context_ = nullptr;
    void (*call_)(void*, int64_t, int64_t) = nullptr;
    int64_t parts_ = 0;
};

// Runs work(thread, threads) on `threads` threads (see WorkerPool).
template <class Work>
void in_parallel(int64_t threads, Work&& work) {
    WorkerPool::instance().run(threads, work);
}

// Thread t of n takes items [items * t / n, items * (t + 1) / n).
inline int64_t share(int64_t items, int64_t thread, int64_t threads) { return items * thread / threads; }

}  // namespace

extern "C" {

// The gated PixelCNN at one row (the vertical stack, `pixelcnn_row`) and one position (the horizontal stack, the
// output layers and the draw, `pixelcnn_step`), on CachedGatedPixelCNNSampler's buffers.
struct PixelCNNStep {
    int64_t batch, channels, kernel, layers, height, width, bias_rows;  // bias_rows: height, or 1 for one bias
    int64_t threads, step_threads;  // how many threads a row, and a position, run on
    const float* embedding;  // (codes, channels)
    int64_t* codes;  // (batch, height, width)
    // The vertical stack.
    float* rings;  // (layers, taps, kernel - 1 + width, batch, channels): the last `taps` rows of vertical inputs
    float* columns;  // (width, batch, taps, kernel, channels): the im2col of a row
    const float* vertical_weights;  // (layers, taps * kernel * channels, 2 channels)
    const float* vertical_biases;  // (layers, 2 channels)
    const float* vertical_gate_biases;  // (layers, bias_rows, width, batch, 2 channels), or null for none
    float* vertical_pre_activation;  // (width, batch, 2 channels)
    const float* vertical_to_horizontal;  // (layers, 2 channels, 2 channels)
    const float* horizontal_biases;  // (layers, bias_rows, width, batch, 2 channels): with the gate's biases
    float* to_horizontal;  // (layers, width, batch, 2 channels): the vertical stack's part of the horizontal one
    // The horizontal stack.
    float* inputs;  // (layers, batch, taps - 1 + width, channels): each layer's horizontal inputs, left zero padding
    const float* horizontal_weights;  // (layers, taps * channels, 2 channels), rows ordered (column, in)
    const float* residual_weights;  // (layers - 1, channels + 1, channels), the bias last
    float* gated;  // (batch, layers, channels + 1): gated activations, each followed by a constant 1
    float* pre_activation;  // (batch, 2 channels)
    OutputLayers output;
};

// The vertical stack of every layer at `row`, its positions (column, grid) split between the threads, which meet after
// each layer (the next one's windows reach the neighbours' columns).
void pixelcnn_row(const PixelCNNStep* s, int64_t row) {
    const int64_t B = s->batch, C = s->channels, kernel = s->kernel, W = s->width, half = kernel / 2;
    const int64_t taps = half + 1, window = kernel * C, positions = W * B;
    const int64_t slot_size = (W + 2 * half) * B * C, bias_row = s->bias_rows > 1 ? row : 0;
    const int64_t newest = row % taps;
    Barrier layer_done(static_cast<int>(s->threads));
    in_parallel(s->threads, [&](int64_t thread, int64_t threads) {
        const int64_t first = share(positions, thread, threads), count = share(positions, thread + 1, threads) - first;
        if (row > 0)  // the first layer's vertical input at row r is the embedding of row r - 1; zeros at row 0
            for (int64_t p = first; p < first + count; ++p)
                embed(1, C, s->embedding, s->codes + (p % B) * s->height * W + (row - 1) * W + p / B, 0,
                      s->rings + newest * slot_size + (half * B + p) * C, 0);
        for (int64_t l = 0; l < s->layers; ++l) {
            if (threads > 1) layer_done.arrive_and_wait();  // every ring row of this layer is written
            const float* ring = s->rings + l * taps * slot_size;
            for (int64_t p = first; p < first + count; ++p) {  // kernel row i reads row r - half + i, in slot newest + 1 + i
                const int64_t c = p / B, b = p % B;
                for (int64_t i = 0; i < taps; ++i) {
                    const float* slot = ring + ((newest + 1 + i) % taps) * slot_size + b * C;
                    float* column = s->columns + (p * taps + i) * window;
                    for (int64_t j = 0; j < kernel; ++j) std::memcpy(column + j * C, slot + (c + j) * B * C, C * 4);
                }
            }
            float* pre = s->vertical_pre_activation + first * 2 * C;
            product(count, taps * window, 2 * C, s->columns + first * taps * window, taps * window,
                    s->vertical_weights + l * taps * window * 2 * C, s->vertical_biases + l * 2 * C, 0, pre, 2 * C);
            const int64_t bias_offset = ((l * s->bias_rows + bias_row) * positions + first) * 2 * C;
            product(count, 2 * C, 2 * C, pre, 2 * C, s->vertical_to_horizontal + l * 4 * C * C,
                    s->horizontal_biases + bias_offset, 2 * C, s->to_horizontal + (l * positions + first) * 2 * C,
                    2 * C);
            if (l + 1 < s->layers)  // the last layer's vertical output feeds nothing
                gate(count, C, pre, 2 * C, s->vertical_gate_biases ? s->vertical_gate_biases + bias_offset : nullptr,
                     s->rings + ((l + 1) * taps + newest) * slot_size + (half * B + first) * C, C);
        }
    });
}

// The horizontal stack, output layers and draw at one position, the grids split between the threads (they share
// nothing).
void pixelcnn_step(const PixelCNNStep* s, int64_t position) {
    const int64_t B = s->batch, C = s->channels, L = s->layers, W = s->width, taps = s->kernel / 2 + 1;
    const int64_t column = position % W;
    const int64_t row_stride = (taps - 1 + W) * C, layer_stride = B * row_stride, gated_stride = L * (C + 1);
    const int64_t codes_stride = s->height * W;
    in_parallel(s->step_threads, [&](int64_t thread, int64_t threads) {
        const int64_t b0 = share(B, thread, threads), count = share(B, thread + 1, threads) - b0;
        float* inputs = s->inputs + b0 * row_stride;
        float* pre = s->pre_activation + b0 * 2 * C;
        if (column > 0)  // the first layer's horizontal input at column c is the embedding of the code at c - 1
            embed(count, C, s->embedding, s->codes + b0 * codes_stride + position - 1, codes_stride,
                  inputs + (taps - 1 + column) * C, row_stride);
        for (int64_t l = 0; l < L; ++l) {
            const float* window = inputs + l * layer_stride + column * C;  // columns column - taps + 1 ... column
            const float* to_horizontal = s->to_horizontal + ((l * W + column) * B + b0) * 2 * C;
            product(count, taps * C, 2 * C, window, row_stride, s->horizontal_weights + l * taps * C * 2 * C,
                    to_horizontal, 2 * C, pre, 2 * C);
            float* gated = s->gated + b0 * gated_stride + l * (C + 1);
            gate(count, C, pre, 2 * C, nullptr, gated, gated_stride);
            if (l + 1 < L) {  // the residual: the next layer's horizontal input at this column
                const float* input = window + (taps - 1) * C;
                float* next_input = inputs + (l + 1) * layer_stride + (taps - 1 + column) * C;
                product(count, C + 1, C, gated, gated_stride, s->residual_weights + l * (C + 1) * C, input, row_stride,
                        next_input, row_stride);
            }
        }
        output_layers(s->output, b0, count, s->gated, s->codes + position, codes_stride);
    });
}

// One block of the WaveNet generator: its tap weights and queue of future gate pre-activations.
struct WaveNetBlockStep {
    int64_t kernel, dilation, history, frames;
    const float* taps;  // (residual channels, kernel * 2 gate channels): tap j (newest first) carries x_t to t + j d
    float* slots;  // (history, batch, 2 gate channels): the gate pre-activation queued for each coming time
    const float* bias_frames;  // (frames, batch, 2 gate channels): convolution bias and conditioning per frame
    const float* residual_weight;  // (gate channels + 1, residual channels), the bias last; null for no residual
};

// The WaveNet's blocks, output layers and draw at one sample, on CachedWaveNetGenerator's buffers.
struct WaveNetStep {
    int64_t batch, residual_channels, gate_channels, blocks, hop, length;
    int64_t threads;  // how many threads a sample runs on
    const float* embedding;  // (classes, residual channels)
    int64_t* samples;  // (batch, length)
    const WaveNetBlockStep* block;
    float* inputs;  // (blocks, batch, residual channels): block i's input; inputs[0] is the previous sample's embedding
    float* gated;  // (batch, blocks, gate channels + 1)
    float* products;  // (batch, kernel * 2 gate channels)
    float* pre_activation;  // (batch, 2 gate channels)
    OutputLayers output;
};

void wavenet_step(const WaveNetStep* s, int64_t time) {
    const int64_t B = s->batch, R = s->residual_channels, G = s->gate_channels, width = 2 * G;
    const int64_t gated_stride = s->blocks * (G + 1);
    in_parallel(s->threads, [&](int64_t thread, int64_t threads) {  // the batch split between the threads
        const int64_t b0 = share(B, thread, threads), count = share(B, thread + 1, threads) - b0;
        float* pre_activation = s->pre_activation + b0 * width;
        if (time > 0) embed(count, R, s->embedding, s->samples + b0 * s->length + time - 1, s->length,
                            s->inputs + b0 * R, R);
        for (int64_t i = 0; i < s->blocks; ++i) {
            const WaveNetBlockStep& block = s->block[i];
            const float* input = s->inputs + (i * B + b0) * R;
            const int64_t products_width = block.kernel * width;
            float* products = s->products + b0 * products_width;
            product(count, R, products_width, input, R, block.taps, nullptr, 0, products, products_width);
            float* slot = block.slots + ((time % block.history) * B + b0) * width;
            const int64_t frame = (time + block.history) / s->hop;
            const float* bias = block.bias_frames + ((frame < block.frames ? frame : block.frames - 1) * B + b0) * width;
            for (int64_t b = 0; b < count; ++b) {
                const float* p = products + b * products_width;
                float* pre = pre_activation + b * width;
                float* own = slot + b * width;
                const float* oldest = p + (block.kernel - 1) * width;
                const float* bias_b = bias + b * width;
                for (int64_t c = 0; c < width; ++c) {
                    pre[c] = own[c] + p[c];  // the current tap, onto what earlier times queued for now
                    own[c] = bias_b[c] + oldest[c];  // the slot now serves time + history, reached by the oldest tap
                }
                for (int64_t j = 1; j + 1 < block.kernel; ++j) {  // middle taps add into the slots between
                    float* later = block.slots + (((time + j * block.dilation) % block.history) * B + b0 + b) * width;
                    const float* tap = p + j * width;
                    for (int64_t c = 0; c < width; ++c) later[c] += tap[c];
                }
            }
            float* gated = s->gated + b0 * gated_stride + i * (G + 1);
            gate(count, G, pre_activation, width, nullptr, gated, gated_stride);
            if (block.residual_weight)
                product(count, G + 1, R, gated, gated_stride, block.residual_weight, input, R,
                        s->inputs + ((i + 1) * B + b0) * R, R);
        }
        output_layers(s->output, b0, count, s->gated, s->samples + time, s->length);
    });
}

}  // extern "C"
