// Code quoted in the docs is the code that compiles: every fenced block in a doc that follows a
// marker line `<!-- quote: PATH -->` must appear verbatim in the file PATH (relative to the
// repository). docs/plugin-authoring.md quotes examples/flow-plugin this way.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "support/test_support.hpp"

namespace {
namespace fs = std::filesystem;

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

struct Quote {
  std::string file;  // as written in the marker
  int line = 0;      // of the marker in the doc
  std::string code;  // the block's lines, each ending in '\n'
};

// The quotes of `doc`; a marker not followed by a fenced block is reported as a failure.
std::vector<Quote> quotes_of(const fs::path& doc) {
  std::vector<Quote> out;
  std::istringstream in(read(doc));
  std::string line;
  int n = 0;
  const std::string open = "<!-- quote: ", close = " -->";
  while (std::getline(in, line)) {
    ++n;
    if (line.rfind(open, 0) != 0) continue;
    EXPECT_TRUE(line.size() > open.size() + close.size() &&
                line.compare(line.size() - close.size(), close.size(), close) == 0)
        << doc << ":" << n << ": malformed marker";
    Quote q{line.substr(open.size(), line.size() - open.size() - close.size()), n, ""};
    std::string fence;
    EXPECT_TRUE(std::getline(in, fence) && fence.rfind("```", 0) == 0)
        << doc << ":" << n << ": the marker must be followed by a ``` block";
    ++n;
    bool closed = false;
    while (std::getline(in, line)) {
      ++n;
      if (line == "```") {
        closed = true;
        break;
      }
      q.code += line + "\n";
    }
    EXPECT_TRUE(closed) << doc << ":" << q.line << ": the quoted block is not closed";
    out.push_back(q);
  }
  return out;
}

TEST(DocQuotes, PluginAuthoringQuotesTheExampleVerbatim) {
  const fs::path root = KILN_SOURCE_DIR;
  const std::vector<Quote> quotes = quotes_of(root / "docs" / "plugin-authoring.md");
  // The guide walks through the whole example; a handful of quotes at least.
  EXPECT_GE(quotes.size(), 8u);
  for (const Quote& q : quotes) {
    const fs::path file = root / q.file;
    ASSERT_TRUE(fs::exists(file)) << "docs/plugin-authoring.md:" << q.line << ": no file "
                                  << q.file;
    EXPECT_FALSE(q.code.empty()) << "docs/plugin-authoring.md:" << q.line << ": empty quote";
    EXPECT_NE(read(file).find(q.code), std::string::npos)
        << "docs/plugin-authoring.md:" << q.line << ": this block is not (any more) in " << q.file
        << "; copy it again from the file:\n"
        << q.code;
  }
}

TEST(DocQuotes, AChangedQuoteIsCaught) {
  // The check itself: a doc quoting something the file does not hold fails.
  const kiln::test::TempDir tmp;
  const fs::path& dir = tmp.path();
  std::ofstream(dir / "src.cpp") << "int main() {\n  return 0;\n}\n";
  std::ofstream(dir / "doc.md") << "text\n<!-- quote: src.cpp -->\n```cpp\n  return 1;\n```\n";
  const std::vector<Quote> q = quotes_of(dir / "doc.md");
  ASSERT_EQ(q.size(), 1u);
  EXPECT_EQ(q[0].file, "src.cpp");
  EXPECT_EQ(q[0].code, "  return 1;\n");
  EXPECT_EQ(read(dir / "src.cpp").find(q[0].code), std::string::npos);
  EXPECT_NE(read(dir / "src.cpp").find("  return 0;\n"), std::string::npos);
}

}  // namespace
