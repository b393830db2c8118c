#pragma once
// The dashboard's files, read once at start into memory: the only files the hub ever serves.
// A request path is looked up in this allow-list as a string; it is never joined to a file
// system path, so no spelling of a path ("//etc/hostname", "/%2Fetc%2Fhostname", "/../var")
// reaches anything outside the web root. Regular files only (no symlinks, no dot files), each at
// most kMaxFileBytes. Immutable after load(): thread-safe.
#include <cstddef>
#include <expected>
#include <map>
#include <string>
#include <string_view>

namespace courtyard::hub {

class StaticFiles {
 public:
  struct File {
    std::string content_type;
    std::string body;
  };
  static constexpr std::size_t kMaxFileBytes = 4 << 20;
  static constexpr std::size_t kMaxFiles = 256;

  // Reads every regular file under `root` ("" : no files). Errors when the root is unreadable or
  // holds more or larger files than the limits (a web root pointed at the wrong folder).
  static std::expected<StaticFiles, std::string> load(const std::string& root);

  // The file served at `path` ("/" is "/index.html"); nullptr when there is none.
  const File* find(std::string_view path) const;
  std::size_t size() const { return files_.size(); }

 private:
  std::map<std::string, File, std::less<>> files_;  // by request path: "/app.js"
};

}  // namespace courtyard::hub
