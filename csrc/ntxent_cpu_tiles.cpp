// Tile scheduler of the CPU NT-Xent (see ntxent_cpu_tiles.h).
#include "ntxent_cpu_tiles.h"

#include <algorithm>
#include <cstdlib>

namespace himoe {
namespace cpu {

int64_t default_tile() {
  static const int64_t tile = [] {
    const char* env = std::getenv("HIMOE_FAST_NTXENT_TILE");
    if (env != nullptr && *env != '\0') {
      const long v = std::strtol(env, nullptr, 10);
      if (v >= 1) return static_cast<int64_t>(v);
    }
    return kDefaultTile;
  }();
  return tile;
}

std::vector<Task> make_tasks(const PairLayout& L, int64_t tile) {
  std::vector<Task> tasks;
  for (int32_t i = 0; i < L.M; ++i) {
    if (!L.active[i]) continue;
    const int64_t n = L.off[i + 1] - L.off[i];
    for (int64_t a0 = 0; a0 < n; a0 += tile)
      for (int64_t b0 = a0; b0 < n; b0 += tile) {
        const int64_t a1 = std::min(n, a0 + tile), b1 = std::min(n, b0 + tile);
        tasks.push_back({i, i, a0, a1, b0, b1, (a1 - a0) * (b1 - b0) / (a0 == b0 ? 2 : 1) + 1});
      }
  }
  for (int32_t i = 0; i < L.M; ++i)
    for (int32_t j = i + 1; j < L.M; ++j) {
      if (!L.qual[i * L.M + j]) continue;
      const int64_t n = L.pn[i * L.M + j];
      for (int64_t a0 = 0; a0 < n; a0 += tile)
        for (int64_t b0 = 0; b0 < n; b0 += tile) {
          const int64_t a1 = std::min(n, a0 + tile), b1 = std::min(n, b0 + tile);
          tasks.push_back({i, j, a0, a1, b0, b1, (a1 - a0) * (b1 - b0) + 1});
        }
    }
  return tasks;
}

std::vector<std::vector<int64_t>> assign(const std::vector<Task>& tasks, int64_t W) {
  std::vector<int64_t> order(tasks.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = static_cast<int64_t>(k);
  std::stable_sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return tasks[x].cost > tasks[y].cost; });
  std::vector<std::vector<int64_t>> per(W);
  std::vector<int64_t> load(W, 0);
  for (int64_t t : order) {
    const int64_t w = std::min_element(load.begin(), load.end()) - load.begin();
    per[w].push_back(t);
    load[w] += tasks[t].cost;
  }
  return per;
}

int64_t n_workers(int64_t ntasks, int64_t buffer_bytes) {
  int64_t W = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), ntasks));
  const int64_t budget = int64_t(512) << 20;
  if (buffer_bytes > 0) W = std::max<int64_t>(1, std::min<int64_t>(W, budget / buffer_bytes));
  return W;
}

}  // namespace cpu
}  // namespace himoe
