// Waits until the broker answers, then creates Courtyard's topics if they do not exist.
// Run as a single-file program: java -cp '.deps/kafka/libs/*' CreateTopics.java <bootstrap> <timeout-s>
import java.util.*;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.common.errors.TopicExistsException;

public class CreateTopics {
  public static void main(String[] args) throws Exception {
    String bootstrap = args[0];
    long deadline = System.currentTimeMillis() + Long.parseLong(args[1]) * 1000;
    Properties props = new Properties();
    props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "5000");
    props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "10000");
    try (Admin admin = Admin.create(props)) {
      while (true) {
        try {
          admin.describeCluster().nodes().get();
          break;
        } catch (ExecutionException e) {
          if (System.currentTimeMillis() > deadline) throw e;
          Thread.sleep(200);
        }
      }
      Map<String, String> compacted = Map.of("cleanup.policy", "compact");
      Map<String, String> log = Map.of("cleanup.policy", "delete", "retention.ms", "-1");
      List<NewTopic> topics = List.of(
          new NewTopic("courtyard.events.v1", 12, (short) 1).configs(log),
          new NewTopic("courtyard.deadletter.v1", 3, (short) 1).configs(log),
          new NewTopic("courtyard.alerts.v1", 3, (short) 1),
          new NewTopic("courtyard.commands.v1", 3, (short) 1),
          new NewTopic("courtyard.requests.v1", 3, (short) 1),
          new NewTopic("courtyard.audit.v1", 1, (short) 1).configs(compacted),
          new NewTopic("courtyard.registry.v1", 1, (short) 1).configs(compacted),
          // Camera images: ingest sets the retention from vision.snapshot_retention_minutes at start.
          new NewTopic("courtyard.snapshots.v1", 3, (short) 1).configs(Map.of("cleanup.policy", "delete")));
      Set<String> existing = admin.listTopics().names().get();
      List<NewTopic> missing = new ArrayList<>();
      for (NewTopic t : topics) if (!existing.contains(t.name())) missing.add(t);
      for (var entry : admin.createTopics(missing).values().entrySet()) {
        try {
          entry.getValue().get();
          System.out.println("created " + entry.getKey());
        } catch (ExecutionException e) {
          if (!(e.getCause() instanceof TopicExistsException)) throw e;
        }
      }
    }
  }
}
