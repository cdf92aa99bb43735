#pragma once
// Independent checks of kvq's figures: an XML well-formedness checker (the
// subset SVG uses: elements, quoted attributes, text, the five predefined
// entities and numeric references, comments, an XML declaration), and a PNG
// decoder (8-bit RGB/RGBA, non-interlaced, what rsvg-convert writes) to count
// the colours of a rendering.
#include <zlib.h>

#include <cctype>
#include <cstdint>
#include <cstring>
#include <set>
#include <string>
#include <vector>

namespace kvq::test {

// Empty when `text` is well-formed XML with one root element, else what is
// wrong and where.
inline std::string XmlError(const std::string& text) {
  std::vector<std::string> stack;
  size_t i = 0;
  int roots = 0;
  auto at = [&](const std::string& what) { return what + " at offset " + std::to_string(i); };
  auto name_char = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.' ||
           c == ':';
  };
  auto check_entity = [&](size_t& j) -> bool {
    const size_t end = text.find(';', j);
    if (end == std::string::npos) return false;
    const std::string e = text.substr(j + 1, end - j - 1);
    static const std::set<std::string> named = {"amp", "lt", "gt", "quot", "apos"};
    bool ok = named.count(e) > 0;
    if (!ok && e.size() > 1 && e[0] == '#') {
      ok = true;
      for (size_t k = 1; k < e.size(); ++k) {
        ok &= std::isxdigit(static_cast<unsigned char>(e[k])) || (k == 1 && e[k] == 'x');
      }
    }
    j = end;
    return ok;
  };
  while (i < text.size()) {
    if (text[i] != '<') {
      if (text[i] == '&' && !check_entity(i)) return at("bad entity");
      if (stack.empty() && !std::isspace(static_cast<unsigned char>(text[i]))) {
        return at("text outside the root element");
      }
      ++i;
      continue;
    }
    if (text.compare(i, 4, "<!--") == 0) {
      const size_t end = text.find("-->", i);
      if (end == std::string::npos) return at("unterminated comment");
      i = end + 3;
      continue;
    }
    if (text.compare(i, 2, "<?") == 0) {
      const size_t end = text.find("?>", i);
      if (end == std::string::npos) return at("unterminated declaration");
      i = end + 2;
      continue;
    }
    if (text.compare(i, 2, "</") == 0) {
      size_t j = i + 2;
      while (j < text.size() && name_char(text[j])) ++j;
      const std::string name = text.substr(i + 2, j - i - 2);
      while (j < text.size() && std::isspace(static_cast<unsigned char>(text[j]))) ++j;
      if (j >= text.size() || text[j] != '>') return at("bad end tag");
      if (stack.empty() || stack.back() != name) return at("mismatched </" + name + ">");
      stack.pop_back();
      i = j + 1;
      continue;
    }
    size_t j = i + 1;
    while (j < text.size() && name_char(text[j])) ++j;
    const std::string name = text.substr(i + 1, j - i - 1);
    if (name.empty()) return at("bad start tag");
    std::set<std::string> attributes;
    while (true) {
      while (j < text.size() && std::isspace(static_cast<unsigned char>(text[j]))) ++j;
      if (j >= text.size()) return at("unterminated tag");
      if (text[j] == '>' || text.compare(j, 2, "/>") == 0) break;
      const size_t a = j;
      while (j < text.size() && name_char(text[j])) ++j;
      const std::string attribute = text.substr(a, j - a);
      if (attribute.empty() || j >= text.size() || text[j] != '=') return at("bad attribute");
      if (!attributes.insert(attribute).second) return at("duplicate attribute " + attribute);
      ++j;
      if (j >= text.size() || (text[j] != '"' && text[j] != '\'')) return at("unquoted attribute");
      const char quote = text[j];
      for (++j; j < text.size() && text[j] != quote; ++j) {
        if (text[j] == '<') return at("'<' in an attribute");
        if (text[j] == '&' && !check_entity(j)) return at("bad entity in an attribute");
      }
      if (j >= text.size()) return at("unterminated attribute");
      ++j;
    }
    if (stack.empty() && ++roots > 1) return at("second root element");
    if (text[j] == '/') {
      i = j + 2;
    } else {
      stack.push_back(name);
      i = j + 1;
    }
  }
  if (!stack.empty()) return "unclosed <" + stack.back() + ">";
  if (roots != 1) return "no root element";
  return {};
}

// Decodes a PNG (8-bit RGB or RGBA, no interlace) into RGBA pixels; false
// when the file is not such a PNG.
inline bool DecodePng(const std::string& png, int& width, int& height,
                      std::vector<uint32_t>& pixels) {
  static const char kSignature[] = "\x89PNG\r\n\x1a\n";
  if (png.size() < 8 || png.compare(0, 8, kSignature, 8) != 0) return false;
  auto be32 = [&](size_t at) {
    return (static_cast<uint32_t>(static_cast<uint8_t>(png[at])) << 24) |
           (static_cast<uint32_t>(static_cast<uint8_t>(png[at + 1])) << 16) |
           (static_cast<uint32_t>(static_cast<uint8_t>(png[at + 2])) << 8) |
           static_cast<uint32_t>(static_cast<uint8_t>(png[at + 3]));
  };
  std::string idat;
  int depth = 0, colour = 0, interlace = 0;
  for (size_t at = 8; at + 8 <= png.size();) {
    const uint32_t length = be32(at);
    const std::string type = png.substr(at + 4, 4);
    if (at + 12 + length > png.size()) return false;
    if (type == "IHDR") {
      width = static_cast<int>(be32(at + 8));
      height = static_cast<int>(be32(at + 12));
      depth = static_cast<uint8_t>(png[at + 16]);
      colour = static_cast<uint8_t>(png[at + 17]);
      interlace = static_cast<uint8_t>(png[at + 20]);
    } else if (type == "IDAT") {
      idat += png.substr(at + 8, length);
    }
    at += 12 + length;
  }
  if (depth != 8 || (colour != 2 && colour != 6) || interlace != 0) return false;
  const int channels = colour == 6 ? 4 : 3;
  const size_t stride = static_cast<size_t>(width) * static_cast<size_t>(channels);
  std::vector<uint8_t> raw((stride + 1) * static_cast<size_t>(height));
  uLongf raw_size = raw.size();
  if (uncompress(raw.data(), &raw_size, reinterpret_cast<const Bytef*>(idat.data()), idat.size()) !=
          Z_OK ||
      raw_size != raw.size()) {
    return false;
  }
  std::vector<uint8_t> image(stride * static_cast<size_t>(height));
  for (int y = 0; y < height; ++y) {
    const uint8_t filter = raw[static_cast<size_t>(y) * (stride + 1)];
    const uint8_t* in = &raw[static_cast<size_t>(y) * (stride + 1) + 1];
    uint8_t* out = &image[static_cast<size_t>(y) * stride];
    const uint8_t* up = y > 0 ? out - stride : nullptr;
    for (size_t x = 0; x < stride; ++x) {
      const int a = x >= static_cast<size_t>(channels) ? out[x - channels] : 0;
      const int b = up ? up[x] : 0;
      const int c = up && x >= static_cast<size_t>(channels) ? up[x - channels] : 0;
      int predictor = 0;
      switch (filter) {
        case 0:
          predictor = 0;
          break;
        case 1:
          predictor = a;
          break;
        case 2:
          predictor = b;
          break;
        case 3:
          predictor = (a + b) / 2;
          break;
        case 4: {
          const int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
          predictor = pa <= pb && pa <= pc ? a : (pb <= pc ? b : c);
          break;
        }
        default:
          return false;
      }
      out[x] = static_cast<uint8_t>(in[x] + predictor);
    }
  }
  pixels.resize(static_cast<size_t>(width) * static_cast<size_t>(height));
  for (size_t p = 0; p < pixels.size(); ++p) {
    const uint8_t* px = &image[p * static_cast<size_t>(channels)];
    pixels[p] = (uint32_t{px[0]} << 24) | (uint32_t{px[1]} << 16) | (uint32_t{px[2]} << 8) |
                (channels == 4 ? px[3] : 255u);
  }
  return true;
}

}  // namespace kvq::test
