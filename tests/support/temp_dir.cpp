#include "temp_dir.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace courtyard::test {

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "courtyard-test-XXXXXX").string();
  if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ec;
  if (!std::getenv("COURTYARD_KEEP_TEST_DIRS")) std::filesystem::remove_all(path_, ec);
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

}  // namespace courtyard::test
