#include "magic.hpp"

#include <cstring>
#include <limits>
#include <string>

#include "errors.hpp"

namespace fastroute {
namespace {

constexpr std::int64_t kMaxPixels = std::int64_t{1} << 31;

// Bounds-checked reads of a file's header. Every read names its field so a
// short or inconsistent header becomes CorruptFile("PNG header: width ...").
class Header {
 public:
  Header(std::span<const std::byte> bytes, const char* format) : bytes_(bytes), format_(format) {}

  std::size_t size() const { return bytes_.size(); }
  bool has(std::size_t offset, std::size_t n) const {
    return offset <= bytes_.size() && n <= bytes_.size() - offset;
  }
  bool matches(std::size_t offset, std::string_view signature) const {
    return has(offset, signature.size()) &&
           std::memcmp(bytes_.data() + offset, signature.data(), signature.size()) == 0;
  }

  std::uint32_t u8(std::size_t offset, const char* field) const { return read(offset, 1, field)[0]; }
  std::uint32_t le16(std::size_t offset, const char* field) const { return little(offset, 2, field); }
  std::uint32_t le24(std::size_t offset, const char* field) const { return little(offset, 3, field); }
  std::uint32_t le32(std::size_t offset, const char* field) const { return little(offset, 4, field); }
  std::uint32_t be16(std::size_t offset, const char* field) const { return big(offset, 2, field); }
  std::uint32_t be24(std::size_t offset, const char* field) const { return big(offset, 3, field); }
  std::uint32_t be32(std::size_t offset, const char* field) const { return big(offset, 4, field); }

  std::string_view text(std::size_t offset, std::size_t n, const char* field) const {
    return {reinterpret_cast<const char*>(read(offset, n, field)), n};
  }

  [[noreturn]] void corrupt(const char* field, const std::string& why) const {
    throw CorruptFile(std::string(format_) + " header: " + field + " " + why);
  }

  // Rejects zero, negative or absurd (over 2^31 pixels) image dimensions.
  void check_image_size(std::int64_t width, std::int64_t height) const {
    if (width <= 0) corrupt("width", "is " + std::to_string(width));
    if (height <= 0) corrupt("height", "is " + std::to_string(height));
    if (width > kMaxPixels / height) {
      corrupt("width x height", "declares " + std::to_string(width) + " x " + std::to_string(height) +
                                    " pixels (over 2^31)");
    }
  }

 private:
  const std::uint8_t* read(std::size_t offset, std::size_t n, const char* field) const {
    if (!has(offset, n)) {
      corrupt(field, "is truncated (needs " + std::to_string(n) + " bytes at offset " + std::to_string(offset) +
                         ", the buffer has " + std::to_string(bytes_.size()) + ")");
    }
    return reinterpret_cast<const std::uint8_t*>(bytes_.data() + offset);
  }
  std::uint32_t little(std::size_t offset, std::size_t n, const char* field) const {
    const std::uint8_t* p = read(offset, n, field);
    std::uint32_t v = 0;
    for (std::size_t i = n; i-- > 0;) v = (v << 8) | p[i];
    return v;
  }
  std::uint32_t big(std::size_t offset, std::size_t n, const char* field) const {
    const std::uint8_t* p = read(offset, n, field);
    std::uint32_t v = 0;
    for (std::size_t i = 0; i < n; ++i) v = (v << 8) | p[i];
    return v;
  }

  std::span<const std::byte> bytes_;
  const char* format_;
};

void set_image(FileFacts& facts, const Header& h, std::int64_t width, std::int64_t height, std::int64_t channels) {
  h.check_image_size(width, height);
  facts.width = width;
  facts.height = height;
  facts.channels = channels;
}

void parse_png(const Header& h, FileFacts& facts) {
  if (!h.matches(12, "IHDR")) h.corrupt("IHDR", "chunk is not first");
  const std::uint32_t color_type = h.u8(25, "color type");
  // Greyscale, -, RGB, palette (RGB entries), grey+alpha, -, RGBA.
  constexpr std::array<std::int64_t, 7> kChannels = {1, 0, 3, 3, 2, 0, 4};
  if (color_type >= kChannels.size() || kChannels[color_type] == 0) {
    h.corrupt("color type", "is " + std::to_string(color_type));
  }
  set_image(facts, h, h.be32(16, "width"), h.be32(20, "height"), kChannels[color_type]);
}

bool is_jpeg_frame_marker(std::uint32_t marker) {
  // SOF0..SOF15 minus DHT (C4), JPG (C8) and DAC (CC).
  return marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
}

// Walks the marker segments up to the frame header (SOF): each segment states
// its length, so this reads a few bytes per segment and never the image data.
void parse_jpeg(const Header& h, FileFacts& facts) {
  std::size_t pos = 2;
  for (;;) {
    if (h.u8(pos, "marker") != 0xFF) h.corrupt("marker", "missing at offset " + std::to_string(pos));
    while (h.u8(pos + 1, "marker") == 0xFF) ++pos;  // fill bytes
    const std::uint32_t marker = h.u8(pos + 1, "marker");
    pos += 2;
    const bool standalone = marker == 0x01 || marker == 0xD8 || (marker >= 0xD0 && marker <= 0xD7);
    if (standalone) continue;
    if (marker == 0xD9 || marker == 0xDA) h.corrupt("SOF", "frame header missing before the image data");
    const std::uint32_t length = h.be16(pos, "segment length");
    if (length < 2) h.corrupt("segment length", "is " + std::to_string(length));
    if (is_jpeg_frame_marker(marker)) {
      set_image(facts, h, h.be16(pos + 5, "width"), h.be16(pos + 3, "height"), h.u8(pos + 7, "components"));
      return;
    }
    pos += length;
  }
}

void parse_gif(const Header& h, FileFacts& facts) {
  set_image(facts, h, h.le16(6, "width"), h.le16(8, "height"), 3);
}

void parse_webp(const Header& h, FileFacts& facts) {
  constexpr std::size_t kData = 20;  // after "RIFF" size "WEBP" fourcc size
  if (h.matches(12, "VP8 ")) {
    if (!h.matches(kData + 3, "\x9d\x01\x2a")) h.corrupt("VP8 start code", "is missing");
    set_image(facts, h, h.le16(kData + 6, "width") & 0x3FFF, h.le16(kData + 8, "height") & 0x3FFF, 3);
  } else if (h.matches(12, "VP8L")) {
    if (h.u8(kData, "VP8L signature") != 0x2F) h.corrupt("VP8L signature", "is not 0x2f");
    const std::uint32_t bits = h.le32(kData + 1, "VP8L size");
    const bool alpha = (bits >> 28) & 1;
    set_image(facts, h, (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, alpha ? 4 : 3);
  } else if (h.matches(12, "VP8X")) {
    const bool alpha = h.u8(kData, "VP8X flags") & 0x10;
    set_image(facts, h, std::int64_t{h.le24(kData + 4, "canvas width")} + 1,
              std::int64_t{h.le24(kData + 7, "canvas height")} + 1, alpha ? 4 : 3);
  } else {
    h.corrupt("first chunk", "is not VP8, VP8L or VP8X");
  }
}

bool is_bmp(const Header& h) {
  if (!h.matches(0, "BM") || !h.has(14, 4)) return false;
  const std::uint32_t dib_size = h.le32(14, "DIB header size");
  for (std::uint32_t known : {12u, 40u, 52u, 56u, 64u, 108u, 124u}) {
    if (dib_size == known) return true;
  }
  return false;
}

void parse_bmp(const Header& h, FileFacts& facts) {
  const bool core = h.le32(14, "DIB header size") == 12;
  std::int64_t width = 0, height = 0, bits = 0;
  if (core) {
    width = h.le16(18, "width");
    height = h.le16(20, "height");
    bits = h.le16(24, "bit count");
  } else {
    width = static_cast<std::int32_t>(h.le32(18, "width"));
    height = static_cast<std::int32_t>(h.le32(22, "height"));
    bits = h.le16(28, "bit count");
  }
  if (height < 0) height = -height;  // top-down rows
  set_image(facts, h, width, height, bits == 32 ? 4 : 3);
}

// Reads ImageWidth, ImageLength and SamplesPerPixel from the first IFD.
void parse_tiff(const Header& h, FileFacts& facts) {
  const bool little = h.matches(0, "II");
  auto u16 = [&](std::size_t at, const char* field) { return little ? h.le16(at, field) : h.be16(at, field); };
  auto u32 = [&](std::size_t at, const char* field) { return little ? h.le32(at, field) : h.be32(at, field); };
  const std::size_t ifd = u32(4, "IFD offset");
  const std::uint32_t entries = u16(ifd, "IFD entry count");
  std::int64_t width = 0, height = 0, channels = 1;
  for (std::uint32_t i = 0; i < entries; ++i) {
    const std::size_t entry = ifd + 2 + 12 * std::size_t{i};
    const std::uint32_t tag = u16(entry, "IFD entry");
    const std::uint32_t type = u16(entry + 2, "IFD entry type");
    const std::int64_t value = type == 3 ? u16(entry + 8, "IFD value") : u32(entry + 8, "IFD value");
    if (tag == 256) width = value;
    if (tag == 257) height = value;
    if (tag == 277) channels = value;
  }
  set_image(facts, h, width, height, channels);
}

void parse_wav(const Header& h, FileFacts& facts) {
  std::size_t pos = 12;
  std::uint32_t block_align = 0;
  while (!h.matches(pos, "data")) {
    const std::uint64_t chunk_size = h.le32(pos + 4, "chunk size");
    if (h.matches(pos, "fmt ")) {
      facts.channels = h.le16(pos + 10, "channels");
      facts.sample_rate = h.le32(pos + 12, "sample rate");
      block_align = h.le16(pos + 20, "block align");
    }
    const std::uint64_t next = pos + 8 + chunk_size + (chunk_size & 1);
    if (next > h.size()) h.corrupt("data chunk", "is missing (header truncated)");
    pos = static_cast<std::size_t>(next);
  }
  if (block_align == 0) h.corrupt("fmt chunk", "is missing before the data chunk or has block align 0");
  if (facts.channels == 0) h.corrupt("channels", "is 0");
  if (facts.sample_rate == 0) h.corrupt("sample rate", "is 0");
  // Streaming writers leave the declared size at 0 or 0xFFFFFFFF: count the bytes present.
  const std::uint64_t declared = h.le32(pos + 4, "data size");
  const std::uint64_t present = h.size() - (pos + 8);
  const std::uint64_t payload = declared < present ? declared : present;
  facts.duration_s = static_cast<double>(payload / block_align) / static_cast<double>(facts.sample_rate);
}

void parse_flac(const Header& h, FileFacts& facts) {
  const std::uint32_t block_type = h.u8(4, "metadata block type") & 0x7F;
  if (block_type != 0) h.corrupt("STREAMINFO", "is not the first metadata block (type " + std::to_string(block_type) + ")");
  if (h.be24(5, "STREAMINFO length") < 34) h.corrupt("STREAMINFO length", "is under 34 bytes");
  const std::uint64_t packed = (std::uint64_t{h.be32(18, "sample rate")} << 32) | h.be32(22, "total samples");
  facts.sample_rate = static_cast<std::int64_t>(packed >> 44);
  facts.channels = static_cast<std::int64_t>((packed >> 41) & 7) + 1;
  const std::uint64_t total_samples = packed & 0xFFFFFFFFFULL;
  if (facts.sample_rate == 0) h.corrupt("sample rate", "is 0");
  facts.duration_s = static_cast<double>(total_samples) / static_cast<double>(facts.sample_rate);
}

// The first page's first packet names the codec; Vorbis and Opus state the
// channel count and sample rate there.
void parse_ogg(const Header& h, FileFacts& facts) {
  const std::size_t packet = 27 + h.u8(26, "page segment count");
  if (h.matches(packet, "\x01vorbis")) {
    facts.channels = h.u8(packet + 11, "channels");
    facts.sample_rate = h.le32(packet + 12, "sample rate");
  } else if (h.matches(packet, "OpusHead")) {
    facts.channels = h.u8(packet + 9, "channels");
    facts.sample_rate = h.le32(packet + 12, "sample rate");
  }
}

// MPEG audio frame header at `pos`: returns false when the bits are not one.
// Without an ID3 tag the 11-bit sync is weak evidence (UTF-16's BOM has it),
// so `strict` also rejects layer I and free-format bitrates, both rare.
bool parse_mpeg_frame(const Header& h, std::size_t pos, bool strict, FileFacts& facts) {
  if (!h.has(pos, 4) || h.u8(pos, "frame sync") != 0xFF) return false;
  const std::uint32_t b1 = h.u8(pos + 1, "frame header"), b2 = h.u8(pos + 2, "frame header");
  const std::uint32_t version = (b1 >> 3) & 3, layer = (b1 >> 1) & 3;
  const std::uint32_t bitrate = b2 >> 4, rate_index = (b2 >> 2) & 3;
  if ((b1 & 0xE0) != 0xE0 || version == 1 || layer == 0 || bitrate == 15 || rate_index == 3) return false;
  if (strict && (layer == 3 || bitrate == 0)) return false;  // layer bits 3 = layer I
  constexpr std::array<std::array<std::int64_t, 3>, 4> kRates = {{
      {11025, 12000, 8000}, {0, 0, 0}, {22050, 24000, 16000}, {44100, 48000, 32000}}};
  facts.sample_rate = kRates[version][rate_index];
  facts.channels = (h.u8(pos + 3, "channel mode") >> 6) == 3 ? 1 : 2;
  return true;
}

void parse_id3(const Header& h, FileFacts& facts) {
  std::uint64_t tag_size = 0;
  for (std::size_t i = 6; i < 10; ++i) {
    const std::uint32_t b = h.u8(i, "ID3 tag size");
    if (b & 0x80) h.corrupt("ID3 tag size", "is not syncsafe");
    tag_size = (tag_size << 7) | b;
  }
  const bool footer = h.u8(5, "ID3 flags") & 0x10;
  parse_mpeg_frame(h, static_cast<std::size_t>(10 + tag_size + (footer ? 10 : 0)), false, facts);
}

// NPY header: a Python dict literal such as
// {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
class NpyHeader {
 public:
  NpyHeader(const Header& h, std::string_view dict) : h_(h), dict_(dict) {}

  void parse(FileFacts& facts) const {
    parse_descr(value_of("descr"), facts);
    parse_shape(value_of("shape"), facts);
  }

 private:
  std::string_view value_of(std::string_view key) const {
    for (char quote : {'\'', '"'}) {
      const std::string quoted = quote + std::string(key) + quote;
      std::size_t at = dict_.find(quoted);
      if (at == std::string_view::npos) continue;
      at = dict_.find(':', at + quoted.size());
      if (at == std::string_view::npos) break;
      std::string_view rest = dict_.substr(at + 1);
      while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
      return rest;
    }
    h_.corrupt(key == "descr" ? "descr" : "shape", "is missing from the header dict");
  }

  void parse_descr(std::string_view value, FileFacts& facts) const {
    if (value.empty()) h_.corrupt("descr", "is empty");
    if (value.front() != '\'' && value.front() != '"') return;  // structured dtype: kind unknown
    const std::size_t end = value.find(value.front(), 1);
    if (end == std::string_view::npos) h_.corrupt("descr", "string is unterminated");
    std::string_view descr = value.substr(1, end - 1);
    if (!descr.empty() && std::string_view("<>|=").find(descr.front()) != std::string_view::npos) {
      descr.remove_prefix(1);
    }
    if (descr.size() < 2 || descr.size() > 4) return;  // e.g. datetime units: kind unknown
    int itemsize = 0;
    for (char c : descr.substr(1)) {
      if (c < '0' || c > '9') return;
      itemsize = itemsize * 10 + (c - '0');
    }
    facts.dtype_kind = descr.front();
    facts.itemsize = itemsize;
  }

  void parse_shape(std::string_view value, FileFacts& facts) const {
    if (value.empty() || value.front() != '(') h_.corrupt("shape", "is not a tuple");
    std::size_t pos = 1;
    std::int64_t elements = 1;
    for (;;) {
      while (pos < value.size() && (value[pos] == ' ' || value[pos] == ',')) ++pos;
      if (pos >= value.size()) h_.corrupt("shape", "tuple is unterminated");
      if (value[pos] == ')') return;
      if (value[pos] < '0' || value[pos] > '9') h_.corrupt("shape", "holds a non-integer");
      std::int64_t dim = 0;
      for (; pos < value.size() && value[pos] >= '0' && value[pos] <= '9'; ++pos) {
        if (dim > (std::numeric_limits<std::int64_t>::max() - 9) / 10) h_.corrupt("shape", "dimension overflows");
        dim = dim * 10 + (value[pos] - '0');
      }
      if (facts.ndim == kMaxNpyDims) h_.corrupt("shape", "has over 64 dimensions");
      if (dim != 0 && elements > std::numeric_limits<std::int64_t>::max() / dim) {
        h_.corrupt("shape", "element count overflows 64 bits");
      }
      elements *= dim;
      facts.shape[facts.ndim++] = dim;
    }
  }

  const Header& h_;
  std::string_view dict_;
};

void parse_npy(const Header& h, FileFacts& facts) {
  const std::uint32_t major = h.u8(6, "version");
  if (major < 1 || major > 3) h.corrupt("version", "is " + std::to_string(major));
  const std::size_t start = major == 1 ? 10 : 12;
  const std::size_t length = major == 1 ? h.le16(8, "header length") : h.le32(8, "header length");
  NpyHeader(h, h.text(start, length, "header dict")).parse(facts);
}

using Parser = void (*)(const Header&, FileFacts&);

struct Signature {
  std::size_t offset;
  std::string_view magic;
  FileKind kind;
  const char* format;
  Parser parse;
};

constexpr std::string_view operator""_sig(const char* s, std::size_t n) { return {s, n}; }

const std::array kSignatures = {
    Signature{0, "\x89PNG\r\n\x1a\n"_sig, FileKind::kPng, "PNG", parse_png},
    Signature{0, "\xff\xd8\xff"_sig, FileKind::kJpeg, "JPEG", parse_jpeg},
    Signature{0, "GIF87a"_sig, FileKind::kGif, "GIF", parse_gif},
    Signature{0, "GIF89a"_sig, FileKind::kGif, "GIF", parse_gif},
    Signature{8, "WEBP"_sig, FileKind::kWebp, "WebP", parse_webp},  // after "RIFF" (checked below)
    Signature{8, "WAVE"_sig, FileKind::kWav, "WAV", parse_wav},
    Signature{0, "II*\0"_sig, FileKind::kTiff, "TIFF", parse_tiff},
    Signature{0, "MM\0*"_sig, FileKind::kTiff, "TIFF", parse_tiff},
    Signature{0, "fLaC"_sig, FileKind::kFlac, "FLAC", parse_flac},
    Signature{0, "OggS\0"_sig, FileKind::kOgg, "OGG", parse_ogg},
    Signature{0, "ID3"_sig, FileKind::kMp3, "MP3", parse_id3},
    Signature{0, "%PDF-"_sig, FileKind::kPdf, "PDF", nullptr},
    Signature{0, "PK\x03\x04"_sig, FileKind::kZip, "ZIP", nullptr},
    Signature{0, "PK\x05\x06"_sig, FileKind::kZip, "ZIP", nullptr},
    Signature{0, "PK\x07\x08"_sig, FileKind::kZip, "ZIP", nullptr},
    Signature{0, "\x1f\x8b\x08"_sig, FileKind::kGzip, "GZIP", nullptr},
    Signature{0, "\x93NUMPY"_sig, FileKind::kNpy, "NPY", parse_npy},
};

}  // namespace

FileFacts detect_file(std::span<const std::byte> file) {
  FileFacts facts;
  const bool riff = Header(file, "RIFF").matches(0, "RIFF");
  for (const Signature& sig : kSignatures) {
    const Header h(file, sig.format);
    if (!h.matches(sig.offset, sig.magic) || (sig.offset == 8 && !riff)) continue;
    facts.kind = sig.kind;
    if (sig.parse) sig.parse(h, facts);
    return facts;
  }
  const Header bmp(file, "BMP");
  if (is_bmp(bmp)) {
    facts.kind = FileKind::kBmp;
    parse_bmp(bmp, facts);
  } else if (parse_mpeg_frame(Header(file, "MP3"), 0, true, facts)) {
    facts.kind = FileKind::kMp3;
  }
  return facts;
}

}  // namespace fastroute
