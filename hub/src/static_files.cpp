#include "static_files.h"

#include <filesystem>
#include <fstream>

namespace courtyard::hub {
namespace {

std::string content_type_of(const std::filesystem::path& file) {
  static const std::map<std::string, std::string, std::less<>> kTypes = {
      {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"}, {".css", "text/css; charset=utf-8"},
      {".svg", "image/svg+xml"}, {".png", "image/png"}, {".ico", "image/x-icon"},
      {".json", "application/json"}, {".txt", "text/plain; charset=utf-8"}};
  auto it = kTypes.find(file.extension().string());
  return it == kTypes.end() ? "application/octet-stream" : it->second;
}

}  // namespace

std::expected<StaticFiles, std::string> StaticFiles::load(const std::string& root) {
  StaticFiles out;
  if (root.empty()) return out;
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::recursive_directory_iterator it(root, fs::directory_options::none, ec), end;
  if (ec) return std::unexpected("web root " + root + ": " + ec.message());
  for (; it != end; it.increment(ec)) {
    if (ec) return std::unexpected("web root " + root + ": " + ec.message());
    const fs::path& file = it->path();
    const std::string name = file.filename().string();
    if (name.starts_with(".") || name == "node_modules") {  // editors' and tools' files are not the dashboard
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    // symlink_status: a link is never followed, whatever it points at.
    if (!fs::is_regular_file(it->symlink_status(ec))) continue;
    if (out.files_.size() == kMaxFiles) return std::unexpected("web root " + root + " holds more than 256 files");
    const auto bytes = fs::file_size(file, ec);
    if (ec || bytes > kMaxFileBytes) return std::unexpected("web root file " + file.string() + " is larger than 4 MiB");
    std::ifstream in(file, std::ios::binary);
    std::string body((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) return std::unexpected("cannot read " + file.string());
    out.files_["/" + fs::relative(file, root, ec).generic_string()] = {content_type_of(file), std::move(body)};
  }
  return out;
}

const StaticFiles::File* StaticFiles::find(std::string_view path) const {
  if (path == "/") path = "/index.html";
  auto it = files_.find(path);
  return it == files_.end() ? nullptr : &it->second;
}

}  // namespace courtyard::hub
