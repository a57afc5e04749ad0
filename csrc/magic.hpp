// File-type detection from magic numbers, plus the cheap facts a file's header
// states (image size, audio format, array shape) read without decoding the
// payload. Thread-safe (pure functions), never allocates, never reads past the
// buffer. Errors: CorruptFile when a recognised header is truncated, malformed
// or declares absurd sizes.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace fastroute {

// Order is the "mime" feature code; names match libmagic's --mime-type where
// libmagic knows the kind (NPY: libmagic says application/octet-stream).
#define FASTROUTE_FILE_KINDS(X)                    \
  X(kPng, "image/png")                             \
  X(kJpeg, "image/jpeg")                           \
  X(kGif, "image/gif")                             \
  X(kWebp, "image/webp")                           \
  X(kBmp, "image/bmp")                             \
  X(kTiff, "image/tiff")                           \
  X(kWav, "audio/x-wav")                           \
  X(kFlac, "audio/flac")                           \
  X(kOgg, "audio/ogg")                             \
  X(kMp3, "audio/mpeg")                            \
  X(kPdf, "application/pdf")                       \
  X(kZip, "application/zip")                       \
  X(kGzip, "application/gzip")                     \
  X(kNpy, "application/x-npy")                     \
  X(kJson, "application/json")                     \
  X(kText, "text/plain")                           \
  X(kUnknown, "application/octet-stream")

enum class FileKind : std::uint8_t {
#define FASTROUTE_KIND_ENUM(id, mime) id,
  FASTROUTE_FILE_KINDS(FASTROUTE_KIND_ENUM)
#undef FASTROUTE_KIND_ENUM
};

inline constexpr std::array kMimeNames = {
#define FASTROUTE_KIND_MIME(id, mime) std::string_view(mime),
    FASTROUTE_FILE_KINDS(FASTROUTE_KIND_MIME)
#undef FASTROUTE_KIND_MIME
};

inline constexpr int kMaxNpyDims = 64;

// What a file's header says; a field is 0 (or empty) when the format does not
// state it. Text kinds (JSON, text) are only candidates here: the analyzer
// confirms them by validating the UTF-8.
struct FileFacts {
  FileKind kind = FileKind::kUnknown;
  std::int64_t height = 0, width = 0, channels = 0;
  std::int64_t sample_rate = 0;
  double duration_s = 0.0;  // 0: not stated
  // NPY only.
  char dtype_kind = 0;  // numpy kind char ('f', 'i', 'u', 'b', ...); 0 if not simple
  int itemsize = 0;
  int ndim = 0;
  std::array<std::int64_t, kMaxNpyDims> shape{};
};

// Identifies `file` by its leading bytes and parses the header facts.
// Returns kind kUnknown for bytes that match no binary signature (the caller
// then tries text). Throws CorruptFile naming the format and field.
FileFacts detect_file(std::span<const std::byte> file);

}  // namespace fastroute
