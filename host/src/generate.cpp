// The generation runtime: sample ranges, shards, batches, the compute/I-O pipeline, manifest,
// resume and grids.
//
// Sample i's randomness comes from (seed, i) alone, so which batch or shard computes it does not
// matter. The task computes batch k on this (the main) thread, where oneDNN's OpenMP team lives,
// while one TBB I/O thread encodes, hashes and writes batch k-1 (IoQueue); at most one batch is
// in flight, which bounds memory and keeps the manifest in batch order.
//
// Stage folder:
//   samples/<index>.png|.txt        one file per sample, written atomically
//   manifest.jsonl                  one line per sample, appended per batch once its files exist
//                                   (manifest.shard-<i>-of-<n>.jsonl for --shard i/n)
//   grid.png                        with grid > 0, of all images in index order
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <future>
#include <set>

#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_arena.h>
#include <nlohmann/json.hpp>

#include "host_error.hpp"
#include "kiln/file_io.hpp"
#include "kiln/image.hpp"
#include "runtime.hpp"
#include "sha256.hpp"
#include "text.hpp"

namespace kiln::host {
namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

namespace {

// Runs jobs one at a time on a TBB arena of `threads` workers, concurrently with the caller
// (`overlap`), or on the caller's thread when the thread budget has no thread to spare.
class IoQueue {
 public:
  IoQueue(int threads, bool overlap)
      : async_(overlap), arena_(std::max(1, threads), /*reserved_for_masters=*/0) {}
  ~IoQueue() {
    try {
      wait();
    } catch (...) {
      // the error that unwinds us is the one to report
    }
  }
  // Waits for the previous job (rethrowing its error), then starts `job`.
  void submit(std::function<void()> job) {
    wait();
    if (!async_) {
      job();
      return;
    }
    auto task = std::make_shared<std::packaged_task<void()>>(std::move(job));
    pending_ = task->get_future();
    arena_.enqueue([task] { (*task)(); });
  }
  void wait() {
    if (pending_.valid()) {
      auto f = std::move(pending_);
      f.get();
    }
  }

 private:
  bool async_;
  oneapi::tbb::task_arena arena_;
  std::future<void> pending_;
};

struct Encoded {
  std::int64_t index = 0;
  std::string rel_path;
  std::string sha256;
  std::map<std::string, std::string> info;
};

class Sampler {
 public:
  explicit Sampler(StageRun& r)
      : r_(r),
        s_(r.stage),
        task_(*r.task.as_generate()),
        samples_dir_(s_.out_dir / "samples"),
        shard_(r.options.shard_index),
        shards_(r.options.shard_count) {
    batch_ = s_.host.integer("batch");
    grid_ = s_.host.integer("grid");
    manifest_path_ = s_.out_dir / (shards_ > 1 ? "manifest.shard-" + std::to_string(shard_) +
                                                     "-of-" + std::to_string(shards_) + ".jsonl"
                                               : "manifest.jsonl");
    params_ = json::parse(params_json_relative(s_.params, s_.spec, r.pipeline.run_dir));
  }

  ~Sampler() {
    if (manifest_fd_ >= 0) ::close(manifest_fd_);
  }

  int run() {
    if (s_.host.has("count")) {
      count_ = s_.host.integer("count");
    } else {
      count_ = task_.default_count();
      if (count_ < 1) {
        throw pipeline_error(s_.where + ": " + s_.label() +
                             ": 'count' is required (this task has no default sample count); "
                             "add count = N to the stage");
      }
    }
    width_ = std::max<int>(6, static_cast<int>(std::to_string(count_ - 1).size()));
    for (std::int64_t i = shard_; i < count_; i += shards_) indices_.push_back(i);

    std::error_code ec;
    fs::create_directories(samples_dir_, ec);
    if (ec) throw runtime_error("cannot create '" + samples_dir_.string() + "': " + ec.message());
    remove_stale_temporaries(samples_dir_);
    remove_stale_temporaries(s_.out_dir);
    if (r_.options.resume) {
      verify_existing();
    } else {
      clear_previous();
    }
    rewrite_manifest();
    manifest_fd_ = ::open(manifest_path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (manifest_fd_ < 0) {
      throw runtime_error("cannot write '" + manifest_path_.string() +
                          "': " + std::strerror(errno));
    }

    std::vector<std::int64_t> todo;
    for (std::int64_t i : indices_) {
      if (done_.find(i) == done_.end()) todo.push_back(i);
    }
    r_.console.info(
        s_.label() + ": " + std::to_string(indices_.size()) + " samples" +
        (shards_ > 1 ? " (shard " + std::to_string(shard_) + "/" + std::to_string(shards_) +
                           " of " + std::to_string(count_) + ")"
                     : "") +
        (done_.empty() ? "" : ", " + std::to_string(done_.size()) + " already complete") +
        ", seed " + std::to_string(s_.seed) + ", batches of " + std::to_string(batch_));

    IoQueue io(r_.threads.budget.io_threads, r_.threads.overlap_io);
    Progress progress(r_.console, s_.id, static_cast<std::int64_t>(indices_.size()), "sample",
                      static_cast<std::int64_t>(done_.size()));
    std::int64_t finished = static_cast<std::int64_t>(done_.size());
    std::int64_t logged_tenth = finished * 10 / std::max<std::int64_t>(1, indices_.size());
    bool stopped = false;
    for (std::size_t b = 0; b < todo.size(); b += static_cast<std::size_t>(batch_)) {
      if (interrupted()) {
        stopped = true;
        break;
      }
      SampleRequest req;
      req.seed = s_.seed;
      req.indices.assign(todo.begin() + static_cast<std::ptrdiff_t>(b),
                         todo.begin() + static_cast<std::ptrdiff_t>(std::min(
                                            todo.size(), b + static_cast<std::size_t>(batch_))));
      auto artifacts = std::make_shared<std::vector<Artifact>>(task_.generate(req));
      check_batch(req, *artifacts);
      if (grid_ > 0) {
        for (const Artifact& a : *artifacts) {
          if (a.kind == ArtifactKind::image) grid_images_[a.index] = a.image;
        }
      }
      io.submit([this, artifacts] { write_batch(*artifacts); });
      finished += static_cast<std::int64_t>(req.indices.size());
      progress.update(finished, "", 0, "");
      const std::int64_t tenth = finished * 10 / std::max<std::int64_t>(1, indices_.size());
      if (!r_.console.is_tty() && tenth != logged_tenth) {
        progress.log_line();
        logged_tenth = tenth;
      }
    }
    io.wait();
    progress.finish();
    rewrite_manifest();
    if (stopped) {
      r_.console.info(s_.label() + ": stopped with " + std::to_string(done_.size()) + " of " +
                      std::to_string(indices_.size()) + " samples written");
      return kExitInterrupted;
    }
    if (grid_ > 0) make_grid_file();
    return kExitOk;
  }

 private:
  std::string rel_path(std::int64_t index, ArtifactKind kind) const {
    return "samples/" + pad_number(index, width_) + (kind == ArtifactKind::text ? ".txt" : ".png");
  }

  void check_batch(const SampleRequest& req, const std::vector<Artifact>& arts) const {
    const std::string who = s_.label() + ": the plugin's generate() ";
    if (arts.size() != req.indices.size()) {
      throw runtime_error(who + "returned " + std::to_string(arts.size()) + " artifacts for " +
                          std::to_string(req.indices.size()) + " requested samples");
    }
    for (std::size_t i = 0; i < arts.size(); ++i) {
      const Artifact& a = arts[i];
      if (a.index != req.indices[i]) {
        throw runtime_error(who + "returned sample index " + std::to_string(a.index) + " where " +
                            std::to_string(req.indices[i]) +
                            " was requested (artifacts must follow the request's order)");
      }
      if (a.kind == ArtifactKind::image) {
        const Image& im = a.image;
        if (im.width <= 0 || im.height <= 0 ||
            (im.channels != 1 && im.channels != 3 && im.channels != 4) ||
            im.pixels.size() != static_cast<std::size_t>(im.width) * im.height * im.channels) {
          throw runtime_error(who + "returned a malformed image for sample " +
                              std::to_string(a.index) + " (" + std::to_string(im.width) + "x" +
                              std::to_string(im.height) + "x" + std::to_string(im.channels) + ", " +
                              std::to_string(im.pixels.size()) + " bytes)");
        }
      } else if (a.kind != ArtifactKind::text) {
        throw runtime_error(who +
                            "returned an artifact that is neither an image nor text for "
                            "sample " +
                            std::to_string(a.index));
      }
    }
  }

  // On the I/O thread: encode, hash and write every sample, then append their manifest lines.
  void write_batch(const std::vector<Artifact>& arts) {
    std::vector<Encoded> enc(arts.size());
    oneapi::tbb::parallel_for(std::size_t{0}, arts.size(), [&](std::size_t i) {
      const Artifact& a = arts[i];
      const std::string bytes = a.kind == ArtifactKind::image ? encode_png(a.image) : a.text;
      Encoded& e = enc[i];
      e.index = a.index;
      e.rel_path = rel_path(a.index, a.kind);
      e.sha256 = sha256_hex(bytes);
      e.info = a.info;
      // No fsync per sample (7.5 ms each here, 40x the write): the manifest's digest is what
      // --resume trusts, so a sample lost to a power cut is simply made again.
      write_file_replace(s_.out_dir / e.rel_path, bytes);
    });
    std::string lines;
    for (const Encoded& e : enc) {
      json line = manifest_line(e.index, e.rel_path, e.sha256, e.info);
      lines += line.dump() + "\n";
      done_[e.index] = std::move(line);
    }
    append_manifest(lines);
  }

  json manifest_line(std::int64_t index, const std::string& path, const std::string& sha,
                     const std::map<std::string, std::string>& info) const {
    json i = json::object();
    for (const auto& [k, v] : info) i[k] = v;
    return {{"index", index}, {"seed", s_.seed},   {"path", path},
            {"sha256", sha},  {"params", params_}, {"info", i}};
  }

  void append_manifest(const std::string& lines) {
    const char* p = lines.data();
    std::size_t left = lines.size();
    while (left > 0) {
      const ssize_t n = ::write(manifest_fd_, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        throw runtime_error("writing '" + manifest_path_.string() +
                            "' failed: " + std::strerror(errno));
      }
      p += n;
      left -= static_cast<std::size_t>(n);
    }
    ::fdatasync(manifest_fd_);
  }

  // The manifest as the verified entries in index order, written atomically.
  void rewrite_manifest() {
    if (manifest_fd_ >= 0) {
      ::close(manifest_fd_);
      manifest_fd_ = -1;
    }
    std::string all;
    for (const auto& [i, line] : done_) all += line.dump() + "\n";
    write_file_atomic(manifest_path_, all);
  }

  void clear_previous() {
    const std::set<std::int64_t> mine(indices_.begin(), indices_.end());
    std::error_code ec;
    std::int64_t removed = 0;
    for (fs::directory_iterator it(samples_dir_, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string name = it->path().filename().string();
      std::optional<std::int64_t> index = number_between(name, "", ".png");
      if (!index) index = number_between(name, "", ".txt");
      if (!index) continue;
      // Unsharded: every old sample goes; a shard only clears its own indices.
      if (shards_ > 1 && mine.count(*index) == 0) continue;
      std::error_code rm;
      if (fs::remove(it->path(), rm)) ++removed;
    }
    if (shards_ == 1) {
      // An unsharded run replaces every earlier sample, so shard manifests would lie.
      for (fs::directory_iterator it(s_.out_dir, ec), end; !ec && it != end; it.increment(ec)) {
        std::error_code rm;
        const std::string name = it->path().filename().string();
        const auto of = name.find("-of-");
        if (of != std::string::npos && number_between(name.substr(0, of), "manifest.shard-", "") &&
            number_between(name.substr(of), "-of-", ".jsonl"))
          fs::remove(it->path(), rm);
      }
      fs::remove(s_.out_dir / "grid.png", ec);
    }
    if (removed > 0) {
      r_.console.info(s_.label() + ": replacing " + std::to_string(removed) +
                      " samples of an earlier run (use --resume to keep them)");
    }
  }

  // --resume: keeps every manifest entry of this run's indices whose file is present and has
  // the recorded SHA-256 (and the same seed and parameters); everything else is made again.
  void verify_existing() {
    std::ifstream in(manifest_path_);
    if (!in) {
      r_.console.info(s_.label() + ": no manifest to resume from; generating every sample");
      return;
    }
    const std::set<std::int64_t> mine(indices_.begin(), indices_.end());
    std::string line;
    std::int64_t bad = 0;
    while (std::getline(in, line)) {
      json j;
      try {
        j = json::parse(line);
        const std::int64_t index = j.at("index").get<std::int64_t>();
        if (mine.count(index) == 0) continue;
        const std::string path = j.at("path").get<std::string>();
        const bool same_setup = j.at("seed").get<std::uint64_t>() == s_.seed &&
                                j.at("params") == params_ &&
                                (path == rel_path(index, ArtifactKind::image) ||
                                 path == rel_path(index, ArtifactKind::text));
        std::error_code ec;
        if (same_setup && fs::is_regular_file(s_.out_dir / path, ec) &&
            sha256_file_hex(s_.out_dir / path) == j.at("sha256").get<std::string>()) {
          done_[index] = std::move(j);
        } else {
          ++bad;
        }
      } catch (const std::exception&) {
        ++bad;  // a torn line (the process died while appending) or damage: made again
      }
    }
    if (bad > 0) {
      r_.console.info(s_.label() + ": " + std::to_string(bad) +
                      " manifest entries did not verify and will be generated again");
    }
  }

  void make_grid_file() {
    std::vector<Image> images;
    for (std::int64_t i = 0; i < count_; ++i) {
      auto it = grid_images_.find(i);
      if (it != grid_images_.end()) {
        images.push_back(std::move(it->second));
        continue;
      }
      auto d = done_.find(i);
      if (d == done_.end()) return;  // not every sample is here (e.g. a shard): no grid
      const std::string path = d->second.at("path").get<std::string>();
      if (path.size() < 4 || path.substr(path.size() - 4) != ".png") {
        r_.console.info(s_.label() + ": no grid: the samples are not images");
        return;
      }
      images.push_back(read_image(s_.out_dir / path));
    }
    if (images.empty()) return;
    write_png(s_.out_dir / "grid.png", make_grid(images, static_cast<int>(grid_)));
    r_.console.info(s_.label() + ": grid written to " + (s_.out_dir / "grid.png").string());
  }

  StageRun& r_;
  const StageConfig& s_;
  GenerateTask& task_;
  fs::path samples_dir_, manifest_path_;
  std::int64_t shard_, shards_;
  std::int64_t count_ = 0, batch_ = 1, grid_ = 0;
  int width_ = 6;
  json params_;
  std::vector<std::int64_t> indices_;
  std::map<std::int64_t, json> done_;  // verified or written samples, by index
  std::map<std::int64_t, Image> grid_images_;
  int manifest_fd_ = -1;
};

}  // namespace

int run_generate_stage(StageRun& r) {
  Sampler s(r);
  return s.run();
}

}  // namespace kiln::host
