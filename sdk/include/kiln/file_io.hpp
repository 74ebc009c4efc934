// Files written so that a crash never leaves a half-written file where a good one was.
//
//   kiln::AtomicFile f("out/model.safetensors");   // writes to out/.model.safetensors.tmp-<pid>
//   f.stream() << bytes;
//   f.commit();                                     // fsync + rename over the target
//   // destroyed without commit(): the temporary is removed, the target untouched
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "kiln/export.hpp"

namespace kiln {

class KILN_API AtomicFile {
 public:
  explicit AtomicFile(const std::filesystem::path& target);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  std::ofstream& stream() { return out_; }
  void write(const void* data, std::size_t n);
  // Flushes, fsyncs and renames the temporary over the target; throws kiln::Error on failure.
  void commit();
  const std::filesystem::path& target() const { return target_; }

 private:
  std::filesystem::path target_, tmp_;
  std::ofstream out_;
  bool committed_ = false;
};

KILN_API void write_file_atomic(const std::filesystem::path& path, const std::string& bytes);
// Like write_file_atomic (a temporary file renamed over `path`, so a process that dies mid-write
// never leaves a partial file there) but without fsync: about 40x faster for small files. After
// a power loss the file may be incomplete, so use it only where the content is verified later
// (e.g. generated samples, whose SHA-256 the manifest records and --resume checks).
KILN_API void write_file_replace(const std::filesystem::path& path, const std::string& bytes);
// Whole file; throws kiln::Error naming the path when it cannot be read.
KILN_API std::string read_file(const std::filesystem::path& path);

}  // namespace kiln
