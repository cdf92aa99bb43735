#include "kvq/common/csv.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>

#include <fmt/format.h>

#include "kvq/common/error.h"
#include "kvq/common/io.h"

namespace kvq {

std::string CsvField(std::string_view text) {
  if (text.find_first_of(",\"\n\r") == std::string_view::npos) return std::string(text);
  std::string quoted = "\"";
  for (char c : text) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  return quoted + "\"";
}

std::string CsvNumber(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  return fmt::format("{:.9g}", v);
}

CsvTable ParseCsv(std::string_view text, const std::string& where) {
  CsvTable table;
  table.where = where;
  std::vector<std::string> record;
  std::string field;
  size_t line = 1, record_line = 1;
  bool in_quotes = false, any = false;
  auto end_record = [&] {
    record.push_back(std::move(field));
    field.clear();
    if (table.header.empty()) {
      table.header = std::move(record);
    } else if (record.size() != table.header.size()) {
      ThrowInput("{}: line {} has {} fields, the header has {}", where, record_line, record.size(),
                 table.header.size());
    } else {
      table.rows.push_back(std::move(record));
    }
    record.clear();
    any = false;
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_quotes) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        in_quotes = false;
      } else {
        if (c == '\n') ++line;
        field += c;
      }
      continue;
    }
    if (!any) record_line = line;
    any = true;
    if (c == '"') {
      in_quotes = true;
    } else if (c == ',') {
      record.push_back(std::move(field));
      field.clear();
    } else if (c == '\n') {
      end_record();
      ++line;
    } else if (c != '\r') {
      field += c;
    }
  }
  if (in_quotes) ThrowInput("{}: line {}: unterminated quoted field", where, record_line);
  if (any) end_record();
  if (table.header.empty()) ThrowInput("{}: empty CSV (no header row)", where);
  return table;
}

CsvTable ReadCsv(const std::filesystem::path& path) {
  return ParseCsv(ReadTextFile(path), path.string());
}

size_t CsvTable::Column(std::string_view name) const {
  for (size_t i = 0; i < header.size(); ++i) {
    if (header[i] == name) return i;
  }
  ThrowInput("{}: no column '{}' in the header", where, name);
}

const std::string& CsvTable::Text(size_t row, std::string_view name) const {
  KVQ_CHECK(row < rows.size());
  return rows[row][Column(name)];
}

double CsvTable::Number(size_t row, std::string_view name) const {
  const std::string& s = Text(row, name);
  if (s == "inf") return INFINITY;
  if (s == "-inf") return -INFINITY;
  if (s == "nan") return NAN;
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size() || errno == ERANGE) {
    ThrowInput("{}: data row {}, column '{}': '{}' is not a number", where, row + 1, name, s);
  }
  return v;
}

int CsvTable::Int(size_t row, std::string_view name) const {
  const double v = Number(row, name);
  if (v != std::floor(v) || std::abs(v) > 1e9) {
    ThrowInput("{}: data row {}, column '{}': '{}' is not an integer", where, row + 1, name,
               Text(row, name));
  }
  return static_cast<int>(v);
}

}  // namespace kvq
