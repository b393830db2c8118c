#pragma once
// Courtyard's topics and who may do what with them, in one table: the broker's set-up
// (`courtyard kafka setup`, run by scripts/services), the tests that make topics of their own and
// docs/security.md all follow it. Principals are the SASL users of the processes' roles:
//   ingest   appends to the events, dead-letter and snapshots topics in transactions (its
//            transactional ids: scripts/services grants them, see docs/operations.md); reads
//            registry, requests, commands; reads and writes its delivery marks (progress)
//   hub      appends to requests, alerts, commands, audit and the registry; reads events, dead letters,
//            snapshots (vision) and its own audit trail
//   auditor  reads events, dead letters, alerts and the audit trail; writes nothing
//   admin    the broker's super user: the set-up, and people administering the broker
// Anything not granted is refused by the broker (StandardAuthorizer, no ACL: no access).
#include <chrono>
#include <expected>
#include <string>
#include <vector>

#include "common/kafka.h"

namespace courtyard {

enum class TopicKind { Events, DeadLetter, Registry, Requests, Commands, Alerts, Audit, Snapshots, Progress, State };

struct KafkaPrincipals {
  std::string ingest = "ingest";
  std::string hub = "hub";
  std::string auditor = "auditor";
};

struct TopicPlan {
  std::string name;
  TopicKind kind = TopicKind::Events;
  int partitions = 1;
  KafkaProperties configs;
};

// Every topic of a deployment, named as `names` configures them.
std::vector<TopicPlan> courtyard_topics(const KafkaConfig& names);

// The consumer groups each role may use (READ on the group: join it, commit its offsets). Named,
// never a wildcard: a role that could join another's group could take its partitions away.
struct ConsumerGroups {
  std::vector<std::string> ingest, hub, auditor;
};
std::expected<void, std::string> grant_groups(const KafkaConfig& admin, const ConsumerGroups& groups,
                                              const KafkaPrincipals& principals = {});

// Creates the topic if it does not exist and grants each principal what its kind allows.
// Idempotent. `admin` must carry a super user's credentials.
std::expected<void, std::string> create_topic_with_access(const KafkaConfig& admin, const TopicPlan& plan,
                                                          const KafkaPrincipals& principals = {},
                                                          std::chrono::milliseconds timeout = std::chrono::seconds(30));

// Waits until the broker answers (at most `wait`), then every topic of courtyard_topics() and the
// principals' consumer groups. Idempotent.
std::expected<void, std::string> set_up_kafka(const KafkaConfig& admin, const KafkaPrincipals& principals,
                                              const ConsumerGroups& groups, std::chrono::milliseconds wait);

}  // namespace courtyard
