#include "cpu_simd/thread_pool.hpp"

#include "backend.hpp"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <new>
#include <thread>

namespace ropekit::detail {

ThreadPool& ThreadPool::instance() {
  // Leaked on purpose: workers may still sleep when static destructors run at exit.
  static ThreadPool* pool = [] {
    auto* p = new ThreadPool;
    pthread_atfork(before_fork, after_fork_in_parent, after_fork_in_child);
    return p;
  }();
  return *pool;
}

// Holding both locks across fork() means no run is in flight (a fork from another thread waits for
// it) and no worker is between two steps of the shared state.
void ThreadPool::before_fork() {
  instance().run_mutex_.lock();
  instance().mutex_.lock();
}

void ThreadPool::after_fork_in_parent() {
  instance().mutex_.unlock();
  instance().run_mutex_.unlock();
}

// The child has only the forking thread. Workers and their waits on the condition variables exist
// only in the parent, so the child forgets the workers and gets fresh mutexes and condition
// variables (constructed over the old ones: destroying a condition variable with waiters that will
// never leave would block). No run is in flight (before_fork), so the rest of the state is idle.
void ThreadPool::after_fork_in_child() {
  ThreadPool& p = instance();
  new (&p.run_mutex_) std::mutex;
  new (&p.mutex_) std::mutex;
  new (&p.start_) std::condition_variable;
  new (&p.done_) std::condition_variable;
  p.workers_ = 0;
}

void ThreadPool::run(int n, const std::function<void(int)>& task) {
  if (n <= 1) {
    task(0);
    return;
  }
  std::lock_guard<std::mutex> turn(run_mutex_);
  {
    std::unique_lock<std::mutex> lock(mutex_);
    while (workers_ < n - 1) {
      std::thread([this, index = workers_ + 1] { worker(index); }).detach();
      ++workers_;  // only once the thread exists (std::thread throws if it cannot start one)
    }
    task_ = &task;
    active_ = n - 1;
    pending_ = n - 1;
    ++round_;
  }
  start_.notify_all();
  task(0);
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [this] { return pending_ == 0; });
  task_ = nullptr;
}

void ThreadPool::worker(int index) {
  uint64_t seen = 0;
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    start_.wait(lock, [&] { return round_ != seen; });
    seen = round_;
    if (index > active_) continue;  // not needed this round
    const auto* task = task_;
    lock.unlock();
    (*task)(index);
    lock.lock();
    if (--pending_ == 0) done_.notify_one();
  }
}

namespace {
std::atomic<int64_t> min_bytes_per_thread{kCpuMinBytesPerThread};
}  // namespace

void set_cpu_min_bytes_per_thread(int64_t bytes) { min_bytes_per_thread = std::max<int64_t>(bytes, 1); }

void cpu_parallel_chunks(int64_t units, int64_t bytes, int requested, const std::function<void(int64_t, int64_t)>& fn) {
  const int threads = static_cast<int>(std::min<int64_t>(cpu_threads_for(bytes, requested), std::max<int64_t>(units, 1)));
  if (threads <= 1) return fn(0, units);
  // A shared counter: a thread that gets its core late takes fewer chunks.
  const int64_t chunk = std::max<int64_t>(1, units / (4 * static_cast<int64_t>(threads)));
  std::atomic<int64_t> next{0};
  ThreadPool::instance().run(threads, [&](int) {
    for (int64_t begin; (begin = next.fetch_add(chunk, std::memory_order_relaxed)) < units;)
      fn(begin, std::min(units, begin + chunk));
  });
}

int cpu_threads_for(int64_t bytes, int requested) {
  const int64_t kMinBytesPerThread = min_bytes_per_thread.load(std::memory_order_relaxed);
  // Asked once: hardware_concurrency() reads /sys on every call, which costs more than a decode step.
  static const int cores = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  const int limit = requested > 0 ? requested : cores;
  const int64_t useful = std::max<int64_t>(1, bytes / kMinBytesPerThread);
  return static_cast<int>(std::min<int64_t>(limit, useful));
}

}  // namespace ropekit::detail
