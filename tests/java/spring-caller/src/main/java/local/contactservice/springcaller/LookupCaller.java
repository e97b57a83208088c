package local.contactservice.springcaller;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.kafka.core.DefaultKafkaConsumerFactory;
import org.springframework.kafka.core.DefaultKafkaProducerFactory;
import org.springframework.kafka.listener.ContainerProperties;
import org.springframework.kafka.listener.KafkaMessageListenerContainer;
import org.springframework.kafka.requestreply.KafkaReplyTimeoutException;
import org.springframework.kafka.requestreply.ReplyingKafkaTemplate;
import org.springframework.kafka.requestreply.RequestReplyFuture;
import org.springframework.kafka.support.KafkaHeaders;
import org.springframework.kafka.support.TopicPartitionOffset;

/**
 * Asks the contact service "who is calling?" through Spring Kafka's {@link ReplyingKafkaTemplate}.
 *
 * <pre>
 * java -jar spring-caller.jar BOOTSTRAP REQUEST_TOPIC REPLY_TOPIC CUSTOMER_ID PHONE [PHONE...]
 * </pre>
 *
 * <p>For each phone (one after the other) it sends {@code {"type":"lookup_contact",...}} with
 * {@code sendAndReceive} and prints {@code <phone>\t<reply body>} on stdout; logs go to stderr.
 * The correlation id is Spring's default (a random 16-byte binary UUID) and the reply is matched to
 * its request by Spring alone.
 *
 * <p>The reply topic must exist. Its partitions are assigned explicitly (no group join, so the
 * container consumes at once), each starting at its current end offset: a reply can never be
 * produced before the position it will be read from. With one partition Spring adds
 * {@code kafka_replyTopic} and {@code kafka_replyPartition} itself; with more, Spring cannot choose,
 * so the caller sets both and spreads requests over the partitions, and checks each reply arrived
 * on the partition it asked for.
 *
 * <p>Exit status: 0 all answered, 2 a reply timed out, 3 a reply came back on the wrong partition,
 * 1 anything else, 64 bad usage.
 */
public final class LookupCaller {

    private static final Logger log = LoggerFactory.getLogger(LookupCaller.class);

    static final Duration REPLY_TIMEOUT = Duration.ofSeconds(10);
    /** Optional request header understood by the service: epoch milliseconds, ASCII. */
    static final String DEADLINE_HEADER = "deadline";

    static final int EXIT_TIMEOUT = 2;
    static final int EXIT_WRONG_PARTITION = 3;

    private LookupCaller() {
    }

    public static void main(String[] args) {
        if (args.length < 5) {
            System.err.println("usage: LookupCaller BOOTSTRAP REQUEST_TOPIC REPLY_TOPIC CUSTOMER_ID PHONE [PHONE...]");
            System.exit(64);
        }
        int status;
        try {
            status = run(args[0], args[1], args[2], args[3], Arrays.asList(args).subList(4, args.length));
        }
        catch (Exception e) {
            log.error("lookup failed", e);
            status = 1;
        }
        System.out.flush();
        // Kafka and Spring leave non-daemon threads behind; the answers are printed, so leave now.
        System.exit(status);
    }

    static int run(String bootstrap, String requestTopic, String replyTopic, String customerId,
            List<String> phones) throws Exception {

        Map<Integer, Long> ends = endOffsets(bootstrap, replyTopic);
        TopicPartitionOffset[] assignment = ends.entrySet().stream()
                .map(e -> new TopicPartitionOffset(replyTopic, e.getKey(), e.getValue()))
                .toArray(TopicPartitionOffset[]::new);
        log.info("reply topic {}: partitions from offsets {}", replyTopic, ends);

        ContainerProperties containerProperties = new ContainerProperties(assignment);
        containerProperties.setGroupId("spring-caller-" + UUID.randomUUID()); // only for offset commits
        containerProperties.setPollTimeout(200);
        KafkaMessageListenerContainer<String, String> replyContainer = new KafkaMessageListenerContainer<>(
                new DefaultKafkaConsumerFactory<>(Map.of(
                        ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap,
                        ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false,
                        ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class,
                        ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class)),
                containerProperties);

        DefaultKafkaProducerFactory<String, String> producerFactory = new DefaultKafkaProducerFactory<>(Map.of(
                ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap,
                ProducerConfig.LINGER_MS_CONFIG, 0,
                ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class,
                ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class));

        ReplyingKafkaTemplate<String, String, String> template =
                new ReplyingKafkaTemplate<>(producerFactory, replyContainer);
        template.setDefaultReplyTimeout(REPLY_TIMEOUT);
        template.setSharedReplyTopic(false); // a reply nobody waits for is worth an error line
        template.start();
        try {
            if (!template.waitForAssignment(Duration.ofSeconds(30))) {
                log.error("the reply container did not start polling within 30 s");
                return 1;
            }
            int[] partitions = ends.keySet().stream().mapToInt(Integer::intValue).toArray();
            for (int i = 0; i < phones.size(); i++) {
                // One partition: leave the reply headers to Spring. More: Spring cannot pick one, we do.
                Integer replyPartition = partitions.length > 1 ? partitions[i % partitions.length] : null;
                int status = ask(template, requestTopic, replyTopic, replyPartition, customerId, phones.get(i));
                if (status != 0) {
                    return status;
                }
            }
            return 0;
        }
        finally {
            template.stop();
            template.destroy();
            producerFactory.destroy();
        }
    }

    private static int ask(ReplyingKafkaTemplate<String, String, String> template, String requestTopic,
            String replyTopic, Integer replyPartition, String customerId, String phone) throws Exception {

        ProducerRecord<String, String> request = new ProducerRecord<>(requestTopic, customerId,
                "{\"type\":\"lookup_contact\",\"customer_id\":" + json(customerId) + ",\"phone\":" + json(phone) + "}");
        if (replyPartition != null) {
            request.headers().add(new RecordHeader(KafkaHeaders.REPLY_TOPIC,
                    replyTopic.getBytes(StandardCharsets.UTF_8)));
            request.headers().add(new RecordHeader(KafkaHeaders.REPLY_PARTITION,
                    ByteBuffer.allocate(Integer.BYTES).putInt(replyPartition).array()));
        }
        long deadline = System.currentTimeMillis() + REPLY_TIMEOUT.toMillis();
        request.headers().add(new RecordHeader(DEADLINE_HEADER,
                Long.toString(deadline).getBytes(StandardCharsets.US_ASCII)));

        long started = System.nanoTime();
        RequestReplyFuture<String, String, String> future = template.sendAndReceive(request);
        ConsumerRecord<String, String> reply;
        try {
            reply = future.get(REPLY_TIMEOUT.toMillis() + 5_000, TimeUnit.MILLISECONDS);
        }
        catch (ExecutionException e) {
            if (e.getCause() instanceof KafkaReplyTimeoutException) {
                log.error("{}: no reply within {} ms", phone, REPLY_TIMEOUT.toMillis());
                return EXIT_TIMEOUT;
            }
            throw e;
        }
        catch (java.util.concurrent.TimeoutException e) {
            log.error("{}: no reply (not even Spring's timeout) within {} ms", phone, REPLY_TIMEOUT.toMillis() + 5_000);
            return EXIT_TIMEOUT;
        }
        long millis = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - started);
        // Spring put these on the request (sendAndReceive mutates the record's headers).
        log.info("{}: reply from {}-{}@{} in {} ms; request headers {}; reply correlation {}", phone,
                reply.topic(), reply.partition(), reply.offset(), millis, describe(request.headers().toArray()),
                hex(reply.headers().lastHeader(KafkaHeaders.CORRELATION_ID)));
        if (replyPartition != null && reply.partition() != replyPartition) {
            log.error("{}: asked for a reply on partition {}, got it on {}", phone, replyPartition, reply.partition());
            return EXIT_WRONG_PARTITION;
        }
        System.out.println(phone + "\t" + reply.value());
        return 0;
    }

    /** Partition → current end offset of every partition of {@code topic}. */
    private static Map<Integer, Long> endOffsets(String bootstrap, String topic) throws Exception {
        try (Admin admin = Admin.create(Map.of(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap))) {
            List<TopicPartitionInfo> partitions = admin.describeTopics(List.of(topic))
                    .allTopicNames().get(30, TimeUnit.SECONDS).get(topic).partitions();
            Map<TopicPartition, OffsetSpec> latest = partitions.stream()
                    .collect(Collectors.toMap(p -> new TopicPartition(topic, p.partition()), p -> OffsetSpec.latest()));
            return admin.listOffsets(latest).all().get(30, TimeUnit.SECONDS).entrySet().stream()
                    .collect(Collectors.toMap(e -> e.getKey().partition(), e -> e.getValue().offset(),
                            (a, b) -> a, TreeMap::new));
        }
    }

    private static String describe(Header[] headers) {
        Function<Header, String> value = h -> switch (h.key()) {
            case KafkaHeaders.REPLY_PARTITION -> hex(h) + " (" + ByteBuffer.wrap(h.value()).getInt() + ")";
            case KafkaHeaders.CORRELATION_ID -> hex(h);
            default -> new String(h.value(), StandardCharsets.UTF_8);
        };
        return Arrays.stream(headers).map(h -> h.key() + "=" + value.apply(h)).collect(Collectors.joining(", ", "[", "]"));
    }

    private static String hex(Header header) {
        return header == null ? "-" : HexFormat.of().formatHex(header.value());
    }

    /** A JSON string literal (the values here are ids and phone numbers; this covers any text). */
    static String json(String text) {
        StringBuilder out = new StringBuilder("\"");
        for (char c : text.toCharArray()) {
            switch (c) {
                case '"' -> out.append("\\\"");
                case '\\' -> out.append("\\\\");
                default -> {
                    if (c < 0x20) {
                        out.append(String.format("\\u%04x", (int) c));
                    }
                    else {
                        out.append(c);
                    }
                }
            }
        }
        return out.append('"').toString();
    }
}
