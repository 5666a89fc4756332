// Threads: one RopeTable shared by many applying threads gives exactly the single-threaded results;
// while one thread builds grown / rescaled tables and publishes them, readers applying with the
// table they hold get exactly what a table built up front gives, and the tables they hold never
// change.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "ropekit/ropekit.hpp"

namespace {

using ropekit::ApplyOptions;
using ropekit::RopeTable;
using ropekit::DType;
using ropekit::Positions;
using ropekit::RopeSpec;
using ropekit::TensorView;

constexpr int kThreads = 4;

std::vector<float> random_values(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  std::vector<float> out(n);
  for (auto& v : out) {
    do v = dist(rng); while (v == 0.0f);
  }
  return out;
}

RopeSpec yarn_xpos_spec() {
  return RopeSpec({.head_dim = 64, .rotary_dim = 48, .base = 10000, .style = ropekit::Style::interleaved,
                   .scaling = ropekit::scaling::Yarn{.factor = 4, .original_max = 128},
                   .xpos = ropekit::Xpos{}});
}

// One worker's problem: q (B, S, Hq, D) and k (B, S, Hk, D) rotated out of place at per-sequence offsets.
struct Job {
  int64_t batch = 2, seq = 24, q_heads = 4, k_heads = 2, head_dim = 64;
  std::vector<float> q, k, q_out, k_out;
  std::vector<int64_t> offsets;

  Job(uint32_t seed, int64_t max_offset) {
    q = random_values(static_cast<size_t>(batch * seq * q_heads * head_dim), seed);
    k = random_values(static_cast<size_t>(batch * seq * k_heads * head_dim), seed + 1000);
    q_out.assign(q.size(), -7.0f);
    k_out.assign(k.size(), -7.0f);
    std::mt19937 rng(seed + 2000);
    for (int64_t b = 0; b < batch; ++b) offsets.push_back(std::uniform_int_distribution<int64_t>(0, max_offset)(rng));
  }
  void run(const RopeTable& table, const ApplyOptions& options = {}) {
    ropekit::RopeTensors t{TensorView::bshd(q.data(), DType::f32, batch, seq, q_heads, head_dim),
                           TensorView::bshd(k.data(), DType::f32, batch, seq, k_heads, head_dim),
                           TensorView::bshd(q_out.data(), DType::f32, batch, seq, q_heads, head_dim),
                           TensorView::bshd(k_out.data(), DType::f32, batch, seq, k_heads, head_dim)};
    ropekit::apply_rope(t, Positions::per_sequence({offsets.data(), batch}), table, options);
  }
  int64_t max_position() const {
    int64_t m = 0;
    for (int64_t o : offsets) m = std::max(m, o + seq - 1);
    return m;
  }
};

// The rows a reader sees must be the rows any table of the same spec has (checks a few values against
// the float64 formula too, so equal-but-wrong tables cannot pass).
void expect_rows_match(const RopeTable& got, const RopeTable& want, int64_t rows) {
  ASSERT_GE(got.size(), rows);
  ASSERT_GE(want.size(), rows);
  const auto n = static_cast<size_t>(2 * got.pairs());
  for (int64_t p = 0; p < rows; ++p)
    ASSERT_EQ(0, std::memcmp(got.row(p), want.row(p), n * sizeof(float))) << "row " << p;
}

void run_shared_table(const RopeSpec& spec, const ApplyOptions& options) {
  const RopeTable table(spec, 512);
  std::vector<Job> serial, parallel;
  for (int i = 0; i < kThreads * 2; ++i) {
    serial.emplace_back(1234u + static_cast<uint32_t>(i), 400);
    parallel.emplace_back(1234u + static_cast<uint32_t>(i), 400);
  }
  for (auto& job : serial) job.run(table, options);
  std::atomic<int> next{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  std::atomic<int> errors{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      while (!go.load()) std::this_thread::yield();
      for (int i = next++; i < static_cast<int>(parallel.size()); i = next++) {
        try {
          parallel[static_cast<size_t>(i)].run(table, options);
        } catch (...) {
          ++errors;
        }
      }
    });
  }
  go = true;
  for (auto& th : threads) th.join();
  ASSERT_EQ(errors.load(), 0);
  for (size_t i = 0; i < serial.size(); ++i) {
    EXPECT_EQ(serial[i].q_out, parallel[i].q_out) << "job " << i;
    EXPECT_EQ(serial[i].k_out, parallel[i].k_out) << "job " << i;
    EXPECT_NE(serial[i].q_out, serial[i].q) << "rotation did nothing";
  }
}

TEST(SharedTable, ManyThreadsApplyWithOneConstTable) { run_shared_table(yarn_xpos_spec(), {}); }

TEST(SharedTable, ManyThreadsComputeSinCosInKernel) {
  ApplyOptions options;
  options.compute_sincos = true;
  options.direction = ropekit::Direction::backward;
  run_shared_table(RopeSpec({.head_dim = 64, .base = 500000}), options);
}

TEST(SharedTable, ManyThreadsEachAskingForInternalThreads) {
  ApplyOptions options;
  options.num_threads = 2;
  run_shared_table(RopeSpec({.head_dim = 64, .rotary_dim = 32, .base = 10000}), options);
}

TEST(SharedTable, ConvenienceOverloadFromManyThreads) {
  const RopeSpec spec({.head_dim = 64, .base = 10000, .scaling = ropekit::scaling::DynamicNtk{.factor = 2, .original_max = 64}});
  std::vector<Job> serial, parallel;
  for (int i = 0; i < kThreads; ++i) {
    serial.emplace_back(77u + static_cast<uint32_t>(i), 200);
    parallel.emplace_back(77u + static_cast<uint32_t>(i), 200);
  }
  auto run_spec = [&](Job& job) {
    ropekit::RopeTensors t{TensorView::bshd(job.q.data(), DType::f32, job.batch, job.seq, job.q_heads, job.head_dim),
                           TensorView::bshd(job.k.data(), DType::f32, job.batch, job.seq, job.k_heads, job.head_dim),
                           TensorView::bshd(job.q_out.data(), DType::f32, job.batch, job.seq, job.q_heads, job.head_dim),
                           TensorView::bshd(job.k_out.data(), DType::f32, job.batch, job.seq, job.k_heads, job.head_dim)};
    ropekit::apply_rope(t, Positions::per_sequence({job.offsets.data(), job.batch}), spec);
  };
  for (auto& job : serial) run_spec(job);
  std::vector<std::thread> threads;
  for (auto& job : parallel) threads.emplace_back([&] { run_spec(job); });
  for (auto& th : threads) th.join();
  for (size_t i = 0; i < serial.size(); ++i) {
    EXPECT_EQ(serial[i].q_out, parallel[i].q_out);
    EXPECT_EQ(serial[i].k_out, parallel[i].k_out);
  }
}

// One thread builds ever larger tables (grown) and publishes each; readers apply with the table they
// last took, at positions it covers, and must get exactly what a table built up front gives.
TEST(Growth, OneThreadGrowsWhileReadersApply) {
  const RopeSpec spec = yarn_xpos_spec();
  constexpr int64_t kFinal = 2048;
  const RopeTable full(spec, 2 * kFinal);  // geometric growth may overshoot kFinal

  std::mutex published_mutex;
  RopeTable published(spec, 32);
  std::atomic<bool> done{false};
  std::atomic<int> mismatches{0}, applied{0};

  std::thread grower([&] {
    RopeTable current = published;
    for (int64_t n = 32; n <= kFinal; n += 61) {
      current = current.grown(n);
      std::lock_guard<std::mutex> lock(published_mutex);
      published = current;
    }
    done = true;
  });
  std::vector<std::thread> readers;
  for (int r = 0; r < kThreads - 1; ++r) {
    readers.emplace_back([&, r] {
      uint32_t seed = 99u + static_cast<uint32_t>(r) * 1000u;
      do {
        RopeTable mine = [&] {
          std::lock_guard<std::mutex> lock(published_mutex);
          return published;
        }();
        const std::vector<float> rows_before(mine.rows().begin(), mine.rows().end());
        Job job(seed, std::max<int64_t>(mine.size() - 24, 0));
        Job want(seed++, std::max<int64_t>(mine.size() - 24, 0));
        try {
          job.run(mine);
          want.run(full);
          if (job.q_out != want.q_out || job.k_out != want.k_out) ++mismatches;
          if (!std::equal(rows_before.begin(), rows_before.end(), mine.rows().begin())) ++mismatches;
        } catch (...) {
          ++mismatches;
        }
        ++applied;
      } while (!done.load());
    });
  }
  grower.join();
  for (auto& th : readers) th.join();
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_GE(applied.load(), kThreads - 1);
  ASSERT_GE(published.size(), kFinal);
  expect_rows_match(published, full, kFinal);
}

// Dynamic NTK: while one thread rescales for longer and shorter lengths, readers sharing one table
// keep its frequencies: results are bit-identical to a single-threaded run with that table.
TEST(Growth, RescalingNeverReachesATableInUse) {
  const RopeSpec spec({.head_dim = 64, .base = 10000,
                       .scaling = ropekit::scaling::DynamicNtk{.factor = 4, .original_max = 128}});
  const RopeTable shared = RopeTable(spec).for_seq_len(400);
  Job want(7u, 300);
  want.run(shared);
  std::atomic<bool> done{false};
  std::atomic<int> mismatches{0};
  std::thread rescaler([&] {
    for (int64_t n = 10; n < 3000; n += 97) (void)shared.for_seq_len(n).grown(n + 5);
    done = true;
  });
  std::vector<std::thread> readers;
  for (int r = 0; r < kThreads - 1; ++r) {
    readers.emplace_back([&] {
      do {
        Job job(7u, 300);
        job.run(shared);
        if (job.q_out != want.q_out || job.k_out != want.k_out) ++mismatches;
      } while (!done.load());
    });
  }
  rescaler.join();
  for (auto& th : readers) th.join();
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_EQ(shared.seq_len(), 400);
}

// A table keeps its rows when a rescaled (dynamic NTK) or grown one is made from it.
TEST(Growth, DerivedTablesLeaveTheOriginal) {
  const RopeSpec spec({.head_dim = 32, .base = 10000, .scaling = ropekit::scaling::DynamicNtk{.factor = 2, .original_max = 64}});
  const RopeTable table(spec, 64);
  const RopeTable copy = table;
  const std::vector<float> before(table.rows().begin(), table.rows().end());
  const RopeTable rescaled = table.for_seq_len(1000);
  ASSERT_NE(0, std::memcmp(rescaled.row(10), before.data() + 10 * 2 * table.pairs(), 2 * table.pairs() * sizeof(float)))
      << "for_seq_len(1000) should give rescaled rows";
  EXPECT_EQ(table.size(), 64);
  EXPECT_EQ(std::vector<float>(table.rows().begin(), table.rows().end()), before);
  EXPECT_EQ(std::vector<float>(copy.rows().begin(), copy.rows().end()), before);
  // And the original's rows are the float64 formula's (not merely equal to something).
  const auto& inv = table.inv_freq();
  for (int64_t p : {0, 1, 17, 63}) {
    for (int64_t i = 0; i < table.pairs(); ++i) {
      const double angle = static_cast<double>(static_cast<float>(p) * static_cast<float>(inv[static_cast<size_t>(i)]));
      EXPECT_NEAR(table.row(p)[i], std::cos(angle), 1e-6);
      EXPECT_NEAR(table.row(p)[i + table.pairs()], std::sin(angle), 1e-6);
    }
  }
}

}  // namespace
