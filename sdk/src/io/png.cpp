// PNG through libpng. libpng reports errors by longjmp: every libpng call runs inside a small
// function that owns the setjmp and holds no C++ objects, so the jump never skips a destructor;
// buffers are allocated between those phases by ordinary C++ code, and the read/write structs are
// released by a guard in the caller.
#include <png.h>
#include <zlib.h>

#include <csetjmp>
#include <cstring>
#include <new>
#include <vector>

#include "io/image_codec.hpp"

namespace kiln::detail {

namespace {
struct PngIo {
  const unsigned char* data = nullptr;  // reading
  std::size_t size = 0;
  std::size_t pos = 0;
  std::string* out = nullptr;  // writing
  char message[256] = {};
};

void on_error(png_structp png, png_const_charp msg) {
  auto* io = static_cast<PngIo*>(png_get_error_ptr(png));
  std::snprintf(io->message, sizeof(io->message), "%s", msg != nullptr ? msg : "unknown error");
  png_longjmp(png, 1);
}

void on_warning(png_structp, png_const_charp) {}  // ancillary-chunk complaints are not fatal

void read_bytes(png_structp png, png_bytep out, std::size_t n) {
  auto* io = static_cast<PngIo*>(png_get_io_ptr(png));
  if (n > io->size - io->pos) {
    png_error(png, "unexpected end of file (the file is truncated)");
  }
  std::memcpy(out, io->data + io->pos, n);
  io->pos += n;
}

void write_bytes(png_structp png, png_bytep data, std::size_t n) {
  auto* io = static_cast<PngIo*>(png_get_io_ptr(png));
  bool failed = false;
  try {
    io->out->append(reinterpret_cast<const char*>(data), n);
  } catch (const std::bad_alloc&) {
    failed = true;
  }
  if (failed) png_error(png, "out of memory while encoding");
}

void flush_bytes(png_structp) {}

struct ReadGuard {
  png_structp png = nullptr;
  png_infop info = nullptr;
  ~ReadGuard() { png_destroy_read_struct(&png, info != nullptr ? &info : nullptr, nullptr); }
};

struct WriteGuard {
  png_structp png = nullptr;
  png_infop info = nullptr;
  ~WriteGuard() { png_destroy_write_struct(&png, info != nullptr ? &info : nullptr); }
};

struct Header {
  png_uint_32 width = 0, height = 0;
  int bit_depth = 0, color_type = 0;
  bool has_trns = false;
};

// ---- phases with setjmp: no C++ objects with destructors live in these frames.
bool read_header(png_structp png, png_infop info, Header* h) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_info(png, info);
  h->width = png_get_image_width(png, info);
  h->height = png_get_image_height(png, info);
  h->bit_depth = png_get_bit_depth(png, info);
  h->color_type = png_get_color_type(png, info);
  h->has_trns = png_get_valid(png, info, PNG_INFO_tRNS) != 0;
  return true;
}

// Sets the transformations to 8-bit grey / RGB / RGBA; reports channels and row bytes.
bool configure(png_structp png, png_infop info, const Header& h, bool grey_to_rgb, int* channels,
               std::size_t* rowbytes) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_expand(png);  // palette -> RGB, grey < 8 bits -> 8 bits, tRNS -> alpha
  if (h.bit_depth == 16) png_set_scale_16(png);  // rounds: (v * 255 + 32895) >> 16
  if (grey_to_rgb) png_set_gray_to_rgb(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  *channels = png_get_channels(png, info);
  *rowbytes = png_get_rowbytes(png, info);
  return png_get_bit_depth(png, info) == 8;
}

bool read_rows(png_structp png, png_infop info, png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_image(png, rows);
  png_read_end(png, info);
  return true;
}

bool write_all(png_structp png, png_infop info, png_uint_32 width, png_uint_32 height,
               int color_type, png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_IHDR(png, info, width, height, 8, color_type, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  // Everything that shapes the bytes is fixed, so the same pixels give the same file.
  png_set_filter(png, PNG_FILTER_TYPE_BASE, PNG_FILTER_PAETH);
  png_set_compression_level(png, 6);
  png_set_compression_mem_level(png, 8);
  png_set_compression_strategy(png, Z_FILTERED);
  png_set_compression_window_bits(png, 15);
  png_write_info(png, info);
  png_write_image(png, rows);
  png_write_end(png, nullptr);
  return true;
}
}  // namespace

bool is_png(const std::string& bytes) {
  return bytes.size() >= 8 &&
         png_sig_cmp(reinterpret_cast<png_const_bytep>(bytes.data()), 0, 8) == 0;
}

Image decode_png(const std::string& bytes, const std::string& name, std::int64_t max_pixels) {
  PngIo io;
  io.data = reinterpret_cast<const unsigned char*>(bytes.data());
  io.size = bytes.size();
  ReadGuard g;
  g.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &io, on_error, on_warning);
  KILN_CHECK(g.png != nullptr, "PNG '", name, "': cannot create a libpng reader (out of memory)");
  g.info = png_create_info_struct(g.png);
  KILN_CHECK(g.info != nullptr, "PNG '", name, "': cannot create a libpng reader (out of memory)");
  png_set_read_fn(g.png, &io, read_bytes);

  Header h;
  if (!read_header(g.png, g.info, &h)) {
    throw Error("PNG '" + name + "' is malformed: " + io.message);
  }
  check_pixel_budget(h.width, h.height, max_pixels, name, "PNG");
  const bool colour = (h.color_type & PNG_COLOR_MASK_COLOR) != 0;
  const bool alpha = (h.color_type & PNG_COLOR_MASK_ALPHA) != 0 || h.has_trns;
  const int want = colour ? (alpha ? 4 : 3) : (alpha ? 4 : 1);  // grey + alpha -> RGBA
  int channels = 0;
  std::size_t rowbytes = 0;
  if (!configure(g.png, g.info, h, !colour && alpha, &channels, &rowbytes)) {
    throw Error("PNG '" + name + "' is malformed: " +
                (io.message[0] != 0 ? std::string(io.message) : "unsupported bit depth"));
  }
  KILN_CHECK(channels == want && rowbytes == static_cast<std::size_t>(h.width) * want, "PNG '",
             name, "': unexpected decoded layout (", channels, " channels, ", rowbytes,
             " bytes per row for width ", h.width, ")");

  Image img;
  img.width = static_cast<int>(h.width);
  img.height = static_cast<int>(h.height);
  img.channels = channels;
  img.pixels.resize(static_cast<std::size_t>(h.height) * rowbytes);
  std::vector<png_bytep> rows(h.height);
  for (png_uint_32 y = 0; y < h.height; ++y) rows[y] = img.pixels.data() + y * rowbytes;
  if (!read_rows(g.png, g.info, rows.data())) {
    throw Error("PNG '" + name + "' is malformed: " + io.message);
  }
  return img;
}

std::string encode_png_bytes(const Image& img) {
  check_image(img, "encode_png");
  std::string out;
  PngIo io;
  io.out = &out;
  WriteGuard g;
  g.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &io, on_error, on_warning);
  KILN_CHECK(g.png != nullptr, "encode_png: cannot create a libpng writer (out of memory)");
  g.info = png_create_info_struct(g.png);
  KILN_CHECK(g.info != nullptr, "encode_png: cannot create a libpng writer (out of memory)");
  png_set_write_fn(g.png, &io, write_bytes, flush_bytes);
  const int color_type = img.channels == 1   ? PNG_COLOR_TYPE_GRAY
                         : img.channels == 3 ? PNG_COLOR_TYPE_RGB
                                             : PNG_COLOR_TYPE_RGB_ALPHA;
  const std::size_t stride = static_cast<std::size_t>(img.width) * img.channels;
  std::vector<png_bytep> rows(static_cast<std::size_t>(img.height));
  for (int y = 0; y < img.height; ++y) {
    // libpng only reads the rows; its API takes non-const pointers.
    rows[static_cast<std::size_t>(y)] =
        const_cast<png_bytep>(img.pixels.data() + static_cast<std::size_t>(y) * stride);
  }
  if (!write_all(g.png, g.info, static_cast<png_uint_32>(img.width),
                 static_cast<png_uint_32>(img.height), color_type, rows.data())) {
    throw Error(std::string("encode_png: libpng failed: ") + io.message);
  }
  return out;
}

}  // namespace kiln::detail
