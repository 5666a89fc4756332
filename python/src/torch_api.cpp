// ropekit._C's side of the native torch operators (python/src/torch_ops.cpp): a registry of the
// tables and specs the operators name by integer handle, and the capsule of kernels they call.
// A handle is looked up, never dereferenced: one that names nothing (forgotten, never made) is a
// ValueError, not a crash.
#include <nanobind/nanobind.h>

#include <atomic>
#include <exception>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>

#include "ropekit/ropekit.hpp"
#include "torch_api.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

using ropekit::torch_api::Status;

// What a handle names: a table, a spec, or a dynamic table (dynamic NTK, LongRoPE) that reads its
// rows only when the call's length (largest position + 1) has the table's frequencies, as HF.
struct Entry {
  std::optional<ropekit::RopeTable> table;
  std::optional<ropekit::RopeSpec> spec;
  bool dynamic = false;
};

struct Slot {
  std::shared_ptr<const Entry> entry;
  int64_t holders = 0;   // autograd nodes (acquire / release)
  bool forgotten = false;  // its Python object is gone (_torch_forget): erased once no node holds it
};

struct Registry {
  std::shared_mutex mutex;
  std::unordered_map<int64_t, Slot> entries;
  std::atomic<int64_t> next{1};
};

Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: operators may run during interpreter exit
  return *r;
}

std::shared_ptr<const Entry> find(int64_t handle) {
  Registry& r = registry();
  std::shared_lock lock(r.mutex);
  const auto it = r.entries.find(handle);
  return it == r.entries.end() ? nullptr : it->second.entry;
}

void acquire(int64_t handle) {
  Registry& r = registry();
  std::unique_lock lock(r.mutex);
  const auto it = r.entries.find(handle);
  if (it != r.entries.end()) ++it->second.holders;
}

// Erases a forgotten slot nobody holds; the entry is freed by the caller, outside the lock.
std::shared_ptr<const Entry> drop_if_unused(Registry& r, std::unordered_map<int64_t, Slot>::iterator it) {
  if (!it->second.forgotten || it->second.holders > 0) return nullptr;
  std::shared_ptr<const Entry> dropped = std::move(it->second.entry);
  r.entries.erase(it);
  return dropped;
}

void release(int64_t handle) {
  Registry& r = registry();
  std::shared_ptr<const Entry> dropped;
  std::unique_lock lock(r.mutex);
  const auto it = r.entries.find(handle);
  if (it == r.entries.end()) return;
  if (it->second.holders > 0) --it->second.holders;
  dropped = drop_if_unused(r, it);
}

template <typename F>
Status guarded(std::string* message, F&& f) {
  try {
    f();
    return Status::ok;
  } catch (const ropekit::Error& e) {
    *message = e.what();
    return Status::value_error;
  } catch (const std::exception& e) {
    *message = e.what();
    return Status::runtime_error;
  }
}

Status apply(int64_t handle, const ropekit::RopeTensors& tensors, const ropekit::Positions& positions,
             const ropekit::Positions* host_positions, const ropekit::ApplyOptions& options, std::string* message) {
  return guarded(message, [&] {
    const std::shared_ptr<const Entry> e = find(handle);
    if (e == nullptr)
      throw ropekit::Error("table: handle " + std::to_string(handle) +
                           " names no live ropekit table or spec (register_table() returns handles; a compiled "
                           "graph does not keep its tables alive)");
    if (e->dynamic) {
      const int64_t seq_len = ropekit::required_table_size(tensors, host_positions ? *host_positions : positions);
      if (ropekit::frequency_seq_len(e->table->spec(), seq_len) == e->table->seq_len())
        ropekit::apply_rope(tensors, positions, *e->table, options);
      else
        ropekit::apply_rope(tensors, positions, e->table->spec(), options);
    } else if (e->table) {
      ropekit::apply_rope(tensors, positions, *e->table, options);
    } else {
      ropekit::apply_rope(tensors, positions, *e->spec, options);
    }
  });
}

bool needs_host_positions(int64_t handle) {
  const std::shared_ptr<const Entry> e = find(handle);
  return e != nullptr && e->dynamic;
}

Status rotary_embedding(const ropekit::IndexView& positions, const ropekit::TensorView& query,
                        const std::optional<ropekit::TensorView>& key, int64_t head_size,
                        const ropekit::CosSinCacheView& cache, bool is_neox, int64_t rope_dim_offset, bool inverse,
                        const ropekit::EngineOptions& options, std::string* message) {
  return guarded(message, [&] {
    ropekit::rotary_embedding(positions, query, key, head_size, cache, is_neox, rope_dim_offset, inverse, options);
  });
}

const ropekit::torch_api::Api api{ropekit::torch_api::kVersion, sizeof(ropekit::torch_api::Api), apply,
                                  needs_host_positions, acquire, release, rotary_embedding};

}  // namespace

namespace ropekit_python {

void bind_torch_api(nb::module_& m) {
  m.attr("_torch_api") = nb::capsule(&api, ropekit::torch_api::kCapsule);
  m.def(
      "_torch_register",
      [](nb::handle rope, bool dynamic) {
        auto e = std::make_shared<Entry>();
        if (nb::isinstance<ropekit::RopeTable>(rope)) {
          e->table = nb::cast<const ropekit::RopeTable&>(rope);  // a copy shares the rows
          e->dynamic = dynamic;
        } else if (nb::isinstance<ropekit::RopeSpec>(rope) && !dynamic) {
          e->spec = nb::cast<const ropekit::RopeSpec&>(rope);
        } else {
          throw nb::type_error(("table: expected a ropekit.RopeTable or RopeSpec, got " +
                                std::string(nb::type_name(rope.type()).c_str())).c_str());
        }
        Registry& r = registry();
        const int64_t handle = r.next.fetch_add(1);
        std::unique_lock lock(r.mutex);
        r.entries.emplace(handle, Slot{std::move(e)});
        return handle;
      },
      "rope"_a, "dynamic"_a = false,
      "A handle for the native torch operators: the registry keeps a copy of the table or spec until _torch_forget.");
  m.def(
      "_torch_forget",
      [](int64_t handle) {
        Registry& r = registry();
        std::shared_ptr<const Entry> dropped;  // freed outside the lock
        std::unique_lock lock(r.mutex);
        const auto it = r.entries.find(handle);
        if (it != r.entries.end()) {
          it->second.forgotten = true;
          dropped = drop_if_unused(r, it);
        }
      },
      "handle"_a);
}

}  // namespace ropekit_python
