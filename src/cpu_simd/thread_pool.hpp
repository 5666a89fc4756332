#pragma once
// A persistent pool of worker threads for the CPU backend: started on first use, grown on demand,
// never torn down (workers sleep on a condition variable between calls). Fork-safe: fork() waits for
// a run in flight, and the child, which has none of the workers, starts new ones on its next run.
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>

namespace ropekit::detail {

class ThreadPool {
 public:
  static ThreadPool& instance();

  // Runs task(i) for i in [0, n); i = 0 on the calling thread, the rest on workers. Returns when all
  // are done. Calls from different threads take turns. Not to be called from inside a task.
  void run(int n, const std::function<void(int)>& task);

 private:
  ThreadPool() = default;
  void worker(int index);
  // pthread_atfork handlers for the one pool.
  static void before_fork();
  static void after_fork_in_parent();
  static void after_fork_in_child();

  std::mutex run_mutex_;  // one run at a time
  std::mutex mutex_;
  std::condition_variable start_;
  std::condition_variable done_;
  int workers_ = 0;       // started (detached) worker threads, numbered 1..workers_
  const std::function<void(int)>* task_ = nullptr;
  int active_ = 0;        // tasks handed to workers in this round
  int pending_ = 0;       // of those, not finished yet
  uint64_t round_ = 0;
};

// Threads to use for a call of `bytes` memory traffic with `requested` threads (0: every core).
int cpu_threads_for(int64_t bytes, int requested);
// Below this much traffic per thread, waking a worker costs more than it saves (a decode batch of
// 32 Llama-3-8B tokens, 0.3-0.7 MB, is faster on one thread, more so on a busy machine).
inline constexpr int64_t kCpuMinBytesPerThread = int64_t{1} << 20;
// Test hook: the traffic below which one more thread is not worth waking (default kCpuMinBytesPerThread).
void set_cpu_min_bytes_per_thread(int64_t bytes);

}  // namespace ropekit::detail
