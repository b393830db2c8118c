// post_json (notifier.h): a blocking HTTP/1.1 POST with Boost.Beast, kept in a file of its own
// (Beast is slow to compile).
#include <algorithm>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "notifier.h"

namespace courtyard::hub {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = boost::asio::ip::tcp;

std::expected<int, std::string> post_json(const std::string& url, const std::string& body, const std::vector<Header>& headers,
                                          std::chrono::milliseconds timeout) {
  constexpr std::string_view kScheme = "http://";
  if (!url.starts_with(kScheme)) return std::unexpected(std::string("not an http:// URL"));
  const std::string rest = url.substr(kScheme.size());
  const auto slash = rest.find('/');
  const std::string authority = rest.substr(0, slash), target = slash == std::string::npos ? "/" : rest.substr(slash);
  const auto colon = authority.rfind(':');
  const std::string host = colon == std::string::npos ? authority : authority.substr(0, colon);
  const std::string port = colon == std::string::npos ? "80" : authority.substr(colon + 1);
  for (const auto& [name, value] : headers) {  // never a header of our own making split in two
    if (std::any_of(value.begin(), value.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; })) {
      return std::unexpected("header " + name + " holds a control character");
    }
  }
  // Asynchronous operations under one deadline: Beast's timeouts do not apply to blocking calls,
  // and a gateway that accepts and never answers must not stall the sender.
  boost::asio::io_context io;
  tcp::resolver resolver(io);
  beast::tcp_stream stream(io);
  http::request<http::string_body> request{http::verb::post, target, 11};
  request.set(http::field::host, authority);
  request.set(http::field::content_type, "application/json");
  request.set(http::field::user_agent, "courtyard-notifier");
  for (const auto& [name, value] : headers) request.set(name, value);
  request.body() = body;
  request.prepare_payload();
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024);  // the answer is read, never kept: a gateway's reply is short
  std::expected<int, std::string> result = std::unexpected(std::string("no answer within the timeout"));
  // Done either way: stop at once (the stream's deadline timer would otherwise keep the loop
  // running until it fires).
  auto fail = [&](const beast::error_code& ec, const char* what) {
    result = std::unexpected(std::string(what) + ": " + ec.message());
    io.stop();
  };
  stream.expires_after(timeout);
  resolver.async_resolve(host, port, [&](beast::error_code ec, tcp::resolver::results_type endpoints) {
    if (ec) return fail(ec, "resolve");
    stream.async_connect(endpoints, [&](beast::error_code ec, const tcp::endpoint&) {
      if (ec) return fail(ec, "connect");
      http::async_write(stream, request, [&](beast::error_code ec, std::size_t) {
        if (ec) return fail(ec, "write");
        http::async_read(stream, buffer, parser, [&](beast::error_code ec, std::size_t) {
          if (ec) return fail(ec, "read");
          result = static_cast<int>(parser.get().result_int());
          beast::error_code ignored;
          stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
          io.stop();
        });
      });
    });
  });
  io.run_for(timeout + std::chrono::milliseconds(100));  // the resolver is not under the stream's deadline
  return result;
}

}  // namespace courtyard::hub
