#pragma once
// A small HTTP/1.1 server (Boost.Beast, one io_context on one thread) that hands every request to
// a handler. Kept behind this header so only one translation unit compiles Beast.
#include <functional>
#include <memory>
#include <stop_token>
#include <string>

#include "hub/api.h"

namespace courtyard::hub {

class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;
  // Binds host:port (port 0: any free port). Throws when the address cannot be bound.
  HttpServer(const std::string& host, int port, Handler handler);
  ~HttpServer();
  int port() const;
  // Serves until the stop token fires.
  void run(std::stop_token stop);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace courtyard::hub
