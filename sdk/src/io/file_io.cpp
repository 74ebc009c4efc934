#include "kiln/file_io.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <sstream>

#include "kiln/error.hpp"

namespace kiln {
namespace fs = std::filesystem;

namespace {
std::string tmp_name(const fs::path& target) {
  static std::atomic<int> counter{0};
  return "." + target.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-" +
         std::to_string(counter++);
}

void fsync_path(const fs::path& p, bool directory) {
  const int fd = ::open(p.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}
}  // namespace

AtomicFile::AtomicFile(const fs::path& target) : target_(target) {
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    throw Error("cannot write '" + target.string() + "': the folder '" + dir.string() +
                "' does not exist");
  }
  tmp_ = dir / tmp_name(target);
  out_.open(tmp_, std::ios::binary | std::ios::trunc);
  if (!out_) {
    throw Error("cannot write '" + target.string() + "': " + std::strerror(errno) +
                " (check that the folder is writable)");
  }
}

AtomicFile::~AtomicFile() {
  if (!committed_) {
    out_.close();
    std::error_code ec;
    fs::remove(tmp_, ec);
  }
}

void AtomicFile::write(const void* data, std::size_t n) {
  out_.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
}

void AtomicFile::commit() {
  out_.flush();
  const bool ok = static_cast<bool>(out_);
  out_.close();
  if (!ok) {
    throw Error("writing '" + target_.string() +
                "' failed (disk full or I/O error); the "
                "previous file, if any, is untouched");
  }
  fsync_path(tmp_, false);
  std::error_code ec;
  fs::rename(tmp_, target_, ec);
  if (ec) {
    throw Error("cannot replace '" + target_.string() + "': " + ec.message());
  }
  committed_ = true;
  fsync_path(target_.has_parent_path() ? target_.parent_path() : fs::path("."), true);
}

void write_file_atomic(const fs::path& path, const std::string& bytes) {
  AtomicFile f(path);
  f.write(bytes.data(), bytes.size());
  f.commit();
}

void write_file_replace(const fs::path& path, const std::string& bytes) {
  const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  const fs::path tmp = dir / tmp_name(path);
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) {
      throw Error("cannot write '" + path.string() + "': " + std::strerror(errno) +
                  " (check that the folder exists and is writable)");
    }
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) {
      std::error_code ec;
      fs::remove(tmp, ec);
      throw Error("writing '" + path.string() +
                  "' failed (disk full or I/O error); the previous "
                  "file, if any, is untouched");
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    std::error_code rm;
    fs::remove(tmp, rm);
    throw Error("cannot replace '" + path.string() + "': " + ec.message());
  }
}

std::string read_file(const fs::path& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    throw Error("cannot read '" + path.string() + "': it is a folder, not a file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw Error("cannot read '" + path.string() + "': " +
                (fs::exists(path, ec) ? std::string(std::strerror(errno)) : "no such file"));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace kiln
