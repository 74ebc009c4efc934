// SHA-256 (FIPS 180-4), for the generation manifest: every output file's digest is recorded so
// that `kiln run --resume` can tell a complete sample from a truncated or altered one.
//
//   kiln::host::Sha256 h;
//   h.update(bytes);
//   std::string hex = h.hex();                  // 64 lowercase hex digits
//   std::string same = kiln::host::sha256_hex(bytes);
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace kiln::host {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, std::size_t n);
  void update(std::string_view s) { update(s.data(), s.size()); }
  // Finishes the digest; the object must not be updated afterwards.
  std::array<std::uint8_t, 32> digest();
  std::string hex();

 private:
  void compress(const std::uint8_t* block);
  std::array<std::uint32_t, 8> h_;
  std::array<std::uint8_t, 64> buf_{};
  std::size_t buf_len_ = 0;
  std::uint64_t total_ = 0;
};

std::string sha256_hex(std::string_view bytes);
// Digest of a file's content; throws kiln::Error naming the file when it cannot be read.
std::string sha256_file_hex(const std::filesystem::path& path);

}  // namespace kiln::host
