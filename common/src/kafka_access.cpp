#include "common/kafka_access.h"

#include <thread>

#include "common/handles.h"

namespace courtyard {
namespace {


struct Grant {
  const std::string* principal;
  rd_kafka_AclOperation_t operation;
};

// What each kind of topic allows whom: the table docs/security.md shows.
std::vector<Grant> grants_for(TopicKind kind, const KafkaPrincipals& p) {
  constexpr auto kRead = RD_KAFKA_ACL_OPERATION_READ, kWrite = RD_KAFKA_ACL_OPERATION_WRITE;
  switch (kind) {
    case TopicKind::Events:
    case TopicKind::DeadLetter: return {{&p.ingest, kWrite}, {&p.hub, kRead}, {&p.auditor, kRead}};
    case TopicKind::Registry:
    case TopicKind::Requests:
    case TopicKind::Commands: return {{&p.hub, kWrite}, {&p.ingest, kRead}};
    case TopicKind::Alerts: return {{&p.hub, kWrite}, {&p.auditor, kRead}};
    case TopicKind::Audit: return {{&p.hub, kWrite}, {&p.hub, kRead}, {&p.auditor, kRead}};
    case TopicKind::Progress: return {{&p.ingest, kWrite}, {&p.ingest, kRead}};
    case TopicKind::State: return {{&p.hub, kWrite}, {&p.hub, kRead}};
    case TopicKind::Snapshots:
      // Ingest sets the images' retention at every start (it creates the topic if need be).
      return {{&p.ingest, kWrite},
              {&p.ingest, RD_KAFKA_ACL_OPERATION_CREATE},
              {&p.ingest, RD_KAFKA_ACL_OPERATION_DESCRIBE_CONFIGS},
              {&p.ingest, RD_KAFKA_ACL_OPERATION_ALTER_CONFIGS},
              {&p.hub, kRead}};
  }
  return {};
}

std::expected<void, std::string> create_acls(const KafkaConfig& admin, rd_kafka_ResourceType_t type,
                                             const std::string& name, const std::vector<Grant>& grants,
                                             std::chrono::milliseconds timeout) {
  std::vector<AclBindingPtr> owned;
  std::vector<rd_kafka_AclBinding_t*> bindings;
  char error[512] = {0};
  for (const auto& g : grants) {
    owned.emplace_back(rd_kafka_AclBinding_new(type, name.c_str(), RD_KAFKA_RESOURCE_PATTERN_LITERAL,
                                               ("User:" + *g.principal).c_str(), "*", g.operation,
                                               RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW, error, sizeof error));
    if (!owned.back()) return std::unexpected("ACL for " + name + ": " + error);
    bindings.push_back(owned.back().get());
  }
  auto client = make_producer(admin, {});
  if (!client) return std::unexpected(client.error());
  AdminQueuePtr queue(rd_kafka_queue_new(client->get()));
  rd_kafka_CreateAcls(client->get(), bindings.data(), bindings.size(), nullptr, queue.get());
  AdminEventPtr event(rd_kafka_queue_poll(queue.get(), static_cast<int>(timeout.count())));
  if (!event) return std::unexpected("ACLs of " + name + ": the broker did not answer in time");
  if (rd_kafka_event_error(event.get())) {
    return std::unexpected("ACLs of " + name + ": " + rd_kafka_event_error_string(event.get()));
  }
  std::size_t count = 0;
  const auto** results = rd_kafka_CreateAcls_result_acls(rd_kafka_event_CreateAcls_result(event.get()), &count);
  for (std::size_t i = 0; i < count; ++i) {
    if (const rd_kafka_error_t* e = rd_kafka_acl_result_error(results[i])) {
      return std::unexpected("ACLs of " + name + ": " + rd_kafka_error_string(e));
    }
  }
  return {};
}

}  // namespace

std::vector<TopicPlan> courtyard_topics(const KafkaConfig& n) {
  const KafkaProperties kept_forever{{"cleanup.policy", "delete"}, {"retention.ms", "-1"}};
  const KafkaProperties compacted{{"cleanup.policy", "compact"}};
  // Removals are kept a week (processors/changelog.h: a hub away longer restores its store whole).
  const KafkaProperties changelog{{"cleanup.policy", "compact"}, {"segment.ms", "30000"},
                                  {"min.cleanable.dirty.ratio", "0.1"}, {"delete.retention.ms", "604800000"}};
  constexpr int kEventPartitions = 12, kDeadLetterPartitions = 3;
  return {{n.events_topic, TopicKind::Events, kEventPartitions, kept_forever},
          {n.deadletter_topic, TopicKind::DeadLetter, kDeadLetterPartitions, kept_forever},
          // The hubs' changelogs (decision 0024): a partition for each of their source's. What a
          // new hub restores is the latest record of each key: segments roll every 30 s and
          // the cleaner runs once a tenth is stale, so it stays near the state's size (a batch
          // writes about 3 records of ~350 bytes per event it folds: uncompacted, the changelog
          // is several times the events log).
          {n.state_topic, TopicKind::State, kEventPartitions, changelog},
          {n.state_deadletter_topic, TopicKind::State, kDeadLetterPartitions, changelog},
          {n.alerts_topic, TopicKind::Alerts, 3, {}},
          {n.commands_topic, TopicKind::Commands, 3, {}},
          {n.requests_topic, TopicKind::Requests, 3, {}},
          {n.audit_topic, TopicKind::Audit, 1, compacted},
          {n.registry_topic, TopicKind::Registry, 1, compacted},
          // One mark per ingest instance survives compaction; segments roll every 10 minutes so
          // the cleaner keeps what ingest reads at start small.
          {n.progress_topic, TopicKind::Progress, 1,
           {{"cleanup.policy", "compact"}, {"segment.ms", "600000"}, {"min.cleanable.dirty.ratio", "0.1"}}},
          // Camera images: ingest sets their retention from vision.raw_retention_minutes at start.
          {n.snapshots_topic, TopicKind::Snapshots, 3, {{"cleanup.policy", "delete"}}}};
}

std::expected<void, std::string> create_topic_with_access(const KafkaConfig& admin, const TopicPlan& plan,
                                                          const KafkaPrincipals& principals,
                                                          std::chrono::milliseconds timeout) {
  char error[256] = {0};
  std::unique_ptr<rd_kafka_NewTopic_t, CDeleter<rd_kafka_NewTopic_destroy>> fresh(
      rd_kafka_NewTopic_new(plan.name.c_str(), plan.partitions, -1, error, sizeof error));
  if (!fresh) return std::unexpected("topic " + plan.name + ": " + error);
  for (const auto& [k, v] : plan.configs) rd_kafka_NewTopic_set_config(fresh.get(), k.c_str(), v.c_str());
  auto client = make_producer(admin, {});
  if (!client) return std::unexpected(client.error());
  AdminQueuePtr queue(rd_kafka_queue_new(client->get()));
  rd_kafka_NewTopic_t* list[] = {fresh.get()};
  rd_kafka_CreateTopics(client->get(), list, 1, nullptr, queue.get());
  AdminEventPtr event(rd_kafka_queue_poll(queue.get(), static_cast<int>(timeout.count())));
  if (!event) return std::unexpected("create topic " + plan.name + ": the broker did not answer in time");
  if (rd_kafka_event_error(event.get())) {
    return std::unexpected("create topic " + plan.name + ": " + rd_kafka_event_error_string(event.get()));
  }
  std::size_t count = 0;
  const auto** results = rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(event.get()), &count);
  const auto err = count == 1 ? rd_kafka_topic_result_error(results[0]) : RD_KAFKA_RESP_ERR__FAIL;
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
    return std::unexpected("create topic " + plan.name + ": " +
                           (count == 1 ? rd_kafka_topic_result_error_string(results[0]) : "no result"));
  }
  if (admin.sasl_mechanism.empty()) return {};  // a broker without authentication has no ACLs to set
  return create_acls(admin, RD_KAFKA_RESOURCE_TOPIC, plan.name, grants_for(plan.kind, principals), timeout);
}

// Removes every grant on the wildcard group "*" (earlier set-ups made them).
std::expected<void, std::string> revoke_wildcard_groups(const KafkaConfig& admin) {
  char error[512] = {0};
  std::unique_ptr<rd_kafka_AclBindingFilter_t, CDeleter<rd_kafka_AclBinding_destroy>> filter(rd_kafka_AclBindingFilter_new(
      RD_KAFKA_RESOURCE_GROUP, "*", RD_KAFKA_RESOURCE_PATTERN_LITERAL, nullptr, nullptr, RD_KAFKA_ACL_OPERATION_ANY,
      RD_KAFKA_ACL_PERMISSION_TYPE_ANY, error, sizeof error));
  if (!filter) return std::unexpected(std::string("ACL filter: ") + error);
  auto client = make_producer(admin, {});
  if (!client) return std::unexpected(client.error());
  AdminQueuePtr queue(rd_kafka_queue_new(client->get()));
  rd_kafka_AclBindingFilter_t* filters[] = {filter.get()};
  rd_kafka_DeleteAcls(client->get(), filters, 1, nullptr, queue.get());
  AdminEventPtr event(rd_kafka_queue_poll(queue.get(), 30000));
  if (!event) return std::unexpected(std::string("deleting the wildcard group grants: the broker did not answer in time"));
  if (rd_kafka_event_error(event.get())) {
    return std::unexpected(std::string("deleting the wildcard group grants: ") + rd_kafka_event_error_string(event.get()));
  }
  return {};
}

std::expected<void, std::string> grant_groups(const KafkaConfig& admin, const ConsumerGroups& groups,
                                              const KafkaPrincipals& principals) {
  if (admin.sasl_mechanism.empty()) return {};
  for (const auto& [names, principal] : {std::pair{&groups.ingest, &principals.ingest},
                                         std::pair{&groups.hub, &principals.hub},
                                         std::pair{&groups.auditor, &principals.auditor}}) {
    for (const auto& name : *names) {
      if (name.empty() || name == "*") return std::unexpected(std::string("a consumer group is granted by its name, never \"*\""));
      auto ok = create_acls(admin, RD_KAFKA_RESOURCE_GROUP, name, {{principal, RD_KAFKA_ACL_OPERATION_READ}},
                            std::chrono::seconds(30));
      if (!ok) return ok;
    }
  }
  return {};
}

std::expected<void, std::string> set_up_kafka(const KafkaConfig& admin, const KafkaPrincipals& principals,
                                              const ConsumerGroups& groups, std::chrono::milliseconds wait) {
  auto client = make_producer(admin, {});
  if (!client) return std::unexpected(client.error());
  const auto deadline = std::chrono::steady_clock::now() + wait;
  for (;;) {
    const rd_kafka_metadata_t* md = nullptr;
    auto err = rd_kafka_metadata(client->get(), 0, nullptr, &md, 2000);
    if (!err) {
      rd_kafka_metadata_destroy(md);
      break;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return std::unexpected(std::string("the broker did not answer: ") + rd_kafka_err2str(err));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  for (const auto& plan : courtyard_topics(admin)) {
    if (auto ok = create_topic_with_access(admin, plan, principals); !ok) return ok;
  }
  if (admin.sasl_mechanism.empty()) return {};
  if (auto ok = revoke_wildcard_groups(admin); !ok) return ok;
  return grant_groups(admin, groups, principals);
}

}  // namespace courtyard
