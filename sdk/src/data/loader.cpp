// data::DataLoader, subset and random_split.
//
// The order of epoch e is a seeded Fisher–Yates shuffle driven by Philox(seed, e, kShuffleStream),
// so batch (e, b) is a pure function of (seed, e, b) and a resumed run sees exactly the batches
// the interrupted one would have. Prefetching only changes *when* a batch is built, never what it
// holds: each prefetch task receives its index list, computed up front on the caller's thread.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <deque>
#include <exception>
#include <future>
#include <mutex>
#include <utility>

#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_group.h>

#include "kiln/data.hpp"
#include "kiln/error.hpp"
#include "kiln/random.hpp"

namespace kiln::data {
namespace {

// Philox stream numbers of the loader's two uses (sample streams of plugins use small numbers).
constexpr std::uint64_t kShuffleStream = 0x53485546ull;  // "SHUF"
constexpr std::uint64_t kSplitStream = 0x53504c54ull;    // "SPLT"

std::vector<std::int64_t> shuffled_range(std::int64_t n, std::uint64_t seed, std::uint64_t index,
                                         std::uint64_t stream) {
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = i;
  Philox rng(seed, index, stream);
  for (std::int64_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(i + 1)));
    std::swap(order[static_cast<std::size_t>(i)], order[static_cast<std::size_t>(j)]);
  }
  return order;
}

class SubsetDataset final : public Dataset {
 public:
  SubsetDataset(std::shared_ptr<const Dataset> base, std::vector<std::int64_t> indices)
      : base_(std::move(base)), indices_(std::move(indices)) {}
  std::int64_t size() const override { return static_cast<std::int64_t>(indices_.size()); }
  Batch get_batch(const std::vector<std::int64_t>& indices) const override {
    std::vector<std::int64_t> mapped;
    mapped.reserve(indices.size());
    for (std::int64_t i : indices) {
      KILN_CHECK(i >= 0 && i < size(), "subset: example index ", i, " is outside [0, ", size(),
                 ")");
      mapped.push_back(indices_[static_cast<std::size_t>(i)]);
    }
    return base_->get_batch(mapped);
  }
  std::string describe() const override {
    return "subset of " + std::to_string(indices_.size()) + " from " + base_->describe();
  }

 private:
  std::shared_ptr<const Dataset> base_;
  std::vector<std::int64_t> indices_;
};

}  // namespace

std::shared_ptr<Dataset> subset(std::shared_ptr<const Dataset> base,
                                std::vector<std::int64_t> indices) {
  KILN_CHECK(base != nullptr, "subset: the base dataset is null");
  const std::int64_t n = base->size();
  for (std::int64_t i : indices) {
    KILN_CHECK(i >= 0 && i < n, "subset: index ", i, " is outside the base dataset [0, ", n, ") (",
               base->describe(), ")");
  }
  return std::make_shared<SubsetDataset>(std::move(base), std::move(indices));
}

std::pair<std::shared_ptr<Dataset>, std::shared_ptr<Dataset>> random_split(
    std::shared_ptr<const Dataset> base, double fraction, std::uint64_t seed) {
  KILN_CHECK(base != nullptr, "random_split: the base dataset is null");
  KILN_CHECK(std::isfinite(fraction) && fraction >= 0.0 && fraction <= 1.0,
             "random_split: fraction must be between 0 and 1, got ", fraction);
  const std::int64_t n = base->size();
  const auto second_n = static_cast<std::int64_t>(std::llround(fraction * static_cast<double>(n)));
  std::vector<std::int64_t> order = shuffled_range(n, seed, 0, kSplitStream);
  std::vector<std::int64_t> second(order.end() - second_n, order.end());
  order.resize(static_cast<std::size_t>(n - second_n));
  // Each part keeps the base dataset's order: a split chooses examples, it does not shuffle them.
  std::sort(order.begin(), order.end());
  std::sort(second.begin(), second.end());
  return {std::make_shared<SubsetDataset>(base, std::move(order)),
          std::make_shared<SubsetDataset>(base, std::move(second))};
}

// ------------------------------------------------------------------------------ DataLoader

struct DataLoader::Impl {
  // One batch being prepared ahead. Whoever claims it first builds it: a TBB worker, or the
  // caller when it needs the batch before any worker started on it. Its content never depends
  // on which thread built it.
  struct Slot {
    std::int64_t epoch = 0, batch = 0;
    std::shared_ptr<const Dataset> dataset;
    std::vector<std::int64_t> indices;
    std::atomic<bool> claimed{false};
    std::promise<Batch> promise;
    std::shared_future<Batch> result = promise.get_future().share();

    void build() {
      try {
        promise.set_value(dataset->get_batch(indices));
      } catch (...) {
        promise.set_exception(std::current_exception());
      }
    }
  };

  // The permutations of the most recently used epochs (the current one and the next, which
  // prefetching reaches at the end of an epoch).
  std::mutex order_mutex;
  std::vector<std::pair<std::int64_t, std::shared_ptr<const std::vector<std::int64_t>>>> orders;

  std::deque<std::shared_ptr<Slot>> pending;  // in request order; the caller's thread only
  oneapi::tbb::task_group group;

  ~Impl() {
    // Queued tasks that have not started find their slot gone and return at once; running ones
    // hold what they use. Waiting keeps them from outliving the loader.
    pending.clear();
    group.wait();
  }
};

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, const LoaderOptions& opts)
    : dataset_(std::move(dataset)), opts_(opts), impl_(std::make_unique<Impl>()) {
  KILN_CHECK(dataset_ != nullptr, "DataLoader: the dataset is null");
  KILN_CHECK(opts_.batch_size >= 1, "DataLoader: batch_size must be at least 1, got ",
             opts_.batch_size);
  KILN_CHECK(opts_.prefetch >= 0, "DataLoader: prefetch must be 0 or more, got ", opts_.prefetch);
  KILN_CHECK(dataset_->size() >= 0, "DataLoader: the dataset reports a negative size (",
             dataset_->size(), ")");
}

DataLoader::~DataLoader() = default;

std::int64_t DataLoader::batches_per_epoch() const {
  const std::int64_t n = dataset_->size();
  return opts_.drop_last ? n / opts_.batch_size : (n + opts_.batch_size - 1) / opts_.batch_size;
}

std::vector<std::int64_t> DataLoader::batch_indices(std::int64_t epoch, std::int64_t batch) const {
  const std::int64_t per_epoch = batches_per_epoch();
  KILN_CHECK(epoch >= 0, "DataLoader: epoch must be 0 or more, got ", epoch);
  KILN_CHECK(batch >= 0 && batch < per_epoch, "DataLoader: batch ", batch,
             " is outside the epoch's ", per_epoch, " batches (", dataset_->size(),
             " examples, batch_size ", opts_.batch_size, ", drop_last ",
             opts_.drop_last ? "true" : "false", ")");
  const std::int64_t n = dataset_->size();
  const std::int64_t begin = batch * opts_.batch_size;
  const std::int64_t end = std::min(n, begin + opts_.batch_size);
  if (!opts_.shuffle) {
    std::vector<std::int64_t> out(static_cast<std::size_t>(end - begin));
    for (std::int64_t i = begin; i < end; ++i) out[static_cast<std::size_t>(i - begin)] = i;
    return out;
  }
  std::shared_ptr<const std::vector<std::int64_t>> order;
  {
    std::lock_guard<std::mutex> lock(impl_->order_mutex);
    for (const auto& [e, o] : impl_->orders) {
      if (e == epoch) order = o;
    }
  }
  if (!order) {
    // Computed outside the lock: a permutation of a large dataset takes a while, and two threads
    // computing the same one get the same result.
    order = std::make_shared<const std::vector<std::int64_t>>(
        shuffled_range(n, opts_.seed, static_cast<std::uint64_t>(epoch), kShuffleStream));
    std::lock_guard<std::mutex> lock(impl_->order_mutex);
    impl_->orders.emplace_back(epoch, order);
    if (impl_->orders.size() > 2) impl_->orders.erase(impl_->orders.begin());
  }
  return std::vector<std::int64_t>(order->begin() + begin, order->begin() + end);
}

Batch DataLoader::get(std::int64_t epoch, std::int64_t batch) {
  const std::int64_t per_epoch = batches_per_epoch();
  std::vector<std::int64_t> indices = batch_indices(epoch, batch);  // validates (epoch, batch)

  // Take this batch from the prefetch queue when it is there. Entries before it (the caller
  // skipped ahead) are dropped; if the queue does not continue with the batch after it (the
  // caller went back), the rest is dropped too.
  std::shared_ptr<Impl::Slot> slot;
  while (!impl_->pending.empty() && !slot) {
    std::shared_ptr<Impl::Slot> s = std::move(impl_->pending.front());
    impl_->pending.pop_front();
    if (s->epoch == epoch && s->batch == batch) slot = std::move(s);
  }
  if (!slot) impl_->pending.clear();

  Batch result;
  if (!slot) {
    result = dataset_->get_batch(indices);
  } else {
    if (!slot->claimed.exchange(true)) slot->build();  // no worker started it: build it here
    result = slot->result.get();                       // rethrows the dataset's error, if any
  }

  // Prefetch the next batches (crossing into the next epoch) that are not queued yet, unless
  // TBB has no worker to run them (a budget of one thread): then prefetching would only defer
  // the same work to this thread.
  using oneapi::tbb::global_control;
  if (global_control::active_value(global_control::max_allowed_parallelism) <= 1) return result;
  std::int64_t e = epoch, b = batch;
  for (int k = 0; k < opts_.prefetch && per_epoch > 0; ++k) {
    if (++b == per_epoch) {
      b = 0;
      ++e;
    }
    if (static_cast<std::size_t>(k) < impl_->pending.size()) continue;
    auto next = std::make_shared<Impl::Slot>();
    next->epoch = e;
    next->batch = b;
    next->dataset = dataset_;
    next->indices = batch_indices(e, b);
    impl_->group.run([weak = std::weak_ptr<Impl::Slot>(next)] {
      std::shared_ptr<Impl::Slot> s = weak.lock();
      if (s && !s->claimed.exchange(true)) s->build();
    });
    impl_->pending.push_back(std::move(next));
  }
  return result;
}

}  // namespace kiln::data
