// A non-Python reader of Pulse's topics: the Apache Pulsar Java client with Schema.AUTO_CONSUME(), which fetches
// the schema registered on the topic and decodes each message into a GenericRecord - no Pulse code involved.
//
// Run with Java 17's single-file launcher on the broker's own classpath (it holds pulsar-client-original):
//   java -cp "<pulsar lib>/*" SchemaReader.java <service url> <topic> <subscription> <count>
// Prints one line per record: the schema type it was decoded with, Pulse's "type" message property, then every field as name=value:JavaType, tab-separated,
// so a test can check each field's value and decoded type. Exit code 0 after <count> records, 3 on a timeout.
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import org.apache.pulsar.client.api.Consumer;
import org.apache.pulsar.client.api.Message;
import org.apache.pulsar.client.api.PulsarClient;
import org.apache.pulsar.client.api.Schema;
import org.apache.pulsar.client.api.SubscriptionInitialPosition;
import org.apache.pulsar.client.api.schema.Field;
import org.apache.pulsar.client.api.schema.GenericRecord;

public class SchemaReader {
    public static void main(String[] args) throws Exception {
        String url = args[0], topic = args[1], subscription = args[2];
        int count = Integer.parseInt(args[3]);
        try (PulsarClient client = PulsarClient.builder().serviceUrl(url).build();
             Consumer<GenericRecord> consumer = client.newConsumer(Schema.AUTO_CONSUME())
                 .topic(topic)
                 .subscriptionName(subscription)
                 .subscriptionInitialPosition(SubscriptionInitialPosition.Earliest)
                 .subscribe()) {
            for (int i = 0; i < count; i++) {
                Message<GenericRecord> msg = consumer.receive(30, TimeUnit.SECONDS);
                if (msg == null) {
                    System.err.println("timed out waiting for message " + (i + 1) + " of " + count);
                    System.exit(3);
                }
                GenericRecord record = msg.getValue();
                Map<String, String> fields = new TreeMap<>();
                for (Field f : record.getFields()) {
                    Object v = record.getField(f);
                    fields.put(f.getName(), v == null ? "null:null" : v + ":" + v.getClass().getSimpleName());
                }
                StringBuilder line = new StringBuilder("schema=" + record.getSchemaType());
                line.append("\tproperty.type=").append(msg.getProperty("type"));
                fields.forEach((k, v) -> line.append('\t').append(k).append('=').append(v));
                System.out.println(line);
                consumer.acknowledge(msg);
            }
        }
    }
}
