// JPEG decoding through libjpeg(-turbo). libjpeg calls error_exit on fatal errors (exit() by
// default): ours formats the message and longjmps back to the phase that called libjpeg. As in
// png.cpp, the phases hold no C++ objects, and a guard in the caller destroys the decompressor.
#include <cstdio>  // jpeglib.h needs FILE
// clang-format off
#include <jpeglib.h>
#include <jerror.h>
// clang-format on

#include <csetjmp>
#include <cstring>
#include <vector>

#include "io/image_codec.hpp"

namespace kiln::detail {

namespace {
struct JpegError {
  jpeg_error_mgr mgr;  // first member: libjpeg hands back a pointer to it
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

[[noreturn]] void on_error_exit(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegError*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

// Warnings (level -1) that mean the data is truncated or corrupt are fatal; other warnings
// (e.g. extraneous bytes before a marker, common in camera files) and trace messages are ignored.
void on_message(j_common_ptr cinfo, int level) {
  if (level != -1) return;
  const int code = cinfo->err->msg_code;
  if (code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER || code == JWRN_HUFF_BAD_CODE ||
      code == JWRN_MUST_RESYNC) {
    on_error_exit(cinfo);
  }
}

void on_output(j_common_ptr) {}  // never print to stderr

struct Guard {
  jpeg_decompress_struct* cinfo;
  bool created = false;
  ~Guard() {
    if (created) jpeg_destroy_decompress(cinfo);
  }
};

bool read_header(jpeg_decompress_struct* cinfo, JpegError* err, const unsigned char* data,
                 unsigned long size, bool* created) {
  if (setjmp(err->jump)) return false;
  jpeg_create_decompress(cinfo);
  *created = true;
  jpeg_mem_src(cinfo, data, size);
  jpeg_read_header(cinfo, TRUE);
  return true;
}

bool start(jpeg_decompress_struct* cinfo, JpegError* err, J_COLOR_SPACE out_space) {
  if (setjmp(err->jump)) return false;
  cinfo->out_color_space = out_space;
  cinfo->dct_method = JDCT_ISLOW;  // exact integer IDCT: the same pixels on every machine
  jpeg_start_decompress(cinfo);
  return true;
}

bool read_rows(jpeg_decompress_struct* cinfo, JpegError* err, JSAMPROW* rows) {
  if (setjmp(err->jump)) return false;
  while (cinfo->output_scanline < cinfo->output_height) {
    jpeg_read_scanlines(cinfo, rows + cinfo->output_scanline,
                        cinfo->output_height - cinfo->output_scanline);
  }
  jpeg_finish_decompress(cinfo);
  return true;
}
}  // namespace

bool is_jpeg(const std::string& bytes) {
  return bytes.size() >= 3 && static_cast<unsigned char>(bytes[0]) == 0xFF &&
         static_cast<unsigned char>(bytes[1]) == 0xD8 &&
         static_cast<unsigned char>(bytes[2]) == 0xFF;
}

Image decode_jpeg(const std::string& bytes, const std::string& name, std::int64_t max_pixels) {
  jpeg_decompress_struct cinfo;
  std::memset(&cinfo, 0, sizeof(cinfo));
  JpegError err;
  std::memset(&err, 0, sizeof(err));
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = on_error_exit;
  err.mgr.emit_message = on_message;
  err.mgr.output_message = on_output;
  Guard guard{&cinfo};
  if (!read_header(&cinfo, &err, reinterpret_cast<const unsigned char*>(bytes.data()),
                   static_cast<unsigned long>(bytes.size()), &guard.created)) {
    throw Error("JPEG '" + name + "' is malformed: " + err.message);
  }
  check_pixel_budget(cinfo.image_width, cinfo.image_height, max_pixels, name, "JPEG");
  J_COLOR_SPACE out_space;
  int channels;
  switch (cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE:
      out_space = JCS_GRAYSCALE;
      channels = 1;
      break;
    case JCS_YCbCr:
    case JCS_RGB:
      out_space = JCS_RGB;
      channels = 3;
      break;
    default:
      throw Error("JPEG '" + name + "' uses the " +
                  (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK
                       ? std::string("CMYK")
                       : "colour space " + std::to_string(cinfo.jpeg_color_space)) +
                  " colour space; only greyscale and RGB/YCbCr JPEGs are supported (convert it "
                  "to RGB first)");
  }
  if (!start(&cinfo, &err, out_space)) {
    throw Error("JPEG '" + name + "' is malformed: " + err.message);
  }
  KILN_CHECK(static_cast<int>(cinfo.output_components) == channels &&
                 cinfo.output_width == cinfo.image_width &&
                 cinfo.output_height == cinfo.image_height,
             "JPEG '", name, "': unexpected decoded layout (", cinfo.output_components,
             " components, ", cinfo.output_width, "x", cinfo.output_height, ")");
  Image img;
  img.width = static_cast<int>(cinfo.output_width);
  img.height = static_cast<int>(cinfo.output_height);
  img.channels = channels;
  const std::size_t stride = static_cast<std::size_t>(img.width) * channels;
  img.pixels.resize(stride * static_cast<std::size_t>(img.height));
  std::vector<JSAMPROW> rows(static_cast<std::size_t>(img.height));
  for (int y = 0; y < img.height; ++y) {
    rows[static_cast<std::size_t>(y)] = img.pixels.data() + static_cast<std::size_t>(y) * stride;
  }
  if (!read_rows(&cinfo, &err, rows.data())) {
    throw Error("JPEG '" + name + "' is malformed: " + err.message);
  }
  return img;
}

}  // namespace kiln::detail
