#include "ingest/admit.h"

namespace courtyard::ingest {

using schemas::Rejection;

std::expected<schemas::Event, Rejection> admit(std::string_view topic, std::string_view payload,
                                               const RegistryLookup& lookup, const schemas::Limits& limits) {
  auto where = schemas::parse_topic(topic);
  if (!where) return std::unexpected(where.error());
  if (where->channel != "telemetry" && where->channel != "snapshot") {
    return std::unexpected(Rejection{Rejection::Code::WrongTopic,
                                     "topic " + std::string(topic) +
                                         ": devices publish events on .../telemetry (camera images on .../snapshot)"});
  }
  // The size limit comes first so an oversized payload is never parsed.
  auto event = schemas::decode_device_payload(*where, payload, limits);
  if (!event && event.error().code == Rejection::Code::TooLarge) return event;
  auto registration = lookup(where->device);
  if (!registration) {
    return std::unexpected(Rejection{Rejection::Code::UnknownDevice,
                                     "device \"" + where->device.str() + "\" is not registered"});
  }
  if (registration->community != where->community) {
    return std::unexpected(Rejection{Rejection::Code::WrongTopic,
                                     "device \"" + where->device.str() + "\" belongs to community \"" +
                                         registration->community.str() + "\", not \"" +
                                         where->community.str() + "\""});
  }
  if (!event) return event;
  if (!schemas::allowed_for(registration->kind, event->body)) {
    return std::unexpected(Rejection{Rejection::Code::TypeNotAllowed,
                                     std::string(schemas::to_string(registration->kind)) + " devices may not send " +
                                         std::string(schemas::type_name(event->body))});
  }
  return event;
}

}  // namespace courtyard::ingest
