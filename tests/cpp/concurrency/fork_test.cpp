// fork() after (or during) multi-threaded applies: the child's next multi-threaded apply must finish
// and give the parent's results bit for bit. The child has only the forking thread, so the pool must
// not wait for workers that exist only in the parent. Each child reports through its exit status; the
// parent kills it and fails after a timeout, so a hang cannot stall the suite.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "ropekit/ropekit.hpp"

#if defined(__SANITIZE_THREAD__)
// ThreadSanitizer by default kills a child of a multi-threaded process that starts threads; the
// child's pool does (TSAN_OPTIONS from the environment still apply on top of this).
extern "C" const char* __tsan_default_options() { return "die_after_fork=0"; }
#endif

namespace {

using ropekit::ApplyOptions;
using ropekit::DType;
using ropekit::Positions;
using ropekit::RopeSpec;
using ropekit::TensorView;

constexpr int kChildTimeoutSeconds = 30;

const RopeSpec& spec() {
  static const RopeSpec s({.head_dim = 128, .base = 500000});
  return s;
}

// q (1, 4096, 8, 128) and k (1, 4096, 2, 128) f32, rotated out of place with two threads: about 20 MB
// of traffic, far above the per-thread minimum, so the call goes through the pool.
struct Problem {
  static constexpr int64_t kSeq = 4096, kQHeads = 8, kKHeads = 2, kDim = 128;
  std::vector<float> q, k, q_out, k_out;

  explicit Problem(uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
    q.resize(static_cast<size_t>(kSeq * kQHeads * kDim));
    k.resize(static_cast<size_t>(kSeq * kKHeads * kDim));
    for (auto& v : q) v = dist(rng);
    for (auto& v : k) v = dist(rng);
    q_out.assign(q.size(), 0.0f);
    k_out.assign(k.size(), 0.0f);
  }
  void run() {
    ApplyOptions options;
    options.num_threads = 2;
    ropekit::apply_rope({TensorView::bshd(q.data(), DType::f32, 1, kSeq, kQHeads, kDim),
                         TensorView::bshd(k.data(), DType::f32, 1, kSeq, kKHeads, kDim),
                         TensorView::bshd(q_out.data(), DType::f32, 1, kSeq, kQHeads, kDim),
                         TensorView::bshd(k_out.data(), DType::f32, 1, kSeq, kKHeads, kDim)},
                        Positions::from_offset(0), spec(), options);
  }
  bool same_outputs(const Problem& other) const {
    return std::memcmp(q_out.data(), other.q_out.data(), q_out.size() * sizeof(float)) == 0 &&
           std::memcmp(k_out.data(), other.k_out.data(), k_out.size() * sizeof(float)) == 0;
  }
};

// In the child: apply again and exit 0 if the outputs equal `want`, 1 if not, 2 on an exception.
[[noreturn]] void child_main(const Problem& want, uint32_t seed) {
  int code = 2;
  try {
    Problem p(seed);
    p.run();
    code = p.same_outputs(want) ? 0 : 1;
  } catch (...) {
  }
  _exit(code);
}

// The child's exit code, 128 + signal if it was killed by one, or -1 if it ran past the timeout
// (then it is killed and reaped).
int wait_child(pid_t pid) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kChildTimeoutSeconds);
  for (;;) {
    int status = 0;
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (r < 0) return -2;
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

TEST(Fork, ChildAppliesWithThreadsAfterParentDid) {
  Problem parent(7);
  parent.run();  // starts the pool's worker
  ASSERT_NE(parent.q_out, parent.q);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0) << std::strerror(errno);
  if (pid == 0) child_main(parent, 7);
  EXPECT_EQ(wait_child(pid), 0) << "child exit code (-1: hung, killed after " << kChildTimeoutSeconds << " s)";
  // The parent's pool still works after the fork.
  Problem again(7);
  again.run();
  EXPECT_TRUE(again.same_outputs(parent));
}

TEST(Fork, ForkWhileAnotherThreadRunsPoolJobs) {
  Problem want(11);
  want.run();
  std::atomic<bool> stop{false}, stopped{false};
  std::atomic<int> runs{0}, wrong{0};
  // Detached, as the pool's workers are: ThreadSanitizer (GCC 12's runtime) aborts a child whose new
  // thread reuses the pthread_t of a parent's joinable thread ("dup thread with used id").
  std::thread([&] {
    {
      Problem p(11);
      while (!stop.load()) {
        p.run();
        if (!p.same_outputs(want)) ++wrong;
        ++runs;
      }
    }
    stopped = true;
  }).detach();
  // Fork at varying points of the busy thread's calls; a fork must wait for a run in flight, not
  // deadlock, and the child must start from a usable pool. The first fork waits for a finished call:
  // forking while a thread is still starting can hang the child in AddressSanitizer's runtime (GCC 12)
  // when it starts a thread of its own.
  for (int i = 0; i < 12; ++i) {
    while (runs.load() <= i) std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::microseconds(137 * i));
    const pid_t pid = fork();
    if (pid == 0) child_main(want, 11);
    if (pid < 0) {
      ADD_FAILURE() << "fork: " << std::strerror(errno);
      break;
    }
    const int code = wait_child(pid);
    if (code != 0) {
      ADD_FAILURE() << "fork " << i << ": child exit " << code << " (-1: hung, killed after "
                    << kChildTimeoutSeconds << " s)";
      break;
    }
  }
  stop = true;
  while (!stopped.load()) std::this_thread::yield();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(runs.load(), 0);
}

}  // namespace
