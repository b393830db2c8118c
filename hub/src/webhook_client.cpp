// post_json (notifier.h): a blocking HTTP/1.1 POST with Boost.Beast, kept in a file of its own
// (Beast is slow to compile).
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
  try {
    boost::asio::io_context io;
    tcp::resolver resolver(io);
    beast::tcp_stream stream(io);
    stream.expires_after(timeout);
    stream.connect(resolver.resolve(host, port));
    http::request<http::string_body> request{http::verb::post, target, 11};
    request.set(http::field::host, authority);
    request.set(http::field::content_type, "application/json");
    request.set(http::field::user_agent, "courtyard-notifier");
    for (const auto& [name, value] : headers) request.set(name, value);
    request.body() = body;
    request.prepare_payload();
    http::write(stream, request);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 * 1024);  // the answer is read, never kept: a gateway's reply is short
    http::read(stream, buffer, parser);
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    return static_cast<int>(parser.get().result_int());
  } catch (const std::exception& e) {
    return std::unexpected(std::string(e.what()));
  }
}

}  // namespace courtyard::hub
