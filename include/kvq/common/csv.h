#pragma once
// CSV as kvq writes and reads it (RFC 4180): comma separated, a header row,
// fields holding a comma, quote or newline enclosed in double quotes with
// quotes doubled. Strategy names such as "k=int8:channel,v=int8:token" are
// quoted this way.
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace kvq {

// The field as written: quoted only when it needs to be.
std::string CsvField(std::string_view text);

// A number as kvq writes it in CSV: %.9g, "inf" / "-inf", "nan".
std::string CsvNumber(double v);

struct CsvTable {
  std::string where;  // File name (or description) for messages.
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;  // Every row has header.size() fields.

  // Index of a header column; throws InputError naming `where` and the column.
  size_t Column(std::string_view name) const;
  // Row `row`'s field in column `name`, as text or as a number ("inf",
  // "-inf", "nan" accepted); throws InputError naming file, row and column
  // for anything else.
  const std::string& Text(size_t row, std::string_view name) const;
  double Number(size_t row, std::string_view name) const;
  int Int(size_t row, std::string_view name) const;
};

// Parses CSV text with a header row. Throws InputError naming `where` and the
// line for a row of the wrong width or an unterminated quote.
CsvTable ParseCsv(std::string_view text, const std::string& where);
CsvTable ReadCsv(const std::filesystem::path& path);

}  // namespace kvq
